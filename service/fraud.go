package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/nyaruka/phonenumbers"

	"github.com/otpd/otpd/internal/ipprefix"
	"github.com/otpd/otpd/otp"
)

// The fraud guard's modes.
const (
	// FraudEnforce refuses what a rule refuses.
	FraudEnforce = "enforce"
	// FraudRecordOnly decides and counts as FraudEnforce does, and
	// refuses nothing: a policy is tried on real traffic first.
	FraudRecordOnly = "record_only"
)

// The fraud guard's rules, as named in configuration, in the ErrorInfo
// metadata "rule" and in otpd_fraud_decisions_total.
const (
	ruleCountries   = "sms_countries"
	ruleNumberTypes = "sms_number_types"
	ruleConversion  = "conversion"
)

// The conversion rule's slots (Slot.Limit), one per subject it counts.
const (
	conversionCountry = "conversion_country"
	conversionIP      = "conversion_client_ip"
)

// The actions of otpd_fraud_decisions_total.
const (
	// actionRefused: mode enforce, the send was refused.
	actionRefused = "refused"
	// actionRecorded: mode record_only, the send went ahead.
	actionRecorded = "recorded"
	// actionAllowed: always_allow let through a send the rule refuses.
	actionAllowed = "allowed"
)

// Fraud is the fraud block of otpd.yaml: rules against SMS pumping
// (International Revenue Share Fraud), in which an attacker has codes sent
// to numbers whose terminating fees they share. The static rules look at
// the destination only and are decided in memory, before the store is
// asked, so that a refused send costs nothing; the conversion rule is
// decided by the store, with the limits (conversionSlots). DefaultFraud
// gives the defaults.
type Fraud struct {
	// Mode is FraudEnforce (the default) or FraudRecordOnly.
	Mode string `yaml:"mode"`
	// SMSCountries limits SMS to the numbers of some countries, by the
	// ISO 3166-1 alpha-2 code of the number's region as the numbering
	// plan gives it (+1 is shared by the US, Canada and 23 others: each
	// is told apart), upper or lower case. "001" stands for the
	// non-geographic numbers (+800, +808, +870, +881, +882, +883, ...),
	// satellite ones among them. Both lists empty (the default): every
	// country.
	SMSCountries CountryLists `yaml:"sms_countries"`
	// SMSNumberTypes are the number types SMS may go to, as the
	// numbering plan classifies the number (FraudNumberTypes lists the
	// names); any other type is refused. Default: mobile and
	// fixed_line_or_mobile (the plans that cannot tell the two apart).
	SMSNumberTypes []string `yaml:"sms_number_types"`
	// Conversion is the low-conversion rule: SMS sends per country and
	// per client IP that nobody verifies are cut off.
	Conversion Conversion `yaml:"conversion"`
	// AlwaysAllow lists recipients and client networks that the fraud
	// rules never refuse. The rate limits still apply.
	AlwaysAllow AlwaysAllow `yaml:"always_allow"`
}

// CountryLists is fraud.sms_countries.
type CountryLists struct {
	// Allow, when not empty, is the only countries SMS goes to.
	Allow []string `yaml:"allow"`
	// Deny lists countries SMS never goes to.
	Deny []string `yaml:"deny"`
}

// Conversion is fraud.conversion: per SMS country calling code and per
// client IP, with S sends and V verified codes in Window, a send is
// refused while S - V >= max(MinUnverified, Ratio × V).
//
// The store counts S - V itself: the unverified sends of each subject
// (their verification ids, in the send's own atomic step, like a window
// of the limits), and V per part of the window. A verification that
// succeeds credits its send: its id leaves the unverified sends of its
// country and of its send's client IP, and V grows by one, once. A send
// delivered nowhere leaves them too. SendCode to SMS only: DeliverCode's
// codes are verified by the identity server that made them, which otpd
// never hears of, so it would count every delivery as unverified; test
// recipients are exempt, as from every limit. Email is not counted.
type Conversion struct {
	// Window is the period counted (24h); 0 turns the rule off.
	Window time.Duration `yaml:"window"`
	// MinUnverified is how many unverified sends are always tolerated (20).
	MinUnverified int `yaml:"min_unverified"`
	// Ratio is the tolerated share of unverified sends per verified code
	// (0.2).
	Ratio float64 `yaml:"ratio"`
}

// AlwaysAllow is fraud.always_allow.
type AlwaysAllow struct {
	// Recipients are E.164 prefixes ("+44", "+4477009"), email addresses
	// ("qa@example.com", any case) or email domains ("@example.com",
	// exact: not its subdomains).
	Recipients []string `yaml:"recipients"`
	// ClientIPs are networks in CIDR notation ("203.0.113.0/24",
	// "2001:db8::/48") or single addresses, matched against the request's
	// client_ip.
	ClientIPs []string `yaml:"client_ips"`
}

// DefaultFraud returns the documented defaults.
func DefaultFraud() Fraud {
	return Fraud{
		Mode:           FraudEnforce,
		SMSNumberTypes: []string{"mobile", "fixed_line_or_mobile"},
		Conversion:     Conversion{Window: 24 * time.Hour, MinUnverified: 20, Ratio: 0.2},
	}
}

// numberTypeNames names phonenumbers.PhoneNumberType in configuration.
var numberTypeNames = map[phonenumbers.PhoneNumberType]string{
	phonenumbers.MOBILE:               "mobile",
	phonenumbers.FIXED_LINE:           "fixed_line",
	phonenumbers.FIXED_LINE_OR_MOBILE: "fixed_line_or_mobile",
	phonenumbers.TOLL_FREE:            "toll_free",
	phonenumbers.PREMIUM_RATE:         "premium_rate",
	phonenumbers.SHARED_COST:          "shared_cost",
	phonenumbers.VOIP:                 "voip",
	phonenumbers.PERSONAL_NUMBER:      "personal_number",
	phonenumbers.PAGER:                "pager",
	phonenumbers.UAN:                  "uan",
	phonenumbers.VOICEMAIL:            "voicemail",
	phonenumbers.UNKNOWN:              "unknown",
}

// FraudNumberTypes lists the names fraud.sms_number_types takes.
func FraudNumberTypes() []string {
	names := make([]string, 0, len(numberTypeNames))
	for _, n := range numberTypeNames {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// numberTypeOf is the type of a name of numberTypeNames.
func numberTypeOf(name string) (phonenumbers.PhoneNumberType, bool) {
	for t, n := range numberTypeNames {
		if n == name {
			return t, true
		}
	}
	return 0, false
}

// validate checks the fraud block; errors name the key of otpd.yaml.
func (f Fraud) validate() error {
	var errs []error
	add := func(key, msg string, args ...any) {
		errs = append(errs, fmt.Errorf("fraud.%s: %s", key, fmt.Sprintf(msg, args...)))
	}
	if f.Mode != FraudEnforce && f.Mode != FraudRecordOnly {
		add("mode", "%q is not enforce or record_only", f.Mode)
	}
	regions := phonenumbers.GetSupportedRegions()
	lists := map[string][]string{"allow": f.SMSCountries.Allow, "deny": f.SMSCountries.Deny}
	for _, name := range []string{"allow", "deny"} {
		for i, c := range lists[name] {
			key := fmt.Sprintf("sms_countries.%s[%d]", name, i)
			up := strings.ToUpper(c)
			if _, ok := regions[up]; !ok && up != nonGeoRegion {
				add(key, "%q is not the ISO 3166-1 alpha-2 code of a region with phone numbers (such as GB or US; 001 for non-geographic numbers)", c)
			}
			if name == "deny" && slices.ContainsFunc(f.SMSCountries.Allow, func(a string) bool { return strings.EqualFold(a, c) }) {
				add(key, "%q is in sms_countries.allow too", c)
			}
		}
	}
	if len(f.SMSNumberTypes) == 0 {
		add("sms_number_types", "must list at least one type (to allow every type, list them all: %s)", strings.Join(FraudNumberTypes(), ", "))
	}
	for i, n := range f.SMSNumberTypes {
		if _, ok := numberTypeOf(n); !ok {
			add(fmt.Sprintf("sms_number_types[%d]", i), "%q is not one of %s", n, strings.Join(FraudNumberTypes(), ", "))
		}
	}
	c := f.Conversion
	switch {
	case c.Window < 0:
		add("conversion.window", "must not be negative (0 turns the rule off)")
	case c.Window > 0 && c.Window < time.Minute:
		add("conversion.window", "must be at least 1m (0 turns the rule off)")
	}
	if c.Window > 0 && c.MinUnverified < 1 {
		add("conversion.min_unverified", "must be at least 1")
	}
	if math.IsNaN(c.Ratio) || c.Ratio < 0 || c.Ratio > 100 {
		add("conversion.ratio", "must be between 0 and 100")
	}
	for i, r := range f.AlwaysAllow.Recipients {
		if _, _, err := parseAllowedRecipient(r); err != nil {
			add(fmt.Sprintf("always_allow.recipients[%d]", i), "%v", err)
		}
	}
	for i, s := range f.AlwaysAllow.ClientIPs {
		if _, err := ipprefix.Parse(s); err != nil {
			add(fmt.Sprintf("always_allow.client_ips[%d]", i), "%q is not a CIDR such as 203.0.113.0/24 or an IP address: %v", s, err)
		}
	}
	return errors.Join(errs...)
}

// parseAllowedRecipient reads an always_allow recipient: an E.164 prefix
// (phone set) or an email address or "@domain", as the keys of email
// recipients are spelled (emailKey).
func parseAllowedRecipient(s string) (phone, email string, err error) {
	if rest, ok := strings.CutPrefix(s, "+"); ok {
		if rest == "" || len(rest) > 15 || !digits(rest) {
			return "", "", fmt.Errorf("%q is not an E.164 prefix: \"+\" and 1 to 15 digits", s)
		}
		return s, "", nil
	}
	var v violations
	if domain, ok := strings.CutPrefix(s, "@"); ok {
		r, ok := parseEmail("x@"+domain, &v)
		if !ok {
			return "", "", fmt.Errorf("%q is not an email domain such as @example.com", s)
		}
		_, d, _ := strings.Cut(emailKey(r.addr), "@")
		return "", "@" + d, nil
	}
	r, ok := parseEmail(s, &v)
	if !ok {
		return "", "", fmt.Errorf("%q is not an E.164 prefix (+44), an email address or an email domain (@example.com)", s)
	}
	return "", emailKey(r.addr), nil
}

// fraudGuard is Fraud compiled for the send path.
type fraudGuard struct {
	record      bool
	conversion  Conversion      // Window 0: off
	allow, deny map[string]bool // by region; allow nil: every region
	types       map[phonenumbers.PhoneNumberType]bool
	prefixes    []string        // always_allow E.164 prefixes
	emails      map[string]bool // always_allow email keys and "@domain"s
	nets        []netip.Prefix
}

// newFraudGuard compiles f, which must pass validate.
func newFraudGuard(f Fraud) *fraudGuard {
	g := &fraudGuard{record: f.Mode == FraudRecordOnly, conversion: f.Conversion, types: map[phonenumbers.PhoneNumberType]bool{}, emails: map[string]bool{}}
	set := func(list []string) map[string]bool {
		if len(list) == 0 {
			return nil
		}
		m := map[string]bool{}
		for _, c := range list {
			m[strings.ToUpper(c)] = true
		}
		return m
	}
	g.allow, g.deny = set(f.SMSCountries.Allow), set(f.SMSCountries.Deny)
	for _, n := range f.SMSNumberTypes {
		if t, ok := numberTypeOf(n); ok {
			g.types[t] = true
		}
	}
	for _, r := range f.AlwaysAllow.Recipients {
		phone, email, err := parseAllowedRecipient(r)
		switch {
		case err != nil:
		case phone != "":
			g.prefixes = append(g.prefixes, phone)
		default:
			g.emails[email] = true
		}
	}
	for _, s := range f.AlwaysAllow.ClientIPs {
		if p, err := ipprefix.Parse(s); err == nil {
			g.nets = append(g.nets, p)
		}
	}
	return g
}

// rule returns the static rule that refuses an SMS to rcpt, or "". The
// number is classified only when a rule needs it.
func (g *fraudGuard) rule(rcpt recipient) string {
	if rcpt.channel != otp.SMS || (g.allow == nil && g.deny == nil && len(g.types) == len(numberTypeNames)) {
		return ""
	}
	region, typ := classifyE164(rcpt.addr)
	switch {
	case g.allow != nil && !g.allow[region], g.deny[region]:
		return ruleCountries
	case !g.types[typ]:
		return ruleNumberTypes
	}
	return ""
}

// allowed reports whether always_allow names the recipient or the
// client's address.
func (g *fraudGuard) allowed(rcpt recipient, client netip.Addr) bool {
	if rcpt.channel == otp.Email {
		if len(g.emails) > 0 {
			key := emailKey(rcpt.addr)
			if g.emails[key] || g.emails[key[strings.LastIndexByte(key, '@'):]] {
				return true
			}
		}
	} else {
		for _, p := range g.prefixes {
			if strings.HasPrefix(rcpt.addr, p) {
				return true
			}
		}
	}
	if client.IsValid() {
		for _, n := range g.nets {
			if n.Contains(client) {
				return true
			}
		}
	}
	return false
}

// fraudError is a send a fraud rule refused.
type fraudError struct{ rule string }

func (e *fraudError) Error() string {
	return "the destination is blocked by the fraud guard (rule " + e.rule + ")"
}

// checkFraud applies the static fraud rules to a send, in memory: it
// returns a fraudError when the send is refused, and counts every decision
// (a rule that refuses the destination) with what came of it.
func (s *Service) checkFraud(ctx context.Context, r sendRequest, log callLog) error {
	g := s.fraud
	rule := g.rule(r.rcpt)
	if rule == "" {
		return nil
	}
	action := actionRefused
	switch {
	case g.allowed(r.rcpt, r.clientAddr):
		action = actionAllowed
	case g.record:
		action = actionRecorded
	}
	s.metrics.fraud.WithLabelValues(rule, action).Inc()
	if action != actionRefused {
		log.InfoContext(ctx, "fraud rule passed over", slog.String("rule", rule), slog.String("action", action))
		return nil
	}
	log.InfoContext(ctx, "send refused by the fraud guard", slog.String("rule", rule))
	return &fraudError{rule: rule}
}

// conversionSlots are the conversion rule's slots of a send: its SMS
// country's and, when the caller gave one, its client IP's. Slots in
// record mode (fraud.mode record_only, or a send always_allow names) are
// taken over the threshold too, and the store says so (SendResult.Over).
// credit is what the send stores with its code for the verification that
// credits it: the client IP's subject, in 25 characters.
func (s *Service) conversionSlots(r sendRequest, slots []Slot) (_ []Slot, credit string) {
	if !s.converts(r) {
		return slots, ""
	}
	c := s.fraud.conversion
	rule := &ConversionRule{MinUnverified: c.MinUnverified, Ratio: c.Ratio,
		Record: s.fraud.record || s.fraud.allowed(r.rcpt, r.clientAddr)}
	slots = append(slots, s.countryConversion(r.rcpt.country, rule))
	if r.ip != "" {
		sl := s.ipSlot(conversionIP, conversionPrefix, r.ip, Window{Window: c.Window})
		sl.Conversion = rule
		slots = append(slots, sl)
		credit = sl.Bucket + strings.TrimPrefix(sl.Key, conversionPrefix+"ip:")
	}
	return slots, credit
}

// converts reports whether the conversion rule counts send r: an SMS code
// of otpd's, the rule on.
func (s *Service) converts(r sendRequest) bool {
	return s.fraud.conversion.Window > 0 && !r.deliver && r.rcpt.channel == otp.SMS
}

// maxConversionSlots is how many slots conversionSlots appends at most:
// the country's and the client IP's.
const maxConversionSlots = 2

// conversionPrefix tells a client IP's conversion slot from its windows
// (ipSlot).
const conversionPrefix = "cv"

// countryConversion is the conversion slot of a country calling code.
func (s *Service) countryConversion(country string, rule *ConversionRule) Slot {
	return Slot{Limit: conversionCountry, Key: "cv:cc:" + country, Window: Window{Window: s.fraud.conversion.Window}, Conversion: rule}
}

// creditSlots are the conversion slots a verified SMS code's send counted
// in: its country's and the client IP's its send stored (credit), whose
// key is the one of the secret the send ran under.
func (s *Service) creditSlots(country, credit string) []Slot {
	rule := &ConversionRule{MinUnverified: s.fraud.conversion.MinUnverified, Ratio: s.fraud.conversion.Ratio}
	slots := []Slot{s.countryConversion(country, rule)}
	if len(credit) > bucketHexDigits {
		slots = append(slots, Slot{Limit: conversionIP, Key: conversionPrefix + "ip:" + credit[bucketHexDigits:],
			Bucket: credit[:bucketHexDigits], Window: Window{Window: s.fraud.conversion.Window}, Conversion: rule})
	}
	return slots
}

// lowConversionError is a send the conversion rule refused.
type lowConversionError struct {
	subject    string // conversionCountry or conversionIP
	retryAfter time.Duration
}

func (e *lowConversionError) Error() string {
	return "too few codes sent to this destination are verified (fraud rule conversion, " + e.subject +
		"), retry after " + e.retryAfter.Round(time.Millisecond).String()
}

// conversionRefused counts and logs a send the conversion rule refused
// for subject.
func (s *Service) conversionRefused(ctx context.Context, log callLog, count func(provider, result string), subject string, retryAfter time.Duration) error {
	count("", "blocked")
	s.metrics.fraud.WithLabelValues(ruleConversion, actionRefused).Inc()
	log.InfoContext(ctx, "send refused by the fraud guard", slog.String("rule", ruleConversion), slog.String("subject", subject), slog.String("retry_after", retryAfter.String()))
	return &lowConversionError{subject: subject, retryAfter: retryAfter}
}

// conversionPassedOver counts and logs a send over the conversion rule's
// threshold for subject that went ahead: always_allow names it, or
// fraud.mode is record_only.
func (s *Service) conversionPassedOver(ctx context.Context, r sendRequest, log callLog, subject string) {
	action := actionRecorded
	if s.fraud.allowed(r.rcpt, r.clientAddr) {
		action = actionAllowed
	}
	s.metrics.fraud.WithLabelValues(ruleConversion, action).Inc()
	log.InfoContext(ctx, "fraud rule passed over", slog.String("rule", ruleConversion), slog.String("subject", subject), slog.String("action", action))
}

// credit credits a verified SMS code's send to its conversion slots: one
// store call after an OK, bounded by the verification's context. A
// failure leaves the send counted as unverified until it leaves the
// window, and never fails the verification.
func (s *Service) credit(ctx context.Context, log callLog, country string, res VerifyResult, now time.Time) {
	if s.fraud.conversion.Window <= 0 || country == "" || res.VerificationID == "" {
		return
	}
	if err := s.store.CreditSlots(ctx, now, res.VerificationID, s.creditSlots(country, res.Credit)); err != nil {
		log.WarnContext(ctx, "credit verified send to the conversion rule: it counts as unverified until it leaves the window", slog.Any("error", err))
	}
}

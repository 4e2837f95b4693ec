package providers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2" //nolint:depguard // retry jitter (backoff spread), not a secret
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/otpd/otpd/internal/redact"
	"github.com/otpd/otpd/otp"
)

// Defaults of Route and RouterOptions.
const (
	DefaultTimeout  = 10 * time.Second
	DefaultAttempts = 2
	DefaultBackoff  = 200 * time.Millisecond
)

// maxBackoff caps the pause between rounds however many rounds there are.
const maxBackoff = 30 * time.Second

// Route is one configured provider and the recipients it serves.
type Route struct {
	// Name is the configured provider name, unique within a channel. It labels
	// metrics and logs and is what Receipt.Provider reports.
	Name string
	// Channel is the channel the provider delivers on.
	Channel otp.Channel
	// Match optionally limits the recipients the provider serves. For SMS an
	// entry is an E.164 prefix such as "+86" or "+1415"; for email it is a
	// domain such as "example.com" (or "@example.com"), which matches that
	// domain and its subdomains, ignoring case. An empty Match serves every
	// recipient of the channel.
	Match []string
	// Timeout bounds each attempt through this provider (DefaultTimeout if
	// 0). The caller's deadline still applies when it is sooner.
	Timeout time.Duration
	// Sender delivers the messages.
	Sender Sender
}

// RouterOptions tune a Router. The zero value is usable.
type RouterOptions struct {
	// Delivery is how hard a send tries; zero fields take the defaults.
	Delivery
	// Registerer registers the router's metrics; nil leaves them
	// unregistered.
	Registerer prometheus.Registerer
	// Logger receives a warning for every failed attempt; nil discards them.
	Logger *slog.Logger
}

// Delivery is the delivery block of otpd.yaml: how many rounds over a
// channel's providers a send may make, all within the call's deadline.
// DefaultDelivery gives the defaults.
type Delivery struct {
	// Attempts is how many rounds over the candidate providers a send makes
	// at most, 1 to 10 (2).
	Attempts int `yaml:"attempts"`
	// Backoff is the pause before the second round (200ms), doubled for
	// each further round, with jitter. A pause that would end after the
	// caller's deadline is not taken: the send gives up at once.
	Backoff time.Duration `yaml:"backoff"`
}

// DefaultDelivery returns the defaults of the delivery block.
func DefaultDelivery() Delivery { return Delivery{Attempts: DefaultAttempts, Backoff: DefaultBackoff} }

// Validate checks a configured delivery block; errors name the key
// relative to the block.
func (d Delivery) Validate() error {
	var errs []error
	if d.Attempts < 1 || d.Attempts > 10 {
		errs = append(errs, errors.New("attempts: must be between 1 and 10"))
	}
	if d.Backoff < time.Millisecond {
		errs = append(errs, errors.New("backoff: must be at least 1ms"))
	}
	return errors.Join(errs...)
}

// Router delivers a message through the providers that serve its recipient,
// in configuration order, failing over on transient failures. It is the only
// place in otpd that retries. A Router is safe for concurrent use.
type Router struct {
	routes    []Route
	byChannel map[otp.Channel][]route
	attempts  int
	backoff   time.Duration
	log       *slog.Logger
	metrics   *routerMetrics
}

// route is a validated Route with its Match entries normalised.
type route struct {
	idx     int // in Router.routes
	name    string
	match   []string
	timeout time.Duration
	sender  Sender
	// observe holds the route's duration series by result, looked up once.
	observe map[string]prometheus.Observer
}

// Results of an attempt, the result label of
// otpd_provider_request_duration_seconds.
const (
	resultOK        = "ok"
	resultTransient = "transient_error"
	resultPermanent = "permanent_error"
)

type routerMetrics struct {
	duration *prometheus.HistogramVec
	errors   *prometheus.CounterVec
}

func newRouterMetrics(reg prometheus.Registerer) *routerMetrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	f := promauto.With(reg)
	return &routerMetrics{
		duration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "otpd_provider_request_duration_seconds",
			Help:    "Duration of each attempt to hand a message to a provider. result: ok, transient_error, permanent_error.",
			Buckets: prometheus.DefBuckets,
		}, []string{"provider", "result"}),
		errors: f.NewCounterVec(prometheus.CounterOpts{
			Name: "otpd_provider_errors_total",
			Help: "Failed attempts to hand a message to a provider, by the provider's reason (its own error code, or throttled, auth, timeout, transport, canceled, http_<status>, unclassified).",
		}, []string{"provider", "reason"}),
	}
}

// NewRouter validates routes and returns a Router over them. Every route needs
// a non-empty name unique within its channel, the sms or email channel, a Sender, a non-negative
// Timeout and well-formed Match entries; the error names each offending route
// and entry. The metrics are registered on opts.Registerer, which panics if
// they are already registered there.
func NewRouter(routes []Route, opts RouterOptions) (*Router, error) {
	var errs []error
	if opts.Attempts < 0 {
		errs = append(errs, fmt.Errorf("attempts: must not be negative, got %d", opts.Attempts))
	}
	if opts.Backoff < 0 {
		errs = append(errs, fmt.Errorf("backoff: must not be negative, got %s", opts.Backoff))
	}
	seen := make(map[string]bool, len(routes))
	byChannel := make(map[otp.Channel][]route)
	for i, rt := range routes {
		id := "route " + strconv.Quote(rt.Name)
		if rt.Name == "" {
			id = "route #" + strconv.Itoa(i+1)
			errs = append(errs, fmt.Errorf("%s: name is empty", id))
		} else if seen[string(rt.Channel)+"/"+rt.Name] {
			errs = append(errs, fmt.Errorf("%s: name is used by an earlier route of channel %s", id, rt.Channel))
		}
		// One provider may serve both channels, as one route each.
		seen[string(rt.Channel)+"/"+rt.Name] = true
		if rt.Channel != otp.SMS && rt.Channel != otp.Email {
			errs = append(errs, fmt.Errorf("%s: channel %q: want %q or %q", id, rt.Channel, otp.SMS, otp.Email))
		}
		if rt.Sender == nil {
			errs = append(errs, fmt.Errorf("%s: sender is nil", id))
		}
		if rt.Timeout < 0 {
			errs = append(errs, fmt.Errorf("%s: timeout: must not be negative, got %s", id, rt.Timeout))
		}
		r := route{idx: i, name: rt.Name, timeout: rt.Timeout, sender: rt.Sender}
		if r.timeout == 0 {
			r.timeout = DefaultTimeout
		}
		for _, m := range rt.Match {
			norm, err := normalizeMatch(rt.Channel, m)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: match %q: %w", id, m, err))
				continue
			}
			r.match = append(r.match, norm)
		}
		byChannel[rt.Channel] = append(byChannel[rt.Channel], r)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("configure router: %w", err)
	}

	r := &Router{
		routes:    cloneRoutes(routes),
		byChannel: byChannel,
		attempts:  opts.Attempts,
		backoff:   opts.Backoff,
		log:       opts.Logger,
		metrics:   newRouterMetrics(opts.Registerer),
	}
	if r.attempts == 0 {
		r.attempts = DefaultAttempts
	}
	if r.backoff == 0 {
		r.backoff = DefaultBackoff
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	for _, rs := range byChannel {
		for i := range rs {
			rs[i].observe = make(map[string]prometheus.Observer, 3)
			for _, res := range []string{resultOK, resultTransient, resultPermanent} {
				// Creating the series now shows zeros rather than gaps.
				rs[i].observe[res] = r.metrics.duration.WithLabelValues(rs[i].name, res)
			}
		}
	}
	return r, nil
}

// normalizeMatch checks a Match entry for channel ch and returns the form the
// router compares: the prefix itself for SMS, the lower-cased domain without
// "@" for email.
func normalizeMatch(ch otp.Channel, m string) (string, error) {
	switch ch {
	case otp.SMS:
		digits, ok := strings.CutPrefix(m, "+")
		if !ok || len(digits) < 1 || len(digits) > 15 || strings.TrimLeft(digits, "0123456789") != "" {
			return "", errors.New(`want an E.164 prefix: "+" and 1 to 15 digits, such as "+86"`)
		}
		return m, nil
	case otp.Email:
		// Recipients are delivered to the ASCII (punycode) form of their
		// domain, so a pattern is compared in that form too.
		d, ok := otp.ASCIIDomain(strings.TrimPrefix(m, "@"))
		if !ok || !validDomain(d) {
			return "", errors.New(`want an email domain such as "example.com"`)
		}
		return d, nil
	default:
		// The channel itself is reported invalid.
		return m, nil
	}
}

// validDomain reports whether d is a plausible domain name: dot-separated
// labels of letters, digits and inner hyphens, at most 63 bytes each and 253
// in all.
func validDomain(d string) bool {
	if d == "" || len(d) > 253 {
		return false
	}
	for label := range strings.SplitSeq(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if c != '-' && !unicode.IsLetter(c) && !unicode.IsDigit(c) {
				return false
			}
		}
	}
	return true
}

// MatchRecipient reports whether the Match entry pattern lets a provider of
// channel ch serve recipient to. For SMS, pattern is a phone number prefix;
// for email, a domain (with or without a leading "@") that matches itself
// and its subdomains, ignoring case. An empty pattern matches nothing.
func MatchRecipient(ch otp.Channel, pattern, to string) bool {
	switch ch {
	case otp.SMS:
		return pattern != "" && strings.HasPrefix(to, pattern)
	case otp.Email:
		return matchDomain(strings.TrimPrefix(pattern, "@"), to)
	default:
		return false
	}
}

// matchDomain reports whether the domain of email address to is domain or
// one of its subdomains, ignoring case.
func matchDomain(domain, to string) bool {
	at := strings.LastIndexByte(to, '@')
	if at < 0 || domain == "" {
		return false
	}
	got := to[at+1:]
	if len(got) == len(domain) {
		return strings.EqualFold(got, domain)
	}
	cut := len(got) - len(domain) - 1
	return cut > 0 && got[cut] == '.' && strings.EqualFold(got[cut+1:], domain)
}

func (rt *route) serves(ch otp.Channel, to string) bool {
	if len(rt.match) == 0 {
		return true
	}
	for _, m := range rt.match {
		if MatchRecipient(ch, m, to) {
			return true
		}
	}
	return false
}

// Candidates returns the routes that serve recipient to on channel ch, in
// configuration order.
func (r *Router) Candidates(ch otp.Channel, to string) []Route {
	var out []Route
	for _, rt := range r.byChannel[ch] {
		if rt.serves(ch, to) {
			out = append(out, cloneRoute(r.routes[rt.idx]))
		}
	}
	return out
}

// Serves reports whether some route serves recipient to on channel ch
// for usage type u, so that a caller can refuse a message before doing
// any work for it. A route whose Sender is a UsageChecker that cannot
// serve u (Tencent without an OrganizationInvitation template) does not
// count.
func (r *Router) Serves(ch otp.Channel, to string, u otp.UsageType) bool {
	for i := range r.byChannel[ch] {
		if rt := &r.byChannel[ch][i]; rt.serves(ch, to) && rt.canServe(u) {
			return true
		}
	}
	return false
}

// canServe reports whether the route's Sender can serve usage type u:
// always, unless it is a UsageChecker that says otherwise.
func (rt *route) canServe(u otp.UsageType) bool {
	uc, ok := rt.sender.(UsageChecker)
	return !ok || uc.CanServe(u) == nil
}

// Routes returns every configured route, in configuration order.
func (r *Router) Routes() []Route { return cloneRoutes(r.routes) }

func cloneRoutes(rs []Route) []Route {
	out := make([]Route, len(rs))
	for i, rt := range rs {
		out[i] = cloneRoute(rt)
	}
	return out
}

func cloneRoute(rt Route) Route {
	rt.Match = append([]string(nil), rt.Match...)
	return rt
}

// Send delivers msg through the first provider that serves its channel and
// recipient and accepts it, and reports that provider's name in the Receipt.
//
// A transient failure (an *Error with Retryable set, an error without an
// *Error, or an attempt that ran out of its route's Timeout) moves on to the
// next provider; after the last one, Send pauses and starts another round,
// up to the configured number of rounds. A permanent failure (a bad
// number, bad credentials, an unapproved template) ends the send at once:
// it needs a person to fix it, not another try.
//
// Routes whose Sender cannot serve the message's usage type (a
// UsageChecker that says so, such as Tencent without an
// OrganizationInvitation template) are skipped.
//
// The errors Send returns:
//   - no provider serves the recipient and usage type: a permanent *Error
//     with Reason "no_provider" wrapping ErrNoProvider;
//   - a provider failed permanently: that provider's error;
//   - every attempt failed transiently: the last attempt's transient *Error;
//   - ctx ended first: an error wrapping both ctx.Err() and the last
//     attempt's *Error, so that errors.Is(err, context.DeadlineExceeded)
//     holds.
func (r *Router) Send(ctx context.Context, msg otp.Message) (otp.Receipt, error) {
	routes := r.byChannel[msg.Channel]
	usable := func(rt *route) bool { return rt.serves(msg.Channel, msg.To) && rt.canServe(msg.UsageType) }
	served := false
	for i := range routes {
		if usable(&routes[i]) {
			served = true
			break
		}
	}
	if !served {
		return otp.Receipt{}, Permanent("", "no_provider", ErrNoProvider)
	}

	var last *Error
	attempt := 0
	for round := 1; round <= r.attempts; round++ {
		if round > 1 {
			if err := r.pause(ctx, round); err != nil {
				return otp.Receipt{}, r.giveUp(ctx, last)
			}
		}
		for i := range routes {
			rt := &routes[i]
			if !usable(rt) {
				continue
			}
			if ctx.Err() != nil {
				return otp.Receipt{}, r.giveUp(ctx, last)
			}
			attempt++
			rc, err := r.try(ctx, rt, msg)
			if err == nil {
				return rc, nil
			}
			r.logFailure(ctx, rt, msg, err, attempt, round)
			if !err.Retryable {
				return otp.Receipt{}, err
			}
			last = err
			if ctx.Err() != nil {
				return otp.Receipt{}, r.giveUp(ctx, last)
			}
		}
	}
	return otp.Receipt{}, last
}

// try makes one attempt through rt, bounded by rt's timeout, and returns the
// failure classified.
func (r *Router) try(ctx context.Context, rt *route, msg otp.Message) (otp.Receipt, *Error) {
	actx, cancel := context.WithTimeout(ctx, rt.timeout)
	defer cancel()
	start := time.Now()
	rc, err := rt.sender.Send(actx, msg)
	elapsed := time.Since(start).Seconds()
	if err == nil {
		rt.observe[resultOK].Observe(elapsed)
		rc.Provider = rt.name
		return rc, nil
	}

	perr, ok := AsError(err)
	switch {
	case !ok && actx.Err() != nil:
		// The sender did not classify its failure, but its context ended:
		// a timeout (or the caller's cancellation) is transient.
		perr = ClassifyTransport(rt.name, actx.Err())
		perr.Err = redactURLError(err)
	case !ok:
		perr = Transient(rt.name, reasonUnclassified, err)
	case perr.Provider == "":
		cp := *perr
		cp.Provider = rt.name
		perr = &cp
	}
	result := resultPermanent
	if perr.Retryable {
		result = resultTransient
	}
	rt.observe[result].Observe(elapsed)
	r.metrics.errors.WithLabelValues(rt.name, perr.Reason).Inc()
	return otp.Receipt{}, perr
}

// pause waits before round, for the backoff doubled per round since the
// second, with "equal jitter": between half of it and all of it. It returns
// an error without waiting when the pause would outlast ctx, and when ctx
// ends during the pause.
func (r *Router) pause(ctx context.Context, round int) error {
	d := r.backoff
	for i := 2; i < round && d < maxBackoff; i++ {
		d *= 2
	}
	d = min(d, maxBackoff)
	d = d/2 + rand.N(d/2+1)
	if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) <= d {
		return context.DeadlineExceeded
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// giveUp returns the error of a send that stopped before its rounds were
// done: the last provider error, wrapped with ctx's error once ctx has ended.
func (r *Router) giveUp(ctx context.Context, last *Error) error {
	cerr := ctx.Err()
	switch {
	case cerr == nil && last != nil:
		// The next pause would have outlasted the deadline.
		return last
	case cerr == nil:
		return Transient("", "timeout", context.DeadlineExceeded)
	case last == nil:
		return ClassifyTransport("", cerr)
	default:
		return &ctxError{ctx: cerr, last: last}
	}
}

// ctxError is the error of a send whose context ended before a provider
// accepted the message.
type ctxError struct {
	ctx  error
	last *Error
}

func (e *ctxError) Error() string {
	return "deliver message: " + e.ctx.Error() + "; last attempt: " + e.last.Error()
}

// Unwrap returns both the context's error and the last provider error.
func (e *ctxError) Unwrap() []error { return []error{e.ctx, e.last} }

func (r *Router) logFailure(ctx context.Context, rt *route, msg otp.Message, err *Error, attempt, round int) {
	if !r.log.Enabled(ctx, slog.LevelWarn) {
		return
	}
	r.log.LogAttrs(ctx, slog.LevelWarn, "provider attempt failed",
		slog.String("provider", rt.name),
		slog.String("reason", err.Reason),
		slog.Bool("retryable", err.Retryable),
		slog.Int("attempt", attempt),
		slog.Int("round", round),
		slog.String("channel", string(msg.Channel)),
		slog.String("recipient", redact.Recipient(msg.To)),
		slog.String("verification_id", msg.VerificationID),
		slog.String("error", scrub(err.Error(), msg)),
	)
}

// scrub masks the code, the link and the recipient in an error text, in
// case a sender broke the rule that errors carry none of them.
func scrub(s string, msg otp.Message) string {
	if msg.Link != "" {
		s = strings.ReplaceAll(s, msg.Link, "<redacted>")
	}
	if msg.Code != "" {
		s = strings.ReplaceAll(s, msg.Code, "<redacted>")
	}
	if msg.To != "" {
		s = strings.ReplaceAll(s, msg.To, redact.Recipient(msg.To))
	}
	return s
}

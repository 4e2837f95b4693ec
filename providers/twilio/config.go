package twilio

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"github.com/otpd/otpd/internal/redact"
	"github.com/otpd/otpd/otp"
	"github.com/otpd/otpd/providers"
	"github.com/otpd/otpd/templates"
)

// DefaultEndpoint is Twilio's REST API, used when endpoint is empty.
const DefaultEndpoint = "https://api.twilio.com"

// Config configures a Twilio SMS provider. The JSON keys are those of
// Logto's Twilio connector, so that a Logto user can paste theirs, plus
// endpoint.
type Config struct {
	// AccountSID is the Account SID ("AC" and 32 hex digits) from the
	// Twilio console. It names the account in the API path and is the Basic
	// auth user. It prints masked. Required.
	AccountSID redact.KeyID `json:"accountSID"`
	// AuthToken is the account's Auth token, the Basic auth password.
	// Required.
	AuthToken redact.Secret `json:"authToken"`
	// FromMessagingServiceSID is the SID ("MG...") of the Messaging Service
	// whose sender pool sends the messages. Required.
	FromMessagingServiceSID string `json:"fromMessagingServiceSID"`
	// DisableRiskCheck sends RiskCheck=disable, which turns off Twilio's
	// SMS pumping protection (Verify Fraud Guard for Messaging) for these
	// messages. Off by default: the check stays on.
	DisableRiskCheck bool `json:"disableRiskCheck,omitempty"`
	// Templates holds the message text of each usage type; {{code}},
	// {{app_name}} and {{ttl_minutes}} are replaced. A usage type without
	// one gets Generic's; without Generic, the text rendered from otpd's own
	// templates goes out. An OrganizationInvitation template (Logto's, a
	// link without a code) is used when it has {{link}} and neither
	// {{code}} nor {{ttl_minutes}}, and has no Generic fallback; any other
	// (Logto's default SMS config lists one with {{code}}, which Logto
	// never sends; Logto's placeholders such as {{organization.name}} are
	// not otpd's) loads and is ignored, as before otpd sent invitations.
	Templates []Template `json:"templates"`
	// Endpoint overrides the API base URL, DefaultEndpoint if empty, for a
	// proxy, another Twilio region (https://api.dublin.ie1.twilio.com) or a
	// test double: http is accepted for those. A path is a prefix put
	// before /2010-04-01/....
	Endpoint string `json:"endpoint,omitempty"`
}

// Template is the SMS text of one usage type.
type Template struct {
	// UsageType is one of Logto's nine usage types: Register, SignIn,
	// ForgotPassword, Generic, UserPermissionValidation, BindNewIdentifier,
	// MfaVerification, BindMfa, or OrganizationInvitation (a link, no
	// code).
	UsageType string `json:"usageType"`
	// Content is the message text. It must hold {{code}}, or {{link}} for
	// OrganizationInvitation.
	Content string `json:"content"`
}

// ParseConfig decodes the JSON config block of a twilio provider and
// validates it. Unknown keys are an error.
func ParseConfig(raw []byte) (Config, error) { return providers.ParseConfig[Config]("twilio", raw) }

// Validate reports every problem with c at once, each error naming its JSON
// key.
func (c Config) Validate() error {
	_, err := c.compile()
	return err
}

// compiled is a Config made ready to send with.
type compiled struct {
	base      *url.URL                              // API base URL, never nil
	templates map[otp.UsageType]*templates.Template // by usage type
	ignored   []string                              // invitation templates that cannot carry the link
}

// alphanumeric is what the SDK accepts in credentials: it refuses anything
// else before sending (Twilio errors 21222 and 21224).
var alphanumeric = regexp.MustCompile(`^[A-Za-z0-9]+$`)

// compile validates c and compiles its templates, reporting every problem.
func (c Config) compile() (compiled, error) {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(checkSID("accountSID", string(c.AccountSID), "AC", "the Account SID shown in the Twilio console"))
	switch token := c.AuthToken.Reveal(); {
	case strings.TrimSpace(token) == "":
		add(errors.New("authToken: required"))
	case !alphanumeric.MatchString(token):
		// The token itself is never quoted.
		add(errors.New("authToken: must be letters and digits only, as Twilio's Auth tokens are (check for blanks or quotes around it)"))
	}
	add(checkSID("fromMessagingServiceSID", c.FromMessagingServiceSID, "MG",
		"the SID of a Messaging Service (Messaging > Services in the Twilio console), not a phone number"))

	out := compiled{templates: map[otp.UsageType]*templates.Template{}}
	base, err := providers.ParseEndpoint(c.Endpoint)
	add(err)
	if base == nil && err == nil {
		base, _ = url.Parse(DefaultEndpoint)
	}
	out.base = base

	seen := map[otp.UsageType]int{}
	for i, t := range c.Templates {
		key := fmt.Sprintf("templates[%d]", i)
		u, err := providers.ParseLogtoUsageType(t.UsageType)
		switch first, dup := seen[u]; {
		case err != nil:
			add(fmt.Errorf("%s.%w", key, err))
		case dup:
			add(fmt.Errorf("%s.usageType: %s already has templates[%d]", key, u, first))
		default:
			seen[u] = i
		}
		tpl, err := compileContent(key+".content", t.Content, u)
		switch {
		case err != nil:
			add(err)
		case tpl == nil && u != "":
			out.ignored = append(out.ignored, string(u))
		case u != "":
			out.templates[u] = tpl
		}
	}
	if len(errs) > 0 {
		return compiled{}, errors.Join(errs...)
	}
	return out, nil
}

// checkSID checks a Twilio SID: required, letters and digits only (the
// account SID is the Basic auth user, which the SDK refuses otherwise), and
// starting with prefix, which tells a SID of the wrong kind.
func checkSID(key, sid, prefix, what string) error {
	switch {
	case strings.TrimSpace(sid) == "":
		return fmt.Errorf("%s: required", key)
	case !alphanumeric.MatchString(sid):
		return fmt.Errorf("%s %q: must be letters and digits only: want %s", key, sid, what)
	case !strings.HasPrefix(sid, prefix):
		return fmt.Errorf("%s %q: must start with %s: want %s", key, sid, prefix, what)
	}
	return nil
}

// compileContent compiles the text of usage type u (empty when the
// usageType did not parse: then only the placeholders are checked). An
// OrganizationInvitation text that cannot carry the link gives nil and no
// error: it is ignored.
func compileContent(key, content string, u otp.UsageType) (*templates.Template, error) {
	if strings.TrimSpace(content) == "" {
		return nil, fmt.Errorf("%s: required", key)
	}
	tpl, err := templates.Compile(key, content, false)
	switch {
	case u == otp.OrganizationInvitation:
		if err != nil || tpl.CheckUsage(u) != nil || !tpl.Inserts("link") {
			return nil, nil
		}
		return tpl, nil
	case err != nil || u == "":
		return tpl, err
	}
	if err := tpl.CheckUsage(u); err != nil {
		return nil, err
	}
	// A text without {{code}} would send a message without the code.
	if !tpl.Inserts("code") {
		return nil, fmt.Errorf("%s: has no {{code}} placeholder, so the message would not carry the code", key)
	}
	return tpl, nil
}

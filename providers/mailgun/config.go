package mailgun

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/mail"
	"slices"
	"strings"

	"github.com/otpd/otpd/internal/redact"
	"github.com/otpd/otpd/otp"
	"github.com/otpd/otpd/providers"
	"github.com/otpd/otpd/templates"
)

// The Mailgun API regions. An endpoint is the base URL without Mailgun's
// "/v3" version prefix, as Logto's connector spells it.
const (
	// DefaultEndpoint is Mailgun's US region, used when endpoint is empty.
	DefaultEndpoint = "https://api.mailgun.net"
	// EUEndpoint is Mailgun's EU region.
	EUEndpoint = "https://api.eu.mailgun.net"
)

// apiVersion is the path Mailgun's API lives under, below the endpoint.
const apiVersion = "/v3"

// Config configures a Mailgun provider. Its JSON keys are those of Logto's
// Mailgun connector, so that a Logto user can paste theirs.
type Config struct {
	// Endpoint is the API base URL without "/v3": DefaultEndpoint if empty,
	// EUEndpoint for the EU region, or a proxy or test double (http is
	// allowed for those). A trailing "/" or "/v3" is tolerated.
	Endpoint string `json:"endpoint"`
	// Domain is the sending domain registered with Mailgun, bare
	// ("mg.example.com", no scheme). Required.
	Domain string `json:"domain"`
	// APIKey is a Mailgun API key allowed to send messages. Required.
	APIKey redact.Secret `json:"apiKey"`
	// From is the sender, "Name <address>" or a bare address, on the
	// domain. Required.
	From string `json:"from"`
	// Deliveries holds the email of each usage type. A usage type without
	// one gets Generic's; without Generic, the message rendered from otpd's
	// own templates goes out.
	Deliveries Deliveries `json:"deliveries"`
}

// Deliveries maps a Logto usage type ("Register", "SignIn",
// "ForgotPassword", "Generic", ..., "OrganizationInvitation") to its email.
// An OrganizationInvitation delivery is used when it can carry the link:
// in raw mode, {{link}} in its html or text and no {{code}} or
// {{ttl_minutes}} anywhere; in template mode, always ("link" is added to
// its variables). Any other (Logto's placeholders such as
// {{organization.name}} are not otpd's) loads and is ignored, and otpd's
// own invitation goes out.
type Deliveries map[string]Delivery

// Delivery is the email of one usage type, in one of two modes: raw
// content (HTML and/or Text) or a template stored in Mailgun (Template and
// Variables), never both.
type Delivery struct {
	// Subject is the subject; {{code}}, {{app_name}} and {{ttl_minutes}}
	// ({{link}} and {{app_name}} for OrganizationInvitation) are replaced.
	// Empty means the subject rendered from otpd's templates.
	Subject string `json:"subject"`
	// ReplyTo is the Reply-To address, if any.
	ReplyTo string `json:"replyTo"`
	// HTML is the HTML body (raw mode); inserted values are HTML-escaped.
	HTML string `json:"html"`
	// Text is the plain-text body (raw mode).
	Text string `json:"text"`
	// Template is the name of a Mailgun template (template mode).
	Template string `json:"template"`
	// Variables are passed to the Mailgun template as JSON in the
	// X-Mailgun-Variables header, with "code" added ("link" for
	// OrganizationInvitation) (template mode).
	Variables map[string]json.RawMessage `json:"variables"`
}

// UnmarshalJSON decodes the deliveries object, rejecting a usage type listed
// twice (which encoding/json would silently collapse) and unknown keys in a
// delivery.
func (d *Deliveries) UnmarshalJSON(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("deliveries: %w", err)
	}
	if tok == nil { // null
		return nil
	}
	if tok != json.Delim('{') {
		return errors.New("deliveries: want an object keyed by usage type")
	}
	out := Deliveries{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("deliveries: %w", err)
		}
		key, _ := tok.(string) // object keys are always strings
		if _, dup := out[key]; dup {
			return fmt.Errorf("deliveries.%s: usage type listed twice", key)
		}
		var v Delivery
		if err := dec.Decode(&v); err != nil {
			return fmt.Errorf("deliveries.%s: %w", key, err)
		}
		out[key] = v
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return fmt.Errorf("deliveries: %w", err)
	}
	*d = out
	return nil
}

// ParseConfig decodes the JSON config block of a Mailgun provider and
// validates it. Unknown keys are an error.
func ParseConfig(raw []byte) (Config, error) { return providers.ParseConfig[Config]("mailgun", raw) }

// Validate reports every problem in c, each naming its key
// ("domain: required", "deliveries.SignIn.html: ...").
func (c Config) Validate() error {
	_, err := c.compile()
	return err
}

// settings is a validated Config, templates compiled.
type settings struct {
	apiBase    string // endpoint + "/v3", as the SDK wants it
	deliveries map[otp.UsageType]*delivery
	ignored    []string // usage types whose delivery cannot carry the link, sorted
}

// delivery is one usage type's compiled Delivery.
type delivery struct {
	key       string              // "deliveries.SignIn"
	subject   *templates.Template // nil: the subject from otpd's templates
	replyTo   string
	html      *templates.Template // raw mode; nil if not configured
	text      *templates.Template // raw mode; nil if not configured
	template  string              // template mode
	variables map[string]json.RawMessage
}

// compile validates c and compiles its templates, reporting every problem.
func (c Config) compile() (settings, error) {
	var s settings
	var errs []error
	base, err := apiBase(c.Endpoint)
	if err != nil {
		errs = append(errs, err)
	}
	s.apiBase = base
	if err := checkDomain(c.Domain); err != nil {
		errs = append(errs, fmt.Errorf("domain: %w", err))
	}
	if c.APIKey == "" {
		errs = append(errs, errors.New("apiKey: required"))
	}
	if err := checkAddress(c.From); err != nil {
		errs = append(errs, fmt.Errorf("from: %w", err))
	}

	s.deliveries = make(map[otp.UsageType]*delivery)
	for _, name := range slices.Sorted(maps.Keys(c.Deliveries)) {
		u, err := providers.ParseLogtoUsageType(name)
		if err != nil {
			errs = append(errs, fmt.Errorf("deliveries.%s: %w", name, err))
			continue
		}
		d, err := compileDelivery("deliveries."+name, u, c.Deliveries[name])
		switch {
		case err != nil && u == otp.OrganizationInvitation:
			s.ignored = append(s.ignored, name)
		case err != nil:
			errs = append(errs, err)
		default:
			s.deliveries[u] = d
		}
	}
	return s, errors.Join(errs...)
}

// apiBase turns Logto's endpoint into the SDK's API base: the endpoint with
// "/v3" appended (once).
func apiBase(endpoint string) (string, error) {
	if endpoint == "" {
		return DefaultEndpoint + apiVersion, nil
	}
	u, err := providers.ParseEndpoint(endpoint) // names the key, drops a trailing "/"
	if err != nil {
		return "", err
	}
	u.Path = strings.TrimSuffix(u.Path, apiVersion)
	return u.String() + apiVersion, nil
}

// checkDomain accepts a bare DNS name with at least two labels.
func checkDomain(d string) error {
	switch {
	case d == "":
		return errors.New("required")
	case strings.Contains(d, "://"):
		return fmt.Errorf("%q: want the bare domain, such as mg.example.com, without a scheme", d)
	case len(d) > 253:
		return fmt.Errorf("%q: longer than 253 characters", d)
	}
	labels := strings.Split(d, ".")
	if len(labels) < 2 {
		return fmt.Errorf("%q: want a domain such as mg.example.com", d)
	}
	for _, l := range labels {
		if !validLabel(l) {
			return fmt.Errorf("%q: not a domain name (want letters, digits, hyphens and dots, such as mg.example.com)", d)
		}
	}
	return nil
}

func validLabel(l string) bool {
	if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	for _, r := range l {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

// checkAddress accepts "Name <address>" or a bare address.
func checkAddress(a string) error {
	if a == "" {
		return errors.New("required")
	}
	if _, err := mail.ParseAddress(a); err != nil {
		return fmt.Errorf("%q: want an address such as \"Acme <no-reply@mg.example.com>\": %w", a, err)
	}
	return nil
}

// compileDelivery validates the delivery of usage type u and compiles its
// templates. key is "deliveries.<UsageType>".
func compileDelivery(key string, u otp.UsageType, d Delivery) (*delivery, error) {
	var errs []error
	raw := d.HTML != "" || d.Text != ""
	switch {
	case d.Template != "" && raw:
		errs = append(errs, fmt.Errorf("%s: has both template (a Mailgun template) and html/text (raw content); use one", key))
	case d.Template == "" && d.Variables != nil && raw:
		errs = append(errs, fmt.Errorf("%s.variables: only with template; raw html/text takes no variables", key))
	case d.Template == "" && d.Variables != nil:
		errs = append(errs, fmt.Errorf("%s.template: required with variables", key))
	case d.Template != "" && strings.TrimSpace(d.Template) == "":
		errs = append(errs, fmt.Errorf("%s.template: must not be blank", key))
	case d.Template == "" && !raw:
		errs = append(errs, fmt.Errorf("%s: needs html (or text) for raw content, or template for a Mailgun template", key))
	}

	out := &delivery{key: key, replyTo: d.ReplyTo, template: d.Template, variables: d.Variables}
	if d.ReplyTo != "" {
		if err := checkAddress(d.ReplyTo); err != nil {
			errs = append(errs, fmt.Errorf("%s.replyTo: %w", key, err))
		}
	}
	compile := func(field, text string, html bool) *templates.Template {
		if text == "" {
			return nil
		}
		t, err := templates.Compile(key+"."+field, text, html)
		if err == nil {
			err = t.CheckUsage(u)
		}
		if err != nil {
			errs = append(errs, err) // names key.field, line and column
		}
		return t
	}
	out.subject = compile("subject", d.Subject, false)
	out.html = compile("html", d.HTML, true)
	out.text = compile("text", d.Text, false)
	if u == otp.OrganizationInvitation && raw && len(errs) == 0 &&
		(out.html == nil || !out.html.Inserts("link")) && (out.text == nil || !out.text.Inserts("link")) {
		errs = append(errs, fmt.Errorf("%s: has no {{link}} in html or text", key))
	}
	if d.Variables != nil {
		// The SDK drops the whole header if the map does not marshal.
		if _, err := json.Marshal(d.Variables); err != nil {
			errs = append(errs, fmt.Errorf("%s.variables: %w", key, err))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

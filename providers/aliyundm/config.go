package aliyundm

import (
	"errors"
	"fmt"
	"net/mail"
	"slices"
	"strings"
	"unicode"

	"github.com/otpd/otpd/internal/redact"
	"github.com/otpd/otpd/otp"
	"github.com/otpd/otpd/providers"
	"github.com/otpd/otpd/templates"
)

// Config configures an Aliyun DirectMail provider. The JSON keys are those
// of Logto's Aliyun Direct Mail connector, so that a Logto user can paste
// theirs, plus regionId and endpoint.
type Config struct {
	// AccessKeyID is the AccessKey ID of an Aliyun (RAM) access key. It is
	// not a secret, but it names the account: it prints masked.
	AccessKeyID redact.KeyID `json:"accessKeyId"`
	// AccessKeySecret is the AccessKey secret of the access key.
	AccessKeySecret redact.Secret `json:"accessKeySecret"`
	// AccountName is the sender address (发信地址) set up in the DirectMail
	// console, such as "no-reply@dm.example.com".
	AccountName string `json:"accountName"`
	// FromAlias is the sender name the recipient sees (发信人昵称),
	// optional.
	FromAlias string `json:"fromAlias,omitempty"`
	// RegionID is the DirectMail region: cn-hangzhou (the default, API host
	// dm.aliyuncs.com), ap-southeast-1, ap-southeast-2, eu-central-1 or
	// us-east-1 (API host dm.<region>.aliyuncs.com). The sender address
	// must have been set up in that region.
	RegionID string `json:"regionId,omitempty"`
	// Templates are the provider's own subject and HTML content per usage
	// type. They are optional: a usage type without one (and without a
	// Generic one) is sent with otpd's own templates. An
	// OrganizationInvitation template (Logto's, a link without a code) is
	// used for invitations when its content has {{link}} and neither part
	// has {{code}} or {{ttl_minutes}}; any other (Logto's default lists
	// one with {{code}}; Logto's {{organization.name}} is not otpd's)
	// loads and is ignored, and otpd's own invitation goes out.
	Templates []Template `json:"templates"`
	// Endpoint overrides the API base URL, https://<region's API host> by
	// default, for a proxy or a test double: scheme and host[:port] only.
	// http is accepted for test doubles.
	Endpoint string `json:"endpoint,omitempty"`
}

// Template is the subject and HTML content of the mails of one usage type.
// Both may hold the placeholders {{code}}, {{app_name}} and {{ttl_minutes}}
// ({{link}} and {{app_name}} for OrganizationInvitation); the content is
// HTML, so inserted values are escaped there.
type Template struct {
	// UsageType is one of Logto's nine usage types: Register, SignIn,
	// ForgotPassword, Generic, UserPermissionValidation, BindNewIdentifier,
	// MfaVerification, BindMfa, or OrganizationInvitation (a link, no
	// code).
	UsageType string `json:"usageType"`
	// Subject is the mail's subject, plain text.
	Subject string `json:"subject"`
	// Content is the mail's HTML body.
	Content string `json:"content"`
}

// ParseConfig decodes the JSON config block of an aliyun-dm provider and
// validates it. Unknown keys are an error.
func ParseConfig(raw []byte) (Config, error) { return providers.ParseConfig[Config]("aliyun-dm", raw) }

// Validate reports every problem with c at once, each error naming its JSON
// key.
func (c Config) Validate() error {
	_, err := c.resolve()
	return err
}

// defaultRegion is the region of a config without regionId.
const defaultRegion = "cn-hangzhou"

// regionHosts maps the DirectMail regions to their API hosts.
var regionHosts = map[string]string{
	"cn-hangzhou":    "dm.aliyuncs.com",
	"ap-southeast-1": "dm.ap-southeast-1.aliyuncs.com",
	"ap-southeast-2": "dm.ap-southeast-2.aliyuncs.com",
	"eu-central-1":   "dm.eu-central-1.aliyuncs.com",
	"us-east-1":      "dm.us-east-1.aliyuncs.com",
}

// settings is a valid Config worked out: what Send needs.
type settings struct {
	region    string // RegionId, defaulted
	scheme    string // "https", or "http" for an http:// endpoint
	host      string // API host[:port]
	templates map[otp.UsageType]compiled
	ignored   bool // an OrganizationInvitation template that cannot carry the link
}

// compiled is a Template ready to execute.
type compiled struct {
	usage   otp.UsageType
	subject *templates.Template // text
	content *templates.Template // HTML
}

// resolve checks c and works out its settings, or returns every problem.
func (c Config) resolve() (settings, error) {
	var errs []error
	required := func(key, v string) bool {
		if strings.TrimSpace(v) == "" {
			errs = append(errs, fmt.Errorf("%s: required", key))
			return false
		}
		return true
	}
	required("accessKeyId", string(c.AccessKeyID))
	required("accessKeySecret", c.AccessKeySecret.Reveal())
	if required("accountName", c.AccountName) {
		if err := checkAddress(c.AccountName); err != nil {
			errs = append(errs, fmt.Errorf("accountName: %w", err))
		}
	}
	if strings.ContainsFunc(c.FromAlias, unicode.IsControl) {
		errs = append(errs, errors.New("fromAlias: must not hold control characters such as line breaks"))
	}

	s := settings{region: c.RegionID, scheme: "https"}
	if s.region == "" {
		s.region = defaultRegion
	}
	s.host = regionHosts[s.region]
	if s.host == "" {
		errs = append(errs, fmt.Errorf("regionId %q: not a DirectMail region, want one of %s (the default)",
			c.RegionID, strings.Join(regionNames(), ", ")))
	}
	switch u, err := providers.ParseEndpoint(c.Endpoint); {
	case err != nil:
		errs = append(errs, err)
	case u == nil:
	case u.Path != "":
		errs = append(errs, fmt.Errorf("endpoint %q: must not have a path: the DirectMail API lives at /", c.Endpoint))
	default:
		s.scheme, s.host = u.Scheme, u.Host
	}

	tpls, ignored, err := c.compileTemplates()
	if err != nil {
		errs = append(errs, err)
	}
	s.templates, s.ignored = tpls, ignored
	if len(errs) > 0 {
		return settings{}, errors.Join(errs...)
	}
	return s, nil
}

// regionNames lists the DirectMail regions, the default last.
func regionNames() []string {
	var names []string
	for r := range regionHosts {
		if r != defaultRegion {
			names = append(names, r)
		}
	}
	slices.Sort(names)
	return append(names, defaultRegion)
}

// checkAddress accepts a bare email address, as DirectMail's AccountName
// is: "no-reply@dm.example.com", not "Acme <no-reply@dm.example.com>".
func checkAddress(s string) error {
	addr, err := mail.ParseAddress(s)
	if err != nil || addr.Name != "" || addr.Address != s {
		return fmt.Errorf("%q is not a bare email address such as no-reply@dm.example.com "+
			"(the sender name goes in fromAlias)", s)
	}
	return nil
}

// codeProbe is a code no template holds literally; a template that renders
// without it has no {{code}}. HTML escaping leaves it as it is.
const codeProbe = "0x7d1c0de0x"

// compileTemplates compiles the templates, or returns every problem with
// them. ignored is set when an OrganizationInvitation template was left
// out because it cannot carry the link.
func (c Config) compileTemplates() (_ map[otp.UsageType]compiled, ignored bool, _ error) {
	var errs []error
	byUsage := make(map[otp.UsageType]compiled)
	seen := make(map[otp.UsageType]int)
	for i, t := range c.Templates {
		key := fmt.Sprintf("templates[%d]", i)
		u, err := providers.ParseLogtoUsageType(t.UsageType)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s.%w", key, err))
			continue
		}
		if first, dup := seen[u]; dup {
			errs = append(errs, fmt.Errorf("%s.usageType: %s already has templates[%d]", key, u, first))
			continue
		}
		seen[u] = i
		tpl, err := compileTemplate(key, u, t)
		if u == otp.OrganizationInvitation && err != nil {
			ignored = true
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		byUsage[u] = tpl
	}
	if len(errs) > 0 {
		return nil, false, errors.Join(errs...)
	}
	return byUsage, ignored, nil
}

// compileTemplate compiles the template at key for usage type u.
func compileTemplate(key string, u otp.UsageType, t Template) (compiled, error) {
	var errs []error
	compile := func(field, text string, html bool) *templates.Template {
		if strings.TrimSpace(text) == "" {
			errs = append(errs, fmt.Errorf("%s.%s: required", key, field))
			return nil
		}
		tpl, err := templates.Compile(key+"."+field, text, html)
		if err != nil {
			errs = append(errs, err) // names key.field, line and column
		}
		return tpl
	}
	out := compiled{usage: u, subject: compile("subject", t.Subject, false), content: compile("content", t.Content, true)}
	if len(errs) > 0 {
		return compiled{}, errors.Join(errs...)
	}
	for _, tpl := range []*templates.Template{out.subject, out.content} {
		if err := tpl.CheckUsage(u); err != nil {
			return compiled{}, err
		}
	}
	if u == otp.OrganizationInvitation {
		if !out.content.Inserts("link") {
			return compiled{}, fmt.Errorf("%s.content: has no {{link}}", key)
		}
		return out, nil
	}
	probe := templates.Data{Code: codeProbe}
	if !strings.Contains(out.subject.Execute(probe)+out.content.Execute(probe), codeProbe) {
		return compiled{}, fmt.Errorf("%s: neither subject nor content holds {{code}}", key)
	}
	return out, nil
}

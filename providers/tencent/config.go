package tencent

import (
	"errors"
	"fmt"
	"strings"

	"github.com/otpd/otpd/internal/redact"
	"github.com/otpd/otpd/otp"
	"github.com/otpd/otpd/providers"
)

// Config configures a Tencent Cloud SMS provider. The JSON keys are those of
// Logto's Tencent SMS connector, so that a Logto user can paste theirs, plus
// endpoint.
type Config struct {
	// AccessKeyID is the SecretId of a Tencent Cloud API key. It is not a
	// secret, but it names the account: it prints masked.
	AccessKeyID redact.KeyID `json:"accessKeyId"`
	// AccessKeySecret is the SecretKey of the API key.
	AccessKeySecret redact.Secret `json:"accessKeySecret"`
	// SignName is the approved SMS signature (签名) every message carries.
	SignName string `json:"signName"`
	// Region is the API region, such as "ap-guangzhou", sent as X-TC-Region.
	Region string `json:"region"`
	// SDKAppID is the SMS application ID (SdkAppId), such as "1400000000".
	SDKAppID string `json:"sdkAppId"`
	// Templates maps usage types to approved templates. Tencent sends only
	// templates approved in its console, never otpd's own text, so at least
	// one template of a code is required; Generic serves every code usage
	// type without its own. An OrganizationInvitation template (Logto's, a
	// link without a code) receives the link in {1}; without one, the
	// provider sends no invitations and the router passes it over.
	Templates []Template `json:"templates"`
	// Endpoint overrides the API base URL, https://sms.tencentcloudapi.com by
	// default, for a proxy or a test double: scheme and host[:port] only.
	// http is accepted for test doubles.
	Endpoint string `json:"endpoint,omitempty"`
}

// Template is an approved Tencent SMS template for a usage type. Its single
// placeholder {1} receives the code (the link, for OrganizationInvitation).
type Template struct {
	// UsageType is one of Logto's nine usage types: Register, SignIn,
	// ForgotPassword, Generic, UserPermissionValidation, BindNewIdentifier,
	// MfaVerification, BindMfa, or OrganizationInvitation (a link, no
	// code).
	UsageType string `json:"usageType"`
	// TemplateCode is the template's ID (模版 ID), such as "1234567".
	TemplateCode string `json:"templateCode"`
}

// ParseConfig decodes the JSON config block of a tencent provider and
// validates it. Unknown keys are an error.
func ParseConfig(raw []byte) (Config, error) { return providers.ParseConfig[Config]("tencent", raw) }

// Validate reports every problem with c at once, each error naming its JSON
// key.
func (c Config) Validate() error {
	var errs []error
	required := func(key, v string) {
		if strings.TrimSpace(v) == "" {
			errs = append(errs, fmt.Errorf("%s: required", key))
		}
	}
	required("accessKeyId", string(c.AccessKeyID))
	required("accessKeySecret", c.AccessKeySecret.Reveal())
	required("signName", c.SignName)
	required("region", c.Region)
	required("sdkAppId", c.SDKAppID)
	if _, _, err := endpointHost(c.Endpoint); err != nil {
		errs = append(errs, err)
	}
	if _, err := c.templatesByUsage(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// templatesByUsage returns the template IDs by usage type, or every
// problem with the templates.
func (c Config) templatesByUsage() (map[otp.UsageType]string, error) {
	var errs []error
	byUsage := make(map[otp.UsageType]string)
	seen := make(map[otp.UsageType]int)
	for i, t := range c.Templates {
		key := fmt.Sprintf("templates[%d]", i)
		u, err := providers.ParseLogtoUsageType(t.UsageType)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s.%w", key, err))
		} else if first, dup := seen[u]; dup {
			errs = append(errs, fmt.Errorf("%s.usageType: %s already has templates[%d]", key, u, first))
		} else {
			seen[u] = i
		}
		if err := checkTemplateCode(t.TemplateCode); err != nil {
			errs = append(errs, fmt.Errorf("%s.templateCode: %w", key, err))
		} else if u != "" {
			byUsage[u] = t.TemplateCode
		}
	}
	codes := len(byUsage)
	if _, ok := byUsage[otp.OrganizationInvitation]; ok {
		codes--
	}
	if codes == 0 && len(errs) == 0 {
		errs = append(errs, errors.New("templates: need a templateCode for Generic or another usage type otpd sends codes for: "+
			"Tencent sends only templates approved in its console, never otpd's own text"))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return byUsage, nil
}

// checkTemplateCode rejects an empty template ID and one that looks like
// message text, a likely mistake for users of providers that take text.
func checkTemplateCode(code string) error {
	switch {
	case strings.TrimSpace(code) == "":
		return errors.New("required")
	case strings.ContainsAny(code, "{} \t\r\n"):
		return fmt.Errorf("%q looks like message text: Tencent needs the ID of an approved template, such as \"1234567\"", code)
	}
	return nil
}

// defaultEndpoint is Tencent Cloud SMS's API host.
const defaultEndpoint = "sms.tencentcloudapi.com"

// endpointHost returns the host[:port] the SDK calls and whether it takes
// plain HTTP. Tencent's API lives at "/" and the SDK signs that path, so an
// endpoint with a path is an error.
func endpointHost(endpoint string) (host string, plainHTTP bool, err error) {
	u, err := providers.ParseEndpoint(endpoint)
	switch {
	case err != nil:
		return "", false, err
	case u == nil:
		return defaultEndpoint, false, nil
	case u.Path != "":
		return "", false, fmt.Errorf("endpoint %q: must not have a path: the Tencent Cloud API lives at /", endpoint)
	}
	return u.Host, u.Scheme == "http", nil
}

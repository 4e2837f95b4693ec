package providers

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
)

// DecodeConfig decodes the JSON config block of a provider of type kind into
// v. Unknown keys are an error, naming the key, so that a misspelt setting is
// reported rather than ignored; so is anything after the object. An empty
// block or null leaves v as it is.
func DecodeConfig(kind string, raw []byte, v any) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("decode %s config: %w", kind, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("decode %s config: unexpected data after the object", kind)
	}
	return nil
}

// logtoOnlyUsageTypes are the usage types Logto has and otpd does not send
// codes for. A pasted Logto config may list templates for them: they load
// and are never used.
var logtoOnlyUsageTypes = []UsageType{
	"OrganizationInvitation", "UserPermissionValidation", "BindNewIdentifier", "MfaVerification", "BindMfa",
}

// ParseLogtoUsageType parses the usageType of a template in a Logto
// connector config. served is false for the usage types that Logto has and
// otpd never sends (OrganizationInvitation, UserPermissionValidation,
// BindNewIdentifier, MfaVerification, BindMfa), so that a pasted config that
// lists them still loads. Anything else is an error naming the accepted
// values.
func ParseLogtoUsageType(s string) (u UsageType, served bool, err error) {
	for _, t := range UsageTypes {
		if string(t) == s {
			return t, true, nil
		}
	}
	for _, t := range logtoOnlyUsageTypes {
		if string(t) == s {
			return t, false, nil
		}
	}
	all := make([]string, 0, len(UsageTypes)+len(logtoOnlyUsageTypes))
	for _, t := range append(append([]UsageType(nil), UsageTypes...), logtoOnlyUsageTypes...) {
		all = append(all, string(t))
	}
	return "", false, fmt.Errorf("usageType %q: must be one of %s", s, strings.Join(all, ", "))
}

// ParseEndpoint parses an endpoint override: an absolute http or https URL
// with a host, and no user info, query or fragment. A trailing slash is
// dropped. The empty string gives nil, meaning the provider's default.
func ParseEndpoint(s string) (*url.URL, error) {
	if s == "" {
		return nil, nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("endpoint: not a URL: %w", err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("endpoint %q: scheme must be http or https", s)
	case u.Host == "" || u.Hostname() == "":
		return nil, fmt.Errorf("endpoint %q: has no host", s)
	case u.User != nil:
		return nil, errors.New("endpoint: must not hold user info; credentials have their own keys")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return nil, fmt.Errorf("endpoint %q: must not have a query or fragment", s)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

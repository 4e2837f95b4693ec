package providers

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"reflect"
	"slices"
	"strings"

	"github.com/otpd/otpd/otp"
)

// ParseConfig decodes raw into a C with DecodeConfig and validates it: the
// ParseConfig of every provider package whose Config validates itself.
func ParseConfig[C interface{ Validate() error }](kind string, raw []byte) (C, error) {
	var cfg C
	if err := DecodeConfig(kind, raw, &cfg); err != nil {
		var zero C
		return zero, err
	}
	if err := cfg.Validate(); err != nil {
		var zero C
		return zero, err
	}
	return cfg, nil
}

// DecodeConfig decodes the JSON config block of a provider of type kind into
// v. Unknown keys are an error, naming the key, so that a misspelt setting is
// reported rather than ignored; so is anything after the object. Keys must
// match their field's name exactly: encoding/json alone would let "apikey"
// or "AccountSid" fill apiKey or accountSID. An empty block or null leaves v
// as it is.
func DecodeConfig(kind string, raw []byte, v any) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil
	}
	var tree any
	if err := json.Unmarshal(raw, &tree); err == nil {
		if err := exactKeys(tree, reflect.TypeOf(v), ""); err != nil {
			return fmt.Errorf("decode %s config: %w", kind, err)
		}
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

// exactKeys checks that every object key in tree names a field of t (or of
// what t points to, holds or maps to) with exactly that spelling. Types that
// decode themselves are not looked into.
func exactKeys(tree any, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(jsonUnmarshaler) {
		return nil
	}
	switch node := tree.(type) {
	case map[string]any:
		switch t.Kind() {
		case reflect.Map:
			for k, sub := range node {
				if err := exactKeys(sub, t.Elem(), join(path, k)); err != nil {
					return err
				}
			}
		case reflect.Struct:
			fields := jsonFields(t)
			for k, sub := range node {
				ft, ok := fields[k]
				if !ok {
					for name := range fields {
						if strings.EqualFold(name, k) {
							return fmt.Errorf("%s: unknown key, did you mean %q?", join(path, k), name)
						}
					}
					continue // DisallowUnknownFields reports it
				}
				if err := exactKeys(sub, ft, join(path, k)); err != nil {
					return err
				}
			}
		}
	case []any:
		if t.Kind() == reflect.Slice || t.Kind() == reflect.Array {
			for i, sub := range node {
				if err := exactKeys(sub, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

var jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()

// jsonFields maps the JSON names of t's fields, embedded structs' included,
// to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case name == "-" || !f.IsExported() && !f.Anonymous:
			continue
		case f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct:
			maps.Copy(out, jsonFields(f.Type))
			continue
		case name == "":
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// ParseLogtoUsageType parses the usageType of a template in a Logto
// connector config: one of Logto's nine template types, the eight of
// otp.UsageTypes and OrganizationInvitation (whose text has {{link}}, not
// {{code}}: templates.Template.CheckUsage). Anything else is an error naming the
// accepted values.
func ParseLogtoUsageType(s string) (otp.UsageType, error) {
	all := append(slices.Clone(otp.UsageTypes), otp.OrganizationInvitation)
	for _, t := range all {
		if string(t) == s {
			return t, nil
		}
	}
	names := make([]string, len(all))
	for i, t := range all {
		names[i] = string(t)
	}
	return "", fmt.Errorf("usageType %q: must be one of %s", s, strings.Join(names, ", "))
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

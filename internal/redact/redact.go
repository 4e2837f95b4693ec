// Package redact masks personal data and secrets before they reach logs,
// metrics or error text.
package redact

import (
	"log/slog"
	"net/url"
	"strings"
)

// Recipient masks a phone number or an email address for logs: a phone
// number keeps its first three and last three characters
// ("+86*******000"), an email address the first character of its local part
// and its domain ("j***@example.com"). Anything shorter is masked whole.
func Recipient(s string) string {
	if at := strings.LastIndexByte(s, '@'); at >= 0 {
		local, domain := s[:at], s[at:]
		if local == "" {
			return "***" + domain
		}
		return local[:1] + "***" + domain
	}
	if len(s) <= 6 {
		return strings.Repeat("*", len(s))
	}
	return s[:3] + strings.Repeat("*", len(s)-6) + s[len(s)-3:]
}

// Secret is a string that never prints: fmt, slog and encoders see
// "<redacted>". Use Reveal to get the value.
type Secret string

const redacted = "<redacted>"

// String returns a placeholder, never the secret.
func (Secret) String() string { return redacted }

// GoString returns a placeholder, never the secret.
func (Secret) GoString() string { return redacted }

// LogValue returns a placeholder, never the secret.
func (Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalText returns a placeholder, never the secret.
func (Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// Reveal returns the secret itself.
func (s Secret) Reveal() string { return string(s) }

// Partial masks an identifier that is not itself a secret but should not be
// printed whole, such as an access key ID: a value of 12 characters or more
// keeps its first two and last four ("AK**********1234"), anything shorter is
// masked whole.
func Partial(s string) string {
	if len(s) < 12 {
		return strings.Repeat("*", len(s))
	}
	return s[:2] + strings.Repeat("*", len(s)-6) + s[len(s)-4:]
}

// KeyID is an access key ID. It is no secret, but printing it whole in logs
// would name the account, so fmt, slog and encoders see it masked by
// Partial. Decoding is unaffected: a KeyID decodes from a JSON string as a
// plain string does.
type KeyID string

// String returns the ID masked.
func (k KeyID) String() string { return Partial(string(k)) }

// GoString returns the ID masked.
func (k KeyID) GoString() string { return k.String() }

// LogValue returns the ID masked.
func (k KeyID) LogValue() slog.Value { return slog.StringValue(k.String()) }

// MarshalText returns the ID masked.
func (k KeyID) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// URL returns a URL with its password, if any, replaced by "<redacted>". A
// URL that does not parse is masked whole: where its password is cannot be
// told.
func URL(s string) string {
	if s == "" {
		return ""
	}
	u, err := url.Parse(s)
	if err != nil {
		return redacted
	}
	if _, ok := u.User.Password(); !ok {
		return s
	}
	// A username never holds an unescaped ':', so the first ":" + mark + "@"
	// is the password's place.
	const mark = "PASSWORD"
	u.User = url.UserPassword(u.User.Username(), mark)
	return strings.Replace(u.String(), ":"+mark+"@", ":"+redacted+"@", 1)
}

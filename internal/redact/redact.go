// Package redact masks personal data and secrets before they reach logs,
// metrics or error text.
package redact

import (
	"log/slog"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Recipient masks a phone number or an email address for logs, and always
// returns valid UTF-8: it cuts between characters, never inside one, and
// prints an invalid byte as U+FFFD.
//
// An email address keeps the first character of its local part and its
// domain ("j***@example.com", "é***@example.fr").
//
// A phone number keeps its "+" and fewer than half of its digits: of n
// digits at most (n-1)/2, the first up to two (most of the country code)
// and the last up to three. Numbers of 11 digits or more show two and three
// ("+86********000", "+14******123"), of 9 or 10 digits two and two
// ("+65******67"), of 7 or 8 digits one and two ("+6****12"), and of 6 or
// fewer none. Anything else without an "@" is masked the same way.
func Recipient(s string) string {
	if at := strings.LastIndexByte(s, '@'); at >= 0 {
		local, domain := s[:at], strings.ToValidUTF8(s[at:], "\uFFFD")
		if local == "" {
			return "***" + domain
		}
		first, size := utf8.DecodeRuneInString(local)
		if first == utf8.RuneError || !unicode.IsGraphic(first) || unicode.IsMark(first) {
			// Nothing that would print oddly, or not at all.
			return "****" + domain
		}
		return local[:size] + "***" + domain
	}
	plus := ""
	if rest, ok := strings.CutPrefix(s, "+"); ok {
		plus, s = "+", rest
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	n := utf8.RuneCountInString(s)
	shown := (n - 1) / 2
	if n <= 6 {
		shown = 0
	}
	head := min(2, shown/2)
	tail := min(3, shown-head)
	// Byte offsets of the end of the head and the start of the tail.
	end, start := 0, len(s)
	for range head {
		_, w := utf8.DecodeRuneInString(s[end:])
		end += w
	}
	for range tail {
		_, w := utf8.DecodeLastRuneInString(s[:start])
		start -= w
	}
	return plus + s[:end] + strings.Repeat("*", n-head-tail) + s[start:]
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

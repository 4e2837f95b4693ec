package templates

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/otpd/otpd/otp"
)

// Autofill is what lets a phone fill in an SMS's code by itself: the
// WebOTP line of the origin-bound one-time code format
// (https://wicg.github.io/sms-one-time-codes/), "@example.com #123456",
// which browsers (the WebOTP API, autocomplete="one-time-code" in Safari)
// read from the message's last line, and the 11-character app hash that
// Android's SMS Retriever looks for in a message of at most 140 bytes. The
// zero value adds nothing.
type Autofill struct {
	// WebOTPDomain is the host name of the WebOTP line, in ASCII.
	WebOTPDomain string
	// AppHash is the app's SMS Retriever hash.
	AppHash string
}

// Autofill returns the autofill of o, which must have passed Validate, with
// the domain in its ASCII form.
func (o Options) Autofill() Autofill {
	a := Autofill{AppHash: o.AndroidAppHash}
	if o.WebOTPDomain != "" {
		a.WebOTPDomain, _ = webOTPDomain(o.WebOTPDomain)
	}
	return a
}

// IsZero reports whether a adds nothing.
func (a Autofill) IsZero() bool { return a == Autofill{} }

// Lines returns the lines that end an SMS carrying code: the app hash, then
// the WebOTP line, which must be the message's last; "" for the zero
// Autofill.
func (a Autofill) Lines(code string) string {
	var lines []string
	if a.AppHash != "" {
		lines = append(lines, a.AppHash)
	}
	if a.WebOTPDomain != "" {
		lines = append(lines, a.WebOTPLine(code))
	}
	return strings.Join(lines, "\n")
}

// WebOTPLine returns the origin-bound line for code: "@example.com #123456".
func (a Autofill) WebOTPLine(code string) string { return "@" + a.WebOTPDomain + " #" + code }

// String describes a for otpd -check.
func (a Autofill) String() string {
	var parts []string
	if a.AppHash != "" {
		parts = append(parts, "android app hash "+a.AppHash)
	}
	if a.WebOTPDomain != "" {
		parts = append(parts, "WebOTP line @"+a.WebOTPDomain)
	}
	if len(parts) == 0 {
		return "off"
	}
	return strings.Join(parts, ", ")
}

// AppendAutofill returns text with lines (from Autofill.Lines) at its end,
// after a blank line, as in the examples of both formats; trailing blanks
// of text are dropped, so that the WebOTP line stays the last. Empty lines
// leave text as it is. Providers that send an SMS text of their own for a
// message append otp.Content.Autofill with it.
func AppendAutofill(text, lines string) string {
	if lines == "" {
		return text
	}
	return strings.TrimRight(text, " \t\r\n") + "\n\n" + lines
}

// otcLine matches what Chromium's WebOTP parser takes for an origin-bound
// one-time code anywhere in a message: "@host #code" at the start or after
// a blank. A message must hold one only, on its last line.
var otcLine = regexp.MustCompile(`(?:^|\s)@[a-zA-Z0-9.-]+ #[^#\s]+`)

// Check returns an error when text, a whole SMS carrying code, breaks a
// format a configures: its last line is not exactly the WebOTP line for
// code, another line starts with "@" or holds something a WebOTP parser
// would take for an origin-bound code, the app hash is missing, or the
// message is longer than the 140 bytes (one segment) that the SMS
// Retriever reads. The error says how.
func (a Autofill) Check(text, code string) error {
	var errs []error
	if a.WebOTPDomain != "" {
		want := a.WebOTPLine(code)
		body, last := "", text
		if i := strings.LastIndexByte(text, '\n'); i >= 0 {
			body, last = text[:i], text[i+1:]
		}
		if last != want {
			errs = append(errs, fmt.Errorf("the last line is %q, not the WebOTP line %q", shorten(last), want))
		}
		for i, line := range strings.Split(body, "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "@") {
				errs = append(errs, fmt.Errorf(`line %d starts with "@" too (%q): WebOTP reads the origin and code from the one line that does, the last`, i+1, shorten(line)))
			} else if otcLine.MatchString(line) {
				errs = append(errs, fmt.Errorf(`line %d holds an origin-bound code too (%q): a WebOTP parser could take it for the message's`, i+1, shorten(line)))
			}
		}
	}
	if a.AppHash != "" {
		if !strings.Contains(text, a.AppHash) {
			errs = append(errs, fmt.Errorf("the app hash %s is missing", a.AppHash))
		}
		if s := MeasureSMS(text); s.Bytes > MaxSingleBytes {
			errs = append(errs, fmt.Errorf("the message is %d bytes in %s (%d segments): Android's SMS Retriever reads messages of at most %d bytes; shorten the text",
				s.Bytes, s.Encoding, s.Segments, MaxSingleBytes))
		}
	}
	return errors.Join(errs...)
}

// Carries reports whether an SMS of usage type u carries autofill lines:
// those that carry a code do, an OrganizationInvitation (a link) does not.
func Carries(u otp.UsageType) bool { return u != otp.OrganizationInvitation }

// validateAutofill checks the autofill keys of o; errors name the key.
func (o Options) validateAutofill() error {
	var errs []error
	if o.WebOTPDomain != "" {
		if _, err := webOTPDomain(o.WebOTPDomain); err != nil {
			errs = append(errs, fmt.Errorf("webotp_domain: %q %w", shorten(o.WebOTPDomain), err))
		}
	}
	if h := o.AndroidAppHash; h != "" && !validAppHash(h) {
		errs = append(errs, fmt.Errorf("android_app_hash: %q is not an SMS Retriever app hash: want the 11 characters of [A-Za-z0-9+/] that Google's AppSignatureHelper or keytool prints, such as FA+9qCX9VSu", shorten(h)))
	}
	return errors.Join(errs...)
}

// webOTPDomain returns the ASCII form of the host name d, or an error
// saying why it cannot stand in a WebOTP line: the origin's host alone,
// without scheme, port, path or trailing dot, and not an IP address.
func webOTPDomain(d string) (string, error) {
	switch {
	case strings.Contains(d, "://"):
		return "", errors.New(`is a URL: want the host name alone, such as "example.com"`)
	case strings.ContainsAny(d, ":/?#@ "):
		return "", errors.New(`is not a host name: want the host name alone, such as "example.com", without port or path`)
	case strings.HasSuffix(d, "."):
		return "", errors.New(`ends with a dot: want the host name as browsers show it, such as "example.com"`)
	}
	a, ok := otp.ASCIIDomain(d)
	if !ok {
		return "", errors.New("is not a valid (IDNA) host name")
	}
	labels := strings.Split(a, ".")
	for _, l := range labels {
		if !otp.HostLabel(l) {
			return "", errors.New("is not a valid host name: want labels of letters, digits and inner hyphens")
		}
	}
	if strings.Trim(labels[len(labels)-1], "0123456789") == "" {
		return "", errors.New("is an IP address: WebOTP binds codes to a domain name")
	}
	return a, nil
}

// validAppHash reports whether h looks like an SMS Retriever app hash: the
// first 11 characters of the base64 of a SHA-256.
func validAppHash(h string) bool {
	if len(h) != 11 {
		return false
	}
	for _, c := range h {
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '/') {
			return false
		}
	}
	return true
}

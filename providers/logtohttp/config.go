package logtohttp

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/otpd/otpd/internal/redact"
	"github.com/otpd/otpd/providers"
)

// Config configures an http provider. The JSON keys are exactly those of
// Logto's HTTP SMS and HTTP email connectors, so that a Logto user can
// paste theirs. Unlike Logto, which keeps unknown keys, otpd refuses them,
// as it does for every provider: a misspelt "authorisation" would
// otherwise send codes without the secret header.
type Config struct {
	// Endpoint is the URL every message is POSTed to, as it is: unlike the
	// endpoint of the vendor providers it is no base URL, and a trailing
	// slash or a query string is kept. It must be an http or https URL
	// with a host and without user info (put credentials in
	// Authorization). Required.
	Endpoint string `json:"endpoint"`
	// Authorization is the value of the Authorization header, sent
	// verbatim ("Bearer xyz", "Basic ..."); empty sends no header. It
	// prints redacted.
	Authorization redact.Secret `json:"authorization,omitempty"`
}

// ParseConfig decodes the JSON config block of an http provider and
// validates it. Unknown keys are an error.
func ParseConfig(raw []byte) (Config, error) { return providers.ParseConfig[Config]("http", raw) }

// Validate reports every problem with c at once, each error naming its JSON
// key. The authorization value is never quoted.
func (c Config) Validate() error {
	_, err := c.compile()
	return err
}

// compile validates c and parses its endpoint.
func (c Config) compile() (*url.URL, error) {
	var errs []error
	u, err := parseEndpoint(c.Endpoint)
	if err != nil {
		errs = append(errs, err)
	}
	if a := c.Authorization.Reveal(); !validHeaderValue(a) {
		errs = append(errs, errors.New("authorization: must not hold control characters such as line breaks (check how the value was quoted)"))
	} else if a != "" && strings.TrimSpace(a) == "" {
		errs = append(errs, errors.New("authorization: is blank; leave it out to send no Authorization header"))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return u, nil
}

// parseEndpoint parses the endpoint: an absolute http or https URL with a
// host, without user info or fragment. Logto posts to whatever string it
// is given; what otpd refuses here would fail every send or leak
// credentials into logs.
func parseEndpoint(s string) (*url.URL, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("endpoint: required: the URL Logto's HTTP connector posted to")
	}
	u, err := url.Parse(s)
	if err != nil {
		// url's error quotes the whole string, query included.
		return nil, errors.New("endpoint: not a URL")
	}
	shown := displayURL(u)
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("endpoint %q: scheme must be http or https", shown)
	case u.Host == "" || u.Hostname() == "":
		return nil, fmt.Errorf("endpoint %q: has no host", shown)
	case u.User != nil:
		return nil, errors.New("endpoint: must not hold user info; put credentials in authorization")
	case u.Fragment != "" || strings.Contains(s, "#"):
		return nil, fmt.Errorf("endpoint %q: must not have a fragment", shown)
	}
	return u, nil
}

// displayURL returns u for logs and -check output: the values of its query,
// which endpoints written for Logto sometimes use for a token, are masked.
func displayURL(u *url.URL) string {
	if u.RawQuery == "" {
		return u.String()
	}
	out := *u
	var q []string
	for part := range strings.SplitSeq(u.RawQuery, "&") {
		key, _, _ := strings.Cut(part, "=")
		q = append(q, key+"=<redacted>")
	}
	out.RawQuery = strings.Join(q, "&")
	return out.String()
}

// validHeaderValue reports whether s can travel as a header value: no
// control characters but tab. net/http would refuse to send it otherwise,
// at every send rather than at start-up.
func validHeaderValue(s string) bool {
	for i := range len(s) {
		if b := s[i]; b < 0x20 && b != '\t' || b == 0x7f {
			return false
		}
	}
	return true
}

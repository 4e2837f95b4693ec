package providers

import (
	"context"
	"errors"
	"net"
	"net/url"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/otpd/otpd/internal/redact"
	"github.com/otpd/otpd/otp"
)

// ErrNoProvider means that no configured provider serves the channel and
// recipient of a message. The Router returns it wrapped in a permanent *Error
// with Reason "no_provider".
var ErrNoProvider = errors.New("no provider serves this recipient")

// Error is a classified provider failure. Every Sender returns one (or an
// error wrapping one) so that the Router can tell a failure worth failing
// over from one that no other provider would fix.
type Error struct {
	// Provider is the configured name of the provider that failed.
	Provider string
	// Reason is a short, bounded label for metrics and logs: the provider's
	// own error code when it has one ("21211", "RequestLimitExceeded"), else
	// one of "http_503", "throttled", "auth", "timeout", "transport",
	// "canceled" and the like.
	Reason string
	// Retryable reports a transient failure, worth failing over or retrying.
	Retryable bool
	// Err is the cause. It must never hold the code, a secret or a full
	// recipient, because it ends up in logs.
	Err error
}

// Error returns "provider <name>: <reason> (transient|permanent): <cause>".
func (e *Error) Error() string {
	kind := "permanent"
	if e.Retryable {
		kind = "transient"
	}
	s := e.Reason + " (" + kind + ")"
	if e.Provider != "" {
		s = "provider " + e.Provider + ": " + s
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// reasonUnclassified labels failures that nobody classified.
const reasonUnclassified = "unclassified"

// Transient returns a retryable failure of provider. An empty reason becomes
// "unclassified".
func Transient(provider, reason string, err error) *Error {
	if reason == "" {
		reason = reasonUnclassified
	}
	return &Error{Provider: provider, Reason: reason, Retryable: true, Err: err}
}

// Permanent returns a failure of provider that no retry or other provider
// would fix. An empty reason becomes "unclassified".
func Permanent(provider, reason string, err error) *Error {
	if reason == "" {
		reason = reasonUnclassified
	}
	return &Error{Provider: provider, Reason: reason, Retryable: false, Err: err}
}

// ClassifyHTTP classifies a failed HTTP response by its status. reason is the
// provider's own error code, if the response body gave one; it replaces the
// default label but not the verdict:
//
//   - 429 is transient, "throttled" by default;
//   - 408 and 5xx are transient, "http_<status>" by default;
//   - 401 and 403 are permanent, "auth" by default;
//   - any other status is permanent, "http_<status>" by default.
//
// 408 Request Timeout is transient although it is a 4xx: the server gave up
// waiting for the request, which says nothing about the message.
func ClassifyHTTP(provider string, status int, reason string, err error) *Error {
	label := func(def string) string {
		if reason != "" {
			return reason
		}
		return def
	}
	switch {
	case status == 429:
		return Transient(provider, label("throttled"), err)
	case status == 408 || (status >= 500 && status <= 599):
		return Transient(provider, label(httpReason(status)), err)
	case status == 401 || status == 403:
		return Permanent(provider, label("auth"), err)
	default:
		return Permanent(provider, label(httpReason(status)), err)
	}
}

func httpReason(status int) string { return "http_" + strconv.Itoa(status) }

// ClassifyTransport classifies an error that kept a request from getting an
// answer. All such errors are transient: a deadline or a network timeout is
// "timeout", a canceled context "canceled", anything else (a refused
// connection, a TLS failure, a reset) "transport". An *Error is returned as
// it is.
//
// A *url.Error, as http.Client returns, keeps its operation and cause but
// loses the query string and user info of its URL: some provider APIs carry
// the recipient or credentials there.
func ClassifyTransport(provider string, err error) *Error {
	if e, ok := AsError(err); ok {
		return e
	}
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return Transient(provider, "timeout", redactURLError(err))
	case errors.Is(err, context.Canceled):
		return Transient(provider, "canceled", redactURLError(err))
	case errors.As(err, &ne) && ne.Timeout():
		return Transient(provider, "timeout", redactURLError(err))
	default:
		return Transient(provider, "transport", redactURLError(err))
	}
}

// redactURLError strips the query and user info from the URL of err when err
// itself is a *url.Error. A *url.Error deeper in the chain is left alone, so
// that wrapping errors keep their identity for errors.Is.
func redactURLError(err error) error {
	ue, ok := err.(*url.Error) //nolint:errorlint // only the outermost error is redacted, see above
	if !ok {
		return err
	}
	u, perr := url.Parse(ue.URL)
	if perr != nil {
		return &url.Error{Op: ue.Op, URL: "<unparsable url>", Err: ue.Err}
	}
	if u.RawQuery == "" && u.User == nil && u.Fragment == "" {
		return err
	}
	u.RawQuery, u.User, u.Fragment, u.RawFragment, u.ForceQuery = "", nil, "", "", false
	return &url.Error{Op: ue.Op, URL: u.String(), Err: ue.Err}
}

// AsError finds the first *Error in err's chain. Callers treat an error
// without one as transient with Reason "unclassified".
func AsError(err error) (*Error, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e, true
	}
	return nil, false
}

// Scrub returns a vendor's error text fit to quote in an *Error: msg's
// recipient masked, its code, its link and each of secrets replaced, control
// characters dropped and the result cut to 200 bytes. Vendors echo the
// recipient back ("The 'To' number +14155550123 is not a valid phone
// number") and sometimes more.
func Scrub(text string, msg otp.Message, secrets ...string) string {
	pairs := make([]string, 0, 4+2*len(secrets))
	for _, s := range secrets {
		if s != "" {
			pairs = append(pairs, s, "<redacted>")
		}
	}
	if msg.To != "" {
		pairs = append(pairs, msg.To, redact.Recipient(msg.To))
		if national := strings.TrimPrefix(msg.To, "+"); national != msg.To {
			pairs = append(pairs, national, redact.Recipient(msg.To))
		}
	}
	if msg.Link != "" {
		// Before the recipient and the code, which it may contain.
		pairs = append([]string{msg.Link, "<link>"}, pairs...)
	}
	if msg.Code != "" {
		pairs = append(pairs, msg.Code, "<code>")
	}
	text = strings.NewReplacer(pairs...).Replace(text)
	text = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, text)
	const maxLen = 200
	if len(text) > maxLen {
		cut := maxLen
		for cut > 0 && !utf8.RuneStart(text[cut]) {
			cut--
		}
		text = text[:cut] + "…"
	}
	return strings.TrimSpace(text)
}

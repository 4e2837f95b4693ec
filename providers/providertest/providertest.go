// Package providertest helps test providers against a fake of their
// vendor's HTTP API: a recording httptest server, sample messages, and
// checks that a failure is classified as it should be and that nothing
// secret leaks into error text.
package providertest

import (
	"bytes"
	"context"
	"errors"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otpd/otpd/otp"
	"github.com/otpd/otpd/providers"
)

// Request is one request the fake API received.
type Request struct {
	Method string
	Path   string
	Query  url.Values
	Header http.Header
	Body   []byte
	// Form is the parsed body of an application/x-www-form-urlencoded or
	// multipart/form-data request, nil otherwise.
	Form url.Values
}

// Response is what the fake API answers.
type Response struct {
	// Status defaults to 200.
	Status int
	// Header is added to the response; Content-Type defaults to
	// application/json.
	Header map[string]string
	Body   string
	// Delay holds the answer back for this long, or until the client
	// gives up.
	Delay time.Duration
}

// Server is a fake vendor API that records every request and answers with
// its responder. It is safe for concurrent use.
type Server struct {
	*httptest.Server

	mu      sync.Mutex
	reqs    []Request
	respond func(Request) Response
}

// NewServer starts a fake API answering with respond; it is closed when the
// test ends.
func NewServer(tb testing.TB, respond func(Request) Response) *Server {
	tb.Helper()
	s := &Server{respond: respond}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	tb.Cleanup(s.Close)
	return s
}

// SetResponder replaces the responder.
func (s *Server) SetResponder(respond func(Request) Response) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.respond = respond
}

// Requests returns the requests received so far, oldest first.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.reqs...)
}

// Last returns the latest request, failing the test if there is none.
func (s *Server) Last(tb testing.TB) Request {
	tb.Helper()
	reqs := s.Requests()
	if len(reqs) == 0 {
		tb.Fatal("the fake API received no request")
	}
	return reqs[len(reqs)-1]
}

// Host returns the server's host:port.
func (s *Server) Host() string { return strings.TrimPrefix(s.URL, "http://") }

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
		return
	}
	req := Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(), Header: r.Header.Clone(), Body: body}
	ct := r.Header.Get("Content-Type")
	switch {
	case strings.HasPrefix(ct, "application/x-www-form-urlencoded"):
		req.Form, _ = url.ParseQuery(string(body))
	case strings.HasPrefix(ct, "multipart/form-data"):
		r.Body = io.NopCloser(bytes.NewReader(body))
		if err := r.ParseMultipartForm(1 << 20); err == nil {
			req.Form = url.Values(r.MultipartForm.Value)
		}
	}
	s.mu.Lock()
	s.reqs = append(s.reqs, req)
	respond := s.respond
	s.mu.Unlock()

	resp := respond(req)
	if resp.Delay > 0 {
		t := time.NewTimer(resp.Delay)
		select {
		case <-r.Context().Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
	if resp.Header["Content-Type"] == "" {
		w.Header().Set("Content-Type", "application/json")
	}
	for k, v := range resp.Header {
		w.Header().Set(k, v)
	}
	if resp.Status == 0 {
		resp.Status = http.StatusOK
	}
	w.WriteHeader(resp.Status)
	_, _ = io.WriteString(w, resp.Body)
}

// Code is the code in the sample messages.
const Code = "482915"

// Message returns a sample message of usage type u to to on ch, rendered
// from otpd's own templates as the service would.
func Message(ch otp.Channel, to string, u otp.UsageType) otp.Message {
	msg := otp.Message{
		Channel: ch, To: to, UsageType: u, Locale: "en", Code: Code, AppName: "Acme",
		TTL: 10 * time.Minute, VerificationID: "vid-test",
	}
	switch ch {
	case otp.Email:
		msg.Content = otp.Content{
			Subject: "Your Acme code: " + Code,
			Text:    "Your Acme code is " + Code + ".",
			HTML:    "<p>Your Acme code is <b>" + Code + "</b>.</p>",
		}
	default:
		msg.Content = otp.Content{Text: "Your Acme code is " + Code + "."}
	}
	return msg
}

// Link is the link of Invitation's message. Its token must reach the
// provider's API and nothing else.
const Link = "https://auth.example.com/invitation?token=t0k3n-s3cr3t&org=acme"

// Invitation returns an OrganizationInvitation for to on channel ch, as
// the service hands it to a provider: Link set, no code, Content rendered
// from an operator's template.
func Invitation(ch otp.Channel, to string) otp.Message {
	msg := otp.Message{
		Channel: ch, To: to, UsageType: otp.OrganizationInvitation, Locale: "en", Link: Link, AppName: "Acme",
		VerificationID: "vid-test",
	}
	switch ch {
	case otp.Email:
		msg.Content = otp.Content{
			Subject: "Join Acme",
			Text:    "Join Acme: " + Link,
			HTML:    `<p><a href="` + html.EscapeString(Link) + `">Join Acme</a></p>`,
		}
	default:
		msg.Content = otp.Content{Text: "Join Acme: " + Link}
	}
	return msg
}

// WantError checks that err is a classified provider failure of provider
// with the given reason and retryability, and that its text holds none of
// secrets.
func WantError(tb testing.TB, err error, provider, reason string, retryable bool, secrets ...string) {
	tb.Helper()
	if err == nil {
		tb.Fatalf("got no error, want %s (retryable %v)", reason, retryable)
	}
	pe, ok := providers.AsError(err)
	if !ok {
		tb.Fatalf("error %q is not a *providers.Error", err)
	}
	if pe.Provider != provider || pe.Reason != reason || pe.Retryable != retryable {
		tb.Errorf("got provider %q reason %q retryable %v, want %q %q %v (error: %v)",
			pe.Provider, pe.Reason, pe.Retryable, provider, reason, retryable, err)
	}
	NoLeak(tb, err.Error(), secrets...)
}

// NoLeak fails the test if text holds any of secrets.
func NoLeak(tb testing.TB, text string, secrets ...string) {
	tb.Helper()
	for _, s := range secrets {
		if s != "" && strings.Contains(text, s) {
			tb.Errorf("%q leaks %q", text, s)
		}
	}
}

// Deadline returns a context that ends after d, cancelled when the test
// ends.
func Deadline(tb testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	tb.Cleanup(cancel)
	return ctx
}

// IsDeadline reports whether err is a transient "timeout" or "canceled"
// provider failure, as a send cut short by its context must be.
func IsDeadline(err error) bool {
	pe, ok := providers.AsError(err)
	return ok && pe.Retryable && (pe.Reason == "timeout" || pe.Reason == "canceled") ||
		errors.Is(err, context.DeadlineExceeded)
}

// WantConfigError checks that err, ParseConfig's answer to a bad config,
// holds every string of want (the keys it names, what it says of them) and
// none of secrets.
func WantConfigError(tb testing.TB, err error, want []string, secrets ...string) {
	tb.Helper()
	if err == nil {
		tb.Fatalf("ParseConfig succeeded, want an error holding %q", want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			tb.Errorf("error %q does not hold %q", err, w)
		}
	}
	NoLeak(tb, err.Error(), secrets...)
}

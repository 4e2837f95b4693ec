package logtohttp_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/otpd/otpd/internal/redact"
	"github.com/otpd/otpd/otp"
	"github.com/otpd/otpd/providers"
	"github.com/otpd/otpd/providers/fake"
	"github.com/otpd/otpd/providers/logtohttp"
	"github.com/otpd/otpd/providers/providertest"
)

const (
	providerName = "hook"
	testAuth     = "Bearer hk_7f3e9a1c5b2d4e6f"
	testToken    = "hk_7f3e9a1c5b2d4e6f"
	testPhone    = "+14155550123"
	testDigits   = "14155550123"
	testEmail    = "john@example.com"
)

// leaks are what no error text, preview or description may hold.
var leaks = []string{testToken, providertest.Code, testPhone, testDigits, testEmail}

// logtoTemplateTypes are the TemplateType values of Logto's connector-kit,
// the "type" its HTTP connectors send.
var logtoTemplateTypes = []string{
	"SignIn", "Register", "ForgotPassword", "Generic", "UserPermissionValidation",
	"BindNewIdentifier", "MfaVerification", "BindMfa", "OrganizationInvitation",
}

func newProvider(tb testing.TB, cfg logtohttp.Config) *logtohttp.Provider {
	tb.Helper()
	p, err := logtohttp.New(providerName, cfg)
	if err != nil {
		tb.Fatalf("logtohttp.New: %v", err)
	}
	return p
}

// fakeEndpoint starts an endpoint written for Logto that answers every
// request with resp, and a provider posting to it at path.
func fakeEndpoint(tb testing.TB, resp providertest.Response, path string, auth redact.Secret) (*providertest.Server, *logtohttp.Provider) {
	tb.Helper()
	s := providertest.NewServer(tb, func(providertest.Request) providertest.Response { return resp })
	return s, newProvider(tb, logtohttp.Config{Endpoint: s.URL + path, Authorization: auth})
}

func message(ch otp.Channel, u otp.UsageType) otp.Message {
	to := testPhone
	if ch == otp.Email {
		to = testEmail
	}
	return providertest.Message(ch, to, u)
}

// TestUsageTypesAreLogtoTypes: the body's "type" is the usage type's name,
// so every usage type must be one of Logto's TemplateTypes.
func TestUsageTypesAreLogtoTypes(t *testing.T) {
	t.Parallel()
	for _, u := range otp.UsageTypes {
		if !slices.Contains(logtoTemplateTypes, string(u)) {
			t.Errorf("usage type %q is no Logto TemplateType: an endpoint written for Logto would not know it", u)
		}
	}
}

// TestSendWire checks the request on the wire against what Logto's HTTP
// connectors send, for both channels and every usage type.
func TestSendWire(t *testing.T) {
	t.Parallel()
	for _, ch := range otp.Channels {
		for _, u := range otp.UsageTypes {
			t.Run(string(ch)+"/"+string(u), func(t *testing.T) {
				t.Parallel()
				path := "/hooks/logto/" + string(ch)
				s, p := fakeEndpoint(t, providertest.Response{Body: `{"ok":true}`}, path, testAuth)
				rc, err := p.Send(t.Context(), message(ch, u))
				if err != nil {
					t.Fatalf("Send: %v", err)
				}
				if want := (otp.Receipt{Provider: providerName}); rc != want {
					t.Errorf("receipt = %+v, want %+v", rc, want)
				}
				r := s.Last(t)
				if r.Method != http.MethodPost || r.Path != path || len(r.Query) != 0 {
					t.Errorf("request = %s %s?%s, want POST %s", r.Method, r.Path, r.Query.Encode(), path)
				}
				if got := r.Header.Get("Authorization"); got != testAuth {
					t.Errorf("Authorization = %q, want the configured value verbatim", got)
				}
				if got := r.Header.Get("Content-Type"); got != "application/json" {
					t.Errorf("Content-Type = %q, want application/json", got)
				}
				to := testDigits // Logto's phone numbers: digits, no "+"
				if ch == otp.Email {
					to = testEmail
				}
				want := `{"to":"` + to + `","type":"` + string(u) + `","payload":{"code":"` + providertest.Code + `","locale":"en"}}`
				if string(r.Body) != want {
					t.Errorf("body =\n %s\nwant\n %s", r.Body, want)
				}
			})
		}
	}
}

// TestSendWireOptions: without authorization no header goes out; the
// endpoint is posted to as configured, trailing slash and query included;
// a message without a locale sends none, as Logto's Management API route.
func TestSendWireOptions(t *testing.T) {
	t.Parallel()
	s, p := fakeEndpoint(t, providertest.Response{Status: http.StatusNoContent}, "/send/?key=abc&v=2", "")
	msg := message(otp.Email, otp.SignIn)
	msg.Locale = ""
	msg.To = "a&b@example.com"
	if _, err := p.Send(t.Context(), msg); err != nil {
		t.Fatalf("Send: %v", err)
	}
	r := s.Last(t)
	if _, ok := r.Header["Authorization"]; ok {
		t.Errorf("Authorization = %q, want no header without authorization", r.Header.Get("Authorization"))
	}
	if r.Path != "/send/" || r.Query.Get("key") != "abc" || r.Query.Get("v") != "2" {
		t.Errorf("request to %s?%s, want /send/?key=abc&v=2", r.Path, r.Query.Encode())
	}
	want := `{"to":"a&b@example.com","type":"SignIn","payload":{"code":"` + providertest.Code + `"}}`
	if string(r.Body) != want {
		t.Errorf("body = %s, want %s", r.Body, want)
	}
	var decoded map[string]any
	if err := json.Unmarshal(r.Body, &decoded); err != nil {
		t.Errorf("body is not JSON: %v", err)
	}
}

// TestSendSuccess: any 2xx is a delivery, and 304 too, as got counts it.
func TestSendSuccess(t *testing.T) {
	t.Parallel()
	for _, status := range []int{200, 201, 202, 204, 299, 304} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			t.Parallel()
			_, p := fakeEndpoint(t, providertest.Response{Status: status, Body: "whatever"}, "/sms", testAuth)
			if _, err := p.Send(t.Context(), message(otp.SMS, otp.SignIn)); err != nil {
				t.Errorf("HTTP %d: Send = %v, want a delivery", status, err)
			}
		})
	}
}

// refusedURL returns a URL on which nothing listens.
func refusedURL(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return "http://" + addr + "/sms?key=" + testToken
}

// TestSendErrors checks the classification of every kind of failure and
// that the endpoint's text is quoted scrubbed.
func TestSendErrors(t *testing.T) {
	t.Parallel()
	// An endpoint written for Logto answers in text meant for the user,
	// which may echo everything it was sent.
	echo := "cannot send " + providertest.Code + " to " + testDigits + " (" + testPhone + ") with " + testAuth + " / " + testToken
	for _, tc := range []struct {
		name      string
		resp      providertest.Response
		deadline  time.Duration
		reason    string
		retryable bool
		wantText  []string
	}{
		{name: "500", resp: providertest.Response{Status: 500, Body: echo}, reason: "http_500", retryable: true,
			wantText: []string{"answered HTTP 500", "cannot send <code> to +14******123"}},
		{name: "503", resp: providertest.Response{Status: 503}, reason: "http_503", retryable: true},
		{name: "429", resp: providertest.Response{Status: 429, Header: map[string]string{"Retry-After": "30"}}, reason: "throttled", retryable: true},
		{name: "408", resp: providertest.Response{Status: 408}, reason: "http_408", retryable: true},
		{name: "401", resp: providertest.Response{Status: 401, Body: `{"message":"bad token ` + testToken + `"}`}, reason: "auth",
			wantText: []string{"bad token <redacted>"}},
		{name: "403", resp: providertest.Response{Status: 403}, reason: "auth"},
		{name: "400 with body", resp: providertest.Response{Status: 400, Body: `{"message":"invalid number ` + testDigits + `"}`}, reason: "http_400",
			wantText: []string{"answered HTTP 400", "invalid number +14******123"}},
		{name: "404", resp: providertest.Response{Status: 404, Body: "not found"}, reason: "http_404"},
		{name: "redirect not followed", resp: providertest.Response{Status: 302, Header: map[string]string{"Location": "/elsewhere"}}, reason: "http_302",
			wantText: []string{"a redirect, not followed"}},
		{name: "long body cut", resp: providertest.Response{Status: 500, Body: strings.Repeat("x", 1<<20)}, reason: "http_500", retryable: true},
		{name: "timeout via ctx deadline", resp: providertest.Response{Delay: 5 * time.Second}, deadline: 100 * time.Millisecond, reason: "timeout", retryable: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, p := fakeEndpoint(t, tc.resp, "/sms?key="+testToken, testAuth)
			ctx := t.Context()
			if tc.deadline > 0 {
				ctx = providertest.Deadline(t, tc.deadline)
			}
			start := time.Now()
			_, err := p.Send(ctx, message(otp.SMS, otp.SignIn))
			if tc.deadline > 0 && time.Since(start) > 3*time.Second {
				t.Errorf("Send took %v with a %v deadline", time.Since(start), tc.deadline)
			}
			providertest.WantError(t, err, providerName, tc.reason, tc.retryable, leaks...)
			if err == nil {
				return
			}
			for _, w := range tc.wantText {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not hold %q", err, w)
				}
			}
			if len(err.Error()) > 600 {
				t.Errorf("error text is %d bytes, want the endpoint's text cut short", len(err.Error()))
			}
		})
	}
	t.Run("connection refused", func(t *testing.T) {
		t.Parallel()
		p := newProvider(t, logtohttp.Config{Endpoint: refusedURL(t), Authorization: testAuth})
		_, err := p.Send(t.Context(), message(otp.SMS, otp.SignIn))
		providertest.WantError(t, err, providerName, "transport", true, leaks...)
		if err != nil && !strings.Contains(err.Error(), "key=<redacted>") {
			t.Errorf("error %q does not name the endpoint with its query masked", err)
		}
	})
	t.Run("context already ended", func(t *testing.T) {
		t.Parallel()
		s, p := fakeEndpoint(t, providertest.Response{}, "/sms", testAuth)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := p.Send(ctx, message(otp.SMS, otp.SignIn))
		providertest.WantError(t, err, providerName, "canceled", true, leaks...)
		if n := len(s.Requests()); n != 0 {
			t.Errorf("the endpoint got %d requests, want none", n)
		}
	})
	t.Run("unknown channel", func(t *testing.T) {
		t.Parallel()
		_, p := fakeEndpoint(t, providertest.Response{}, "/sms", testAuth)
		msg := message(otp.SMS, otp.SignIn)
		msg.Channel = "fax"
		_, err := p.Send(t.Context(), msg)
		providertest.WantError(t, err, providerName, "unsupported_channel", false, leaks...)
	})
}

// TestRouterFailover: through the Router, a transient failure of the http
// provider fails over to the next provider and a permanent one stops the
// send; a transient failure of the provider before it fails over to it.
func TestRouterFailover(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		resp      providertest.Response
		refused   bool
		deadline  time.Duration // of the route; 0 for the default
		wantOK    bool
		wantCalls int // of the second provider
	}{
		{name: "500 fails over", resp: providertest.Response{Status: 500}, wantOK: true, wantCalls: 1},
		{name: "503 fails over", resp: providertest.Response{Status: 503}, wantOK: true, wantCalls: 1},
		{name: "429 fails over", resp: providertest.Response{Status: 429}, wantOK: true, wantCalls: 1},
		{name: "refused fails over", refused: true, wantOK: true, wantCalls: 1},
		{name: "timeout fails over", resp: providertest.Response{Delay: 5 * time.Second}, deadline: 100 * time.Millisecond, wantOK: true, wantCalls: 1},
		{name: "401 stops", resp: providertest.Response{Status: 401}, wantCalls: 0},
		{name: "400 stops", resp: providertest.Response{Status: 400, Body: "bad number"}, wantCalls: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var hook *logtohttp.Provider
			if tc.refused {
				hook = newProvider(t, logtohttp.Config{Endpoint: refusedURL(t)})
			} else {
				_, hook = fakeEndpoint(t, tc.resp, "/sms", testAuth)
			}
			second, err := fake.New("second", fake.Config{})
			if err != nil {
				t.Fatal(err)
			}
			r, err := providers.NewRouter([]providers.Route{
				{Name: providerName, Channel: otp.SMS, Timeout: tc.deadline, Sender: hook},
				{Name: "second", Channel: otp.SMS, Sender: second},
			}, providers.RouterOptions{Delivery: providers.Delivery{Attempts: 1, Backoff: time.Millisecond}})
			if err != nil {
				t.Fatalf("NewRouter: %v", err)
			}
			rc, err := r.Send(providertest.Deadline(t, 10*time.Second), message(otp.SMS, otp.SignIn))
			switch {
			case tc.wantOK && (err != nil || rc.Provider != "second"):
				t.Errorf("Send = %+v, %v; want delivered by second", rc, err)
			case !tc.wantOK && err == nil:
				t.Errorf("Send = %+v; want the permanent failure", rc)
			case !tc.wantOK:
				if pe, ok := providers.AsError(err); !ok || pe.Retryable {
					t.Errorf("Send error %v, want permanent", err)
				}
			}
			if got := second.Calls(); got != tc.wantCalls {
				t.Errorf("second provider called %d times, want %d", got, tc.wantCalls)
			}
		})
	}
	t.Run("fails over to http", func(t *testing.T) {
		t.Parallel()
		s, hook := fakeEndpoint(t, providertest.Response{}, "/sms", testAuth)
		first, err := fake.New("first", fake.Config{Mode: fake.ModeTransient, Reason: "http_503"})
		if err != nil {
			t.Fatal(err)
		}
		r, err := providers.NewRouter([]providers.Route{
			{Name: "first", Channel: otp.SMS, Sender: first},
			{Name: providerName, Channel: otp.SMS, Sender: hook},
		}, providers.RouterOptions{Delivery: providers.Delivery{Attempts: 1, Backoff: time.Millisecond}})
		if err != nil {
			t.Fatalf("NewRouter: %v", err)
		}
		rc, err := r.Send(t.Context(), message(otp.SMS, otp.Register))
		if err != nil || rc.Provider != providerName {
			t.Fatalf("Send = %+v, %v; want delivered by %s", rc, err, providerName)
		}
		if body := string(s.Last(t).Body); !strings.Contains(body, `"to":"`+testDigits+`"`) {
			t.Errorf("body %s lacks Logto's digits-only to", body)
		}
	})
}

func TestPreviewAndDescribe(t *testing.T) {
	t.Parallel()
	p := newProvider(t, logtohttp.Config{Endpoint: "https://hooks.example.com/logto/sms?key=" + testToken, Authorization: testAuth})
	got, err := p.Preview(message(otp.SMS, otp.ForgotPassword))
	if err != nil {
		t.Fatalf("Preview: %v", err)
	}
	want := `POST https://hooks.example.com/logto/sms?key=<redacted> {"to":"` + testDigits + `","type":"ForgotPassword","payload":{"code":"` + providertest.Code + `","locale":"en"}}`
	if got != want {
		t.Errorf("Preview =\n %s\nwant\n %s", got, want)
	}
	providertest.NoLeak(t, got, testToken)

	d := p.Describe()
	for _, w := range []string{"https://hooks.example.com/logto/sms?key=<redacted>", "authorization Bearer <redacted>", "otpd's templates unused"} {
		if !strings.Contains(d, w) {
			t.Errorf("Describe = %q, lacks %q", d, w)
		}
	}
	providertest.NoLeak(t, d, testToken)

	for _, tc := range []struct{ auth, want string }{
		{"", "authorization none"},
		{"just-a-token-value", "authorization <redacted>"},
		{"s3cr3t more", "authorization <redacted>"},
	} {
		d := newProvider(t, logtohttp.Config{Endpoint: "https://hooks.example.com/sms", Authorization: redact.Secret(tc.auth)}).Describe()
		if !strings.Contains(d, tc.want) {
			t.Errorf("authorization %q: Describe = %q, lacks %q", tc.auth, d, tc.want)
		}
		providertest.NoLeak(t, d, "just-a-token-value", "s3cr3t")
	}

	if err := p.CanServe(otp.Generic); err != nil {
		t.Errorf("CanServe(Generic) = %v", err)
	}
	var pe *providers.Error
	if _, err := p.Preview(otp.Message{Channel: "fax", UsageType: otp.Generic}); !errors.As(err, &pe) {
		t.Errorf("Preview of a fax = %v, want a provider error", err)
	}
}

// TestSendClientIP: the caller's client_ip goes out as Logto's top-level
// "ip", which endpoints written for Logto use for their own limits.
func TestSendClientIP(t *testing.T) {
	t.Parallel()
	s, p := fakeEndpoint(t, providertest.Response{Status: http.StatusNoContent}, "/send", "")
	msg := message(otp.SMS, otp.Register)
	msg.ClientIP = "2001:db8::7"
	if _, err := p.Send(t.Context(), msg); err != nil {
		t.Fatalf("Send: %v", err)
	}
	want := `{"to":"` + testDigits + `","type":"Register","payload":{"code":"` + providertest.Code + `","locale":"en"},"ip":"2001:db8::7"}`
	if got := string(s.Last(t).Body); got != want {
		t.Errorf("body = %s, want %s", got, want)
	}
}

// TestSendInvitation: an OrganizationInvitation goes out as Logto's does,
// the link in the payload and no code ("&" not escaped, as
// JSON.stringify), and the endpoint's echo of the link is scrubbed.
func TestSendInvitation(t *testing.T) {
	t.Parallel()
	if err := newProvider(t, logtohttp.Config{Endpoint: "https://hooks.example.com/email"}).CanServe(otp.OrganizationInvitation); err != nil {
		t.Errorf("CanServe(OrganizationInvitation) = %v", err)
	}
	s, p := fakeEndpoint(t, providertest.Response{Status: http.StatusNoContent}, "/email", testAuth)
	msg := providertest.Invitation(otp.Email, testEmail)
	if _, err := p.Send(t.Context(), msg); err != nil {
		t.Fatalf("Send: %v", err)
	}
	want := `{"to":"` + testEmail + `","type":"OrganizationInvitation","payload":{"link":"` + providertest.Link + `","locale":"en"}}`
	if got := string(s.Last(t).Body); got != want {
		t.Errorf("body =\n %s\nwant\n %s", got, want)
	}
	if got, err := p.Preview(msg); err != nil || !strings.HasSuffix(got, " "+want) {
		t.Errorf("Preview = %q, %v; want the body %s", got, err, want)
	}

	_, p = fakeEndpoint(t, providertest.Response{Status: http.StatusBadRequest, Body: "bad invitation " + providertest.Link}, "/email", testAuth)
	_, err := p.Send(t.Context(), msg)
	providertest.WantError(t, err, providerName, "http_400", false, append(leaks, providertest.Link, "t0k3n")...)
}

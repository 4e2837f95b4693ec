package twilio_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otpd/otpd/otp"
	"github.com/otpd/otpd/providers/providertest"
	"github.com/otpd/otpd/providers/twilio"
)

// basicAuth decodes an Authorization header of the Basic scheme, without
// net/http's helper, so that the check does not share code with the SDK.
func basicAuth(header string) (user, password string, err error) {
	enc, ok := strings.CutPrefix(header, "Basic ")
	if !ok {
		return "", "", fmt.Errorf("Authorization %q is not Basic", header)
	}
	raw, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		return "", "", fmt.Errorf("Authorization: %v", err)
	}
	user, password, ok = strings.Cut(string(raw), ":")
	if !ok {
		return "", "", errors.New("Authorization: no colon in the credentials")
	}
	return user, password, nil
}

func TestSendWire(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name             string
		prefix           string // path part of the endpoint
		disableRiskCheck bool
	}{
		{"risk check on", "", false},
		{"risk check disabled", "", true},
		{"endpoint with path", "/proxy/twilio", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig(tc.prefix, tpl("Generic", "Your code is {{code}}"))
			cfg.DisableRiskCheck = tc.disableRiskCheck
			s, p := fakeAPI(t, created(t, testMsgSID), cfg)

			rc, err := p.Send(t.Context(), smsMessage(otp.SignIn))
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			if want := (otp.Receipt{Provider: providerName, MessageID: testMsgSID}); rc != want {
				t.Errorf("receipt = %+v, want %+v", rc, want)
			}

			r := s.Last(t)
			if want := tc.prefix + "/2010-04-01/Accounts/" + testSID + "/Messages.json"; r.Method != http.MethodPost || r.Path != want || len(r.Query) != 0 {
				t.Errorf("request = %s %s?%s, want POST %s", r.Method, r.Path, r.Query.Encode(), want)
			}
			if user, password, err := basicAuth(r.Header.Get("Authorization")); err != nil || user != testSID || password != testToken {
				t.Errorf("Basic auth = %q:%q (%v), want the account SID and the auth token", user, password, err)
			}
			if ct := r.Header.Get("Content-Type"); ct != "application/x-www-form-urlencoded" {
				t.Errorf("Content-Type = %q", ct)
			}
			want := url.Values{
				"To":                  {testTo},
				"MessagingServiceSid": {testService},
				"Body":                {"Your code is " + providertest.Code},
			}
			if tc.disableRiskCheck {
				want.Set("RiskCheck", "disable")
			}
			if !reflect.DeepEqual(r.Form, want) {
				t.Errorf("form = %v, want exactly %v", r.Form, want)
			}
		})
	}
}

// TestSendGoesToEndpoint checks that the request reaches the endpoint
// under its own name (the Host header a proxy routes by, not
// api.twilio.com), whatever the SDK's TWILIO_EDGE and TWILIO_REGION, which
// move api.twilio.com elsewhere, say. It cannot run in parallel: it sets
// the environment.
func TestSendGoesToEndpoint(t *testing.T) {
	t.Setenv("TWILIO_EDGE", "sydney")
	t.Setenv("TWILIO_REGION", "au1")
	hosts := make(chan string, 1)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hosts <- r.Host
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, `{"sid": "`+testMsgSID+`"}`)
	}))
	t.Cleanup(s.Close)
	p := newProvider(t, testConfig(s.URL))
	if rc, err := p.Send(t.Context(), smsMessage(otp.SignIn)); err != nil || rc.MessageID != testMsgSID {
		t.Fatalf("Send = %+v, %v; want message %s", rc, err, testMsgSID)
	}
	if got, want := <-hosts, strings.TrimPrefix(s.URL, "http://"); got != want {
		t.Errorf("Host = %q, want the endpoint's %q", got, want)
	}
}

func TestTemplateChoice(t *testing.T) {
	t.Parallel()
	ownAndGeneric := []twilio.Template{tpl("Register", "Welcome! {{code}}"), tpl("Generic", "Code: {{code}}")}
	for _, tc := range []struct {
		name      string
		templates []twilio.Template
		msg       func() otp.Message
		want      string // Body on the wire
	}{
		{"own template", ownAndGeneric, sample(otp.Register), "Welcome! 482915"},
		{"generic fallback", ownAndGeneric, sample(otp.SignIn), "Code: 482915"},
		{"otpd content without templates", nil, sample(otp.ForgotPassword), "Your Acme code is 482915."},
		{"otpd content when only another usage type's template", []twilio.Template{tpl("MfaVerification", "MFA {{code}}")},
			sample(otp.SignIn), "Your Acme code is 482915."},
		{"own template of a Logto usage type", []twilio.Template{tpl("MfaVerification", "MFA {{code}}"), tpl("Generic", "Code: {{code}}")},
			sample(otp.MfaVerification), "MFA 482915"},
		{"generic fallback of a Logto usage type", []twilio.Template{tpl("MfaVerification", "MFA {{code}}"), tpl("Generic", "Code: {{code}}")},
			sample(otp.BindNewIdentifier), "Code: 482915"},
		{"invitation: own template with the link", []twilio.Template{tpl("OrganizationInvitation", "{{app_name}} invites you: {{ link }}"), tpl("Generic", "Code: {{code}}")},
			invitation, "Acme invites you: " + providertest.Link},
		{"invitation: otpd content, never Generic", []twilio.Template{tpl("Generic", "Code: {{code}}")},
			invitation, "Join Acme: " + providertest.Link},
		{"invitation: Logto's placeholders ignored", []twilio.Template{tpl("OrganizationInvitation", "Join {{organization.name}}: {{link}}")},
			invitation, "Join Acme: " + providertest.Link},
		{"invitation: Logto's default SMS invitation (a code) ignored", []twilio.Template{tpl("OrganizationInvitation", "Your Logto organization invitation code is {{code}}.")},
			invitation, "Join Acme: " + providertest.Link},
		{"every placeholder, none escaped", []twilio.Template{tpl("Generic", "{{app_name}}: {{code}}, valid {{ttl_minutes}} min. Again: {{ code }}")},
			func() otp.Message {
				msg := smsMessage(otp.SignIn)
				msg.AppName, msg.TTL = `A&B <"Shop">`, 90*time.Second
				return msg
			}, `A&B <"Shop">: 482915, valid 2 min. Again: 482915`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, p := fakeAPI(t, created(t, testMsgSID), testConfig("", tc.templates...))
			if got := sendBody(t, s, p, tc.msg()); got != tc.want {
				t.Errorf("Body = %q, want %q", got, tc.want)
			}
		})
	}
}

func invitation() otp.Message { return providertest.Invitation(otp.SMS, testTo) }

func sample(u otp.UsageType) func() otp.Message {
	return func() otp.Message { return smsMessage(u) }
}

func TestSendErrors(t *testing.T) {
	t.Parallel()
	// Twilio's messages echo what they were given; these echo everything
	// the error text must hold masked or not at all.
	leaky := fmt.Sprintf("The 'To' number %s is not a valid phone number (%s, code %s, account %s, token %s)",
		testTo, strings.TrimPrefix(testTo, "+"), providertest.Code, testSID, testToken)
	html := "<html><body>502 Bad Gateway " + testTo + " " + providertest.Code + "</body></html>"
	for _, tc := range []struct {
		name      string
		resp      func(tb testing.TB) providertest.Response
		reason    string
		retryable bool
	}{
		{"invalid To", twilioError(400, 21211, leaky), "21211", false},
		{"not a mobile number", twilioError(400, 21614, leaky), "21614", false},
		{"region not enabled", twilioError(400, 21408, leaky), "21408", false},
		{"unsubscribed recipient", twilioError(400, 21610, leaky), "21610", false},
		{"resource not found", twilioError(404, 20404, "The requested resource /2010-04-01/Accounts/"+testSID+"/Messages.json was not found"), "20404", false},
		{"authentication", twilioError(401, 20003, "Authenticate"), "20003", false},
		{"forbidden without code", twilioError(403, 0, leaky), "auth", false},
		{"unauthorized not JSON", plain(401, "Unauthorized"), "auth", false},
		{"too many requests", twilioError(429, 20429, "Too Many Requests"), "20429", true},
		{"429 without code", twilioError(429, 0, "slow down"), "throttled", true},
		{"sender queue full", twilioError(400, 21611, leaky), "21611", true},
		{"internal error", twilioError(500, 20500, leaky), "20500", true},
		{"503 without code", twilioError(503, 0, "Service Unavailable"), "http_503", true},
		{"non-JSON 502", plain(502, html), "http_502", true},
		{"non-JSON 504, no body", plain(504, ""), "http_504", true},
		{"201 without sid", func(tb testing.TB) providertest.Response { return created(tb, "") }, "bad_response", true},
		{"201 not JSON", plain(201, html), "bad_response", true},
		{"redirect not followed", func(testing.TB) providertest.Response {
			return providertest.Response{Status: 301, Header: map[string]string{"Location": "/elsewhere"}}
		}, "http_301", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, p := fakeAPI(t, tc.resp(t), testConfig(""))
			rc, err := p.Send(t.Context(), smsMessage(otp.SignIn))
			providertest.WantError(t, err, providerName, tc.reason, tc.retryable, leaks...)
			if rc != (otp.Receipt{}) {
				t.Errorf("failed send gave receipt %+v", rc)
			}
			// One request: the SDK must not retry nor follow redirects.
			if n := len(s.Requests()); n != 1 {
				t.Errorf("the fake API got %d requests, want 1", n)
			}
		})
	}
}

func twilioError(status, code int, message string) func(testing.TB) providertest.Response {
	return func(tb testing.TB) providertest.Response { return restError(tb, status, code, message) }
}

func plain(status int, body string) func(testing.TB) providertest.Response {
	return func(testing.TB) providertest.Response {
		return providertest.Response{Status: status, Header: map[string]string{"Content-Type": "text/html"}, Body: body}
	}
}

func TestVendorMessageQuotedMasked(t *testing.T) {
	t.Parallel()
	_, p := fakeAPI(t, restError(t, 400, 21211, "The 'To' number "+testTo+" is not a valid phone number."), testConfig(""))
	_, err := p.Send(t.Context(), smsMessage(otp.SignIn))
	if err == nil {
		t.Fatal("Send succeeded")
	}
	for _, want := range []string{
		"HTTP 400, error 21211",
		"The 'To' number +14******123 is not a valid phone number.",
		"https://www.twilio.com/docs/errors/21211",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not hold %q", err, want)
		}
	}
}

func TestSendTransportFailures(t *testing.T) {
	t.Parallel()
	t.Run("connection refused", func(t *testing.T) {
		t.Parallel()
		s := providertest.NewServer(t, nil)
		endpoint := s.URL
		s.Close()
		p := newProvider(t, testConfig(endpoint))
		_, err := p.Send(t.Context(), smsMessage(otp.SignIn))
		// The SDK's url.Error names the URL, whose path holds the account
		// SID: leaks has it.
		providertest.WantError(t, err, providerName, "transport", true, leaks...)
		if !strings.Contains(err.Error(), endpoint+"/2010-04-01/Accounts/"+maskedSID+"/Messages.json") {
			t.Errorf("error %q does not show the URL called, with the account SID masked", err)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		t.Parallel()
		late := created(t, "SMlate")
		late.Delay = time.Minute
		_, p := fakeAPI(t, late, testConfig(""))
		wantPromptTimeout(t, p)
	})
	t.Run("deadline while reading the body", func(t *testing.T) {
		t.Parallel()
		// Headers at once, then a body that never ends.
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusCreated)
			_, _ = io.WriteString(w, `{"sid": "SM`)
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}))
		t.Cleanup(s.Close)
		wantPromptTimeout(t, newProvider(t, testConfig(s.URL)))
	})
	t.Run("context already canceled", func(t *testing.T) {
		t.Parallel()
		s, p := fakeAPI(t, created(t, testMsgSID), testConfig(""))
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := p.Send(ctx, smsMessage(otp.SignIn))
		providertest.WantError(t, err, providerName, "canceled", true, leaks...)
		wantNoRequest(t, s)
	})
	t.Run("email", func(t *testing.T) {
		t.Parallel()
		s, p := fakeAPI(t, created(t, testMsgSID), testConfig(""))
		_, err := p.Send(t.Context(), providertest.Message(otp.Email, "john@example.com", otp.SignIn))
		providertest.WantError(t, err, providerName, "unsupported_channel", false, leaks...)
		wantNoRequest(t, s)
	})
	t.Run("no text", func(t *testing.T) {
		t.Parallel()
		s, p := fakeAPI(t, created(t, testMsgSID), testConfig(""))
		msg := smsMessage(otp.SignIn)
		msg.Content.Text = ""
		_, err := p.Send(t.Context(), msg)
		providertest.WantError(t, err, providerName, "no_content", false, leaks...)
		wantNoRequest(t, s)
	})
}

// wantPromptTimeout sends through p, whose API never answers in time, with
// a 300ms deadline, and checks that Send gives up soon after it.
func wantPromptTimeout(t *testing.T, p *twilio.Provider) {
	t.Helper()
	ctx := providertest.Deadline(t, 300*time.Millisecond)
	start := time.Now()
	_, err := p.Send(ctx, smsMessage(otp.SignIn))
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Send returned after %s, want soon after its 300ms deadline", d)
	}
	providertest.WantError(t, err, providerName, "timeout", true, leaks...)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v does not wrap context.DeadlineExceeded", err)
	}
}

// TestConnectionsReused checks that answers, error answers included (whose
// body the SDK never closes), give their connection back for the next
// send.
func TestConnectionsReused(t *testing.T) {
	t.Parallel()
	answers := []providertest.Response{
		created(t, testMsgSID),
		restError(t, 400, 21211, "The 'To' number is not a valid phone number."),
		// A gateway's error page, longer than the SDK's decoder reads
		// before it gives up.
		{Status: 502, Body: "<html>Bad Gateway" + strings.Repeat(" ", 8<<10) + "</html>"},
		restError(t, 429, 20429, "Too Many Requests"),
		created(t, testMsgSID),
	}
	var conns, served atomic.Int32
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp := answers[served.Add(1)-1]
		w.WriteHeader(resp.Status)
		_, _ = io.WriteString(w, resp.Body)
	}))
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	p := newProvider(t, testConfig(s.URL))
	for range answers {
		_, _ = p.Send(t.Context(), smsMessage(otp.SignIn))
	}
	if served.Load() != int32(len(answers)) {
		t.Fatalf("the fake API answered %d requests, want %d", served.Load(), len(answers))
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d sends opened %d connections, want 1", len(answers), n)
	}
}

// TestConcurrentSends checks that sends share the transport but not their
// clients: each answer matches its own code.
func TestConcurrentSends(t *testing.T) {
	t.Parallel()
	s := providertest.NewServer(t, func(r providertest.Request) providertest.Response {
		code := strings.TrimPrefix(r.Form.Get("Body"), "Code ")
		return created(t, "SM"+code)
	})
	p := newProvider(t, testConfig(s.URL, tpl("Generic", "Code {{code}}")))
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			msg := smsMessage(otp.SignIn)
			msg.Code = strconv.Itoa(100000 + i)
			rc, err := p.Send(t.Context(), msg)
			if err != nil || rc.MessageID != "SM"+msg.Code {
				t.Errorf("send of code %s = %+v, %v; want message SM%s", msg.Code, rc, err, msg.Code)
			}
		})
	}
	wg.Wait()
	if n := len(s.Requests()); n != 16 {
		t.Errorf("the fake API got %d requests, want 16", n)
	}
}

func TestCanServe(t *testing.T) {
	t.Parallel()
	// Without a template of its own, a usage type goes out with otpd's
	// text: every provider serves every usage type.
	for _, templates := range [][]twilio.Template{nil, {tpl("Register", "{{code}}")}} {
		p := newProvider(t, testConfig("", templates...))
		for _, u := range otp.UsageTypes {
			if err := p.CanServe(u); err != nil {
				t.Errorf("CanServe(%s) with templates %v = %v, want nil", u, templates, err)
			}
		}
		if err := p.CanServe(otp.OrganizationInvitation); err != nil {
			t.Errorf("CanServe(OrganizationInvitation) = %v, want nil: otpd's content goes out", err)
		}
		if err := p.CanServe("organizationInvitation"); err == nil {
			t.Error("CanServe of an unknown usage type = nil")
		}
	}
}

func TestPreview(t *testing.T) {
	t.Parallel()
	cfg := testConfig("", tpl("Register", "Welcome to {{app_name}}: {{code}}"), tpl("BindMfa", "MFA {{code}}"))
	risky := cfg
	risky.DisableRiskCheck = true
	for _, tc := range []struct {
		name  string
		cfg   twilio.Config
		usage otp.UsageType
		want  string
	}{
		{"own template", cfg, otp.Register,
			`sms via Messaging Service ` + testService + `, template Register, body "Welcome to Acme: 482915"`},
		{"otpd templates", cfg, otp.SignIn,
			`sms via Messaging Service ` + testService + `, otpd templates, body "Your Acme code is 482915."`},
		{"risk check disabled", risky, otp.Register,
			`sms via Messaging Service ` + testService + `, template Register, body "Welcome to Acme: 482915" (risk check disabled)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := newProvider(t, tc.cfg).Preview(smsMessage(tc.usage))
			if err != nil || got != tc.want {
				t.Errorf("Preview = %q, %v; want %q", got, err, tc.want)
			}
			providertest.NoLeak(t, got, testToken, testSID, testTo)
		})
	}
	if _, err := newProvider(t, cfg).Preview(providertest.Message(otp.Email, "john@example.com", otp.SignIn)); err == nil {
		t.Error("Preview of an email succeeded")
	}
}

func TestDescribe(t *testing.T) {
	t.Parallel()
	withTemplates := testConfig("http://127.0.0.1:8080/twilio/",
		tpl("Generic", "{{code}}"), tpl("OrganizationInvitation", "{{code}}"), tpl("Register", "{{code}}"), tpl("BindMfa", "{{code}}"))
	withInvitation := testConfig("", tpl("OrganizationInvitation", "Join: {{link}}"))
	withTemplates.DisableRiskCheck = true
	for _, tc := range []struct {
		name string
		cfg  twilio.Config
		want string
	}{
		{"defaults", testConfig(""), "twilio account " + maskedSID + ", messaging service " + testService +
			", endpoint https://api.twilio.com, risk check on, templates none (otpd templates)"},
		{"templates and endpoint", withTemplates, "twilio account " + maskedSID + ", messaging service " + testService +
			", endpoint http://127.0.0.1:8080/twilio, risk check disabled, templates Register BindMfa Generic" +
			"; ignored (cannot carry the link): OrganizationInvitation"},
		{"invitation template", withInvitation, "twilio account " + maskedSID + ", messaging service " + testService +
			", endpoint https://api.twilio.com, risk check on, templates OrganizationInvitation"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := newProvider(t, tc.cfg).Describe()
			if got != tc.want {
				t.Errorf("Describe() =\n%s\nwant\n%s", got, tc.want)
			}
			providertest.NoLeak(t, got, testToken, testSID)
		})
	}
}

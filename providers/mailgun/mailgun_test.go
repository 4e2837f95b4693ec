package mailgun_test

import (
	"context"
	"html"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/otpd/otpd/otp"
	"github.com/otpd/otpd/providers/mailgun"
	"github.com/otpd/otpd/providers/providertest"
)

const code = providertest.Code

// TestSendWire sends through a fake Mailgun API and checks everything on the
// wire: method, path, Basic auth, every form field, and the receipt.
func TestSendWire(t *testing.T) {
	t.Parallel()
	otpd := sample(otp.Register).Content // what otpd's templates render
	invite := providertest.Invitation(otp.Email, to).Content
	const genericOnly = `{"Generic": {"subject": "{{app_name}}: {{code}}", "html": "<p>{{app_name}} {{code}}, {{ttl_minutes}} min</p>", "text": "{{app_name}} {{code}}"}}`
	for _, tc := range []struct {
		name       string
		deliveries string
		usage      otp.UsageType // otp.OrganizationInvitation sends providertest.Invitation
		appName    string        // "" keeps the sample's "Acme"
		want       map[string]string
	}{
		{
			name: "seed Register: raw html and text", deliveries: seedDeliveries, usage: otp.Register,
			want: map[string]string{
				"from": from, "to": to,
				"subject":    code + " est votre code de vérification",
				"h:Reply-To": "Foo <foo@bar.com>",
				"html":       "<h1>Bienvenue sur Logto</h1><p>Votre code de vérification est " + code + ".</p>",
				"text":       "Bienvenue sur Logto. Votre code de vérification est " + code + ".",
			},
		},
		{
			name: "seed SignIn: Mailgun template, variables and code in h:X-Mailgun-Variables", deliveries: seedDeliveries, usage: otp.SignIn,
			want: map[string]string{
				"from": from, "to": to,
				"subject":               "Bon retour sur Logto",
				"h:Reply-To":            "Foo <foo@bar.com>",
				"template":              "logto-sign-in",
				"h:X-Mailgun-Variables": `{"bar":"baz","code":"` + code + `"}`,
				"text":                  "", // the SDK always sends text; Mailgun ignores it beside a template
			},
		},
		{
			name: "no delivery and no Generic: otpd's content", deliveries: seedDeliveries, usage: otp.ForgotPassword,
			want: map[string]string{"from": from, "to": to, "subject": otpd.Subject, "html": otpd.HTML, "text": otpd.Text},
		},
		{
			name: "no deliveries at all: otpd's content", deliveries: `null`, usage: otp.Generic,
			want: map[string]string{"from": from, "to": to, "subject": otpd.Subject, "html": otpd.HTML, "text": otpd.Text},
		},
		{
			name: "no delivery: Generic's", deliveries: genericOnly, usage: otp.SignIn,
			want: map[string]string{
				"from": from, "to": to, "subject": "Acme: " + code,
				"html": "<p>Acme " + code + ", 10 min</p>", "text": "Acme " + code,
			},
		},
		{
			name: "html escapes what it inserts, subject and text do not", deliveries: genericOnly, usage: otp.Generic, appName: `A&B <Corp>`,
			want: map[string]string{
				"from": from, "to": to, "subject": "A&B <Corp>: " + code,
				"html": "<p>A&amp;B &lt;Corp&gt; " + code + ", 10 min</p>", "text": "A&B <Corp> " + code,
			},
		},
		{
			name:       "own subject empty: otpd's subject; text only",
			deliveries: `{"ForgotPassword": {"text": "code {{code}}"}}`, usage: otp.ForgotPassword,
			want: map[string]string{"from": from, "to": to, "subject": otpd.Subject, "text": "code " + code},
		},
		{
			name:       "configured code loses to the real one; values kept as written",
			deliveries: `{"Generic": {"template": "otp", "variables": {"code": "000000", "n": 12345678901234567890, "nested": {"a": [1, true, null]}}}}`,
			usage:      otp.Register,
			want: map[string]string{
				"from": from, "to": to, "subject": otpd.Subject, "template": "otp", "text": "",
				"h:X-Mailgun-Variables": `{"code":"` + code + `","n":12345678901234567890,"nested":{"a":[1,true,null]}}`,
			},
		},
		{
			name: "invitation: own raw delivery, the link in html and text", usage: otp.OrganizationInvitation,
			deliveries: `{"Generic": {"text": "{{code}}"}, "OrganizationInvitation": {"subject": "Join {{app_name}}", "html": "<a href=\"{{link}}\">Join</a>", "text": "Join: {{ link }}"}}`,
			want: map[string]string{
				"from": from, "to": to, "subject": "Join Acme",
				"html": `<a href="` + html.EscapeString(providertest.Link) + `">Join</a>`, "text": "Join: " + providertest.Link,
			},
		},
		{
			name: "invitation: Mailgun template, the link in h:X-Mailgun-Variables", usage: otp.OrganizationInvitation,
			deliveries: `{"OrganizationInvitation": {"template": "invite", "variables": {"org": "Acme", "code": "x"}}}`,
			want: map[string]string{
				"from": from, "to": to, "subject": "Join Acme", "template": "invite", "text": "",
				"h:X-Mailgun-Variables": `{"code":"x","link":"` + strings.ReplaceAll(providertest.Link, "&", `\u0026`) + `","org":"Acme"}`,
			},
		},
		{
			name: "invitation: never Generic's, otpd's content", usage: otp.OrganizationInvitation, deliveries: genericOnly,
			want: map[string]string{"from": from, "to": to, "subject": "Join Acme", "html": invite.HTML, "text": invite.Text},
		},
		{
			name: "invitation: Logto's default with a code ignored, otpd's content", usage: otp.OrganizationInvitation,
			deliveries: `{"OrganizationInvitation": {"subject": "Invitation", "text": "Your Logto organization invitation code is {{code}}."}}`,
			want:       map[string]string{"from": from, "to": to, "subject": "Join Acme", "html": invite.HTML, "text": invite.Text},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newFake(t)
			p := newProvider(t, logtoConfig(srv.URL, tc.deliveries))
			msg := sample(tc.usage)
			if tc.usage == otp.OrganizationInvitation {
				msg = providertest.Invitation(otp.Email, to)
			}
			if tc.appName != "" {
				msg.AppName = tc.appName
			}
			rc, err := p.Send(t.Context(), msg)
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			if want := (otp.Receipt{Provider: "mailgun", MessageID: messageID}); rc != want {
				t.Errorf("receipt = %+v, want %+v", rc, want)
			}
			if n := len(srv.Requests()); n != 1 {
				t.Errorf("the fake API got %d requests, want 1", n)
			}
			r := srv.Last(t)
			if r.Method != http.MethodPost || r.Path != wantPath {
				t.Errorf("request = %s %s, want POST %s", r.Method, r.Path, wantPath)
			}
			wantBasicAuth(t, r)
			wantForm(t, r, tc.want)
		})
	}
}

// TestSendEndpoint checks that Logto's endpoint, with or without a trailing
// "/" or "/v3" and with a path prefix (a proxy), is where messages go.
func TestSendEndpoint(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, suffix, wantPath string }{
		{"bare", "", wantPath},
		{"trailing slash", "/", wantPath},
		{"with /v3", "/v3", wantPath},
		{"with /v3/", "/v3/", wantPath},
		{"path prefix", "/mailgun-eu", "/mailgun-eu" + wantPath},
		{"path prefix with /v3/", "/mailgun-eu/v3/", "/mailgun-eu" + wantPath},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newFake(t)
			p := newProvider(t, logtoConfig(srv.URL+tc.suffix, seedDeliveries))
			if _, err := p.Send(t.Context(), sample(otp.Register)); err != nil {
				t.Fatalf("Send: %v", err)
			}
			if r := srv.Last(t); r.Path != tc.wantPath {
				t.Errorf("path = %s, want %s", r.Path, tc.wantPath)
			}
		})
	}
}

// TestSendErrors checks how each kind of Mailgun answer is classified, and
// that no error text holds the API key, the code or the full recipient,
// although Mailgun's message may echo them.
func TestSendErrors(t *testing.T) {
	t.Parallel()
	const html = "text/html; charset=utf-8"
	for _, tc := range []struct {
		name      string
		resp      providertest.Response
		reason    string
		retryable bool
		wantText  []string // substrings of the error text
	}{
		{
			name:   "invalid recipient (Mailgun's own words)",
			resp:   providertest.Response{Status: 400, Body: `{"message":"'to' parameter is not a valid address. please check documentation"}`},
			reason: "http_400", wantText: []string{"HTTP 400", "'to' parameter is not a valid address"},
		},
		{
			name:   "message echoing recipient, code and key",
			resp:   providertest.Response{Status: 400, Body: `{"message":"to=` + to + ` rejected; body had ` + code + `; key ` + apiKey + `"}`},
			reason: "http_400", wantText: []string{"j***@example.com", "<code>", "<redacted>"},
		},
		{name: "bad API key", resp: providertest.Response{Status: 401, Body: "Forbidden", Header: map[string]string{"Content-Type": "text/plain"}}, reason: "auth", wantText: []string{"HTTP 401"}},
		{name: "domain not allowed", resp: providertest.Response{Status: 403, Body: `{"message":"Domain ` + domain + ` is not allowed to send"}`}, reason: "auth"},
		{name: "domain not found", resp: providertest.Response{Status: 404, Body: `{"message":"Domain not found: ` + domain + `"}`}, reason: "http_404"},
		{name: "too large", resp: providertest.Response{Status: 413, Body: `{"message":"request too large"}`}, reason: "http_413"},
		{name: "throttled", resp: providertest.Response{Status: 429, Body: `{"message":"Too many requests"}`}, reason: "throttled", retryable: true},
		{name: "server error", resp: providertest.Response{Status: 500, Body: `{"message":"internal error"}`}, reason: "http_500", retryable: true},
		{
			name:   "non-JSON 502 echoing the request",
			resp:   providertest.Response{Status: 502, Body: "<html>bad gateway for " + to + " " + code + "</html>", Header: map[string]string{"Content-Type": html}},
			reason: "http_502", retryable: true, wantText: []string{"HTTP 502"},
		},
		{name: "200 without id", resp: providertest.Response{Body: `{"message":"Queued. Thank you."}`}, reason: "bad_response", retryable: true},
		{name: "200 not JSON", resp: providertest.Response{Body: "<html>welcome</html>", Header: map[string]string{"Content-Type": html}}, reason: "bad_response", retryable: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := providertest.NewServer(t, func(providertest.Request) providertest.Response { return tc.resp })
			p := newProvider(t, logtoConfig(srv.URL, seedDeliveries))
			_, err := p.Send(t.Context(), sample(otp.Register))
			providertest.WantError(t, err, "mailgun", tc.reason, tc.retryable, apiKey, code, to)
			for _, s := range tc.wantText {
				if err != nil && !strings.Contains(err.Error(), s) {
					t.Errorf("error %q lacks %q", err, s)
				}
			}
		})
	}
}

// TestSendTransport checks failures before Mailgun answers: all transient,
// and a deadline ends the call promptly.
func TestSendTransport(t *testing.T) {
	t.Parallel()
	t.Run("connection refused", func(t *testing.T) {
		t.Parallel()
		srv := newFake(t)
		p := newProvider(t, logtoConfig(srv.URL, seedDeliveries))
		srv.Close()
		_, err := p.Send(t.Context(), sample(otp.Register))
		providertest.WantError(t, err, "mailgun", "transport", true, apiKey, code, to)
	})
	t.Run("slow server and deadline", func(t *testing.T) {
		t.Parallel()
		srv := providertest.NewServer(t, func(providertest.Request) providertest.Response {
			return providertest.Response{Delay: time.Minute, Body: `{"id":"<late@mg.example.com>"}`}
		})
		p := newProvider(t, logtoConfig(srv.URL, seedDeliveries))
		start := time.Now()
		_, err := p.Send(providertest.Deadline(t, 300*time.Millisecond), sample(otp.Register))
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("Send returned after %s despite a 300ms deadline", d)
		}
		providertest.WantError(t, err, "mailgun", "timeout", true, apiKey, code, to)
		if !providertest.IsDeadline(err) {
			t.Errorf("error %v is not a deadline failure", err)
		}
	})
	t.Run("context already canceled", func(t *testing.T) {
		t.Parallel()
		srv := newFake(t)
		p := newProvider(t, logtoConfig(srv.URL, seedDeliveries))
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := p.Send(ctx, sample(otp.Register))
		providertest.WantError(t, err, "mailgun", "canceled", true)
		if n := len(srv.Requests()); n != 0 {
			t.Errorf("the fake API got %d requests, want none", n)
		}
	})
}

// TestEmailOnly checks that an SMS is refused, permanently, without a call.
func TestEmailOnly(t *testing.T) {
	t.Parallel()
	srv := newFake(t)
	p := newProvider(t, logtoConfig(srv.URL, seedDeliveries))
	msg := providertest.Message(otp.SMS, "+14155550123", otp.Register)
	_, err := p.Send(t.Context(), msg)
	providertest.WantError(t, err, "mailgun", "unsupported_channel", false)
	if _, err := p.Preview(msg); err == nil {
		t.Error("Preview of an SMS gave no error")
	}
	if n := len(srv.Requests()); n != 0 {
		t.Errorf("the fake API got %d requests, want none", n)
	}
}

// TestPreview checks the one-line preview of each mode: what would go on
// the wire, code included, key never.
func TestPreview(t *testing.T) {
	t.Parallel()
	p := newProvider(t, logtoConfig("", seedDeliveries))
	otpd := sample(otp.ForgotPassword).Content
	seedHTML := "<h1>Bienvenue sur Logto</h1><p>Votre code de vérification est " + code + ".</p>"
	for _, tc := range []struct {
		usage otp.UsageType
		want  string
	}{
		{otp.Register, `email via deliveries.Register from "Acme <no-reply@mg.example.com>" reply-to "Foo <foo@bar.com>"` +
			` subject "482915 est votre code de vérification" html ` + strconv.Itoa(len(seedHTML)) + ` bytes text "Bienvenue sur Logto. Votre code de vérification est 482915."`},
		{otp.SignIn, `email via deliveries.SignIn from "Acme <no-reply@mg.example.com>" reply-to "Foo <foo@bar.com>"` +
			` subject "Bon retour sur Logto" template "logto-sign-in" variables {"bar":"baz","code":"482915"}`},
		{otp.ForgotPassword, `email via otpd templates from "Acme <no-reply@mg.example.com>" subject "` + otpd.Subject + `"` +
			` html ` + strconv.Itoa(len(otpd.HTML)) + ` bytes text "` + otpd.Text + `"`},
	} {
		t.Run(string(tc.usage), func(t *testing.T) {
			t.Parallel()
			got, err := p.Preview(sample(tc.usage))
			if err != nil {
				t.Fatalf("Preview: %v", err)
			}
			if got != tc.want {
				t.Errorf("Preview =\n  %s\nwant\n  %s", got, tc.want)
			}
			providertest.NoLeak(t, got, apiKey)
		})
	}
}

// TestDescribe checks the settings summary, including the API base each
// endpoint gives, and that the API key is never in it.
func TestDescribe(t *testing.T) {
	t.Parallel()
	const seedUsage = `, Register: raw html text, SignIn: template "logto-sign-in", ForgotPassword: otpd templates` +
		`, UserPermissionValidation: otpd templates, BindNewIdentifier: otpd templates, MfaVerification: otpd templates, BindMfa: otpd templates, Generic: otpd templates` +
		`, OrganizationInvitation: otpd templates`
	for _, tc := range []struct{ name, endpoint, deliveries, want string }{
		{"default endpoint", "", seedDeliveries, `mailgun domain mg.example.com, API https://api.mailgun.net/v3, from "Acme <no-reply@mg.example.com>"` + seedUsage},
		{"EU", mailgun.EUEndpoint, seedDeliveries, `mailgun domain mg.example.com, API https://api.eu.mailgun.net/v3, from "Acme <no-reply@mg.example.com>"` + seedUsage},
		{"EU with /v3/", "https://api.eu.mailgun.net/v3/", seedDeliveries, `mailgun domain mg.example.com, API https://api.eu.mailgun.net/v3, from "Acme <no-reply@mg.example.com>"` + seedUsage},
		{
			"Generic, a Logto usage type and an invitation", "", `{"Generic": {"text": "{{code}}"}, "BindMfa": {"html": "x"}, "OrganizationInvitation": {"html": "{{link}}"}}`,
			`mailgun domain mg.example.com, API https://api.mailgun.net/v3, from "Acme <no-reply@mg.example.com>"` +
				`, Register: as Generic, SignIn: as Generic, ForgotPassword: as Generic, UserPermissionValidation: as Generic` +
				`, BindNewIdentifier: as Generic, MfaVerification: as Generic, BindMfa: raw html, Generic: raw text, OrganizationInvitation: raw html`,
		},
		{
			"invitation that cannot carry the link", "", `{"Generic": {"text": "{{code}}"}, "OrganizationInvitation": {"subject": "Join {{organization.name}}", "html": "{{link}}"}}`,
			`mailgun domain mg.example.com, API https://api.mailgun.net/v3, from "Acme <no-reply@mg.example.com>"` +
				`, Register: as Generic, SignIn: as Generic, ForgotPassword: as Generic, UserPermissionValidation: as Generic` +
				`, BindNewIdentifier: as Generic, MfaVerification: as Generic, BindMfa: as Generic, Generic: raw text, OrganizationInvitation: otpd templates` +
				`; ignored (cannot carry the link): OrganizationInvitation`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := newProvider(t, logtoConfig(tc.endpoint, tc.deliveries)).Describe()
			if got != tc.want {
				t.Errorf("Describe =\n  %s\nwant\n  %s", got, tc.want)
			}
			providertest.NoLeak(t, got, apiKey)
		})
	}
}

// TestCanServe checks that every otpd usage type can be served, with or
// without deliveries, since otpd's templates fill in.
func TestCanServe(t *testing.T) {
	t.Parallel()
	for _, deliveries := range []string{seedDeliveries, `{}`, `{"SignIn": {"template": "only-sign-in"}}`} {
		p := newProvider(t, logtoConfig("", deliveries))
		for _, u := range otp.UsageTypes {
			if err := p.CanServe(u); err != nil {
				t.Errorf("deliveries %s: CanServe(%s) = %v, want nil", deliveries, u, err)
			}
		}
		if err := p.CanServe(otp.OrganizationInvitation); err != nil {
			t.Errorf("deliveries %s: CanServe(OrganizationInvitation) = %v, want nil: otpd's invitation goes out", deliveries, err)
		}
	}
}

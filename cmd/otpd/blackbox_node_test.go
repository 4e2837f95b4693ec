package main_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/otpd/otpd/internal/redistest"
	"github.com/otpd/otpd/providers/providertest"
)

// nodeDir holds the Node clients (test/node): package.json pins the npm
// packages that the identity servers themselves use.
const nodeDir = "../../test/node"

// nodeDepsCommand installs what the Node tests need.
const nodeDepsCommand = "make node-deps (or: cd test/node && npm ci --no-audit --no-fund)"

// needNode returns the node binary, or skips the test when node or
// test/node/node_modules is missing; with OTPD_REQUIRE_NODE=1 (make
// test-go) it fails instead.
func needNode(t *testing.T) string {
	t.Helper()
	return needNodeModules(t, filepath.Join(nodeDir, "node_modules"), "test/node/node_modules", nodeDepsCommand)
}

// needNodeModules returns the node binary once path (a file or folder
// that npm ci installs, named what) exists. Otherwise it skips the test,
// naming install, the command that installs it; with OTPD_REQUIRE_NODE=1
// (make test-go) it fails instead.
func needNodeModules(t *testing.T, path, what, install string) string {
	t.Helper()
	miss := func(why string) {
		t.Helper()
		if os.Getenv("OTPD_REQUIRE_NODE") == "1" {
			t.Fatalf("%s (OTPD_REQUIRE_NODE=1): run %s", why, install)
		}
		t.Skipf("%s: run %s", why, install)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		miss("node is not installed")
	}
	if _, err := os.Stat(path); err != nil {
		miss(what + " is missing")
	}
	return node
}

// runNode runs test/node/<script> with env and the JSON of calls in
// OTPD_CALLS, and returns the JSON line it printed for each call, by
// name. The script prints one line per call, in order.
func runNode(t *testing.T, node, script string, calls any, env ...string) map[string]json.RawMessage {
	t.Helper()
	plan, err := json.Marshal(calls)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, script)
	cmd.Dir = nodeDir
	cmd.Env = append(os.Environ(), append(env, "OTPD_CALLS="+string(plan))...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("node %s: %v\nstdout:\n%s\nstderr:\n%s", script, err, stdout.String(), stderr.String())
	}
	t.Logf("node %s: %d calls in %v", script, bytes.Count(stdout.Bytes(), []byte("\n")), time.Since(start).Round(time.Millisecond))
	out := map[string]json.RawMessage{}
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var rec struct {
			Name string `json:"name"`
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("node %s printed %q: %v", script, sc.Text(), err)
		}
		out[rec.Name] = append(json.RawMessage(nil), sc.Bytes()...)
	}
	return out
}

// hookVendors are the vendor fakes behind an otpd started by
// startHookOtpd: Twilio for SMS, Mailgun for email, both accepting every
// message.
type hookVendors struct {
	twilio, mailgun *providertest.Server
}

// sms returns the SMS bodies the fake Twilio API got for to (E.164).
func (v hookVendors) sms(to string) []string {
	var out []string
	for _, r := range v.twilio.Requests() {
		if r.Form.Get("To") == to {
			out = append(out, r.Form.Get("Body"))
		}
	}
	return out
}

// mail is one email the fake Mailgun API got.
type mail struct{ subject, text, html string }

// mails returns the emails the fake Mailgun API got for to.
func (v hookVendors) mails(to string) []mail {
	var out []mail
	for _, r := range v.mailgun.Requests() {
		if r.Form.Get("to") == to {
			out = append(out, mail{r.Form.Get("subject"), r.Form.Get("text"), r.Form.Get("html")})
		}
	}
	return out
}

// hookToken is the caller token of the hook tests' otpd.
const hookToken = "logto-connector-token-0123456789"

// startHookOtpd starts otpd with listen.api, the caller token hookToken,
// a Twilio and a Mailgun provider pointing at fakes, otpd's own templates
// (app "Acme", default locale en) overridden by templatesDir if not "",
// and hooks (YAML of the hooks block's content, may be empty). It returns
// the API's base URL.
func startHookOtpd(t *testing.T, hooks, templatesDir string) (*process, string, hookVendors) {
	t.Helper()
	rs := redistest.Start(t)
	v := hookVendors{
		twilio: providertest.NewServer(t, func(providertest.Request) providertest.Response {
			return providertest.Response{Status: 201, Body: `{"sid": "SM0123456789abcdef0123456789abcdef", "status": "accepted"}`}
		}),
		mailgun: providertest.NewServer(t, func(providertest.Request) providertest.Response {
			return providertest.Response{Body: `{"id": "<20261130.1@mg.example.com>", "message": "Queued. Thank you."}`}
		}),
	}
	sum := sha256.Sum256([]byte(hookToken))
	if hooks != "" {
		hooks = "hooks:\n" + hooks
	}
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "otpd.yaml")
	// No provider templates: the messages are rendered from otpd's own
	// (embedded) templates, per locale.
	cfg := fmt.Sprintf(`
listen: {grpc: %q, http: "", api: %q}
redis: {url: "${REDIS_URL}"}
secret: "${OTPD_HMAC_KEY}"
auth:
  tokens: [{name: identity-server, sha256: %q}]
limits: {resend_interval: 60s}
templates: {app_name: "Acme", default_locale: en, dir: %q}
providers:
  - name: twilio
    type: twilio
    config: {"accountSID": "AC0123456789abcdef0123456789abcdef", "authToken": "${TWILIO_AUTH_TOKEN}",
             "fromMessagingServiceSID": "MG0123456789abcdef0123456789abcdef", "endpoint": %q}
  - name: mailgun
    type: mailgun
    config: {"endpoint": %q, "domain": "mg.example.com", "apiKey": "${MAILGUN_API_KEY}",
             "from": "Acme <no-reply@mg.example.com>"}
%s`, anyPort, anyPort, hex.EncodeToString(sum[:]), templatesDir, v.twilio.URL, v.mailgun.URL, hooks)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startOtpd(t, []string{"-config", cfgPath},
		"REDIS_URL="+rs.URL(), "OTPD_HMAC_KEY=0123456789abcdef0123456789abcdef-nodehooks",
		"TWILIO_AUTH_TOKEN=f0e1d2c3b4a5968778695a4b3c2d1e0f", "MAILGUN_API_KEY=key-3ax6xnjp29jd6fds4gc373sgvjxteol0")
	api := p.api(t)
	if api == "" {
		t.Fatalf("otpd logged no listen.api address:\n%s", p.Output())
	}
	return p, "http://" + api, v
}

// logtoCall is one sendMessage of test/node/logto.mjs.
type logtoCall struct {
	Name      string `json:"name"`
	Connector string `json:"connector"`
	// Authorization replaces "Bearer <token>"; "" sends none.
	Authorization *string        `json:"authorization,omitempty"`
	Data          map[string]any `json:"data"`
}

// logtoResult is what logto.mjs printed for a call.
type logtoResult struct {
	OK     bool   `json:"ok"`
	Status int    `json:"status"`
	Body   string `json:"body"`
	Error  struct {
		Name    string `json:"name"`
		Code    string `json:"code"`
		Message string `json:"message"`
		Data    struct {
			Message string `json:"message"`
		} `json:"data"`
	} `json:"error"`
}

// otpdMessage is the sentence of otpd's answer that the connector threw
// with: the ConnectorError's data.message is the raw body, {"message": ...}.
func (r logtoResult) otpdMessage(t *testing.T) string {
	t.Helper()
	if r.OK {
		t.Fatalf("sendMessage resolved (HTTP %d, %s), want it to throw", r.Status, r.Body)
	}
	if r.Error.Name != "ConnectorError" || r.Error.Code != "general" {
		t.Fatalf("sendMessage threw %s %q (%s), want ConnectorError general", r.Error.Name, r.Error.Code, r.Error.Message)
	}
	var body struct {
		Message string `json:"message"`
	}
	if err := json.Unmarshal([]byte(r.Error.Data.Message), &body); err != nil || body.Message == "" {
		t.Fatalf("the connector's error data %q is not otpd's {\"message\"}: %v", r.Error.Data.Message, err)
	}
	// The error's message, which Logto logs, is "ConnectorError: " and
	// the JSON of that same body.
	var inMessage string
	if enc, ok := strings.CutPrefix(r.Error.Message, "ConnectorError: "); !ok || json.Unmarshal([]byte(enc), &inMessage) != nil || inMessage != r.Error.Data.Message {
		t.Errorf("the ConnectorError's message %q does not carry otpd's answer %q", r.Error.Message, r.Error.Data.Message)
	}
	return body.Message
}

// TestNodeLogtoConnectors drives otpd's /hooks/logto/sms and
// /hooks/logto/email with Logto's own HTTP connectors from npm
// (@logto/connector-http-sms 0.2.1, @logto/connector-http-email 0.4.3),
// created and called as Logto core does, and checks what reaches the
// vendor fakes behind otpd and what the connectors throw.
func TestNodeLogtoConnectors(t *testing.T) {
	t.Parallel()
	node := needNode(t)
	// Invitations are rendered from the operator's templates only: an
	// email one in English, none for SMS.
	tplDir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(tplDir, "email", "en"), 0o750); err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{
		"OrganizationInvitation.subject": "You are invited to join {{app_name}}",
		"OrganizationInvitation.txt":     "Join {{app_name}}: {{link}}",
		"OrganizationInvitation.html":    `<p>Join <b>{{app_name}}</b>: <a href="{{link}}">accept the invitation</a></p>`,
	} {
		if err := os.WriteFile(filepath.Join(tplDir, "email", "en", name), []byte(text+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	p, apiURL, v := startHookOtpd(t, "", tplDir)
	wrong, none := "Bearer not-the-token", ""
	// Recipients are distinct per case but the rate-limited one, so that
	// resend_interval (60s) only bites there.
	calls := []logtoCall{
		{Name: "SMS SignIn", Connector: "sms", Data: map[string]any{
			"to": "14155550101", "type": "SignIn", "ip": "203.0.113.7",
			"payload": map[string]any{"code": "483920", "locale": "en", "uiLocales": "en"},
		}},
		{Name: "email Register with Logto's context", Connector: "email", Data: map[string]any{
			"to": "jane@example.com", "type": "Register", "ip": "203.0.113.7",
			"payload": map[string]any{
				"code": "271828", "locale": "en",
				"application": map[string]any{"id": "app1", "name": "Acme web"},
				"user":        map[string]any{"id": "u1", "primaryEmail": "jane@example.com", "name": "Jane"},
			},
		}},
		{Name: "email SignIn in French", Connector: "email", Data: map[string]any{
			"to": "marie@example.com", "type": "SignIn", "payload": map[string]any{"code": "314159", "locale": "fr", "uiLocales": "fr-CA fr"},
		}},
		{Name: "SMS MfaVerification in French", Connector: "sms", Data: map[string]any{
			"to": "14155550102", "type": "MfaVerification", "payload": map[string]any{"code": "161803", "locale": "fr"},
		}},
		// The Management API's POST /verification-codes: payload {code}
		// only, no locale.
		{Name: "SMS without locale", Connector: "sms", Data: map[string]any{
			"to": "14155550103", "type": "SignIn", "payload": map[string]any{"code": "141421"},
		}},
		{Name: "email without locale", Connector: "email", Data: map[string]any{
			"to": "nolocale@example.com", "type": "Generic", "payload": map[string]any{"code": "173205"},
		}},
		{Name: "wrong token", Connector: "sms", Authorization: &wrong, Data: map[string]any{
			"to": "14155550104", "type": "SignIn", "payload": map[string]any{"code": "223606", "locale": "en"},
		}},
		{Name: "no authorization", Connector: "email", Authorization: &none, Data: map[string]any{
			"to": "anon@example.com", "type": "SignIn", "payload": map[string]any{"code": "244948", "locale": "en"},
		}},
		{Name: "rate limit: first", Connector: "sms", Data: map[string]any{
			"to": "14155550105", "type": "SignIn", "payload": map[string]any{"code": "264575", "locale": "en"},
		}},
		{Name: "rate limit: second within resend_interval", Connector: "sms", Data: map[string]any{
			"to": "14155550105", "type": "SignIn", "payload": map[string]any{"code": "282842", "locale": "en"},
		}},
		{Name: "unknown type", Connector: "sms", Data: map[string]any{
			"to": "14155550106", "type": "Bogus", "payload": map[string]any{"code": "300000", "locale": "en"},
		}},
		// As Logto's organization invitations send it: a link, no code.
		{Name: "OrganizationInvitation", Connector: "email", Data: map[string]any{
			"to": "invitee@example.com", "type": "OrganizationInvitation",
			"payload": map[string]any{
				"link": "https://auth.example.com/invitation/inv_7Yq2Lm", "locale": "en",
				"organization": map[string]any{"id": "org1", "name": "Acme Org"},
				"inviter":      map[string]any{"id": "u1", "name": "Jane"},
			},
		}},
		{Name: "OrganizationInvitation in French", Connector: "email", Data: map[string]any{
			"to": "invitee.fr@example.com", "type": "OrganizationInvitation",
			"payload": map[string]any{"link": "https://auth.example.com/invitation/inv_9Xk4Pz", "locale": "fr"},
		}},
		{Name: "OrganizationInvitation by SMS", Connector: "sms", Data: map[string]any{
			"to": "14155550107", "type": "OrganizationInvitation",
			"payload": map[string]any{"link": "https://auth.example.com/invitation/inv_3Ws8Rt", "locale": "en"},
		}},
	}
	raw := runNode(t, node, "logto.mjs", calls, "OTPD_API_URL="+apiURL, "OTPD_TOKEN="+hookToken)
	result := func(t *testing.T, name string) logtoResult {
		t.Helper()
		line, ok := raw[name]
		if !ok {
			t.Fatalf("logto.mjs printed nothing for %q", name)
		}
		var r logtoResult
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	delivered := func(t *testing.T, r logtoResult) {
		t.Helper()
		if !r.OK || r.Status != 200 {
			t.Fatalf("sendMessage: %+v, want it to resolve with HTTP 200", r)
		}
	}
	oneSMS := func(t *testing.T, to string, want ...string) {
		t.Helper()
		got := v.sms(to)
		if len(got) != 1 {
			t.Fatalf("the fake Twilio API got %d messages to %s, want 1: %q", len(got), to, got)
		}
		for _, w := range want {
			if !strings.Contains(got[0], w) {
				t.Errorf("SMS %q lacks %q", got[0], w)
			}
		}
	}
	oneMail := func(t *testing.T, to, code, subject string) {
		t.Helper()
		got := v.mails(to)
		if len(got) != 1 {
			t.Fatalf("the fake Mailgun API got %d emails to %s, want 1", len(got), to)
		}
		m := got[0]
		if m.subject != subject {
			t.Errorf("subject %q, want %q", m.subject, subject)
		}
		if !strings.Contains(m.text, code) || !strings.Contains(m.html, code) {
			t.Errorf("email text %q / html %q lacks the code %s", m.text, m.html, code)
		}
	}
	noSMS := func(t *testing.T, to string) {
		t.Helper()
		if got := v.sms(to); len(got) != 0 {
			t.Errorf("the fake Twilio API got %q to %s, want nothing", got, to)
		}
	}

	t.Run("SMS SignIn delivered", func(t *testing.T) {
		r := result(t, "SMS SignIn")
		delivered(t, r)
		if !strings.Contains(r.Body, `"provider":"twilio"`) {
			t.Errorf("otpd's answer %s does not name the provider", r.Body)
		}
		oneSMS(t, "+14155550101", "Acme: 483920 is your sign-in code.")
	})
	t.Run("email Register delivered", func(t *testing.T) {
		r := result(t, "email Register with Logto's context")
		delivered(t, r)
		if !strings.Contains(r.Body, `"provider":"mailgun"`) {
			t.Errorf("otpd's answer %s does not name the provider", r.Body)
		}
		oneMail(t, "jane@example.com", "271828", "271828 is your Acme sign-up code")
	})
	t.Run("locale fr", func(t *testing.T) {
		delivered(t, result(t, "email SignIn in French"))
		oneMail(t, "marie@example.com", "314159", "Acme : votre code de connexion est 314159")
		delivered(t, result(t, "SMS MfaVerification in French"))
		// MfaVerification has no template of its own: Generic's.
		oneSMS(t, "+14155550102", "Acme : 161803 est votre code de vérification.")
	})
	t.Run("missing locale falls back to the default locale", func(t *testing.T) {
		delivered(t, result(t, "SMS without locale"))
		oneSMS(t, "+14155550103", "Acme: 141421 is your sign-in code.")
		delivered(t, result(t, "email without locale"))
		oneMail(t, "nolocale@example.com", "173205", "173205 is your Acme verification code")
	})
	t.Run("wrong token", func(t *testing.T) {
		msg := result(t, "wrong token").otpdMessage(t)
		if !strings.HasPrefix(msg, "Unauthorized: ") {
			t.Errorf("the connector surfaced %q, want otpd's Unauthorized sentence", msg)
		}
		noSMS(t, "+14155550104")
		msg = result(t, "no authorization").otpdMessage(t)
		if !strings.HasPrefix(msg, "Unauthorized: ") {
			t.Errorf("without authorization the connector surfaced %q, want otpd's Unauthorized sentence", msg)
		}
		if got := v.mails("anon@example.com"); len(got) != 0 {
			t.Errorf("the fake Mailgun API got %d emails without authorization", len(got))
		}
	})
	t.Run("rate limit", func(t *testing.T) {
		delivered(t, result(t, "rate limit: first"))
		msg := result(t, "rate limit: second within resend_interval").otpdMessage(t)
		if !regexp.MustCompile(`^Too many codes\. Try again in [1-6]?[0-9] seconds\.$`).MatchString(msg) {
			t.Errorf("the connector surfaced %q, want otpd's 429 sentence", msg)
		}
		oneSMS(t, "+14155550105", "264575") // the second code never went out
	})
	t.Run("unknown type", func(t *testing.T) {
		if msg := result(t, "unknown type").otpdMessage(t); msg != "Unknown message type." {
			t.Errorf("the connector surfaced %q", msg)
		}
		noSMS(t, "+14155550106")
	})
	t.Run("OrganizationInvitation", func(t *testing.T) {
		// Rendered from templates.dir's email/en/OrganizationInvitation.*.
		delivered(t, result(t, "OrganizationInvitation"))
		invitation := func(t *testing.T, to, link string) {
			t.Helper()
			got := v.mails(to)
			if len(got) != 1 {
				t.Fatalf("the fake Mailgun API got %d emails to %s, want 1", len(got), to)
			}
			m := got[0]
			if m.subject != "You are invited to join Acme" || m.text != "Join Acme: "+link ||
				!strings.Contains(m.html, `<a href="`+link+`">`) {
				t.Errorf("invitation %+v, want the templates.dir one with %s", m, link)
			}
		}
		invitation(t, "invitee@example.com", "https://auth.example.com/invitation/inv_7Yq2Lm")
		// No fr invitation template: the default locale's.
		delivered(t, result(t, "OrganizationInvitation in French"))
		invitation(t, "invitee.fr@example.com", "https://auth.example.com/invitation/inv_9Xk4Pz")
		// No SMS invitation template at all: a clear refusal.
		msg := result(t, "OrganizationInvitation by SMS").otpdMessage(t)
		if !strings.HasPrefix(msg, "No organization invitation template is configured: add sms/") {
			t.Errorf("the connector surfaced %q", msg)
		}
		noSMS(t, "+14155550107")
	})
	t.Run("logs", func(t *testing.T) {
		logs := p.Output()
		for _, leak := range []string{hookToken, "483920", "271828", "4155550101", "jane@example.com"} {
			if strings.Contains(logs, leak) {
				t.Errorf("otpd's logs hold %q", leak)
			}
		}
	})
}

// supabaseCall is one hook call of test/node/supabase.mjs.
type supabaseCall struct {
	Name    string         `json:"name"`
	Hook    string         `json:"hook"`
	Body    map[string]any `json:"body"`
	Secrets []string       `json:"secrets"`
	ID      string         `json:"id"`
	Age     int            `json:"age,omitempty"`
	Tamper  bool           `json:"tamper,omitempty"`
}

// supabaseResult is what supabase.mjs printed for a call.
type supabaseResult struct {
	Status      int    `json:"status"`
	ContentType string `json:"contentType"`
	Body        string `json:"body"`
}

// supabaseError is the body of a refusal: Supabase Auth shows message.
type supabaseError struct {
	Error *struct {
		HTTPCode int    `json:"http_code"`
		Message  string `json:"message"`
	} `json:"error"`
}

// newWebhookSecret returns a Standard Webhooks secret as Supabase Auth's
// config holds it: "v1,whsec_" and the base64 of 32 random bytes.
func newWebhookSecret(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "v1,whsec_" + base64.StdEncoding.EncodeToString(b)
}

// supabaseSMS is Supabase Auth's Send SMS hook body.
func supabaseSMS(phone, otp string) map[string]any {
	return map[string]any{
		"metadata": supabaseMetadata("send-sms"),
		"user": map[string]any{
			"id": "8c2a4b5e-0000-4000-8000-000000000001", "aud": "authenticated", "role": "authenticated",
			"phone": phone, "app_metadata": map[string]any{"provider": "phone"}, "user_metadata": map[string]any{},
		},
		"sms": map[string]any{"otp": otp, "sms_type": "confirmation", "phone": phone},
	}
}

// supabaseEmail is Supabase Auth's Send Email hook body.
func supabaseEmail(email, token string) map[string]any {
	return map[string]any{
		"metadata": supabaseMetadata("send-email"),
		"user": map[string]any{
			"id": "8c2a4b5e-0000-4000-8000-000000000002", "aud": "authenticated", "role": "authenticated",
			"email": email, "new_email": "", "user_metadata": map[string]any{},
		},
		"email_data": map[string]any{
			"token": token, "token_hash": "b0d4e2f6c3a1b0d4e2f6c3a1b0d4e2f6c3a1b0d4e2f6c3a1b0d4e2f6",
			"redirect_to": "https://app.example.com/welcome", "email_action_type": "signup",
			"site_url": "https://app.example.com", "token_new": "", "token_hash_new": "",
		},
	}
}

func supabaseMetadata(name string) map[string]any {
	return map[string]any{
		"uuid": "3f0c8e8a-0000-4000-8000-0000000000aa", "time": time.Now().UTC().Format(time.RFC3339Nano),
		"name": name, "ip_address": "203.0.113.9",
	}
}

// TestNodeSupabaseHooks drives otpd's /hooks/supabase/sms and
// /hooks/supabase/email as Supabase Auth's Send SMS and Send Email hooks
// do, signed with the standardwebhooks npm package, and checks what
// reaches the vendor fakes and what otpd answers.
func TestNodeSupabaseHooks(t *testing.T) {
	t.Parallel()
	node := needNode(t)
	s1, s2, other := newWebhookSecret(t), newWebhookSecret(t), newWebhookSecret(t)
	p, apiURL, v := startHookOtpd(t, fmt.Sprintf("  supabase: {secrets: [%q, %q], ignore_ips: [], timeout: 4s}\n", s1, s2), "")
	calls := []supabaseCall{
		{Name: "SMS", Hook: "sms", Body: supabaseSMS("14155550121", "739152"), Secrets: []string{s1}, ID: "msg_sms_1"},
		{Name: "email", Hook: "email", Body: supabaseEmail("a@example.com", "305805"), Secrets: []string{s1}, ID: "msg_email_1"},
		{Name: "second secret (rotation)", Hook: "sms", Body: supabaseSMS("14155550122", "234567"), Secrets: []string{s2}, ID: "msg_sms_2"},
		{Name: "both secrets, joined", Hook: "email", Body: supabaseEmail("b@example.com", "345678"), Secrets: []string{other, s2}, ID: "msg_email_2"},
		{Name: "rate limit", Hook: "sms", Body: supabaseSMS("14155550121", "456789"), Secrets: []string{s1}, ID: "msg_sms_3"},
		{Name: "bad signature", Hook: "sms", Body: supabaseSMS("14155550123", "567890"), Secrets: []string{other}, ID: "msg_sms_4"},
		{Name: "tampered body", Hook: "email", Body: supabaseEmail("c@example.com", "678901"), Secrets: []string{s1}, ID: "msg_email_3", Tamper: true},
		{Name: "unsigned", Hook: "sms", Body: supabaseSMS("14155550124", "789012"), Secrets: []string{}, ID: "msg_sms_5"},
		{Name: "old timestamp", Hook: "sms", Body: supabaseSMS("14155550125", "890123"), Secrets: []string{s1}, ID: "msg_sms_6", Age: 6 * 60},
		{Name: "replayed id", Hook: "email", Body: supabaseEmail("d@example.com", "901234"), Secrets: []string{s1}, ID: "msg_email_1"},
	}
	raw := runNode(t, node, "supabase.mjs", calls, "OTPD_API_URL="+apiURL)
	result := func(t *testing.T, name string) supabaseResult {
		t.Helper()
		line, ok := raw[name]
		if !ok {
			t.Fatalf("supabase.mjs printed nothing for %q", name)
		}
		var r supabaseResult
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	delivered := func(t *testing.T, name string) {
		t.Helper()
		r := result(t, name)
		if r.Status != 200 || !strings.HasPrefix(r.ContentType, "application/json") || strings.TrimSpace(r.Body) != "{}" {
			t.Fatalf("%s: HTTP %d %q %s, want 200 application/json {}", name, r.Status, r.ContentType, r.Body)
		}
	}
	refused := func(t *testing.T, name string, status, httpCode int) string {
		t.Helper()
		r := result(t, name)
		var body supabaseError
		if r.Status != status || !strings.HasPrefix(r.ContentType, "application/json") ||
			json.Unmarshal([]byte(r.Body), &body) != nil || body.Error == nil || body.Error.HTTPCode != httpCode || body.Error.Message == "" {
			t.Fatalf("%s: HTTP %d %q %s, want %d JSON {\"error\": {\"http_code\": %d, \"message\"}}", name, r.Status, r.ContentType, r.Body, status, httpCode)
		}
		return body.Error.Message
	}
	smsTo := func(t *testing.T, to string, codes ...string) {
		t.Helper()
		got := v.sms(to)
		if len(got) != len(codes) {
			t.Fatalf("the fake Twilio API got %q to %s, want %d messages", got, to, len(codes))
		}
		for i, c := range codes {
			if !strings.Contains(got[i], c) {
				t.Errorf("SMS %q lacks the code %s", got[i], c)
			}
		}
	}
	mailTo := func(t *testing.T, to string, codes ...string) {
		t.Helper()
		got := v.mails(to)
		if len(got) != len(codes) {
			t.Fatalf("the fake Mailgun API got %d emails to %s, want %d", len(got), to, len(codes))
		}
		for i, c := range codes {
			if !strings.Contains(got[i].text, c) || !strings.Contains(got[i].html, c) {
				t.Errorf("email %+v lacks the code %s", got[i], c)
			}
		}
	}

	t.Run("SMS delivered", func(t *testing.T) {
		delivered(t, "SMS")
		smsTo(t, "+14155550121", "739152")
	})
	t.Run("email delivered", func(t *testing.T) {
		delivered(t, "email")
		mailTo(t, "a@example.com", "305805")
	})
	t.Run("secret rotation", func(t *testing.T) {
		delivered(t, "second secret (rotation)")
		smsTo(t, "+14155550122", "234567")
		delivered(t, "both secrets, joined")
		mailTo(t, "b@example.com", "345678")
	})
	t.Run("rate limit is the user's error", func(t *testing.T) {
		refused(t, "rate limit", 200, 429)
		smsTo(t, "+14155550121", "739152") // only the first
	})
	t.Run("bad signature", func(t *testing.T) {
		refused(t, "bad signature", 401, 401)
		smsTo(t, "+14155550123")
		refused(t, "tampered body", 401, 401)
		mailTo(t, "c@example.com")
		refused(t, "unsigned", 401, 401)
		smsTo(t, "+14155550124")
	})
	t.Run("old timestamp", func(t *testing.T) {
		refused(t, "old timestamp", 401, 401)
		smsTo(t, "+14155550125")
	})
	t.Run("replayed id", func(t *testing.T) {
		refused(t, "replayed id", 401, 401)
		mailTo(t, "d@example.com")
	})
	t.Run("logs", func(t *testing.T) {
		logs := p.Output()
		for _, leak := range []string{s1[len("v1,whsec_"):], s2[len("v1,whsec_"):], "739152", "305805", "4155550121", "a@example.com"} {
			if strings.Contains(logs, leak) {
				t.Errorf("otpd's logs hold %q", leak)
			}
		}
	})
}

package server

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/otpd/otpd/internal/grpcauth"
	"github.com/otpd/otpd/otp"
	"github.com/otpd/otpd/providers"
	"github.com/otpd/otpd/providers/fake"
	"github.com/otpd/otpd/service"
	"github.com/otpd/otpd/service/memstore"
	"github.com/otpd/otpd/templates"
)

// hookServer is otpd's real service on the in-memory store, with an SMS
// and an email fake provider, token auth and listen.api with the hooks,
// run by Run. Its per-IP limit is 1 send per hour.
type hookServer struct {
	*testServer
	url        string
	sms, email *fake.Provider
	g          GRPC
	hooks      Hooks
}

// startLogto starts a hookServer whose Logto hook ignores ignoreIPs.
func startLogto(t *testing.T, ignoreIPs ...string) *hookServer {
	t.Helper()
	var h Hooks
	h.Logto.IgnoreIPs = ignoreIPs
	return startHooks(t, h)
}

func startHooks(t *testing.T, hooks Hooks) *hookServer {
	t.Helper()
	return startHooksWith(t, hooks, templates.DefaultOptions())
}

// startHooksWith is startHooks with the templates of topts.
func startHooksWith(t *testing.T, hooks Hooks, topts templates.Options) *hookServer {
	t.Helper()
	sms, err := fake.New("fake-sms", fake.Config{})
	if err != nil {
		t.Fatal(err)
	}
	email, err := fake.New("fake-email", fake.Config{})
	if err != nil {
		t.Fatal(err)
	}
	router, err := providers.NewRouter([]providers.Route{
		{Name: "fake-sms", Channel: otp.SMS, Sender: sms},
		{Name: "fake-email", Channel: otp.Email, Sender: email},
	}, providers.RouterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	renderer, err := templates.New(topts)
	if err != nil {
		t.Fatal(err)
	}
	scfg := service.DefaultConfig()
	scfg.Secret = "logto-test-secret-0123456789abcdef"
	scfg.Limits.PerIP = service.Window{Count: 1, Window: time.Hour}
	ts := &testServer{reg: prometheus.NewRegistry(), logs: &lockedBuffer{}}
	svc, err := service.New(scfg, memstore.New(), router, renderer, service.WithRegisterer(ts.reg))
	if err != nil {
		t.Fatal(err)
	}
	log := slogJSON(ts.logs)
	sum := sha256.Sum256([]byte(apiTestToken))
	ac := grpcauth.DefaultConfig()
	ac.Tokens = []grpcauth.Token{{Name: "logto", SHA256: hex.EncodeToString(sum[:])}}
	g := NewGRPC(DefaultConfig().Listen, svc, grpcauth.New(ac, nil, ts.reg, log), nil, ts.reg, log)

	cfg := DefaultConfig()
	cfg.Listen = Listen{GRPC: "127.0.0.1:0", API: "127.0.0.1:0"}
	cfg.Shutdown.Timeout = 5 * time.Second
	cfg.Hooks = hooks
	if cfg.Hooks.Supabase.Timeout == 0 {
		cfg.Hooks.Supabase.Timeout = DefaultConfig().Hooks.Supabase.Timeout
	}
	cfg.Hooks.SendTimeout = scfg.SendTimeout
	if c := DefaultConfig(); true {
		c.Hooks = cfg.Hooks
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
	}
	addr := runAPI(t, ts, cfg, g, log)
	return &hookServer{testServer: ts, url: "http://" + addr, sms: sms, email: email, g: g, hooks: cfg.Hooks}
}

// hookAnswer is what a hook answered.
type hookResult struct {
	status int
	header http.Header
	body   map[string]string
	raw    string
}

// post sends Logto's body to path as Logto's connectors do (got: JSON,
// the authorization string verbatim when set).
func (s *hookServer) post(t *testing.T, path, authorization, body string) hookResult {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, s.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "got (https://github.com/sindresorhus/got)")
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	status, header, b := roundTrip(t, req)
	r := hookResult{status: status, header: header, raw: string(b)}
	if err := json.Unmarshal(b, &r.body); err != nil {
		t.Fatalf("%s answered %d %q: not a JSON object of strings: %v", path, status, b, err)
	}
	return r
}

const logtoAuth = "Bearer " + apiTestToken

func TestLogtoSMSDelivers(t *testing.T) {
	t.Parallel()
	s := startLogto(t)
	// Exactly what @logto/connector-http-sms 0.2.1 sends.
	r := s.post(t, logtoSMSPath, logtoAuth,
		`{"to":"14155550123","type":"SignIn","payload":{"code":"483920","locale":"fr","uiLocales":"zh-CN fr"},"ip":"203.0.113.7"}`)
	if r.status != http.StatusOK || r.body["verification_id"] == "" || r.body["provider"] != "fake-sms" {
		t.Fatalf("SMS hook = %d %s, want 200 with a verification id and fake-sms", r.status, r.raw)
	}
	sent := s.sms.Sent()
	if len(sent) != 1 {
		t.Fatalf("%d SMS delivered, want 1", len(sent))
	}
	m := sent[0]
	if m.Code != "483920" || m.To != "+14155550123" || m.UsageType != otp.SignIn || m.Locale != "fr" || m.VerificationID != r.body["verification_id"] || m.ClientIP != "203.0.113.7" {
		t.Errorf("delivered %+v, want code 483920 to +14155550123, sign_in, fr, the answer's verification id, client IP 203.0.113.7", m)
	}
	if strings.Contains(r.raw, "483920") {
		t.Errorf("answer %s echoes the code", r.raw)
	}
	if got := s.metric(t, "otpd_rpc_calls_total", map[string]string{"entry": "logto", "method": "/otp.v1.OtpService/DeliverCode", "code": "OK", "caller": "logto"}); got != 1 {
		t.Errorf("otpd_rpc_calls_total{entry=logto,code=OK} = %v, want 1", got)
	}
	if got := s.metric(t, "otpd_codes_sent_total", map[string]string{"entry": "logto", "channel": "sms", "usage_type": "sign_in", "result": "ok"}); got != 1 {
		t.Errorf("otpd_codes_sent_total{entry=logto,ok} = %v, want 1", got)
	}
	if got := s.metric(t, "grpc_server_handled_total", map[string]string{"grpc_method": "DeliverCode", "grpc_code": "OK"}); got != 1 {
		t.Errorf("grpc_server_handled_total{DeliverCode,OK} = %v, want 1", got)
	}
	var logged bool
	for _, l := range s.callLogs() {
		logged = logged || l["entry"] == "logto"
	}
	if !logged {
		t.Errorf("no call logged with entry logto: %s", s.logs.String())
	}

	// The same again at once: the resend cooldown, 429 with Retry-After.
	r = s.post(t, logtoSMSPath, logtoAuth, `{"to":"14155550123","type":"SignIn","payload":{"code":"111111","locale":"fr"}}`)
	secs, err := strconv.Atoi(r.header.Get("Retry-After"))
	if r.status != http.StatusTooManyRequests || err != nil || secs < 1 || secs > 60 {
		t.Fatalf("second send = %d Retry-After %q %s, want 429 with Retry-After 1..60", r.status, r.header.Get("Retry-After"), r.raw)
	}
	if want := "Too many codes. Try again in " + strconv.Itoa(secs) + " seconds."; r.body["message"] != want {
		t.Errorf("message %q, want %q", r.body["message"], want)
	}
	if strings.Contains(s.logs.String(), "483920") || strings.Contains(s.logs.String(), "111111") {
		t.Error("logs carry a code")
	}
}

func TestLogtoEmailDelivers(t *testing.T) {
	t.Parallel()
	s := startLogto(t)
	// What @logto/connector-http-email 0.4.3 sends from an experience route,
	// with the email context Logto adds.
	r := s.post(t, logtoEmailPath, logtoAuth, `{"to":"jane@example.com","type":"MfaVerification","payload":{"code":"902114","locale":"zh-CN","uiLocales":"zh-CN",`+
		`"application":{"id":"app1","name":"Demo"},"user":{"id":"u1","primaryEmail":"jane@example.com","profile":{}}},"ip":"198.51.100.4"}`)
	if r.status != http.StatusOK || r.body["provider"] != "fake-email" {
		t.Fatalf("email hook = %d %s, want 200 from fake-email", r.status, r.raw)
	}
	sent := s.email.Sent()
	if len(sent) != 1 {
		t.Fatalf("%d emails delivered, want 1", len(sent))
	}
	if m := sent[0]; m.Code != "902114" || m.To != "jane@example.com" || m.UsageType != otp.MfaVerification || m.Locale != "zh-CN" {
		t.Errorf("delivered %+v, want code 902114 to jane@example.com, mfa_verification, zh-CN", m)
	}
}

// TestLogtoInvitationDelivers: Logto's OrganizationInvitation, as
// @logto/connector-http-email sends it, goes out with the link in the
// operator's invitation template (templates.dir), and the link stays out
// of the answer and the logs.
func TestLogtoInvitationDelivers(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for name, text := range map[string]string{
		"OrganizationInvitation.subject": "Join {{app_name}}",
		"OrganizationInvitation.html":    `<p><a href="{{link}}">Accept the invitation</a></p>`,
	} {
		p := filepath.Join(dir, "email", "en", name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	topts := templates.DefaultOptions()
	topts.Dir = dir
	s := startHooksWith(t, Hooks{}, topts)
	const link = "https://id.example.com/invitation/accept?token=inv-t0ken&org=o1"
	r := s.post(t, logtoEmailPath, logtoAuth, `{"to":"jane@example.com","type":"OrganizationInvitation","payload":{"link":"`+link+`","locale":"fr",`+
		`"organization":{"id":"o1","name":"Acme","branding":{}},"inviter":{"id":"u2","name":"Bob"}},"ip":"198.51.100.4"}`)
	if r.status != http.StatusOK || r.body["provider"] != "fake-email" || r.body["verification_id"] == "" {
		t.Fatalf("email hook = %d %s, want 200 from fake-email", r.status, r.raw)
	}
	sent := s.email.Sent()
	if len(sent) != 1 {
		t.Fatalf("%d emails delivered, want 1", len(sent))
	}
	m := sent[0]
	wantHTML := `<p><a href="https://id.example.com/invitation/accept?token=inv-t0ken&amp;org=o1">Accept the invitation</a></p>`
	if m.UsageType != otp.OrganizationInvitation || m.Link != link || m.Code != "" || m.To != "jane@example.com" ||
		m.Content.Subject != "Join otpd" || m.Content.HTML != wantHTML {
		t.Errorf("delivered %+v, want the invitation to jane@example.com with the link in the en template", m)
	}
	if strings.Contains(r.raw, "t0ken") || strings.Contains(s.logs.String(), "t0ken") {
		t.Errorf("the link's token is in the answer %s or the logs", r.raw)
	}
	if got := s.metric(t, "otpd_codes_sent_total", map[string]string{"entry": "logto", "channel": "email", "usage_type": "organization_invitation", "result": "ok"}); got != 1 {
		t.Errorf("otpd_codes_sent_total{entry=logto,organization_invitation,ok} = %v, want 1", got)
	}

	// A code with it, or an invitation on the SMS hook (no SMS template):
	// refused with sentences Logto can show.
	r = s.post(t, logtoEmailPath, logtoAuth, `{"to":"joe@example.com","type":"OrganizationInvitation","payload":{"link":"`+link+`","code":"123456"}}`)
	if r.status != http.StatusBadRequest || !strings.Contains(r.body["message"], "payload.code must be empty") {
		t.Errorf("invitation with a code = %d %s, want 400 naming payload.code", r.status, r.raw)
	}
	r = s.post(t, logtoSMSPath, logtoAuth, `{"to":"14155550123","type":"OrganizationInvitation","payload":{"link":"`+link+`"}}`)
	if want := "No organization invitation template is configured: add sms/<locale>/OrganizationInvitation.txt to templates.dir."; r.status != http.StatusUnprocessableEntity || r.body["message"] != want {
		t.Errorf("SMS invitation = %d %s, want 422 %q", r.status, r.raw, want)
	}
	if n := len(s.email.Sent()) + len(s.sms.Sent()); n != 1 {
		t.Errorf("%d messages delivered, want 1", n)
	}
}

func TestLogtoLocales(t *testing.T) {
	t.Parallel()
	s := startLogto(t)
	for i, tc := range []struct {
		payload string
		want    string
	}{
		{`{"code":"123456"}`, "en"}, // the Management API: no locale
		{`{"code":"123456","uiLocales":"zh-CN fr"}`, "zh-CN"},
		{`{"code":"123456","uiLocales":"!!bad fr"}`, "fr"},
		{`{"code":"123456","locale":"fr","uiLocales":"zh-CN"}`, "fr"},
	} {
		to := "1415555010" + strconv.Itoa(i)
		r := s.post(t, logtoSMSPath, logtoAuth, `{"to":"`+to+`","type":"Generic","payload":`+tc.payload+`}`)
		if r.status != http.StatusOK {
			t.Fatalf("payload %s: %d %s, want 200", tc.payload, r.status, r.raw)
		}
		sent := s.sms.Sent()
		if m := sent[len(sent)-1]; m.To != "+"+to || m.Locale != tc.want || m.UsageType != otp.Generic {
			t.Errorf("payload %s: delivered %+v, want locale %s", tc.payload, m, tc.want)
		}
	}
}

func TestLogtoRefusals(t *testing.T) {
	t.Parallel()
	s := startLogto(t)
	const good = `{"to":"14155550123","type":"SignIn","payload":{"code":"483920"}}`
	for _, tc := range []struct {
		name, path, auth, body string
		status                 int
		message                string // a substring
	}{
		{"no token", logtoSMSPath, "", good, http.StatusUnauthorized, "Unauthorized"},
		{"wrong token", logtoSMSPath, "Bearer not-the-token", good, http.StatusUnauthorized, "Unauthorized"},
		{"token without scheme", logtoSMSPath, apiTestToken, good, http.StatusUnauthorized, "Unauthorized"},
		{"wrong token, bad type", logtoSMSPath, "Bearer nope", `{"to":"14155550123","type":"Nope","payload":{"code":"483920"}}`, http.StatusUnauthorized, "Unauthorized"},
		{"unknown type", logtoSMSPath, logtoAuth, `{"to":"14155550123","type":"Nope","payload":{"code":"483920"}}`, http.StatusBadRequest, "Unknown message type."},
		{"invitation without a template", logtoEmailPath, logtoAuth, `{"to":"jane@example.com","type":"OrganizationInvitation","payload":{"link":"https://id.example/invite/x","locale":"en"}}`,
			http.StatusUnprocessableEntity, "No organization invitation template is configured: add email/<locale>/OrganizationInvitation.subject and .html or .txt to templates.dir."},
		{"invitation without a link", logtoEmailPath, logtoAuth, `{"to":"jane@example.com","type":"OrganizationInvitation","payload":{"locale":"en"}}`,
			http.StatusBadRequest, "payload.link must be set to the invitation link."},
		{"invitation with a bad link", logtoEmailPath, logtoAuth, `{"to":"jane@example.com","type":"OrganizationInvitation","payload":{"link":"/invite/x"}}`,
			http.StatusBadRequest, "payload.link must be an absolute https or http URL."},
		{"no code", logtoSMSPath, logtoAuth, `{"to":"14155550123","type":"SignIn","payload":{}}`, http.StatusBadRequest, "payload.code must be set"},
		{"bad number", logtoSMSPath, logtoAuth, `{"to":"12","type":"SignIn","payload":{"code":"483920"}}`, http.StatusBadRequest, "to "},
		{"bad email", logtoEmailPath, logtoAuth, `{"to":"not-an-address","type":"SignIn","payload":{"code":"483920"}}`, http.StatusBadRequest, "to is not a valid email address"},
		{"not JSON", logtoSMSPath, logtoAuth, `{"to":`, http.StatusBadRequest, "not the JSON"},
		{"too large", logtoSMSPath, logtoAuth, `{"to":"` + strings.Repeat("1", hookMaxBodyBytes) + `"}`, http.StatusRequestEntityTooLarge, "too large"},
	} {
		r := s.post(t, tc.path, tc.auth, tc.body)
		if r.status != tc.status || !strings.Contains(strings.ToLower(r.body["message"]), strings.ToLower(tc.message)) {
			t.Errorf("%s: %d %s, want %d with a message containing %q", tc.name, r.status, r.raw, tc.status, tc.message)
		}
		if strings.Contains(r.raw, "483920") || strings.Contains(r.raw, "not-the-token") {
			t.Errorf("%s: answer %s echoes the request", tc.name, r.raw)
		}
	}
	if n := len(s.sms.Sent()) + len(s.email.Sent()); n != 0 {
		t.Errorf("%d messages delivered, want none", n)
	}
	// Logto shows the raw body: "<token>", not "\u003ctoken\u003e".
	if r := s.post(t, logtoSMSPath, "", good); !strings.Contains(r.raw, `\"Bearer <token>\"`) {
		t.Errorf("unauthorized answer %s does not read \"Bearer <token>\" as is", r.raw)
	}
	if got := s.metric(t, "otpd_auth_failures_total", nil); got != 5 {
		t.Errorf("otpd_auth_failures_total = %v, want 5", got)
	}
	if got := s.metric(t, "grpc_server_handled_total", map[string]string{"grpc_method": "DeliverCode", "grpc_code": "Unauthenticated"}); got != 5 {
		t.Errorf("grpc_server_handled_total{DeliverCode,Unauthenticated} = %v, want 5", got)
	}
	// The hook's own refusals go through the gRPC server too (after
	// caller auth), as invalid calls.
	if got := s.metric(t, "otpd_rpc_calls_total", map[string]string{"entry": "logto", "code": "InvalidArgument", "caller": "logto"}); got != 8 {
		t.Errorf("otpd_rpc_calls_total{entry=logto,code=InvalidArgument} = %v, want 8", got)
	}
	if got := s.metric(t, "otpd_rpc_calls_total", map[string]string{"entry": "logto", "code": "FailedPrecondition", "caller": "logto"}); got != 1 {
		t.Errorf("otpd_rpc_calls_total{entry=logto,code=FailedPrecondition} = %v, want 1 (the invitation without a template)", got)
	}
}

func TestLogtoIgnoreIPs(t *testing.T) {
	t.Parallel()
	s := startLogto(t, "10.0.0.0/8", "2001:db8::1")
	send := func(to, ip string) hookResult {
		return s.post(t, logtoSMSPath, logtoAuth, `{"to":"`+to+`","type":"Register","payload":{"code":"483920"},"ip":"`+ip+`"}`)
	}
	// A listed backend address: not counted, however many sends.
	for i, ip := range []string{"10.1.2.3", "10.1.2.3", "::ffff:10.1.2.3", "2001:db8::1", "2001:db8::1"} {
		if r := send("1415555020"+strconv.Itoa(i), ip); r.status != http.StatusOK {
			t.Fatalf("send %d from ignored %s = %d %s, want 200", i, ip, r.status, r.raw)
		}
	}
	// An end user's address: per_ip (1 per hour) counts it.
	if r := send("14155550300", "203.0.113.7"); r.status != http.StatusOK {
		t.Fatalf("first send from 203.0.113.7 = %d %s, want 200", r.status, r.raw)
	}
	r := send("14155550301", "203.0.113.7")
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" {
		t.Fatalf("second send from 203.0.113.7 = %d %s, want 429 with Retry-After", r.status, r.raw)
	}
	// 2001:db8::2 is in the /64 of 2001:db8::1, but only ::1 is listed.
	if r := send("14155550302", "2001:db8::2"); r.status != http.StatusOK {
		t.Fatalf("first send from 2001:db8::2 = %d %s, want 200", r.status, r.raw)
	}
	if r := send("14155550303", "2001:db8::2"); r.status != http.StatusTooManyRequests {
		t.Fatalf("second send from 2001:db8::2 = %d %s, want 429", r.status, r.raw)
	}
	if got := s.metric(t, "otpd_rpc_calls_total", map[string]string{"entry": "logto", "code": "ResourceExhausted"}); got != 2 {
		t.Errorf("otpd_rpc_calls_total{entry=logto,code=ResourceExhausted} = %v, want 2", got)
	}
}

func TestLogtoMethod(t *testing.T) {
	t.Parallel()
	s := startLogto(t)
	resp, err := http.Get(s.url + logtoSMSPath)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != http.MethodPost {
		t.Errorf("GET = %d Allow %q, want 405 Allow POST", resp.StatusCode, resp.Header.Get("Allow"))
	}
}

package server

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otpd/otpd/otp"
)

// Two hook secrets as Supabase shows them (base64 of 32 bytes).
var (
	supabaseKey1   = []byte("0123456789abcdef0123456789abcdef")
	supabaseKey2   = []byte("fedcba9876543210fedcba9876543210")
	supabaseSecret = "v1,whsec_" + base64.StdEncoding.EncodeToString(supabaseKey1)
	rotatedSecret  = "v1,whsec_" + base64.StdEncoding.EncodeToString(supabaseKey2)
)

func startSupabase(t *testing.T, secrets ...string) *hookServer {
	t.Helper()
	var h Hooks
	h.Supabase.Secrets = secrets
	h.Supabase.IgnoreIPs = []string{"10.0.0.0/8"}
	return startHooks(t, h)
}

// webhook is one signed hook request.
type webhook struct {
	id   string
	ts   time.Time
	keys [][]byte // signatures, one per key, joined as Supabase does
	body string   // what is signed
	sent string   // what is sent, when not body
}

// sign is the Standard Webhooks signature of id.ts.body under key.
func sign(key []byte, id string, ts time.Time, body string) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + strconv.FormatInt(ts.Unix(), 10) + "." + body))
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// supabaseResult is what the hook answered.
type supabaseResult struct {
	status int
	ctype  string
	raw    string
	err    struct {
		HTTPCode int    `json:"http_code"`
		Message  string `json:"message"`
	}
}

func postWebhook(t *testing.T, url, path string, wh webhook) supabaseResult {
	t.Helper()
	sent := wh.body
	if wh.sent != "" {
		sent = wh.sent
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url+path, strings.NewReader(sent))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if wh.id != "" {
		req.Header.Set("webhook-id", wh.id)
		req.Header.Set("webhook-timestamp", strconv.FormatInt(wh.ts.Unix(), 10))
		var sigs []string
		for _, k := range wh.keys {
			sigs = append(sigs, sign(k, wh.id, wh.ts, wh.body))
		}
		req.Header.Set("webhook-signature", strings.Join(sigs, ", "))
	}
	status, header, b := roundTrip(t, req)
	r := supabaseResult{status: status, ctype: header.Get("Content-Type"), raw: string(b)}
	var body struct {
		Error *json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal(b, &body); err != nil {
		t.Fatalf("%s answered %d %q: not JSON: %v", path, status, b, err)
	}
	if body.Error != nil {
		if err := json.Unmarshal(*body.Error, &r.err); err != nil {
			t.Fatalf("%s answered %q: error is not {http_code, message}: %v", path, b, err)
		}
	}
	return r
}

// webhookSeq numbers webhook ids; the tests that sign run in parallel.
var webhookSeq atomic.Int64

// signed is a request signed now with key 1, with a new id.
func signed(body string) webhook {
	seq := webhookSeq.Add(1)
	return webhook{id: "msg_" + strconv.FormatInt(seq, 10) + "_" + strconv.FormatInt(time.Now().UnixNano(), 36), ts: time.Now(), keys: [][]byte{supabaseKey1}, body: body}
}

func smsHook(phone, otpCode, smsType, ip string) string {
	return `{"metadata":{"uuid":"8d6f0d1e-2b35-4c8e-9d2a-1f0e5c3b7a90","time":"2026-11-30T05:00:00Z","name":"send-sms","ip_address":"` + ip + `"},` +
		`"user":{"id":"8484b834-f29e-4af2-bf42-80644d154f76","aud":"authenticated","role":"authenticated","email":"","phone":"` + phone + `",` +
		`"app_metadata":{"provider":"phone","providers":["phone"]},"user_metadata":{},"identities":[],"is_anonymous":false},` +
		`"sms":{"otp":"` + otpCode + `","sms_type":"` + smsType + `","phone":"` + phone + `"}}`
}

func emailHook(email, newEmail, action, token, tokenNew, userMetadata string) string {
	return `{"metadata":{"name":"send-email","ip_address":"10.0.0.4"},` + // ignored: per_ip is 1 per hour
		`"user":{"id":"8484b834-f29e-4af2-bf42-80644d154f76","aud":"authenticated","email":"` + email + `","new_email":"` + newEmail + `","phone":"",` +
		`"app_metadata":{"provider":"email","providers":["email"]},"user_metadata":` + userMetadata + `,"identities":[]},` +
		`"email_data":{"token":"` + token + `","token_hash":"7d5b7b1964cf5d388340a7f04f1dbb5eeb6c7b52ef8270e1737a58d0","redirect_to":"http://localhost:3000/",` +
		`"email_action_type":"` + action + `","site_url":"http://localhost:9999","token_new":"` + tokenNew + `","token_hash_new":"",` +
		`"old_email":"","old_phone":"","provider":"","factor_type":""}}`
}

func TestSupabaseSMSDelivers(t *testing.T) {
	t.Parallel()
	s := startSupabase(t, supabaseSecret)
	r := postWebhook(t, s.url, supabaseSMSPath, signed(smsHook("14155550123", "561166", "confirmation", "203.0.113.9")))
	if r.status != http.StatusOK || r.ctype != "application/json" || r.err.Message != "" {
		t.Fatalf("SMS hook = %d %s %s, want 200 application/json without error", r.status, r.ctype, r.raw)
	}
	sent := s.sms.Sent()
	if len(sent) != 1 {
		t.Fatalf("%d SMS delivered, want 1", len(sent))
	}
	if m := sent[0]; m.Code != "561166" || m.To != "+14155550123" || m.UsageType != otp.SignIn || m.Locale != "en" {
		t.Errorf("delivered %+v, want code 561166 to +14155550123, sign_in, en", m)
	}
	// No token: the signature vouches for the caller.
	if got := s.metric(t, "otpd_rpc_calls_total", map[string]string{"entry": "supabase", "method": "/otp.v1.OtpService/DeliverCode", "code": "OK", "caller": "supabase"}); got != 1 {
		t.Errorf("otpd_rpc_calls_total{entry=supabase,caller=supabase,code=OK} = %v, want 1", got)
	}
	if got := s.metric(t, "otpd_codes_sent_total", map[string]string{"entry": "supabase", "channel": "sms", "result": "ok"}); got != 1 {
		t.Errorf("otpd_codes_sent_total{entry=supabase,ok} = %v, want 1", got)
	}
	if got := s.metric(t, "otpd_auth_failures_total", nil); got != 0 {
		t.Errorf("otpd_auth_failures_total = %v, want 0", got)
	}

	// Same IP at once: per_ip (1 per hour) refuses, as 200 with the
	// error Supabase passes on to its user.
	r = postWebhook(t, s.url, supabaseSMSPath, signed(smsHook("14155550124", "777001", "confirmation", "203.0.113.9")))
	if r.status != http.StatusOK || r.err.HTTPCode != http.StatusTooManyRequests || !strings.HasPrefix(r.err.Message, "Too many codes.") {
		t.Fatalf("second send = %d %s, want 200 with error 429 Too many codes", r.status, r.raw)
	}
	// An ignored backend address is not counted.
	for i := range 2 {
		r = postWebhook(t, s.url, supabaseSMSPath, signed(smsHook("1415555013"+strconv.Itoa(i), "777002", "phone_change", "10.9.8.7")))
		if r.status != http.StatusOK || r.err.Message != "" {
			t.Fatalf("send %d from 10.9.8.7 = %d %s, want 200", i, r.status, r.raw)
		}
	}
	if m := s.sms.Sent()[2]; m.UsageType != otp.BindNewIdentifier {
		t.Errorf("phone_change delivered as %s, want bind_new_identifier", m.UsageType)
	}
	logs := s.logs.String()
	for _, code := range []string{"561166", "777001", "777002"} {
		if strings.Contains(logs, code) || strings.Contains(r.raw, code) {
			t.Errorf("logs or answer carry code %s", code)
		}
	}
}

func TestSupabaseEmailPlans(t *testing.T) {
	t.Parallel()
	s := startSupabase(t, supabaseSecret)
	type sent struct {
		to, code string
		usage    otp.UsageType
		locale   string
	}
	for _, tc := range []struct {
		name string
		body string
		want []sent
	}{
		{"signup", emailHook("jane@example.com", "", "signup", "305805", "", `{"locale":"fr"}`),
			[]sent{{"jane@example.com", "305805", otp.Register, "fr"}}},
		{"magiclink", emailHook("joe@example.com", "", "magiclink", "120001", "", `{"language":"zh-CN"}`),
			[]sent{{"joe@example.com", "120001", otp.SignIn, "zh-CN"}}},
		{"recovery", emailHook("ann@example.com", "", "recovery", "120002", "", `{}`),
			[]sent{{"ann@example.com", "120002", otp.ForgotPassword, "en"}}},
		{"reauthentication", emailHook("bo@example.com", "", "reauthentication", "120003", "", `{"locale":7}`),
			[]sent{{"bo@example.com", "120003", otp.UserPermissionValidation, "en"}}},
		{"email change", emailHook("", "new@example.com", "email_change", "120004", "", `{}`),
			[]sent{{"new@example.com", "120004", otp.BindNewIdentifier, "en"}}},
		// Secure email change: token to the current address, token_new
		// to the new one.
		{"secure email change", emailHook("old@example.com", "new2@example.com", "email_change", "120005", "120006", `{}`),
			[]sent{{"old@example.com", "120005", otp.UserPermissionValidation, "en"}, {"new2@example.com", "120006", otp.BindNewIdentifier, "en"}}},
	} {
		before := len(s.email.Sent())
		r := postWebhook(t, s.url, supabaseEmailPath, signed(tc.body))
		if r.status != http.StatusOK || r.err.Message != "" {
			t.Errorf("%s: %d %s, want 200", tc.name, r.status, r.raw)
			continue
		}
		var got []sent
		for _, m := range s.email.Sent()[before:] {
			got = append(got, sent{m.To, m.Code, m.UsageType, m.Locale})
		}
		if len(got) != len(tc.want) {
			t.Errorf("%s: delivered %+v, want %+v", tc.name, got, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("%s: delivered %+v, want %+v", tc.name, got, tc.want)
			}
		}
	}
}

func TestSupabaseRefusesUnsigned(t *testing.T) {
	t.Parallel()
	s := startSupabase(t, supabaseSecret, rotatedSecret)
	body := smsHook("14155550123", "483920", "confirmation", "")
	good := signed(body)
	tampered := signed(body)
	tampered.sent = strings.Replace(body, "14155550123", "14155550999", 2)
	stale, future := signed(body), signed(body)
	stale.ts = time.Now().Add(-6 * time.Minute)
	future.ts = time.Now().Add(6 * time.Minute)
	wrongKey := signed(body)
	wrongKey.keys = [][]byte{[]byte("not-one-of-the-configured-keys!!")}
	rotated := signed(smsHook("14155550124", "483921", "confirmation", ""))
	rotated.keys = [][]byte{[]byte("not-one-of-the-configured-keys!!"), supabaseKey2} // "v1,a, v1,b"
	for _, tc := range []struct {
		name    string
		wh      webhook
		status  int
		message string
	}{
		{"no headers", webhook{body: body}, http.StatusUnauthorized, "not signed"},
		{"wrong key", wrongKey, http.StatusUnauthorized, "does not match"},
		{"tampered body", tampered, http.StatusUnauthorized, "does not match"},
		{"stale timestamp", stale, http.StatusUnauthorized, "5 minutes"},
		{"future timestamp", future, http.StatusUnauthorized, "5 minutes"},
		{"good", good, http.StatusOK, ""}, // after the refusals: they did not use its id
		{"replayed id", good, http.StatusUnauthorized, "already delivered"},
		{"second secret of a rotation", rotated, http.StatusOK, ""},
	} {
		r := postWebhook(t, s.url, supabaseSMSPath, tc.wh)
		if r.status != tc.status || !strings.Contains(r.err.Message, tc.message) {
			t.Errorf("%s: %d %s, want %d with %q", tc.name, r.status, r.raw, tc.status, tc.message)
		}
		if tc.status != http.StatusOK && r.err.HTTPCode != tc.status {
			t.Errorf("%s: error.http_code %d, want %d", tc.name, r.err.HTTPCode, tc.status)
		}
	}
	if n := len(s.sms.Sent()); n != 2 {
		t.Errorf("%d SMS delivered, want 2 (good and rotated)", n)
	}
	if strings.Contains(s.logs.String(), "483920") {
		t.Error("logs carry the code")
	}
}

// A replay that reaches another instance (its own memory of ids) is
// answered from the first delivery's idempotency record: no second SMS.
func TestSupabaseReplayOnAnotherInstance(t *testing.T) {
	t.Parallel()
	s := startSupabase(t, supabaseSecret)
	wh := signed(smsHook("14155550123", "483920", "confirmation", ""))
	if r := postWebhook(t, s.url, supabaseSMSPath, wh); r.status != http.StatusOK || r.err.Message != "" {
		t.Fatalf("first = %d %s", r.status, r.raw)
	}
	h, err := NewAPIHandler(s.g, s.hooks)
	if err != nil {
		t.Fatal(err)
	}
	other := httptest.NewServer(h)
	t.Cleanup(other.Close)
	if r := postWebhook(t, other.URL, supabaseSMSPath, wh); r.status != http.StatusOK || r.err.Message != "" {
		t.Fatalf("replay on another instance = %d %s, want 200 from the idempotency record", r.status, r.raw)
	}
	if n := len(s.sms.Sent()); n != 1 {
		t.Errorf("%d SMS delivered, want 1", n)
	}
}

func TestSupabaseRefusals(t *testing.T) {
	t.Parallel()
	s := startSupabase(t, supabaseSecret)
	for _, tc := range []struct {
		name, path, body string
		code             int
		message          string
	}{
		{"not JSON", supabaseSMSPath, `{"user":`, http.StatusBadRequest, "not the JSON"},
		{"no code", supabaseSMSPath, smsHook("14155550123", "", "confirmation", ""), http.StatusBadRequest, "The code must be set"},
		{"bad number", supabaseSMSPath, smsHook("12", "483920", "confirmation", ""), http.StatusBadRequest, "The phone number"},
		{"notification", supabaseEmailPath, emailHook("jane@example.com", "", "password_changed_notification", "", "", `{}`), http.StatusUnprocessableEntity, "password_changed_notification"},
		{"unknown action", supabaseEmailPath, emailHook("jane@example.com", "", "nope", "483920", "", `{}`), http.StatusUnprocessableEntity, "Unknown email_action_type"},
		{"no new email", supabaseEmailPath, emailHook("jane@example.com", "", "email_change", "483920", "", `{}`), http.StatusBadRequest, "The email address"},
	} {
		r := postWebhook(t, s.url, tc.path, signed(tc.body))
		if r.status != http.StatusOK || r.err.HTTPCode != tc.code || !strings.Contains(r.err.Message, tc.message) {
			t.Errorf("%s: %d %s, want 200 with error %d %q", tc.name, r.status, r.raw, tc.code, tc.message)
		}
		if strings.Contains(r.raw, "483920") {
			t.Errorf("%s: answer echoes the code", tc.name)
		}
	}
	if n := len(s.sms.Sent()) + len(s.email.Sent()); n != 0 {
		t.Errorf("%d messages delivered, want none", n)
	}
	if got := s.metric(t, "otpd_rpc_calls_total", map[string]string{"entry": "supabase", "code": "InvalidArgument", "caller": "supabase"}); got != 6 {
		t.Errorf("otpd_rpc_calls_total{entry=supabase,code=InvalidArgument} = %v, want 6", got)
	}
}

func TestSupabaseOff(t *testing.T) {
	t.Parallel()
	s := startSupabase(t) // no secrets
	r := postWebhook(t, s.url, supabaseSMSPath, signed(smsHook("14155550123", "483920", "confirmation", "")))
	if r.status != http.StatusNotFound || !strings.Contains(r.err.Message, "hooks.supabase.secrets") {
		t.Fatalf("hook without secrets = %d %s, want 404 naming hooks.supabase.secrets", r.status, r.raw)
	}
	resp, err := http.Get(s.url + supabaseEmailPath)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET = %d, want 405", resp.StatusCode)
	}
}

// The example of the Standard Webhooks specification.
func TestWebhookSignatureVector(t *testing.T) {
	t.Parallel()
	h := &supabaseHook{}
	key, err := parseWebhookSecret("v1,whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	h.keys = [][]byte{key}
	if !h.signed("msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", []byte(`{"test": 2432232314}`), "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=") {
		t.Error("the specification's example does not verify")
	}
	if h.signed("msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265331", []byte(`{"test": 2432232314}`), "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=") {
		t.Error("a changed timestamp verifies")
	}
}

func TestSupabaseConfig(t *testing.T) {
	t.Parallel()
	const secretText = "c2hvcnQ=" // base64("short")
	for _, tc := range []struct {
		secret, want string
	}{
		{"whsec_" + base64.StdEncoding.EncodeToString(supabaseKey1), `must be "v1,whsec_<base64>"`},
		{"v1,whsec_!!!", "is not base64"},
		{"v1,whsec_" + secretText, "is 5 bytes long"},
	} {
		c := DefaultConfig()
		c.Hooks.Supabase.Secrets = []string{supabaseSecret, tc.secret}
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), "hooks.supabase.secrets[1]: ") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("secret %q: %v, want hooks.supabase.secrets[1] %s", tc.secret, err, tc.want)
			continue
		}
		if strings.Contains(err.Error(), secretText) || strings.Contains(err.Error(), "!!!") {
			t.Errorf("error %q quotes the secret", err)
		}
	}
	c := DefaultConfig()
	c.Hooks.Supabase.IgnoreIPs = []string{"nope"}
	c.Hooks.Supabase.Timeout = time.Millisecond
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "hooks.supabase.ignore_ips[0]") || !strings.Contains(err.Error(), "hooks.supabase.timeout") {
		t.Errorf("Validate = %v, want ignore_ips[0] and timeout errors", err)
	}
}

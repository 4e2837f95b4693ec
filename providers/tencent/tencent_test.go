package tencent_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otpd/otpd/otp"
	"github.com/otpd/otpd/providers/providertest"
	"github.com/otpd/otpd/providers/tencent"
)

const (
	providerName = "tencent-cn"
	testKeyID    = "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE"
	testSecret   = "Gu5t9xGARNpq86cd98joQYCN3EXAMPLEKEY"
	testTo       = "+8613800138000"
	testSignName = "Acme"
	testAppID    = "1400000000"
	testRegion   = "ap-guangzhou"
)

// leaks are what no error text, preview or description may hold.
var leaks = []string{providertest.Code, testTo, strings.TrimPrefix(testTo, "+"), testSecret, testKeyID}

func tpl(u, code string) tencent.Template { return tencent.Template{UsageType: u, TemplateCode: code} }

func testConfig(endpoint string, templates ...tencent.Template) tencent.Config {
	return tencent.Config{
		AccessKeyID: testKeyID, AccessKeySecret: testSecret, SignName: testSignName,
		Region: testRegion, SDKAppID: testAppID, Templates: templates, Endpoint: endpoint,
	}
}

func newProvider(tb testing.TB, endpoint string, templates ...tencent.Template) *tencent.Provider {
	tb.Helper()
	if len(templates) == 0 {
		templates = []tencent.Template{tpl("Generic", "1234567")}
	}
	p, err := tencent.New(providerName, testConfig(endpoint, templates...))
	if err != nil {
		tb.Fatalf("tencent.New: %v", err)
	}
	return p
}

// fakeAPI starts a fake Tencent Cloud API that answers every request with
// resp, and a provider that calls it.
func fakeAPI(tb testing.TB, resp providertest.Response, templates ...tencent.Template) (*providertest.Server, *tencent.Provider) {
	tb.Helper()
	s := providertest.NewServer(tb, func(providertest.Request) providertest.Response { return resp })
	return s, newProvider(tb, s.URL, templates...)
}

func smsMessage(u otp.UsageType) otp.Message {
	return providertest.Message(otp.SMS, testTo, u)
}

// sendStatus is one entry of a SendSms answer's SendStatusSet.
type sendStatus struct {
	SerialNo, PhoneNumber  string `json:",omitempty"`
	Fee                    int    `json:",omitempty"`
	SessionContext         string
	Code, Message, IsoCode string `json:",omitempty"`
}

func okStatus(serial string) sendStatus {
	return sendStatus{SerialNo: serial, PhoneNumber: testTo, Fee: 1, Code: "Ok", Message: "send success", IsoCode: "CN"}
}

// statusBody is a SendSms answer with the given SendStatusSet.
func statusBody(tb testing.TB, set ...sendStatus) string {
	tb.Helper()
	return mustJSON(tb, map[string]any{"Response": map[string]any{"SendStatusSet": set, "RequestId": "req-ok"}})
}

// errorBody is a Tencent Cloud API error answer.
func errorBody(tb testing.TB, code, message string) string {
	tb.Helper()
	return mustJSON(tb, map[string]any{"Response": map[string]any{
		"Error": map[string]string{"Code": code, "Message": message}, "RequestId": "req-err",
	}})
}

func mustJSON(tb testing.TB, v any) string {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// verifyTC3 checks r's TC3-HMAC-SHA256 signature for host, recomputed from
// Tencent's documentation rather than the SDK: the credential scope must
// be the UTC date of X-TC-Timestamp, and the signature must cover the
// content type, the host and the body.
func verifyTC3(r providertest.Request, host, keyID, secret string) error {
	ts := r.Header.Get("X-TC-Timestamp")
	unix, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("X-TC-Timestamp %q: %v", ts, err)
	}
	if d := time.Since(time.Unix(unix, 0)); d < -time.Hour || d > time.Hour {
		return fmt.Errorf("X-TC-Timestamp %s is %s away from now", ts, d)
	}
	date := time.Unix(unix, 0).UTC().Format("2006-01-02")
	scope := date + "/sms/tc3_request"
	canonical := "POST\n/\n\n" +
		"content-type:" + r.Header.Get("Content-Type") + "\nhost:" + host + "\n\n" +
		"content-type;host\n" + sha256Hex(string(r.Body))
	toSign := "TC3-HMAC-SHA256\n" + ts + "\n" + scope + "\n" + sha256Hex(canonical)
	key := hmacSHA256(hmacSHA256(hmacSHA256([]byte("TC3"+secret), date), "sms"), "tc3_request")
	want := "TC3-HMAC-SHA256 Credential=" + keyID + "/" + scope +
		", SignedHeaders=content-type;host, Signature=" + hex.EncodeToString(hmacSHA256(key, toSign))
	if got := r.Header.Get("Authorization"); got != want {
		return fmt.Errorf("Authorization = %q, want %q", got, want)
	}
	return nil
}

func TestSendWire(t *testing.T) {
	t.Parallel()
	s, p := fakeAPI(t, providertest.Response{Body: statusBody(t, okStatus("2028:3361234567890123456789"))})

	rc, err := p.Send(t.Context(), smsMessage(otp.SignIn))
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if want := (otp.Receipt{Provider: providerName, MessageID: "2028:3361234567890123456789"}); rc != want {
		t.Errorf("receipt = %+v, want %+v", rc, want)
	}

	r := s.Last(t)
	if r.Method != http.MethodPost || r.Path != "/" || len(r.Query) != 0 {
		t.Errorf("request = %s %s?%s, want POST /", r.Method, r.Path, r.Query.Encode())
	}
	for header, want := range map[string]string{
		"Content-Type":  "application/json",
		"X-TC-Action":   "SendSms",
		"X-TC-Version":  "2021-01-11",
		"X-TC-Region":   testRegion,
		"X-TC-Language": "en-US",
	} {
		if got := r.Header.Get(header); got != want {
			t.Errorf("header %s = %q, want %q", header, got, want)
		}
	}
	if err := verifyTC3(r, s.Host(), testKeyID, testSecret); err != nil {
		t.Errorf("signature: %v", err)
	}

	var body map[string]any
	if err := json.Unmarshal(r.Body, &body); err != nil {
		t.Fatalf("body %s: %v", r.Body, err)
	}
	want := map[string]any{
		"PhoneNumberSet":   []any{testTo},
		"SmsSdkAppId":      testAppID,
		"SignName":         testSignName,
		"TemplateId":       "1234567",
		"TemplateParamSet": []any{providertest.Code},
	}
	if !reflect.DeepEqual(body, want) {
		t.Errorf("body = %v, want exactly %v", body, want)
	}
}

// TestVerifyTC3RejectsTampering makes sure the wire test's signature check
// can fail.
func TestVerifyTC3RejectsTampering(t *testing.T) {
	t.Parallel()
	s, p := fakeAPI(t, providertest.Response{Body: statusBody(t, okStatus("sn-1"))})
	if _, err := p.Send(t.Context(), smsMessage(otp.Register)); err != nil {
		t.Fatalf("Send: %v", err)
	}
	r := s.Last(t)
	if err := verifyTC3(r, s.Host(), testKeyID, testSecret); err != nil {
		t.Fatalf("genuine request rejected: %v", err)
	}
	tampered := r
	tampered.Body = []byte(strings.Replace(string(r.Body), providertest.Code, "000000", 1))
	for name, check := range map[string]func() error{
		"body":   func() error { return verifyTC3(tampered, s.Host(), testKeyID, testSecret) },
		"host":   func() error { return verifyTC3(r, "sms.tencentcloudapi.com", testKeyID, testSecret) },
		"secret": func() error { return verifyTC3(r, s.Host(), testKeyID, testSecret+"x") },
		"key ID": func() error { return verifyTC3(r, s.Host(), "AKIDother", testSecret) },
	} {
		if check() == nil {
			t.Errorf("a request with another %s passed the signature check", name)
		}
	}
}

func TestTemplateChoice(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		templates []tencent.Template
		usage     otp.UsageType
		want      string // TemplateId on the wire; empty when Send must refuse
	}{
		{"own template", []tencent.Template{tpl("Register", "1111"), tpl("Generic", "9999")}, otp.Register, "1111"},
		{"generic fallback", []tencent.Template{tpl("Register", "1111"), tpl("Generic", "9999")}, otp.SignIn, "9999"},
		{"generic itself", []tencent.Template{tpl("Register", "1111"), tpl("Generic", "9999")}, otp.Generic, "9999"},
		{"logto usage type's own template", []tencent.Template{tpl("MfaVerification", "5555"), tpl("Generic", "9999")}, otp.MfaVerification, "5555"},
		{"logto usage type falls back to generic", []tencent.Template{tpl("MfaVerification", "5555"), tpl("Generic", "9999")}, otp.BindMfa, "9999"},
		{"invitation template unused", []tencent.Template{tpl("OrganizationInvitation", "5555"), tpl("Generic", "9999")}, otp.ForgotPassword, "9999"},
		{"no template, no generic", []tencent.Template{tpl("Register", "1111")}, otp.SignIn, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, p := fakeAPI(t, providertest.Response{Body: statusBody(t, okStatus("sn-1"))}, tc.templates...)
			msg := smsMessage(tc.usage)
			_, err := p.Send(t.Context(), msg)
			if tc.want == "" {
				providertest.WantError(t, err, providerName, "no_template", false, leaks...)
				if n := len(s.Requests()); n != 0 {
					t.Errorf("the fake API got %d requests, want none", n)
				}
				return
			}
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			var body struct {
				TemplateID string `json:"TemplateId"`
			}
			r := s.Last(t)
			if err := json.Unmarshal(r.Body, &body); err != nil {
				t.Fatal(err)
			}
			if body.TemplateID != tc.want {
				t.Errorf("TemplateId = %q, want %q", body.TemplateID, tc.want)
			}
			if strings.Contains(string(r.Body), msg.Content.Text) {
				t.Errorf("body %s carries otpd's own text; Tencent sends only its templates", r.Body)
			}
		})
	}
}

// TestSendInvitation checks that an invitation goes out with its own
// template, the link as {1}, and that without one Send refuses it without
// calling Tencent: Generic's {1} is a code.
func TestSendInvitation(t *testing.T) {
	t.Parallel()
	s, p := fakeAPI(t, providertest.Response{Body: statusBody(t, okStatus("sn-1"))}, tpl("Generic", "9999"), tpl("OrganizationInvitation", "7777"))
	msg := providertest.Invitation(otp.SMS, testTo)
	if _, err := p.Send(t.Context(), msg); err != nil {
		t.Fatalf("Send: %v", err)
	}
	var body struct {
		TemplateID       string   `json:"TemplateId"`
		TemplateParamSet []string `json:"TemplateParamSet"`
	}
	if err := json.Unmarshal(s.Last(t).Body, &body); err != nil {
		t.Fatal(err)
	}
	if body.TemplateID != "7777" || !slices.Equal(body.TemplateParamSet, []string{providertest.Link}) {
		t.Errorf("TemplateId %q, TemplateParamSet %q; want 7777 with the link", body.TemplateID, body.TemplateParamSet)
	}
	if got, err := p.Preview(msg); err != nil || !strings.Contains(got, "sms template 7777") || !strings.Contains(got, "auth.example.com") {
		t.Errorf("Preview = %q, %v", got, err)
	}

	s, p = fakeAPI(t, providertest.Response{Body: statusBody(t, okStatus("sn-1"))}, tpl("Generic", "9999"))
	_, err := p.Send(t.Context(), msg)
	providertest.WantError(t, err, providerName, "no_template", false, append(leaks, providertest.Link)...)
	if n := len(s.Requests()); n != 0 {
		t.Errorf("the fake API got %d requests, want none", n)
	}
}

func TestSendErrors(t *testing.T) {
	t.Parallel()
	// Tencent's messages echo what they were given: the error text must
	// hold them masked.
	leaky := fmt.Sprintf("number %s code %s key %s secret %s", testTo, providertest.Code, testKeyID, testSecret)
	html := "<html><body>502 Bad Gateway " + testTo + " " + providertest.Code + "</body></html>"
	for _, tc := range []struct {
		name      string
		resp      func(tb testing.TB) providertest.Response
		reason    string
		retryable bool
	}{
		{"bad number", vendorError("InvalidParameterValue.IncorrectPhoneNumber", leaky), "InvalidParameterValue.IncorrectPhoneNumber", false},
		{"unapproved template", vendorError("FailedOperation.TemplateIncorrectOrUnapproved", leaky), "FailedOperation.TemplateIncorrectOrUnapproved", false},
		{"unapproved signature", vendorError("FailedOperation.SignatureIncorrectOrUnapproved", leaky), "FailedOperation.SignatureIncorrectOrUnapproved", false},
		{"no balance", vendorError("FailedOperation.InsufficientBalanceInSmsPackage", leaky), "FailedOperation.InsufficientBalanceInSmsPackage", false},
		{"bad signature", vendorError("AuthFailure.SignatureFailure", leaky), "AuthFailure.SignatureFailure", false},
		{"unknown key", vendorError("AuthFailure.SecretIdNotFound", leaky), "AuthFailure.SecretIdNotFound", false},
		{"unauthorized", vendorError("UnauthorizedOperation.SmsSdkAppIdVerifyFail", leaky), "UnauthorizedOperation.SmsSdkAppIdVerifyFail", false},
		{"invalid parameter", vendorError("InvalidParameter", leaky), "InvalidParameter", false},
		{"missing parameter", vendorError("MissingParameter", leaky), "MissingParameter", false},
		{"unsupported", vendorError("UnsupportedOperation.ContainDomesticAndInternationalPhoneNumber", leaky), "UnsupportedOperation.ContainDomesticAndInternationalPhoneNumber", false},
		{"frequency limit", vendorError("LimitExceeded.PhoneNumberThirtySecondLimit", leaky), "LimitExceeded.PhoneNumberThirtySecondLimit", false},
		{"api rate limit", vendorError("RequestLimitExceeded", leaky), "RequestLimitExceeded", true},
		{"api rate limit per ip", vendorError("RequestLimitExceeded.IPLimitExceeded", leaky), "RequestLimitExceeded.IPLimitExceeded", true},
		{"internal error", vendorError("InternalError", leaky), "InternalError", true},
		{"internal timeout", vendorError("InternalError.Timeout", leaky), "InternalError.Timeout", true},
		{"unknown code", vendorError("ResourceNotFound.Whatever", leaky), "ResourceNotFound.Whatever", false},
		{"error with 500 status", func(tb testing.TB) providertest.Response {
			return providertest.Response{Status: 500, Body: errorBody(tb, "InternalError.OtherError", leaky)}
		}, "InternalError.OtherError", true},
		{"number failed", numberStatus(sendStatus{PhoneNumber: testTo, Code: "InvalidParameterValue.IncorrectPhoneNumber", Message: leaky}), "InvalidParameterValue.IncorrectPhoneNumber", false},
		{"number over daily limit", numberStatus(sendStatus{PhoneNumber: testTo, Code: "LimitExceeded.PhoneNumberDailyLimit", Message: leaky}), "LimitExceeded.PhoneNumberDailyLimit", false},
		{"number blacklisted", numberStatus(sendStatus{PhoneNumber: testTo, Code: "FailedOperation.PhoneNumberInBlacklist", Message: leaky}), "FailedOperation.PhoneNumberInBlacklist", false},
		{"second entry failed", numberStatus(okStatus("sn-1"), sendStatus{PhoneNumber: testTo, Code: "FailedOperation.ContainSensitiveWord", Message: leaky}), "FailedOperation.ContainSensitiveWord", false},
		{"empty status set", numberStatus(), "bad_response", true},
		{"entry without code", numberStatus(sendStatus{SerialNo: "sn-1", PhoneNumber: testTo}), "bad_response", true},
		{"ok without serial", numberStatus(sendStatus{PhoneNumber: testTo, Code: "Ok"}), "bad_response", true},
		{"no Response object", fixed(200, `{"RequestId":"x"}`), "bad_response", true},
		{"non-JSON 502", fixed(502, html), "ClientError.ParseJsonError", true},
		{"JSON 503 without error", fixed(503, `{"message":"busy"}`), "http_503", true},
		{"JSON 400 without error", fixed(400, `{"message":"bad"}`), "http_400", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, p := fakeAPI(t, tc.resp(t))
			rc, err := p.Send(t.Context(), smsMessage(otp.SignIn))
			providertest.WantError(t, err, providerName, tc.reason, tc.retryable, leaks...)
			if rc != (otp.Receipt{}) {
				t.Errorf("failed send gave receipt %+v", rc)
			}
			// One request: the SDK must not retry on its own.
			if n := len(s.Requests()); n != 1 {
				t.Errorf("the fake API got %d requests, want 1", n)
			}
		})
	}
}

func vendorError(code, message string) func(testing.TB) providertest.Response {
	return func(tb testing.TB) providertest.Response {
		return providertest.Response{Body: errorBody(tb, code, message)}
	}
}

func numberStatus(set ...sendStatus) func(testing.TB) providertest.Response {
	return func(tb testing.TB) providertest.Response {
		return providertest.Response{Body: statusBody(tb, set...)}
	}
}

func fixed(status int, body string) func(testing.TB) providertest.Response {
	return func(testing.TB) providertest.Response {
		return providertest.Response{Status: status, Header: map[string]string{"Content-Type": "text/html"}, Body: body}
	}
}

func TestVendorMessageQuotedMasked(t *testing.T) {
	t.Parallel()
	msg := fmt.Sprintf("phone number %s is not valid", testTo)
	_, p := fakeAPI(t, providertest.Response{Body: errorBody(t, "InvalidParameterValue.IncorrectPhoneNumber", msg)})
	_, err := p.Send(t.Context(), smsMessage(otp.SignIn))
	if err == nil {
		t.Fatal("Send succeeded")
	}
	if want := "phone number +86********000 is not valid"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not quote Tencent's message masked as %q", err, want)
	}
	if !strings.Contains(err.Error(), "req-err") {
		t.Errorf("error %q lacks Tencent's RequestId", err)
	}
}

func TestSendTransportFailures(t *testing.T) {
	t.Parallel()
	t.Run("connection refused", func(t *testing.T) {
		t.Parallel()
		s := providertest.NewServer(t, nil)
		url := s.URL
		s.Close()
		p := newProvider(t, url)
		_, err := p.Send(t.Context(), smsMessage(otp.SignIn))
		providertest.WantError(t, err, providerName, "transport", true, leaks...)
	})
	t.Run("deadline", func(t *testing.T) {
		t.Parallel()
		_, p := fakeAPI(t, providertest.Response{Delay: time.Minute, Body: statusBody(t, okStatus("late"))})
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
	})
	t.Run("deadline while reading the body", func(t *testing.T) {
		t.Parallel()
		// Headers at once, then a body that never ends: the SDK reports the
		// cut-short read as a JSON parse error.
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"Response":{"SendStatusSet":[`)
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}))
		t.Cleanup(s.Close)
		p := newProvider(t, s.URL)
		ctx := providertest.Deadline(t, 300*time.Millisecond)
		start := time.Now()
		_, err := p.Send(ctx, smsMessage(otp.SignIn))
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("Send returned after %s, want soon after its 300ms deadline", d)
		}
		providertest.WantError(t, err, providerName, "timeout", true, leaks...)
	})
	t.Run("context already canceled", func(t *testing.T) {
		t.Parallel()
		s, p := fakeAPI(t, providertest.Response{Body: statusBody(t, okStatus("sn-1"))})
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := p.Send(ctx, smsMessage(otp.SignIn))
		providertest.WantError(t, err, providerName, "canceled", true, leaks...)
		if n := len(s.Requests()); n != 0 {
			t.Errorf("the fake API got %d requests, want none", n)
		}
	})
	t.Run("email", func(t *testing.T) {
		t.Parallel()
		s, p := fakeAPI(t, providertest.Response{Body: statusBody(t, okStatus("sn-1"))})
		_, err := p.Send(t.Context(), providertest.Message(otp.Email, "john@example.com", otp.SignIn))
		providertest.WantError(t, err, providerName, "unsupported_channel", false, leaks...)
		if n := len(s.Requests()); n != 0 {
			t.Errorf("the fake API got %d requests, want none", n)
		}
	})
}

// TestConcurrentSends checks that sends share the client but not their
// requests: each answer matches its own code.
func TestConcurrentSends(t *testing.T) {
	t.Parallel()
	s := providertest.NewServer(t, func(r providertest.Request) providertest.Response {
		var body struct{ TemplateParamSet []string }
		if err := json.Unmarshal(r.Body, &body); err != nil || len(body.TemplateParamSet) != 1 {
			return providertest.Response{Status: 400, Body: errorBody(t, "InvalidParameter", "bad body")}
		}
		return providertest.Response{Body: statusBody(t, okStatus("sn-"+body.TemplateParamSet[0]))}
	})
	p := newProvider(t, s.URL)
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			msg := smsMessage(otp.SignIn)
			msg.Code = strconv.Itoa(100000 + i)
			rc, err := p.Send(t.Context(), msg)
			if err != nil || rc.MessageID != "sn-"+msg.Code {
				t.Errorf("send of code %s = %+v, %v; want message ID sn-%s", msg.Code, rc, err, msg.Code)
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
	for _, tc := range []struct {
		name      string
		templates []tencent.Template
		serves    []otp.UsageType
	}{
		{"generic serves all", []tencent.Template{tpl("Generic", "1")}, otp.UsageTypes},
		{"one usage type", []tencent.Template{tpl("Register", "1")}, []otp.UsageType{otp.Register}},
		{"two plus a logto usage type and the invitation", []tencent.Template{tpl("SignIn", "1"), tpl("ForgotPassword", "2"), tpl("BindMfa", "3"), tpl("OrganizationInvitation", "4")},
			[]otp.UsageType{otp.SignIn, otp.ForgotPassword, otp.BindMfa, otp.OrganizationInvitation}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := newProvider(t, "", tc.templates...)
			// Generic never serves an invitation: its {1} is a code.
			if u := otp.OrganizationInvitation; !slices.Contains(tc.serves, u) {
				if err := p.CanServe(u); err == nil || !strings.Contains(err.Error(), "templateCode for OrganizationInvitation, whose {1} receives the link") {
					t.Errorf("CanServe(%s) = %v, want an error asking for its own templateCode", u, err)
				}
			} else if err := p.CanServe(u); err != nil {
				t.Errorf("CanServe(%s) = %v, want nil", u, err)
			}
			for _, u := range otp.UsageTypes {
				err := p.CanServe(u)
				want := false
				for _, s := range tc.serves {
					want = want || s == u
				}
				switch {
				case want && err != nil:
					t.Errorf("CanServe(%s) = %v, want nil", u, err)
				case !want && (err == nil || !strings.Contains(err.Error(), "templateCode for "+string(u)+" or Generic")):
					t.Errorf("CanServe(%s) = %v, want an error asking for a templateCode for %s or Generic", u, err, u)
				}
			}
		})
	}
}

func TestPreview(t *testing.T) {
	t.Parallel()
	p := newProvider(t, "", tpl("Register", "1111"), tpl("Generic", "1234567"))
	for _, tc := range []struct {
		usage otp.UsageType
		want  string
	}{
		{otp.Register, `sms template 1111 sign "Acme" app 1400000000 region ap-guangzhou params ["482915"]`},
		{otp.SignIn, `sms template 1234567 sign "Acme" app 1400000000 region ap-guangzhou params ["482915"]`},
	} {
		got, err := p.Preview(smsMessage(tc.usage))
		if err != nil || got != tc.want {
			t.Errorf("Preview(%s) = %q, %v; want %q", tc.usage, got, err, tc.want)
		}
		providertest.NoLeak(t, got, testSecret, testKeyID, testTo)
	}

	only := newProvider(t, "", tpl("Register", "1111"))
	if _, err := only.Preview(smsMessage(otp.SignIn)); err == nil {
		t.Error("Preview of a usage type without a template succeeded")
	}
}

func TestDescribe(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		endpoint string
		want     string
	}{
		{"", `accessKeyId AK******************************MPLE, signName "Acme", sdkAppId 1400000000, region ap-guangzhou, ` +
			`endpoint https://sms.tencentcloudapi.com, templates Register=1111 Generic=1234567 OrganizationInvitation=42`},
		{"http://127.0.0.1:8080/", `accessKeyId AK******************************MPLE, signName "Acme", sdkAppId 1400000000, region ap-guangzhou, ` +
			`endpoint http://127.0.0.1:8080, templates Register=1111 Generic=1234567 OrganizationInvitation=42`},
	} {
		p := newProvider(t, tc.endpoint, tpl("Generic", "1234567"), tpl("OrganizationInvitation", "42"), tpl("Register", "1111"))
		got := p.Describe()
		if got != tc.want {
			t.Errorf("Describe() =\n%s\nwant\n%s", got, tc.want)
		}
		providertest.NoLeak(t, got, testSecret, testKeyID)
	}
}

package service_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"

	"github.com/otpd/otpd/otp"
	otpv1 "github.com/otpd/otpd/proto/otp/v1"
	"github.com/otpd/otpd/service"
)

var mfa = otpv1.UsageType_USAGE_TYPE_MFA_VERIFICATION

// deliver calls DeliverCode and returns its answer and the message the
// providers got.
func (h *harness) deliver(tb testing.TB, req *otpv1.DeliverCodeRequest) (*otpv1.DeliverCodeResponse, otp.Message) {
	tb.Helper()
	before := len(h.primary.Sent()) + len(h.secondary.Sent())
	resp, err := h.client.DeliverCode(context.Background(), req)
	if err != nil {
		tb.Fatalf("DeliverCode(%s): %v", req.GetRecipient(), err)
	}
	sent := append(h.primary.Sent(), h.secondary.Sent()...)
	if len(sent) != before+1 {
		tb.Fatalf("DeliverCode delivered %d messages, want 1", len(sent)-before)
	}
	for _, m := range sent {
		if m.VerificationID == resp.GetVerificationId() {
			return resp, m
		}
	}
	tb.Fatalf("no delivered message has verification id %s", resp.GetVerificationId())
	return nil, otp.Message{}
}

// wantQuota checks that err is RESOURCE_EXHAUSTED naming limit.
func wantQuota(tb testing.TB, err error, limit string) {
	tb.Helper()
	q := detail[*errdetails.QuotaFailure](tb, wantStatus(tb, err, codes.ResourceExhausted))
	if got := q.GetViolations()[0].GetSubject(); got != limit {
		tb.Fatalf("QuotaFailure names %s, want %s", got, limit)
	}
}

// TestDeliverCode checks that the caller's code goes out in the rendered
// message of every channel, with the answer SendCode gives less the
// expiry, and that nothing verifiable stays behind: VerifyCode finds no
// live code and Redis holds no code hash, no code and no recipient.
func TestDeliverCode(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	const smsCode, mailCode = "Ab3dE9", "482915"
	resp, msg := h.deliver(t, &otpv1.DeliverCodeRequest{Recipient: phone, UsageType: mfa, Code: smsCode, ClientIp: "203.0.113.9", IdempotencyKey: "logto-1"})
	if resp.GetProvider() != "primary" || resp.GetChannel() != otpv1.Channel_CHANNEL_SMS || resp.GetVerificationId() == "" ||
		!resp.GetResendAfter().AsTime().Equal(h.clock.Now().Add(service.DefaultLimits().ResendInterval).Truncate(time.Nanosecond)) {
		t.Errorf("DeliverCode = %v", resp)
	}
	if msg.Code != smsCode || !strings.Contains(msg.Content.Text, smsCode) || msg.UsageType != otp.MfaVerification {
		t.Errorf("delivered %+v, want the caller's code %s in a MfaVerification message", msg, smsCode)
	}
	_, msg = h.deliver(t, &otpv1.DeliverCodeRequest{Recipient: email, UsageType: otpv1.UsageType_USAGE_TYPE_BIND_MFA, Code: mailCode, Locale: "fr"})
	if !strings.Contains(msg.Content.Subject, mailCode) || !strings.Contains(msg.Content.HTML, mailCode) || msg.Locale != "fr" {
		t.Errorf("delivered %+v, want the caller's code %s in a French email", msg, mailCode)
	}

	h.wantVerify(t, email, otpv1.UsageType_USAGE_TYPE_BIND_MFA, mailCode, otpv1.VerifyResult_VERIFY_RESULT_EXPIRED, "verify a delivered code")
	ctx := context.Background()
	keys := h.rdb.Keys(ctx, "*").Val()
	if len(keys) == 0 {
		t.Fatal("redis holds no keys: the deliveries took no limits")
	}
	for _, k := range keys {
		if h.rdb.Type(ctx, k).Val() == "hash" && h.rdb.HExists(ctx, k, "h").Val() {
			t.Errorf("redis key %s holds a code hash after deliveries only", k)
		}
	}
	for _, item := range dumpRedis(t, h.rdb) {
		for _, s := range []string{smsCode, mailCode, strings.TrimPrefix(phone, "+"), "jane.doe"} {
			if strings.Contains(strings.ToLower(item), strings.ToLower(s)) {
				t.Errorf("redis item %q contains plaintext %q", item, s)
			}
		}
	}
	for _, s := range []string{smsCode, mailCode} {
		if strings.Contains(h.logs.String(), s) {
			t.Errorf("logs contain the delivered code %s", s)
		}
	}
	if got := counter(t, h.reg, "otpd_codes_sent_total", map[string]string{"entry": "grpc", "channel": "sms", "provider": "primary", "usage_type": "mfa_verification", "result": "ok"}); got != 1 {
		t.Errorf("otpd_codes_sent_total{sms, mfa_verification, ok} = %v, want 1", got)
	}
	if got := counter(t, h.reg, "otpd_codes_sent_total", map[string]string{"entry": "grpc", "channel": "email", "provider": "primary", "usage_type": "bind_mfa", "result": "ok"}); got != 1 {
		t.Errorf("otpd_codes_sent_total{email, bind_mfa, ok} = %v, want 1", got)
	}
}

// TestDeliverCodeBadInput checks that a code that is not 4 to 10
// characters of [0-9A-Za-z], or a request SendCode would refuse, is
// INVALID_ARGUMENT with a BadRequest naming the field, and sends nothing.
func TestDeliverCodeBadInput(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	for _, tc := range []struct {
		name  string
		req   *otpv1.DeliverCodeRequest
		field string
	}{
		{"no code", &otpv1.DeliverCodeRequest{Recipient: phone, UsageType: signIn}, "code"},
		{"too short", &otpv1.DeliverCodeRequest{Recipient: phone, UsageType: signIn, Code: "123"}, "code"},
		{"too long", &otpv1.DeliverCodeRequest{Recipient: phone, UsageType: signIn, Code: "12345678901"}, "code"},
		{"blank", &otpv1.DeliverCodeRequest{Recipient: phone, UsageType: signIn, Code: "123 456"}, "code"},
		{"punctuation", &otpv1.DeliverCodeRequest{Recipient: phone, UsageType: signIn, Code: "123-456"}, "code"},
		{"placeholder", &otpv1.DeliverCodeRequest{Recipient: phone, UsageType: signIn, Code: "{{code}}"}, "code"},
		{"non-ASCII letters", &otpv1.DeliverCodeRequest{Recipient: phone, UsageType: signIn, Code: "ÄÖÜ123"}, "code"},
		{"full-width digits", &otpv1.DeliverCodeRequest{Recipient: phone, UsageType: signIn, Code: "１２３４５６"}, "code"},
		{"no usage type", &otpv1.DeliverCodeRequest{Recipient: phone, Code: "123456"}, "usage_type"},
		{"bad recipient", &otpv1.DeliverCodeRequest{Recipient: "14155550123", UsageType: signIn, Code: "123456"}, "recipient"},
		{"bad client IP", &otpv1.DeliverCodeRequest{Recipient: phone, UsageType: signIn, Code: "123456", ClientIp: "x"}, "client_ip"},
	} {
		_, err := h.client.DeliverCode(context.Background(), tc.req)
		br := detail[*errdetails.BadRequest](t, wantStatus(t, err, codes.InvalidArgument))
		if got := br.GetFieldViolations()[0].GetField(); got != tc.field {
			t.Errorf("%s: BadRequest names %s, want %s", tc.name, got, tc.field)
		}
	}
	if n := h.primary.Calls() + h.secondary.Calls(); n != 0 {
		t.Fatalf("bad requests reached the providers %d times", n)
	}
	// The edges are accepted.
	h.deliver(t, &otpv1.DeliverCodeRequest{Recipient: phone, UsageType: signIn, Code: "0aZ9"})
	h.deliver(t, &otpv1.DeliverCodeRequest{Recipient: phone, UsageType: forgot, Code: "zZ01234567"})
}

// TestDeliverCodeLimitedLikeSendCode checks that DeliverCode and SendCode
// share the cooldown, the per-recipient window and the per-IP window.
func TestDeliverCodeLimitedLikeSendCode(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	del := func(h *harness, to string, u otpv1.UsageType, ip string) error {
		_, err := h.client.DeliverCode(ctx, &otpv1.DeliverCodeRequest{Recipient: to, UsageType: u, Code: "123456", ClientIp: ip})
		return err
	}
	t.Run("cooldown", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, nil)
		if err := del(h, phone, mfa, ""); err != nil {
			t.Fatal(err)
		}
		wantQuota(t, del(h, phone, mfa, ""), "resend_interval")
		_, err := h.client.SendCode(ctx, &otpv1.SendCodeRequest{Recipient: phone, UsageType: mfa})
		wantQuota(t, err, "resend_interval")
		if err := del(h, phone, signIn, ""); err != nil {
			t.Fatalf("another usage type: %v", err)
		}
		h.send(t, email, signIn)
		wantQuota(t, del(h, email, signIn, ""), "resend_interval")
		h.clock.Advance(service.DefaultLimits().ResendInterval + time.Second)
		if err := del(h, phone, mfa, ""); err != nil {
			t.Fatalf("after the cooldown: %v", err)
		}
	})
	t.Run("per_recipient", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, func(c *service.Config) { c.Limits.PerRecipient = service.Window{Count: 3, Window: 10 * time.Minute} })
		h.send(t, phone, signIn)
		for _, u := range []otpv1.UsageType{mfa, forgot} {
			if err := del(h, phone, u, ""); err != nil {
				t.Fatal(err)
			}
		}
		wantQuota(t, del(h, phone, otpv1.UsageType_USAGE_TYPE_BIND_NEW_IDENTIFIER, ""), "per_recipient")
		_, err := h.client.SendCode(ctx, &otpv1.SendCodeRequest{Recipient: phone, UsageType: otpv1.UsageType_USAGE_TYPE_REGISTER})
		wantQuota(t, err, "per_recipient")
	})
	t.Run("per_ip", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, func(c *service.Config) { c.Limits.PerIP = service.Window{Count: 2, Window: time.Hour} })
		if _, err := h.client.SendCode(ctx, &otpv1.SendCodeRequest{Recipient: "a@example.com", UsageType: signIn, ClientIp: "198.51.100.7"}); err != nil {
			t.Fatal(err)
		}
		if err := del(h, "b@example.com", signIn, "198.51.100.7"); err != nil {
			t.Fatal(err)
		}
		wantQuota(t, del(h, "c@example.com", signIn, "198.51.100.7"), "per_ip")
		if err := del(h, "c@example.com", signIn, "198.51.100.8"); err != nil {
			t.Fatalf("another IP: %v", err)
		}
		if got := counter(t, h.reg, "otpd_rate_limited_total", map[string]string{"limit": "per_ip"}); got != 1 {
			t.Errorf("otpd_rate_limited_total{per_ip} = %v, want 1", got)
		}
	})
}

// TestDeliverCodeKeepsLiveCode checks that a delivery for a recipient and
// usage type with a live code from SendCode leaves that code alone: it
// still verifies, and the delivered code does not.
func TestDeliverCodeKeepsLiveCode(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	_, code := h.send(t, phone, signIn)
	h.clock.Advance(service.DefaultLimits().ResendInterval + time.Second)
	delivered := wrongCode(code)
	h.deliver(t, &otpv1.DeliverCodeRequest{Recipient: phone, UsageType: signIn, Code: delivered})
	h.wantVerify(t, phone, signIn, delivered, otpv1.VerifyResult_VERIFY_RESULT_MISMATCH, "the delivered code")
	h.wantVerify(t, phone, signIn, code, otpv1.VerifyResult_VERIFY_RESULT_OK, "the code SendCode sent before the delivery")
}

// TestDeliverCodeIdempotent checks that a retry with the same idempotency
// key answers the first answer and sends nothing, and that the key cannot
// be reused for a SendCode.
func TestDeliverCodeIdempotent(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	ctx := context.Background()
	req := &otpv1.DeliverCodeRequest{Recipient: phone, UsageType: mfa, Code: "123456", IdempotencyKey: "logto-42"}
	first, _ := h.deliver(t, req)
	again, err := h.client.DeliverCode(ctx, req)
	if err != nil {
		t.Fatalf("retry with the same key: %v", err)
	}
	if again.GetVerificationId() != first.GetVerificationId() || again.GetProvider() != first.GetProvider() ||
		!again.GetResendAfter().AsTime().Equal(first.GetResendAfter().AsTime()) {
		t.Fatalf("retry answered %v, want the first answer %v", again, first)
	}
	if c := h.primary.Calls(); c != 1 {
		t.Fatalf("provider called %d times, want 1", c)
	}
	if got := counter(t, h.reg, "otpd_codes_sent_total", map[string]string{"entry": "grpc", "channel": "sms", "provider": "primary", "usage_type": "mfa_verification", "result": "replayed"}); got != 1 {
		t.Errorf("otpd_codes_sent_total{replayed} = %v, want 1", got)
	}
	_, err = h.client.SendCode(ctx, &otpv1.SendCodeRequest{Recipient: phone, UsageType: mfa, IdempotencyKey: "logto-42"})
	br := detail[*errdetails.BadRequest](t, wantStatus(t, err, codes.InvalidArgument))
	if br.GetFieldViolations()[0].GetField() != "idempotency_key" {
		t.Fatalf("SendCode with a DeliverCode's key: BadRequest = %v", br)
	}
}

// TestDeliverCodeFailedDelivery checks that a delivery that failed on
// every provider is UNAVAILABLE, counted, and holds nobody back: the retry
// goes through at once.
func TestDeliverCodeFailedDelivery(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	ctx := context.Background()
	req := &otpv1.DeliverCodeRequest{Recipient: phone, UsageType: mfa, Code: "654321"}
	h.primary.SetMode("transient")
	h.secondary.SetMode("transient")
	_, err := h.client.DeliverCode(ctx, req)
	wantStatus(t, err, codes.Unavailable)
	if got := counter(t, h.reg, "otpd_codes_sent_total", map[string]string{"entry": "grpc", "channel": "sms", "provider": "secondary", "usage_type": "mfa_verification", "result": "transient_error"}); got != 1 {
		t.Errorf("otpd_codes_sent_total{transient_error} = %v, want 1", got)
	}
	h.primary.SetMode("ok")
	h.secondary.SetMode("ok")
	if _, msg := h.deliver(t, req); msg.Code != "654321" {
		t.Fatalf("retry delivered %q", msg.Code)
	}
}

package service_test

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/otpd/otpd/internal/promtest"
	otpv1 "github.com/otpd/otpd/proto/otp/v1"
	"github.com/otpd/otpd/service"
)

// keepPrevious configures code.keep_previous n, and no cooldown or
// per-recipient window, so that a test can resend at once.
func keepPrevious(n int) func(*service.Config) {
	return func(c *service.Config) {
		c.Code.KeepPrevious = n
		c.Limits.ResendInterval = 0
		c.Limits.PerRecipient = service.Window{}
	}
}

// closeTo reports whether two times are set and at most a second apart:
// the store keeps Redis's clock, in milliseconds, moved by the service's
// offset, so its times are the service's within a call's latency.
func closeTo(got, want *timestamppb.Timestamp) bool {
	if got == nil || want == nil {
		return false
	}
	d := got.AsTime().Sub(want.AsTime())
	return d > -time.Second && d < time.Second
}

func (h *harness) status(tb testing.TB, to string, u otpv1.UsageType) *otpv1.GetCodeStatusResponse {
	tb.Helper()
	resp, err := h.client.GetCodeStatus(context.Background(), &otpv1.GetCodeStatusRequest{Recipient: to, UsageType: u})
	if err != nil {
		tb.Fatalf("GetCodeStatus: %v", err)
	}
	return resp
}

func (h *harness) cancel(tb testing.TB, to string, u otpv1.UsageType) bool {
	tb.Helper()
	resp, err := h.client.CancelCode(context.Background(), &otpv1.CancelCodeRequest{Recipient: to, UsageType: u})
	if err != nil {
		tb.Fatalf("CancelCode: %v", err)
	}
	return resp.GetCancelled()
}

// Slow mail plus a "resend" click: with keep_previous the code of the
// first message still verifies, once, and consumes the newer ones.
func TestKeepPreviousSlowMail(t *testing.T) {
	t.Parallel()
	h := newHarness(t, keepPrevious(2))
	_, first := h.send(t, email, signIn)
	_, second := h.send(t, email, signIn)
	_, third := h.send(t, email, signIn)
	if st := h.status(t, email, signIn); !st.GetLive() || st.GetValidCodes() != 3 {
		t.Fatalf("status after 3 sends = %v, want live with 3 valid codes", st)
	}
	if got := h.verify(t, email, signIn, first).GetResult(); got != otpv1.VerifyResult_VERIFY_RESULT_OK {
		t.Fatalf("first code after two resends: %v, want OK", got)
	}
	for _, c := range []string{first, second, third} {
		if got := h.verify(t, email, signIn, c).GetResult(); got != otpv1.VerifyResult_VERIFY_RESULT_EXPIRED {
			t.Fatalf("a code of the consumed set: %v, want EXPIRED", got)
		}
	}
	// Without keep_previous, the resend replaces the code.
	h = newHarness(t, keepPrevious(0))
	_, first = h.send(t, phone, signIn)
	h.send(t, phone, signIn)
	if got := h.verify(t, phone, signIn, first).GetResult(); got != otpv1.VerifyResult_VERIFY_RESULT_MISMATCH {
		t.Fatalf("replaced code: %v, want MISMATCH", got)
	}
}

// The attempt counter is shared by the kept codes and a resend does not
// reset it: wrong codes before and after a resend add up. Once it is used
// up, the user's next resend starts afresh and works.
func TestKeepPreviousAttemptsAcrossResend(t *testing.T) {
	t.Parallel()
	h := newHarness(t, keepPrevious(2))
	_, first := h.send(t, phone, signIn)
	for range 4 {
		h.verify(t, phone, signIn, wrongCode(first))
	}
	_, second := h.send(t, phone, signIn)
	if st := h.status(t, phone, signIn); st.GetAttemptsRemaining() != 1 || st.GetValidCodes() != 2 {
		t.Fatalf("status after 4 wrong codes and a resend = %v, want 1 attempt left, 2 valid codes", st)
	}
	bad := "0000000"[:len(second)]
	if bad == first || bad == second {
		bad = "9999999"[:len(second)]
	}
	if res := h.verify(t, phone, signIn, bad); res.GetResult() != otpv1.VerifyResult_VERIFY_RESULT_MISMATCH || res.GetAttemptsRemaining() != 0 {
		t.Fatalf("fifth wrong code = %v, want MISMATCH with 0 left", res)
	}
	if got := h.verify(t, phone, signIn, second).GetResult(); got != otpv1.VerifyResult_VERIFY_RESULT_TOO_MANY_ATTEMPTS {
		t.Fatalf("right code after 5 wrong ones across a resend: %v, want TOO_MANY_ATTEMPTS", got)
	}
	_, third := h.send(t, phone, signIn)
	if st := h.status(t, phone, signIn); st.GetAttemptsRemaining() != 5 || st.GetValidCodes() != 1 {
		t.Fatalf("status of the resend after the attempts ran out = %v, want 5 attempts, 1 valid code", st)
	}
	if got := h.verify(t, phone, signIn, third).GetResult(); got != otpv1.VerifyResult_VERIFY_RESULT_OK {
		t.Fatalf("code of the resend after the attempts ran out: %v, want OK", got)
	}
}

// A resend whose delivery fails everywhere leaves the earlier codes valid.
func TestKeepPreviousFailedResend(t *testing.T) {
	t.Parallel()
	h := newHarness(t, keepPrevious(2))
	_, first := h.send(t, phone, signIn)
	h.primary.SetMode("transient")
	h.secondary.SetMode("transient")
	if _, err := h.client.SendCode(context.Background(), &otpv1.SendCodeRequest{Recipient: phone, UsageType: signIn}); err == nil {
		t.Fatal("SendCode with every provider failing: no error")
	}
	h.primary.SetMode("ok")
	h.secondary.SetMode("ok")
	if st := h.status(t, phone, signIn); !st.GetLive() || st.GetValidCodes() != 1 {
		t.Fatalf("status after a failed resend = %v, want the first code live alone", st)
	}
	if got := h.verify(t, phone, signIn, first).GetResult(); got != otpv1.VerifyResult_VERIFY_RESULT_OK {
		t.Fatalf("first code after a failed resend: %v, want OK", got)
	}
}

// 200 verifications at once through gRPC, each of one of the five valid
// codes (keep_previous 4): exactly one OK, the rest EXPIRED.
func TestConcurrentVerifyOfKeptCodes(t *testing.T) {
	t.Parallel()
	h := newHarness(t, keepPrevious(4))
	var valid []string
	for range 5 {
		_, c := h.send(t, email, signIn)
		valid = append(valid, c)
	}
	const n = 200
	var ok, expired atomic.Int64
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			resp, err := h.client.VerifyCode(context.Background(), &otpv1.VerifyCodeRequest{Recipient: email, UsageType: signIn, Code: valid[i%len(valid)]})
			switch {
			case err != nil:
				t.Errorf("VerifyCode: %v", err)
			case resp.GetResult() == otpv1.VerifyResult_VERIFY_RESULT_OK:
				ok.Add(1)
			case resp.GetResult() == otpv1.VerifyResult_VERIFY_RESULT_EXPIRED:
				expired.Add(1)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 1 || expired.Load() != n-1 {
		t.Fatalf("%d parallel verifies of 5 valid codes: %d OK, %d EXPIRED; want exactly 1 OK", n, ok.Load(), expired.Load())
	}
}

// CancelCode kills the live code and every kept one, says whether there was
// one, is idempotent, leaves the cooldown, and is counted.
func TestCancelCode(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *service.Config) { c.Code.KeepPrevious = 1 })
	resp, code := h.send(t, phone, signIn)
	_, other := h.send(t, phone, forgot)
	if !h.cancel(t, phone, signIn) {
		t.Fatal("CancelCode of a live code: cancelled false")
	}
	if h.cancel(t, phone, signIn) {
		t.Fatal("second CancelCode: cancelled true")
	}
	if got := h.verify(t, phone, signIn, code).GetResult(); got != otpv1.VerifyResult_VERIFY_RESULT_EXPIRED {
		t.Fatalf("cancelled code: %v, want EXPIRED", got)
	}
	st := h.status(t, phone, signIn)
	if st.GetLive() || !closeTo(st.GetResendAfter(), resp.GetResendAfter()) {
		t.Fatalf("status after a cancel = %v, want not live, the send's resend_after %v", st, resp.GetResendAfter())
	}
	_, err := h.client.SendCode(context.Background(), &otpv1.SendCodeRequest{Recipient: phone, UsageType: signIn})
	wantStatus(t, err, codes.ResourceExhausted)
	// Another usage type's code stays.
	if got := h.verify(t, phone, forgot, other).GetResult(); got != otpv1.VerifyResult_VERIFY_RESULT_OK {
		t.Fatalf("code of another usage type after a cancel: %v, want OK", got)
	}
	if got := promtest.Sum(t, h.reg, "otpd_codes_cancelled_total", map[string]string{"usage_type": "sign_in"}); got != 1 {
		t.Fatalf("otpd_codes_cancelled_total{usage_type=sign_in} = %v, want 1", got)
	}
}

// GetCodeStatus answers what SendCode answered (expiry, cooldown), the
// attempts left, and counts nothing.
func TestGetCodeStatus(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	st := h.status(t, email, signIn)
	if st.GetLive() || st.GetExpiresAt() != nil || st.GetResendAfter() != nil || st.GetValidCodes() != 0 {
		t.Fatalf("status without a code = %v, want empty", st)
	}
	resp, code := h.send(t, email, signIn)
	for range 30 {
		st = h.status(t, email, signIn)
	}
	if !st.GetLive() || st.GetAttemptsRemaining() != 5 || st.GetValidCodes() != 1 ||
		!closeTo(st.GetExpiresAt(), resp.GetExpiresAt()) || !closeTo(st.GetResendAfter(), resp.GetResendAfter()) {
		t.Fatalf("status = %v, want live, 5 attempts, 1 code, expiry %v, resend after %v", st, resp.GetExpiresAt(), resp.GetResendAfter())
	}
	if res := h.verify(t, email, signIn, wrongCode(code)); res.GetAttemptsRemaining() != 4 {
		t.Fatalf("wrong code after 30 status calls: %d attempts left, want 4 (status counts nothing)", res.GetAttemptsRemaining())
	}
	if st = h.status(t, email, signIn); st.GetAttemptsRemaining() != 4 {
		t.Fatalf("status after a wrong code: %d attempts left, want 4", st.GetAttemptsRemaining())
	}
	h.clock.Advance(61 * time.Second)
	if st = h.status(t, email, signIn); !st.GetLive() || st.GetResendAfter() != nil {
		t.Fatalf("status after the cooldown = %v, want live without resend_after", st)
	}
	h.verify(t, email, signIn, code)
	if st = h.status(t, email, signIn); st.GetLive() || st.GetAttemptsRemaining() != 0 || st.GetExpiresAt() != nil {
		t.Fatalf("status of a used code = %v, want not live", st)
	}
}

// CancelCode and GetCodeStatus validate recipient, channel and usage type
// exactly as VerifyCode does.
func TestLifecycleValidation(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	for _, tc := range []struct {
		name      string
		recipient string
		channel   otpv1.Channel
		usage     otpv1.UsageType
	}{
		{"empty", "", 0, 0},
		{"bad phone", "+1", 0, signIn},
		{"email on sms", email, otpv1.Channel_CHANNEL_SMS, signIn},
		{"no usage", phone, 0, 0},
		{"invitation", email, 0, otpv1.UsageType_USAGE_TYPE_ORGANIZATION_INVITATION},
		{"zero width", "ja\u200bne@example.com", 0, signIn},
	} {
		_, verr := h.client.VerifyCode(context.Background(), &otpv1.VerifyCodeRequest{Recipient: tc.recipient, Channel: tc.channel, UsageType: tc.usage, Code: "123456"})
		_, cerr := h.client.CancelCode(context.Background(), &otpv1.CancelCodeRequest{Recipient: tc.recipient, Channel: tc.channel, UsageType: tc.usage})
		_, serr := h.client.GetCodeStatus(context.Background(), &otpv1.GetCodeStatusRequest{Recipient: tc.recipient, Channel: tc.channel, UsageType: tc.usage})
		want := detail[*errdetails.BadRequest](t, wantStatus(t, verr, codes.InvalidArgument))
		for name, err := range map[string]error{"CancelCode": cerr, "GetCodeStatus": serr} {
			got := detail[*errdetails.BadRequest](t, wantStatus(t, err, codes.InvalidArgument))
			if !proto.Equal(got, want) {
				t.Errorf("%s: %s violations = %v, want VerifyCode's %v", tc.name, name, got, want)
			}
		}
	}
}

// Sends and cancels of one recipient race: every call succeeds, and the
// state stays consistent: at most 1 + keep_previous codes, and after one
// more send exactly that set verifies, once.
func TestParallelCancelsAndSends(t *testing.T) {
	t.Parallel()
	h := newHarness(t, keepPrevious(2))
	const n = 40
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			var err error
			if i%2 == 0 {
				_, err = h.client.CancelCode(context.Background(), &otpv1.CancelCodeRequest{Recipient: phone, UsageType: signIn})
			} else {
				_, err = h.client.SendCode(context.Background(), &otpv1.SendCodeRequest{Recipient: phone, UsageType: signIn})
			}
			if err != nil {
				t.Errorf("call %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if st := h.status(t, phone, signIn); st.GetValidCodes() > 3 || st.GetLive() != (st.GetValidCodes() > 0) {
		t.Fatalf("status after racing sends and cancels = %v", st)
	}
	_, code := h.send(t, phone, signIn)
	if got := h.verify(t, phone, signIn, code).GetResult(); got != otpv1.VerifyResult_VERIFY_RESULT_OK {
		t.Fatalf("code after the race: %v, want OK", got)
	}
	if st := h.status(t, phone, signIn); st.GetLive() {
		t.Fatalf("status after the OK = %v, want not live", st)
	}
}

// code.keep_previous is bounded, and the error names the key.
func TestKeepPreviousValidated(t *testing.T) {
	t.Parallel()
	for _, n := range []int{-1, service.MaxKeepPrevious + 1} {
		cfg := service.DefaultConfig()
		cfg.Secret = "0123456789abcdef0123456789abcdef-test"
		cfg.Code.KeepPrevious = n
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "code.keep_previous") {
			t.Errorf("keep_previous %d: %v, want an error naming code.keep_previous", n, err)
		}
	}
	cfg := service.DefaultConfig()
	cfg.Secret = "0123456789abcdef0123456789abcdef-test"
	cfg.Code.KeepPrevious = service.MaxKeepPrevious
	if err := cfg.Validate(); err != nil {
		t.Errorf("keep_previous %d: %v", service.MaxKeepPrevious, err)
	}
}

package client_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/otpd/otpd/client"
	otpv1 "github.com/otpd/otpd/proto/otp/v1"
)

// CancelCode and GetCodeStatus against the real service, with the token
// over the unix socket.
func TestCancelAndStatus(t *testing.T) {
	t.Parallel()
	svc, p := realService(t)
	c, err := client.New(serve(t, svc), client.WithToken(token))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const to = "+14155550123"
	u := otpv1.UsageType_USAGE_TYPE_SIGN_IN
	if _, err := c.SendCode(ctx, &otpv1.SendCodeRequest{Recipient: to, UsageType: u}); err != nil {
		t.Fatalf("SendCode: %v", err)
	}
	st, err := c.GetCodeStatus(ctx, &otpv1.GetCodeStatusRequest{Recipient: to, UsageType: u})
	if err != nil || !st.GetLive() || st.GetResendAfter() == nil {
		t.Fatalf("GetCodeStatus = %v, %v; want live with a resend_after", st, err)
	}
	if res, err := c.CancelCode(ctx, &otpv1.CancelCodeRequest{Recipient: to, UsageType: u}); err != nil || !res.GetCancelled() {
		t.Fatalf("CancelCode = %v, %v; want cancelled", res, err)
	}
	v, err := c.VerifyCode(ctx, &otpv1.VerifyCodeRequest{Recipient: to, UsageType: u, Code: p.Sent()[0].Code})
	if err != nil || v.GetResult() != otpv1.VerifyResult_VERIFY_RESULT_EXPIRED {
		t.Fatalf("VerifyCode of the cancelled code = %v, %v; want EXPIRED", v, err)
	}
}

// lifecycleScripted answers CancelCode and GetCodeStatus with the next
// error of its script, then success, counting calls.
type lifecycleScripted struct {
	otpv1.UnimplementedOtpServiceServer
	mu     sync.Mutex
	script []error
	calls  int
}

func (s *lifecycleScripted) next() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if len(s.script) > 0 {
		err := s.script[0]
		s.script = s.script[1:]
		return err
	}
	return nil
}

func (s *lifecycleScripted) CancelCode(context.Context, *otpv1.CancelCodeRequest) (*otpv1.CancelCodeResponse, error) {
	if err := s.next(); err != nil {
		return nil, err
	}
	return &otpv1.CancelCodeResponse{Cancelled: true}, nil
}

func (s *lifecycleScripted) GetCodeStatus(context.Context, *otpv1.GetCodeStatusRequest) (*otpv1.GetCodeStatusResponse, error) {
	if err := s.next(); err != nil {
		return nil, err
	}
	return &otpv1.GetCodeStatusResponse{Live: true}, nil
}

// Both retry as VerifyCode does: UNAVAILABLE after its RetryInfo, a rate
// limit or bad input never.
func TestLifecycleRetries(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		script []error
		want   codes.Code
		calls  int
	}{
		{"unavailable then ok", []error{withRetry(codes.Unavailable, 20*time.Millisecond)}, codes.OK, 2},
		{"rate limit is the user's", []error{withRetry(codes.ResourceExhausted, 20*time.Millisecond)}, codes.ResourceExhausted, 1},
		{"bad input is not retried", []error{status.Error(codes.InvalidArgument, "bad")}, codes.InvalidArgument, 1},
	} {
		for _, method := range []string{"CancelCode", "GetCodeStatus"} {
			t.Run(method+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				s := &lifecycleScripted{script: tc.script}
				c, err := client.New(serve(t, s), client.WithToken(token))
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if method == "CancelCode" {
					_, err = c.CancelCode(ctx, &otpv1.CancelCodeRequest{Recipient: "+14155550123", UsageType: otpv1.UsageType_USAGE_TYPE_SIGN_IN})
				} else {
					_, err = c.GetCodeStatus(ctx, &otpv1.GetCodeStatusRequest{Recipient: "+14155550123", UsageType: otpv1.UsageType_USAGE_TYPE_SIGN_IN})
				}
				if status.Code(err) != tc.want {
					t.Fatalf("%s: %v, want %v", method, err, tc.want)
				}
				s.mu.Lock()
				defer s.mu.Unlock()
				if s.calls != tc.calls {
					t.Fatalf("%d calls, want %d", s.calls, tc.calls)
				}
			})
		}
	}
}

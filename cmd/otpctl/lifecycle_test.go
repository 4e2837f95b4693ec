package main

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	otpv1 "github.com/otpd/otpd/proto/otp/v1"
)

// lifecycleOtpd is a fakeOtpd that also answers CancelCode and
// GetCodeStatus, recording what it is asked.
type lifecycleOtpd struct {
	fakeOtpd
	lmu      sync.Mutex
	cancels  []*otpv1.CancelCodeRequest
	statuses []*otpv1.GetCodeStatusRequest
}

func (f *lifecycleOtpd) CancelCode(_ context.Context, req *otpv1.CancelCodeRequest) (*otpv1.CancelCodeResponse, error) {
	f.lmu.Lock()
	f.cancels = append(f.cancels, proto.Clone(req).(*otpv1.CancelCodeRequest))
	f.lmu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	return &otpv1.CancelCodeResponse{Cancelled: true}, nil
}

func (f *lifecycleOtpd) GetCodeStatus(_ context.Context, req *otpv1.GetCodeStatusRequest) (*otpv1.GetCodeStatusResponse, error) {
	f.lmu.Lock()
	f.statuses = append(f.statuses, proto.Clone(req).(*otpv1.GetCodeStatusRequest))
	f.lmu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	return &otpv1.GetCodeStatusResponse{
		Live: true, ExpiresAt: timestamppb.New(at.Add(10 * time.Minute)), AttemptsRemaining: 4,
		ResendAfter: timestamppb.New(at.Add(time.Minute)), ValidCodes: 2,
	}, nil
}

// startLifecycleServer serves f on a unix socket and returns the -addr
// to reach it.
func startLifecycleServer(tb testing.TB, f *lifecycleOtpd) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "otpd.sock")
	lis, err := net.Listen("unix", path)
	if err != nil {
		tb.Fatal(err)
	}
	srv := grpc.NewServer()
	otpv1.RegisterOtpServiceServer(srv, f)
	go func() { _ = srv.Serve(lis) }()
	tb.Cleanup(srv.Stop)
	return "unix://" + path
}

func TestStatusAndCancel(t *testing.T) {
	t.Parallel()
	f := &lifecycleOtpd{}
	srv := startLifecycleServer(t, f)

	code, stdout, stderr := otpctl(t, "-addr", srv, "status", "-to", "jane@example.com", "-usage", "sign-in", "-channel", "email")
	if code != 0 {
		t.Fatalf("status: exit %d; stderr:\n%s", code, stderr)
	}
	wantFields(t, stdout, map[string]any{"live": true, "attemptsRemaining": 4, "validCodes": 2,
		"expiresAt": "2030-01-02T03:14:05Z", "resendAfter": "2030-01-02T03:05:05Z"})
	code, stdout, stderr = otpctl(t, "-addr", srv, "cancel", "-to", "+14155550123", "-usage", "forgot-password")
	if code != 0 {
		t.Fatalf("cancel: exit %d; stderr:\n%s", code, stderr)
	}
	wantFields(t, stdout, map[string]any{"cancelled": true})
	f.lmu.Lock()
	defer f.lmu.Unlock()
	wantStatus := &otpv1.GetCodeStatusRequest{Recipient: "jane@example.com", Channel: otpv1.Channel_CHANNEL_EMAIL, UsageType: otpv1.UsageType_USAGE_TYPE_SIGN_IN}
	wantCancel := &otpv1.CancelCodeRequest{Recipient: "+14155550123", UsageType: otpv1.UsageType_USAGE_TYPE_FORGOT_PASSWORD}
	if len(f.statuses) != 1 || !proto.Equal(f.statuses[0], wantStatus) {
		t.Errorf("status requests %v, want %v", f.statuses, wantStatus)
	}
	if len(f.cancels) != 1 || !proto.Equal(f.cancels[0], wantCancel) {
		t.Errorf("cancel requests %v, want %v", f.cancels, wantCancel)
	}
}

func TestStatusAndCancelErrors(t *testing.T) {
	t.Parallel()
	f := &lifecycleOtpd{fakeOtpd: fakeOtpd{err: statusWith(t, codes.Unauthenticated, "missing bearer token")}}
	srv := startLifecycleServer(t, f)
	for _, cmd := range []string{"status", "cancel"} {
		code, _, stderr := otpctl(t, "-addr", srv, cmd, "-to", "+14155550123", "-usage", "sign-in")
		if code != 1 || !strings.Contains(stderr, "Unauthenticated") {
			t.Errorf("%s refused: exit %d, stderr %q; want 1 and the code", cmd, code, stderr)
		}
		code, _, stderr = otpctl(t, "-addr", srv, cmd, "-to", "+14155550123", "-usage", "login")
		if code != 2 || !strings.Contains(stderr, "-usage must be") {
			t.Errorf("%s with a bad usage: exit %d, stderr %q; want 2", cmd, code, stderr)
		}
		code, _, stderr = otpctl(t, "-addr", srv, cmd, "-to", "+14155550123", "-usage", "sign-in", "extra")
		if code != 2 || !strings.Contains(stderr, `unexpected argument "extra"`) {
			t.Errorf("%s with an extra argument: exit %d, stderr %q; want 2", cmd, code, stderr)
		}
	}
}

package client_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/otpd/otpd/client"
	"github.com/otpd/otpd/internal/grpcauth"
	"github.com/otpd/otpd/internal/server"
	otpv1 "github.com/otpd/otpd/proto/otp/v1"
	"github.com/otpd/otpd/providers/fake"
	"github.com/otpd/otpd/service"
	"github.com/otpd/otpd/service/servicetest"
)

const token = "sidecar-token-5f0c1d"

// serve runs svc behind otpd's own gRPC server and caller auth (one
// token) on a unix socket, as in the sidecar layout, and returns its
// target.
func serve(tb testing.TB, svc otpv1.OtpServiceServer) string {
	tb.Helper()
	sock := filepath.Join(tb.TempDir(), "otpd.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		tb.Fatal(err)
	}
	return serveOn(tb, svc, lis)
}

// serveOn is serve on a listener of the test's choice; it returns the
// target to dial.
func serveOn(tb testing.TB, svc otpv1.OtpServiceServer, lis net.Listener) string {
	tb.Helper()
	sum := sha256.Sum256([]byte(token))
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := prometheus.NewRegistry()
	auth := grpcauth.New(grpcauth.Config{Tokens: []grpcauth.Token{{Name: "auth-server", SHA256: hex.EncodeToString(sum[:])}}}, nil, reg, log)
	g := server.NewGRPC(server.DefaultConfig().Listen, svc, auth, nil, reg, log)
	go func() { _ = g.Server.Serve(lis) }()
	tb.Cleanup(g.Server.Stop)
	if lis.Addr().Network() == "unix" {
		return "unix://" + lis.Addr().String()
	}
	return lis.Addr().String()
}

// realService is otpd's service on the in-memory store, delivering to a
// fake provider whose messages the test reads.
func realService(tb testing.TB) (*service.Service, *fake.Provider) {
	tb.Helper()
	return servicetest.New(tb, nil)
}

// The sidecar recipe: a token over a unix socket without TLS, which plain
// grpc-go refuses to send (it needs transport security for per-call
// credentials); the client uses local credentials.
func TestTokenOverUnixSocket(t *testing.T) {
	t.Parallel()
	svc, p := realService(t)
	target := serve(t, svc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	c, err := client.New(target, client.WithToken(token))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := &otpv1.SendCodeRequest{Recipient: "+14155550123", UsageType: otpv1.UsageType_USAGE_TYPE_SIGN_IN}
	if _, err := c.SendCode(ctx, req); err != nil {
		t.Fatalf("SendCode: %v", err)
	}
	if req.GetIdempotencyKey() == "" {
		t.Error("SendCode sent no idempotency key")
	}
	sent := p.Sent()
	if len(sent) != 1 {
		t.Fatalf("%d messages delivered, want 1", len(sent))
	}
	v, err := c.VerifyCode(ctx, &otpv1.VerifyCodeRequest{Recipient: "+14155550123", UsageType: otpv1.UsageType_USAGE_TYPE_SIGN_IN, Code: sent[0].Code})
	if err != nil || v.GetResult() != otpv1.VerifyResult_VERIFY_RESULT_OK {
		t.Fatalf("VerifyCode = %v, %v; want OK", v, err)
	}

	// A caller's own code, delivered: it reaches the provider as given.
	d := &otpv1.DeliverCodeRequest{Recipient: "+14155550125", UsageType: otpv1.UsageType_USAGE_TYPE_MFA_VERIFICATION, Code: "A1b2C3"}
	if _, err := c.DeliverCode(ctx, d); err != nil {
		t.Fatalf("DeliverCode: %v", err)
	}
	if d.GetIdempotencyKey() == "" {
		t.Error("DeliverCode sent no idempotency key")
	}
	if sent := p.Sent(); len(sent) != 2 || sent[1].Code != "A1b2C3" {
		t.Fatalf("delivered %+v, want a second message with the caller's code", sent)
	}

	// A wrong token is refused, not retried.
	bad, err := client.New(target, client.WithToken("not-the-token"))
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	if _, err := bad.SendCode(ctx, &otpv1.SendCodeRequest{Recipient: "+14155550124", UsageType: otpv1.UsageType_USAGE_TYPE_SIGN_IN}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("wrong token: %v, want UNAUTHENTICATED", err)
	}
}

// scripted answers each SendCode with the next error of its script (then
// success) and records the idempotency keys it saw.
type scripted struct {
	otpv1.UnimplementedOtpServiceServer
	mu     sync.Mutex
	script []error
	keys   []string
}

func (s *scripted) SendCode(_ context.Context, req *otpv1.SendCodeRequest) (*otpv1.SendCodeResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = append(s.keys, req.GetIdempotencyKey())
	if len(s.script) > 0 {
		err := s.script[0]
		s.script = s.script[1:]
		return nil, err
	}
	return &otpv1.SendCodeResponse{Provider: "scripted"}, nil
}

func withRetry(c codes.Code, after time.Duration) error {
	st, _ := status.New(c, "not now").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(after)})
	return st.Err()
}

func TestRetries(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		script   []error
		opts     []client.Option
		deadline time.Duration
		want     codes.Code
		calls    int
	}{
		{"unavailable then ok", []error{withRetry(codes.Unavailable, 20*time.Millisecond)}, nil, 5 * time.Second, codes.OK, 2},
		{"send in flight then ok", []error{withRetry(codes.Aborted, 20*time.Millisecond)}, nil, 5 * time.Second, codes.OK, 2},
		{"rate limit is the user's", []error{withRetry(codes.ResourceExhausted, 20*time.Millisecond)}, nil, 5 * time.Second, codes.ResourceExhausted, 1},
		{"bad input is not retried", []error{status.Error(codes.InvalidArgument, "bad")}, nil, 5 * time.Second, codes.InvalidArgument, 1},
		{"attempts run out", []error{withRetry(codes.Unavailable, time.Millisecond), withRetry(codes.Unavailable, time.Millisecond), withRetry(codes.Unavailable, time.Millisecond)}, nil, 5 * time.Second, codes.Unavailable, 3},
		{"retries off", []error{withRetry(codes.Unavailable, time.Millisecond)}, []client.Option{client.WithRetries(1, time.Second)}, 5 * time.Second, codes.Unavailable, 1},
		{"delay beyond the deadline", []error{withRetry(codes.Unavailable, 3*time.Second)}, nil, time.Second, codes.Unavailable, 1},
		{"delay beyond maxWait", []error{withRetry(codes.Unavailable, 10*time.Second)}, nil, time.Minute, codes.Unavailable, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := &scripted{script: tc.script}
			c, err := client.New(serve(t, s), append([]client.Option{client.WithToken(token)}, tc.opts...)...)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), tc.deadline)
			defer cancel()
			_, err = c.SendCode(ctx, &otpv1.SendCodeRequest{Recipient: "+14155550123", UsageType: otpv1.UsageType_USAGE_TYPE_SIGN_IN})
			if status.Code(err) != tc.want {
				t.Fatalf("SendCode: %v, want %v", err, tc.want)
			}
			s.mu.Lock()
			defer s.mu.Unlock()
			if len(s.keys) != tc.calls {
				t.Fatalf("%d calls, want %d", len(s.keys), tc.calls)
			}
			for _, k := range s.keys {
				if k == "" || k != s.keys[0] {
					t.Fatalf("idempotency keys %q: every retry must carry the first call's key", s.keys)
				}
			}
		})
	}
}

// Plaintext to a remote address needs WithInsecure: local credentials
// refuse it, so a token never crosses a network in clear by accident.
func TestPlaintextRemoteNeedsInsecure(t *testing.T) {
	t.Parallel()
	ip := nonLoopback(t)
	svc, _ := realService(t)
	lis, err := net.Listen("tcp", net.JoinHostPort(ip.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	target := serveOn(t, svc, lis)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := &otpv1.VerifyCodeRequest{Recipient: "+14155550123", UsageType: otpv1.UsageType_USAGE_TYPE_SIGN_IN, Code: "123456"}

	c, err := client.New(target, client.WithToken(token), client.WithRetries(1, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.VerifyCode(ctx, req); status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "local") {
		t.Fatalf("plaintext to %s without WithInsecure: %v, want UNAVAILABLE from local credentials", target, err)
	}
	open, err := client.New(target, client.WithToken(token), client.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	if v, err := open.VerifyCode(ctx, req); err != nil || v.GetResult() != otpv1.VerifyResult_VERIFY_RESULT_EXPIRED {
		t.Fatalf("with WithInsecure: %v, %v; want EXPIRED", v, err)
	}
}

// nonLoopback returns an IPv4 address of this machine that is not
// loopback, or skips the test on a machine that has none.
func nonLoopback(t *testing.T) net.IP {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() {
			return n.IP
		}
	}
	t.Skip("this machine has no non-loopback IPv4 address to test a remote target with")
	return nil
}

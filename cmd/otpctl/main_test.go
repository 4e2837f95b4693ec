package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/otpd/otpd/internal/devcerts"
	"github.com/otpd/otpd/internal/grpcauth"
	otpv1 "github.com/otpd/otpd/proto/otp/v1"
)

// fakeOtpd is an OtpService that records what it is asked and answers with
// canned responses or a canned error.
type fakeOtpd struct {
	otpv1.UnimplementedOtpServiceServer

	sendResp   *otpv1.SendCodeResponse
	verifyResp *otpv1.VerifyCodeResponse
	err        error // returned by every call when set

	mu       sync.Mutex
	sends    []*otpv1.SendCodeRequest
	verifies []*otpv1.VerifyCodeRequest
}

func (f *fakeOtpd) SendCode(_ context.Context, req *otpv1.SendCodeRequest) (*otpv1.SendCodeResponse, error) {
	f.mu.Lock()
	f.sends = append(f.sends, proto.Clone(req).(*otpv1.SendCodeRequest))
	f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	return f.sendResp, nil
}

func (f *fakeOtpd) VerifyCode(_ context.Context, req *otpv1.VerifyCodeRequest) (*otpv1.VerifyCodeResponse, error) {
	f.mu.Lock()
	f.verifies = append(f.verifies, proto.Clone(req).(*otpv1.VerifyCodeRequest))
	f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	return f.verifyResp, nil
}

func (f *fakeOtpd) calls() (sends []*otpv1.SendCodeRequest, verifies []*otpv1.VerifyCodeRequest) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append(sends, f.sends...), append(verifies, f.verifies...)
}

// sampleSendResponse is what the fake answers a successful SendCode with.
func sampleSendResponse() *otpv1.SendCodeResponse {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	return &otpv1.SendCodeResponse{
		VerificationId: "vid-123",
		Channel:        otpv1.Channel_CHANNEL_SMS,
		Provider:       "twilio",
		ExpiresAt:      timestamppb.New(now.Add(10 * time.Minute)),
		ResendAfter:    timestamppb.New(now.Add(time.Minute)),
	}
}

// server is a running fake otpd.
type server struct {
	addr   string // as otpctl's -addr takes it
	otp    *fakeOtpd
	health *health.Server
}

// startServer serves otp on a unix socket in a temporary directory
// ("unix") or on a TCP port of 127.0.0.1 ("tcp"), with grpc.health.v1.
func startServer(tb testing.TB, transport string, otp *fakeOtpd) *server {
	tb.Helper()
	var (
		lis  net.Listener
		addr string
		err  error
	)
	switch transport {
	case "unix":
		path := filepath.Join(tb.TempDir(), "otpd.sock")
		lis, err = net.Listen("unix", path)
		addr = "unix://" + path
	case "tcp":
		lis, err = net.Listen("tcp", "127.0.0.1:0")
		if err == nil {
			addr = lis.Addr().String()
		}
	default:
		tb.Fatalf("unknown transport %q", transport)
	}
	if err != nil {
		tb.Fatalf("listen %s: %v", transport, err)
	}
	if otp.sendResp == nil {
		otp.sendResp = sampleSendResponse()
	}
	if otp.verifyResp == nil {
		otp.verifyResp = &otpv1.VerifyCodeResponse{Result: otpv1.VerifyResult_VERIFY_RESULT_OK}
	}
	hs := health.NewServer()
	srv := grpc.NewServer()
	otpv1.RegisterOtpServiceServer(srv, otp)
	healthpb.RegisterHealthServer(srv, hs)
	go func() { _ = srv.Serve(lis) }()
	tb.Cleanup(srv.Stop)
	return &server{addr: addr, otp: otp, health: hs}
}

// otpctl runs the command line and returns its exit code and output.
func otpctl(tb testing.TB, args ...string) (code int, stdout, stderr string) {
	tb.Helper()
	var out, errOut bytes.Buffer
	code = run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// jsonFields decodes what otpctl printed on stdout. protojson output is
// deliberately unstable in its spacing, so it is compared decoded.
func jsonFields(tb testing.TB, stdout string) map[string]any {
	tb.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(stdout), &m); err != nil {
		tb.Fatalf("stdout is not a JSON object: %v\n%s", err, stdout)
	}
	return m
}

// wantFields fails unless the JSON on stdout has every field of want, with
// the same value as printed by fmt.
func wantFields(tb testing.TB, stdout string, want map[string]any) {
	tb.Helper()
	got := jsonFields(tb, stdout)
	for k, v := range want {
		if fmt.Sprint(got[k]) != fmt.Sprint(v) {
			tb.Errorf("stdout field %q = %v, want %v:\n%s", k, got[k], v, stdout)
		}
	}
}

var transports = []string{"unix", "tcp"}

func TestSendRequestFields(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want *otpv1.SendCodeRequest
	}{
		{
			name: "register by sms",
			args: []string{"-to", "+14155550123", "-usage", "register", "-channel", "sms"},
			want: &otpv1.SendCodeRequest{Recipient: "+14155550123", UsageType: otpv1.UsageType_USAGE_TYPE_REGISTER, Channel: otpv1.Channel_CHANNEL_SMS},
		},
		{
			name: "sign-in with channel inferred",
			args: []string{"-to", "+8613800138000", "-usage", "sign-in"},
			want: &otpv1.SendCodeRequest{Recipient: "+8613800138000", UsageType: otpv1.UsageType_USAGE_TYPE_SIGN_IN},
		},
		{
			name: "signin",
			args: []string{"-to", "+8613800138000", "-usage", "signin"},
			want: &otpv1.SendCodeRequest{Recipient: "+8613800138000", UsageType: otpv1.UsageType_USAGE_TYPE_SIGN_IN},
		},
		{
			name: "forgot-password by email with every option",
			args: []string{"-to", "jane@example.com", "-usage", "forgot-password", "-channel", "email",
				"-locale", "zh-Hans-CN", "-ip", "203.0.113.9", "-idempotency-key", "req-42"},
			want: &otpv1.SendCodeRequest{
				Recipient: "jane@example.com", UsageType: otpv1.UsageType_USAGE_TYPE_FORGOT_PASSWORD, Channel: otpv1.Channel_CHANNEL_EMAIL,
				Locale: "zh-Hans-CN", ClientIp: "203.0.113.9", IdempotencyKey: "req-42",
			},
		},
		{
			name: "forgotpassword",
			args: []string{"-to", "jane@example.com", "-usage", "forgotpassword"},
			want: &otpv1.SendCodeRequest{Recipient: "jane@example.com", UsageType: otpv1.UsageType_USAGE_TYPE_FORGOT_PASSWORD},
		},
		{
			name: "generic in capitals",
			args: []string{"-to", "+442071838750", "-usage", "GENERIC", "-channel", "SMS", "-ip", "2001:db8::1"},
			want: &otpv1.SendCodeRequest{Recipient: "+442071838750", UsageType: otpv1.UsageType_USAGE_TYPE_GENERIC, Channel: otpv1.Channel_CHANNEL_SMS, ClientIp: "2001:db8::1"},
		},
	}
	for _, transport := range transports {
		for _, tt := range tests {
			t.Run(transport+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				srv := startServer(t, transport, &fakeOtpd{})
				code, stdout, stderr := otpctl(t, append([]string{"-addr", srv.addr, "send"}, tt.args...)...)
				if code != 0 {
					t.Fatalf("exit %d, want 0; stderr:\n%s", code, stderr)
				}
				if stderr != "" {
					t.Errorf("stderr is not empty:\n%s", stderr)
				}
				sends, verifies := srv.otp.calls()
				if len(sends) != 1 || len(verifies) != 0 {
					t.Fatalf("server got %d sends and %d verifies, want one send", len(sends), len(verifies))
				}
				if !proto.Equal(sends[0], tt.want) {
					t.Errorf("request:\n got %v\nwant %v", sends[0], tt.want)
				}
				wantFields(t, stdout, map[string]any{"verificationId": "vid-123", "provider": "twilio", "channel": "CHANNEL_SMS"})
				var got otpv1.SendCodeResponse
				if err := protojson.Unmarshal([]byte(stdout), &got); err != nil {
					t.Fatalf("stdout is not a SendCodeResponse in JSON: %v\n%s", err, stdout)
				}
				if !proto.Equal(&got, srv.otp.sendResp) {
					t.Errorf("printed response:\n got %v\nwant %v", &got, srv.otp.sendResp)
				}
			})
		}
	}
}

func TestVerify(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		args     []string
		resp     *otpv1.VerifyCodeResponse
		want     *otpv1.VerifyCodeRequest
		wantJSON map[string]any
	}{
		{
			name:     "ok",
			args:     []string{"-to", "+14155550123", "-usage", "sign-in", "-code", "123456"},
			resp:     &otpv1.VerifyCodeResponse{Result: otpv1.VerifyResult_VERIFY_RESULT_OK},
			want:     &otpv1.VerifyCodeRequest{Recipient: "+14155550123", UsageType: otpv1.UsageType_USAGE_TYPE_SIGN_IN, Code: "123456"},
			wantJSON: map[string]any{"result": "VERIFY_RESULT_OK", "attemptsRemaining": 0},
		},
		{
			name: "mismatch with every option",
			args: []string{"-to", "jane@example.com", "-usage", "register", "-code", "000000", "-channel", "email", "-ip", "198.51.100.7"},
			resp: &otpv1.VerifyCodeResponse{Result: otpv1.VerifyResult_VERIFY_RESULT_MISMATCH, AttemptsRemaining: 3},
			want: &otpv1.VerifyCodeRequest{
				Recipient: "jane@example.com", UsageType: otpv1.UsageType_USAGE_TYPE_REGISTER, Code: "000000",
				Channel: otpv1.Channel_CHANNEL_EMAIL, ClientIp: "198.51.100.7",
			},
			wantJSON: map[string]any{"result": "VERIFY_RESULT_MISMATCH", "attemptsRemaining": 3},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := startServer(t, "unix", &fakeOtpd{verifyResp: tt.resp})
			code, stdout, stderr := otpctl(t, append([]string{"-addr", srv.addr, "verify"}, tt.args...)...)
			if code != 0 {
				t.Fatalf("exit %d, want 0; stderr:\n%s", code, stderr)
			}
			_, verifies := srv.otp.calls()
			if len(verifies) != 1 || !proto.Equal(verifies[0], tt.want) {
				t.Errorf("server got %v, want one %v", verifies, tt.want)
			}
			wantFields(t, stdout, tt.wantJSON)
		})
	}
}

// statusWith builds a gRPC status error with details.
func statusWith(tb testing.TB, c codes.Code, msg string, details ...protoadapt.MessageV1) error {
	tb.Helper()
	st, err := status.New(c, msg).WithDetails(details...)
	if err != nil {
		tb.Fatalf("status details: %v", err)
	}
	return st.Err()
}

func TestErrorsExitOne(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		err     func(tb testing.TB) error
		command []string
		want    []string // lines of stderr, in order
	}{
		{
			name: "bad request",
			err: func(tb testing.TB) error {
				return statusWith(tb, codes.InvalidArgument, "invalid request: recipient is not a valid phone number (and 1 more)",
					&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
						{Field: "recipient", Description: "is not a valid phone number"},
						{Field: "client_ip", Description: "is not an IP address"},
					}})
			},
			command: []string{"send", "-to", "+1000", "-usage", "sign-in", "-ip", "nope"},
			want: []string{
				"error: InvalidArgument: invalid request: recipient is not a valid phone number (and 1 more)",
				"  field recipient: is not a valid phone number",
				"  field client_ip: is not an IP address",
			},
		},
		{
			name: "rate limited",
			err: func(tb testing.TB) error {
				return statusWith(tb, codes.ResourceExhausted, "rate limited by per_recipient, retry after 1.5s",
					&errdetails.ErrorInfo{Reason: "RATE_LIMITED", Domain: "otpd", Metadata: map[string]string{"limit": "per_recipient"}},
					&errdetails.RetryInfo{RetryDelay: durationpb.New(1500 * time.Millisecond)},
					&errdetails.QuotaFailure{Violations: []*errdetails.QuotaFailure_Violation{{Subject: "per_recipient", Description: "limit per_recipient reached"}}},
				)
			},
			command: []string{"send", "-to", "+14155550123", "-usage", "sign-in"},
			want: []string{
				"error: ResourceExhausted: rate limited by per_recipient, retry after 1.5s",
				"  reason RATE_LIMITED limit=per_recipient",
				"  retry after 1.5s",
			},
		},
		{
			name: "unavailable on verify",
			err: func(tb testing.TB) error {
				return statusWith(tb, codes.Unavailable, "store unavailable; try again later",
					&errdetails.RetryInfo{RetryDelay: durationpb.New(time.Second)})
			},
			command: []string{"verify", "-to", "+14155550123", "-usage", "sign-in", "-code", "123456"},
			want:    []string{"error: Unavailable: store unavailable; try again later", "  retry after 1s"},
		},
		{
			name: "failed precondition without details",
			err: func(tb testing.TB) error {
				return status.Error(codes.FailedPrecondition, "no provider is configured for this recipient")
			},
			command: []string{"send", "-to", "jane@example.com", "-usage", "generic"},
			want:    []string{"error: FailedPrecondition: no provider is configured for this recipient"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := startServer(t, "unix", &fakeOtpd{err: tt.err(t)})
			code, stdout, stderr := otpctl(t, append([]string{"-addr", srv.addr}, tt.command...)...)
			if code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			if stdout != "" {
				t.Errorf("stdout is not empty on error:\n%s", stdout)
			}
			if got := strings.Split(strings.TrimRight(stderr, "\n"), "\n"); strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("stderr:\n%s\nwant:\n%s", stderr, strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestUnreachableServerExitsOne(t *testing.T) {
	t.Parallel()
	sock := "unix://" + filepath.Join(t.TempDir(), "nobody.sock")
	code, stdout, stderr := otpctl(t, "-addr", sock, "-timeout", "30s", "send", "-to", "+14155550123", "-usage", "sign-in")
	if code != 1 || stdout != "" || !strings.HasPrefix(stderr, "error: Unavailable:") {
		t.Errorf("exit %d, stdout %q, stderr %q; want 1 and an Unavailable error", code, stdout, stderr)
	}
}

func TestUsageErrorsExitTwo(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"no command", nil, "usage: otpctl"},
		{"unknown command", []string{"resend"}, `unknown command "resend"`},
		{"unknown global flag", []string{"-verbose", "send"}, "-verbose"},
		{"bad usage", []string{"send", "-to", "+14155550123", "-usage", "sign-out"}, `-usage must be register, sign-in, forgot-password or generic, not "sign-out"`},
		{"missing usage", []string{"send", "-to", "+14155550123"}, "-usage must be"},
		{"unspecified usage", []string{"send", "-to", "+14155550123", "-usage", "unspecified"}, "-usage must be"},
		{"bad channel", []string{"send", "-to", "+14155550123", "-usage", "sign-in", "-channel", "fax"}, `-channel must be sms or email, not "fax"`},
		{"unknown send flag", []string{"send", "-to", "+14155550123", "-usage", "sign-in", "-cc", "x"}, "-cc"},
		{"bad verify usage", []string{"verify", "-to", "+14155550123", "-usage", "login", "-code", "123456"}, "-usage must be"},
		{"bad verify channel", []string{"verify", "-to", "+14155550123", "-usage", "sign-in", "-code", "1", "-channel", "voice"}, "-channel must be"},
		{"unknown health flag", []string{"health", "-svc", "x"}, "-svc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := startServer(t, "unix", &fakeOtpd{})
			code, stdout, stderr := otpctl(t, append([]string{"-addr", srv.addr}, tt.args...)...)
			wantRefused(t, srv, code, stdout, stderr, tt.want, false)
		})
	}
}

func TestHealth(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		transport  string
		set        map[string]healthpb.HealthCheckResponse_ServingStatus
		args       []string
		wantCode   int
		wantStatus string // printed on stdout; "" for none
		wantStderr string
	}{
		{
			name:       "serving",
			transport:  "unix",
			set:        map[string]healthpb.HealthCheckResponse_ServingStatus{"": healthpb.HealthCheckResponse_SERVING},
			wantCode:   0,
			wantStatus: "SERVING",
		},
		{
			name:       "serving over tcp",
			transport:  "tcp",
			set:        map[string]healthpb.HealthCheckResponse_ServingStatus{"": healthpb.HealthCheckResponse_SERVING},
			wantCode:   0,
			wantStatus: "SERVING",
		},
		{
			name:       "not serving",
			transport:  "unix",
			set:        map[string]healthpb.HealthCheckResponse_ServingStatus{"": healthpb.HealthCheckResponse_NOT_SERVING},
			wantCode:   1,
			wantStatus: "NOT_SERVING",
		},
		{
			name:      "named service not serving",
			transport: "unix",
			set: map[string]healthpb.HealthCheckResponse_ServingStatus{
				"":                  healthpb.HealthCheckResponse_SERVING,
				"otp.v1.OtpService": healthpb.HealthCheckResponse_NOT_SERVING,
			},
			args:       []string{"-service", "otp.v1.OtpService"},
			wantCode:   1,
			wantStatus: "NOT_SERVING",
		},
		{
			name:       "unknown service",
			transport:  "unix",
			set:        map[string]healthpb.HealthCheckResponse_ServingStatus{"": healthpb.HealthCheckResponse_SERVING},
			args:       []string{"-service", "otp.v9.Nothing"},
			wantCode:   1,
			wantStderr: "error: NotFound:",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := startServer(t, tt.transport, &fakeOtpd{})
			for svc, st := range tt.set {
				srv.health.SetServingStatus(svc, st)
			}
			code, stdout, stderr := otpctl(t, append([]string{"-addr", srv.addr, "health"}, tt.args...)...)
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tt.wantCode, stderr)
			}
			if tt.wantStatus != "" {
				wantFields(t, stdout, map[string]any{"status": tt.wantStatus})
			} else if stdout != "" {
				t.Errorf("stdout is not empty:\n%s", stdout)
			}
			if !strings.Contains(stderr, tt.wantStderr) {
				t.Errorf("stderr lacks %q:\n%s", tt.wantStderr, stderr)
			}
		})
	}
}

// TestAddrFromEnvironment is not parallel: it sets OTPD_ADDR, which run
// reads when -addr is absent, and t.Setenv cannot be used in parallel tests.
func TestAddrFromEnvironment(t *testing.T) {
	srv := startServer(t, "unix", &fakeOtpd{})
	t.Setenv("OTPD_ADDR", srv.addr)
	code, stdout, stderr := otpctl(t, "send", "-to", "+14155550123", "-usage", "generic")
	if code != 0 {
		t.Fatalf("exit %d, want 0; stderr:\n%s", code, stderr)
	}
	if sends, _ := srv.otp.calls(); len(sends) != 1 {
		t.Errorf("send through $OTPD_ADDR: server got %d sends, want 1", len(sends))
	}
	wantFields(t, stdout, map[string]any{"verificationId": "vid-123"})
}

// TestGlobalFlagsAfterCommand: -addr, -timeout and the TLS and token flags
// go before or after the command's name, mixed with its own flags.
func TestGlobalFlagsAfterCommand(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args func(addr string) []string
	}{
		{"before", func(a string) []string {
			return []string{"-addr", a, "-timeout", "5s", "send", "-to", "+14155550123", "-usage", "sign-in"}
		}},
		{"after", func(a string) []string {
			return []string{"send", "-to", "+14155550123", "-usage", "sign-in", "-addr", a, "-timeout", "5s"}
		}},
		{"between", func(a string) []string {
			return []string{"send", "-to", "+14155550123", "-addr", a, "-usage", "sign-in"}
		}},
		{"double dash", func(a string) []string {
			return []string{"send", "--addr", a, "--to", "+14155550123", "--usage", "sign-in"}
		}},
		{"after wins", func(a string) []string {
			return []string{"-addr", "unix:///nonexistent.sock", "send", "-addr", a, "-to", "+14155550123", "-usage", "sign-in"}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := startServer(t, "unix", &fakeOtpd{})
			code, stdout, stderr := otpctl(t, tt.args(srv.addr)...)
			if code != 0 {
				t.Fatalf("exit %d, want 0; stderr:\n%s", code, stderr)
			}
			sends, _ := srv.otp.calls()
			want := &otpv1.SendCodeRequest{Recipient: "+14155550123", UsageType: otpv1.UsageType_USAGE_TYPE_SIGN_IN}
			if len(sends) != 1 || !proto.Equal(sends[0], want) {
				t.Errorf("server got %v, want one %v", sends, want)
			}
			wantFields(t, stdout, map[string]any{"verificationId": "vid-123"})
		})
	}
	t.Run("health", func(t *testing.T) {
		t.Parallel()
		srv := startServer(t, "tcp", &fakeOtpd{})
		code, stdout, stderr := otpctl(t, "health", "-service", "", "-addr", srv.addr, "-timeout", "5s")
		if code != 0 {
			t.Fatalf("exit %d, want 0; stderr:\n%s", code, stderr)
		}
		wantFields(t, stdout, map[string]any{"status": "SERVING"})
	})
}

// TestExtraArgumentsExitTwo: a word left over after the flags is a
// mistake (a flag value with a blank, a typo), never ignored.
func TestExtraArgumentsExitTwo(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"send", []string{"send", "-to", "+14155550123", "-usage", "sign-in", "now"}, `otpctl send: unexpected argument "now"`},
		{"send before flags", []string{"send", "+14155550123", "-usage", "sign-in"}, `otpctl send: unexpected argument "+14155550123"`},
		{"unquoted locale", []string{"send", "-to", "jane@example.com", "-usage", "generic", "-locale", "fr", "CA"}, `unexpected argument "CA"`},
		{"verify", []string{"verify", "-to", "+14155550123", "-usage", "sign-in", "-code", "123", "456"}, `otpctl verify: unexpected argument "456"`},
		{"health", []string{"health", "otp.v1.OtpService"}, `otpctl health: unexpected argument "otp.v1.OtpService"`},
		{"version", []string{"version", "--short"}, "-short"},
		{"version word", []string{"version", "short"}, `otpctl version: unexpected argument "short"`},
		{"help", []string{"help", "me"}, `otpctl help: unexpected argument "me"`},
		{"global flag after command", []string{"send", "-to", "+14155550123", "-usage", "sign-in", "-timeout", "soon"}, `invalid value "soon" for flag -timeout`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := startServer(t, "unix", &fakeOtpd{})
			code, stdout, stderr := otpctl(t, append([]string{"-addr", srv.addr}, tt.args...)...)
			wantRefused(t, srv, code, stdout, stderr, tt.want, true)
		})
	}
}

// TestHelpExitsZero: asking for help is not an error: usage on stdout,
// exit 0, nothing sent.
func TestHelpExitsZero(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"-h"}, {"--help"}, {"-help"}, {"help"}, {"send", "-h"}, {"send", "-to", "+14155550123", "--help"},
		{"verify", "-h"}, {"health", "--help"}, {"version", "-h"}, {"help", "-h"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			t.Parallel()
			srv := startServer(t, "unix", &fakeOtpd{})
			code, stdout, stderr := otpctl(t, append([]string{"-addr", srv.addr}, args...)...)
			if code != 0 {
				t.Errorf("exit %d, want 0", code)
			}
			if !strings.HasPrefix(stdout, "usage: otpctl") || !strings.Contains(stdout, "before or after the command") {
				t.Errorf("stdout is not the usage:\n%s", stdout)
			}
			if stderr != "" {
				t.Errorf("stderr is not empty:\n%s", stderr)
			}
			if sends, verifies := srv.otp.calls(); len(sends)+len(verifies) != 0 {
				t.Errorf("server got %d sends and %d verifies, want none", len(sends), len(verifies))
			}
		})
	}
}

// TestVersion is not parallel: it sets the package's version, as -ldflags
// "-X main.version=..." does.
func TestVersion(t *testing.T) {
	defer func(v string) { version = v }(version)
	version = "1.2.3-test"
	srv := startServer(t, "unix", &fakeOtpd{})
	for _, args := range [][]string{
		{"version"}, {"-version"}, {"--version"}, {"version", "-addr", srv.addr},
		{"-addr", srv.addr, "send", "-version"}, {"send", "-to", "+14155550123", "-version"},
	} {
		code, stdout, stderr := otpctl(t, args...)
		if code != 0 || stdout != "otpctl 1.2.3-test\n" || stderr != "" {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want 0 and \"otpctl 1.2.3-test\"", args, code, stdout, stderr)
		}
	}
	if sends, verifies := srv.otp.calls(); len(sends)+len(verifies) != 0 {
		t.Errorf("server got %d sends and %d verifies, want none", len(sends), len(verifies))
	}
	version = "dev"
	if _, stdout, _ := otpctl(t, "version"); !strings.HasPrefix(stdout, "otpctl ") {
		t.Errorf("unstamped version: %q", stdout)
	}
}

// TestErrorDetailsReadable: details print as sentences and key=value pairs,
// never Go maps, and each fact once.
func TestErrorDetailsReadable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		details []protoadapt.MessageV1
		want    []string // lines after the first
	}{
		{
			name: "otpd's rate limit: the limit once, the delay rounded",
			details: []protoadapt.MessageV1{
				&errdetails.ErrorInfo{Reason: "RATE_LIMITED", Domain: "otpd", Metadata: map[string]string{"limit": "resend_interval"}},
				&errdetails.RetryInfo{RetryDelay: durationpb.New(59246 * time.Millisecond)},
				&errdetails.QuotaFailure{Violations: []*errdetails.QuotaFailure_Violation{{Subject: "resend_interval", Description: "limit resend_interval reached"}}},
			},
			want: []string{"  reason RATE_LIMITED limit=resend_interval", "  retry after 59.2s"},
		},
		{
			name: "metadata sorted and quoted when needed",
			details: []protoadapt.MessageV1{
				&errdetails.ErrorInfo{Reason: "PROVIDER_FAILED", Metadata: map[string]string{"provider": "twilio", "detail": "bad number", "empty": ""}},
			},
			want: []string{`  reason PROVIDER_FAILED detail="bad number" empty="" provider=twilio`},
		},
		{
			name: "quota failure without error info",
			details: []protoadapt.MessageV1{
				&errdetails.QuotaFailure{Violations: []*errdetails.QuotaFailure_Violation{
					{Subject: "per_ip", Description: "limit per_ip reached"},
					{Subject: "per_country", Description: "too many SMS to +86"},
				}},
			},
			want: []string{"  quota: limit per_ip reached", "  quota per_country: too many SMS to +86"},
		},
		{
			name: "quota failure of another limit than the reason's",
			details: []protoadapt.MessageV1{
				&errdetails.ErrorInfo{Reason: "RATE_LIMITED", Metadata: map[string]string{"limit": "per_ip"}},
				&errdetails.QuotaFailure{Violations: []*errdetails.QuotaFailure_Violation{
					{Subject: "per_ip", Description: "limit per_ip reached"},
					{Subject: "per_recipient", Description: "limit per_recipient reached"},
				}},
			},
			want: []string{"  reason RATE_LIMITED limit=per_ip", "  quota: limit per_recipient reached"},
		},
		{
			name:    "short retry delay",
			details: []protoadapt.MessageV1{&errdetails.RetryInfo{RetryDelay: durationpb.New(250400 * time.Microsecond)}},
			want:    []string{"  retry after 250ms"},
		},
		{
			name: "bad request, one line per field",
			details: []protoadapt.MessageV1{&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
				{Field: "recipient", Description: "is not a valid phone number"},
				{Field: "usage_type", Description: "must be set"},
			}}},
			want: []string{"  field recipient: is not a valid phone number", "  field usage_type: must be set"},
		},
		{
			name: "other standard details",
			details: []protoadapt.MessageV1{
				&errdetails.PreconditionFailure{Violations: []*errdetails.PreconditionFailure_Violation{{Type: "TOS", Subject: "jane", Description: "not accepted"}}},
				&errdetails.LocalizedMessage{Locale: "fr", Message: "Trop de codes"},
				&errdetails.Help{Links: []*errdetails.Help_Link{{Description: "limits", Url: "https://example.com/limits"}}},
			},
			want: []string{"  precondition TOS jane: not accepted", "  message (fr): Trop de codes", "  see limits: https://example.com/limits"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			printError(&buf, statusWith(t, codes.ResourceExhausted, "m", tt.details...))
			want := "error: ResourceExhausted: m\n" + strings.Join(tt.want, "\n") + "\n"
			if buf.String() != want {
				t.Errorf("printed:\n%s\nwant:\n%s", buf.String(), want)
			}
			if strings.Contains(buf.String(), "map[") {
				t.Errorf("a Go map is printed:\n%s", buf.String())
			}
		})
	}
	t.Run("any other message", func(t *testing.T) {
		t.Parallel()
		var buf bytes.Buffer
		printError(&buf, statusWith(t, codes.Internal, "m", &errdetails.DebugInfo{Detail: "boom"}))
		if got := buf.String(); !strings.HasPrefix(got, "error: Internal: m\n  google.rpc.DebugInfo {") || !strings.Contains(got, `"boom"`) {
			t.Errorf("printed:\n%s", got)
		}
	})
}

// TestMTLSWithDevCerts: the certificates make certs writes serve otpd's
// TLS (grpcauth.LoadTLS, client certificates required) and otpctl calls it
// with -ca, -cert and -key, given after the command.
func TestMTLSWithDevCerts(t *testing.T) {
	t.Parallel()
	f, err := devcerts.Write(t.TempDir(), devcerts.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cfg, clientCAs, err := grpcauth.LoadTLS(grpcauth.TLSConfig{CertFile: f.Server, KeyFile: f.ServerKey, ClientCAFile: f.CA})
	if err != nil {
		t.Fatal(err)
	}
	cfg.ClientCAs, cfg.ClientAuth = clientCAs, tls.RequireAndVerifyClientCert
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(cfg)))
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	addr := lis.Addr().String()
	_, port, _ := net.SplitHostPort(addr)

	for _, tt := range []struct {
		name string
		args []string
		code int
		want string // in stdout on success, stderr on failure
	}{
		{"mtls", []string{"health", "-addr", addr, "-ca", f.CA, "-cert", f.Client, "-key", f.ClientKey}, 0, "SERVING"},
		{"by name", []string{"health", "-addr", "localhost:" + port, "-ca", f.CA, "-cert", f.Client, "-key", f.ClientKey}, 0, "SERVING"},
		{"server name", []string{"-ca", f.CA, "-server-name", "localhost", "health", "-addr", addr, "-cert", f.Client, "-key", f.ClientKey}, 0, "SERVING"},
		{"no client certificate", []string{"health", "-addr", addr, "-ca", f.CA, "-timeout", "5s"}, 1, "error: Unavailable"},
		{"wrong name", []string{"health", "-addr", addr, "-ca", f.CA, "-cert", f.Client, "-key", f.ClientKey, "-server-name", "otpd.example.com", "-timeout", "5s"}, 1, "error: Unavailable"},
		{"system roots", []string{"health", "-addr", addr, "-tls", "-cert", f.Client, "-key", f.ClientKey, "-timeout", "5s"}, 1, "error: Unavailable"},
		{"key without cert", []string{"health", "-addr", addr, "-ca", f.CA, "-key", f.ClientKey}, 2, "-cert and -key go together"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := otpctl(t, tt.args...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, tt.code, stderr)
			}
			if out := map[bool]string{true: stdout, false: stderr}[tt.code == 0]; !strings.Contains(out, tt.want) {
				t.Errorf("output lacks %q:\n%s", tt.want, out)
			}
		})
	}
}

// wantRefused checks a command line otpctl refused: exit 2, want (and,
// with usage, the usage) on stderr, nothing on stdout, and nothing sent: a
// mistyped command line must never send a code.
func wantRefused(t *testing.T, srv *server, code int, stdout, stderr, want string, usage bool) {
	t.Helper()
	if code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
	if !strings.Contains(stderr, want) || (usage && !strings.Contains(stderr, "usage: otpctl")) {
		t.Errorf("stderr lacks %q (or the usage):\n%s", want, stderr)
	}
	if stdout != "" {
		t.Errorf("stdout is not empty:\n%s", stdout)
	}
	if sends, verifies := srv.otp.calls(); len(sends)+len(verifies) != 0 {
		t.Errorf("server got %d sends and %d verifies, want none", len(sends), len(verifies))
	}
}

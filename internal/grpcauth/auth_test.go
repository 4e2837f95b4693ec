package grpcauth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/otpd/otpd/internal/promtest"
	"github.com/otpd/otpd/internal/testpki"
	otpv1 "github.com/otpd/otpd/proto/otp/v1"
)

// echo is an OtpService that accepts every send, answers with the caller
// the call was authenticated as, and logs the send with the call's context
// as otpd's own handlers do.
type echo struct {
	otpv1.UnimplementedOtpServiceServer
	log *slog.Logger
}

func (e echo) SendCode(ctx context.Context, _ *otpv1.SendCodeRequest) (*otpv1.SendCodeResponse, error) {
	e.log.InfoContext(ctx, "code sent")
	return &otpv1.SendCodeResponse{Provider: Caller(ctx)}, nil
}

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func sha256Hex(s string) string { sum := sha256.Sum256([]byte(s)); return hex.EncodeToString(sum[:]) }

// secured is a running gRPC server with TLS, client certificates and
// bearer tokens, and what a client needs to call it.
type secured struct {
	addr     string
	serverCA *testpki.CA
	clientCA *testpki.CA
	reg      *prometheus.Registry
	logs     *syncBuffer
}

const goodToken = "tok-auth-server-7d1f0c5e"

// startSecured serves echo, grpc.health.v1 (SERVING) and reflection over
// TLS with the Authenticator's interceptors, as otpd's gRPC server does.
// mutate may change the tls and auth blocks first.
func startSecured(tb testing.TB, mutate func(*TLSConfig, *Config)) *secured {
	tb.Helper()
	dir := tb.TempDir()
	s := &secured{serverCA: testpki.NewCA(tb, "server CA"), clientCA: testpki.NewCA(tb, "client CA"), reg: prometheus.NewRegistry(), logs: &syncBuffer{}}
	certPEM, keyPEM := s.serverCA.Issue(tb, "otpd", x509.ExtKeyUsageServerAuth)
	tc := TLSConfig{
		CertFile:     testpki.WriteFile(tb, dir, "tls.crt", certPEM),
		KeyFile:      testpki.WriteFile(tb, dir, "tls.key", keyPEM),
		ClientCAFile: testpki.WriteFile(tb, dir, "ca.crt", s.clientCA.PEM),
	}
	ac := DefaultConfig()
	ac.Tokens = []Token{{Name: "auth-server", SHA256: sha256Hex(goodToken)}, {Name: "admin-cli", SHA256: sha256Hex("other-token")}}
	if mutate != nil {
		mutate(&tc, &ac)
	}
	if err := tc.Validate(); err != nil {
		tb.Fatalf("tls block invalid: %v", err)
	}
	if err := ac.Validate(); err != nil {
		tb.Fatalf("auth block invalid: %v", err)
	}
	tlsCfg, pool, err := LoadTLS(tc)
	if err != nil {
		tb.Fatal(err)
	}
	log := slog.New(LogHandler(slog.NewJSONHandler(s.logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	a := New(ac, pool, s.reg, log)
	gs := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(tlsCfg)),
		grpc.ChainUnaryInterceptor(a.Unary()),
		grpc.ChainStreamInterceptor(a.Stream()),
	)
	otpv1.RegisterOtpServiceServer(gs, echo{log: log})
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	reflection.Register(gs)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	tb.Cleanup(gs.Stop)
	s.addr = lis.Addr().String()
	return s
}

// dial connects with the server CA trusted and, if clientCA is given, a
// client certificate it issued for cn.
func (s *secured) dial(tb testing.TB, clientCA *testpki.CA, cn string) *grpc.ClientConn {
	tb.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(s.serverCA.Cert)
	cfg := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	if clientCA != nil {
		certPEM, keyPEM := clientCA.Issue(tb, cn, x509.ExtKeyUsageClientAuth)
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			tb.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	conn, err := grpc.NewClient("passthrough:///"+s.addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = conn.Close() })
	return conn
}

// withToken returns a context, bounded by the test, whose calls send the
// authorization metadata auth ("" sends none).
func withToken(tb testing.TB, auth string) context.Context {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), 10*time.Second)
	tb.Cleanup(cancel)
	if auth == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", auth)
}

// wantUnauthenticated checks err is UNAUTHENTICATED with ErrorInfo reason
// and a message without the token.
func wantUnauthenticated(tb testing.TB, err error, reason string) {
	tb.Helper()
	st := status.Convert(err)
	if st.Code() != codes.Unauthenticated {
		tb.Fatalf("got %v, want UNAUTHENTICATED (%s)", err, reason)
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetReason() == reason && info.GetDomain() == "otpd" {
			if strings.Contains(st.Message(), goodToken) {
				tb.Errorf("error %q holds the token", st.Message())
			}
			return
		}
	}
	tb.Fatalf("%v: no ErrorInfo with reason %s among %v", err, reason, st.Details())
}

// listServices calls reflection's ListServices on a new stream of conn and
// returns the call's status.
func listServices(ctx context.Context, conn *grpc.ClientConn) error {
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		return err
	}
	// Send answers io.EOF when the server has already ended the stream (it
	// may, before reading anything): Recv has the status either way.
	_ = stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}})
	_, err = stream.Recv()
	return err
}

func TestCallerAuthentication(t *testing.T) {
	t.Parallel()
	s := startSecured(t, nil)
	rogue := testpki.NewCA(t, "rogue CA")
	for _, tc := range []struct {
		name     string
		clientCA *testpki.CA
		auth     string
		reason   string // "" means served
	}{
		{name: "no client certificate", auth: "Bearer " + goodToken, reason: reasonNoClientCert},
		{name: "certificate from another CA", clientCA: rogue, auth: "Bearer " + goodToken, reason: reasonBadClientCert},
		{name: "no token", clientCA: s.clientCA, reason: reasonMissingToken},
		{name: "wrong token", clientCA: s.clientCA, auth: "Bearer not-the-token", reason: reasonInvalidToken},
		{name: "token's hash sent as the token", clientCA: s.clientCA, auth: "Bearer " + sha256Hex(goodToken), reason: reasonInvalidToken},
		{name: "basic auth", clientCA: s.clientCA, auth: "Basic " + goodToken, reason: reasonMalformedToken},
		{name: "right certificate and token", clientCA: s.clientCA, auth: "Bearer " + goodToken},
		{name: "lower-case scheme", clientCA: s.clientCA, auth: "bearer " + goodToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := s.dial(t, tc.clientCA, "auth-server.internal")
			resp, err := otpv1.NewOtpServiceClient(conn).SendCode(withToken(t, tc.auth), &otpv1.SendCodeRequest{})
			if tc.reason != "" {
				wantUnauthenticated(t, err, tc.reason)
				return
			}
			// With tokens, the caller is the token's name, not the
			// certificate's.
			if err != nil || resp.GetProvider() != "auth-server" {
				t.Fatalf("got %v, %v; want served to caller auth-server", resp, err)
			}
		})
	}

	// Health is open by default, even without a certificate; reflection is
	// not.
	conn := s.dial(t, nil, "")
	if resp, err := healthpb.NewHealthClient(conn).Check(withToken(t, ""), &healthpb.HealthCheckRequest{}); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("open health: %v, %v", resp, err)
	}
	wantUnauthenticated(t, listServices(withToken(t, ""), s.dial(t, s.clientCA, "x")), reasonMissingToken)

	// Refusals are counted by reason and logged; the caller's name is in
	// the logs of served calls; the token never is.
	for reason, want := range map[string]float64{"no_client_cert": 1, "bad_client_cert": 1, "missing_token": 2, "invalid_token": 2, "malformed_authorization": 1} {
		if got := promtest.Sum(t, s.reg, "otpd_auth_failures_total", map[string]string{"reason": reason}); got != want {
			t.Errorf("otpd_auth_failures_total{reason=%s} = %v, want %v", reason, got, want)
		}
	}
	logs := s.logs.String()
	if strings.Count(logs, `"caller":"auth-server"`) != 2 || !strings.Contains(logs, "call refused: unauthenticated") {
		t.Errorf("logs lack the caller of the two sends or the refusals:\n%s", logs)
	}
	if strings.Contains(logs, goodToken) || strings.Contains(logs, "not-the-token") {
		t.Errorf("logs hold a token:\n%s", logs)
	}
}

func TestTokensWithoutTLSAndClosedHealth(t *testing.T) {
	t.Parallel()
	s := startSecured(t, func(tc *TLSConfig, c *Config) {
		tc.ClientCAFile = "" // TLS, no client certificates
		c.OpenHealth = false
		c.OpenReflection = true
	})
	conn := s.dial(t, nil, "")
	_, err := healthpb.NewHealthClient(conn).Check(withToken(t, ""), &healthpb.HealthCheckRequest{})
	wantUnauthenticated(t, err, reasonMissingToken)
	if _, err := healthpb.NewHealthClient(conn).Check(withToken(t, "Bearer other-token"), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("health with a token: %v", err)
	}
	if err := listServices(withToken(t, ""), conn); err != nil {
		t.Fatalf("open reflection: %v", err)
	}
	resp, err := otpv1.NewOtpServiceClient(conn).SendCode(withToken(t, "Bearer other-token"), &otpv1.SendCodeRequest{})
	if err != nil || resp.GetProvider() != "admin-cli" {
		t.Fatalf("send with the second caller's token: %v, %v; want served to caller admin-cli", resp, err)
	}
}

func TestClientCertificateNamesCallerWithoutTokens(t *testing.T) {
	t.Parallel()
	s := startSecured(t, func(_ *TLSConfig, c *Config) { c.Tokens = nil })
	resp, err := otpv1.NewOtpServiceClient(s.dial(t, s.clientCA, "auth-server.internal")).SendCode(withToken(t, ""), &otpv1.SendCodeRequest{})
	if err != nil || resp.GetProvider() != "auth-server.internal" {
		t.Fatalf("got %v, %v; want served to the certificate's common name", resp, err)
	}
	_, err = otpv1.NewOtpServiceClient(s.dial(t, nil, "")).SendCode(withToken(t, ""), &otpv1.SendCodeRequest{})
	wantUnauthenticated(t, err, reasonNoClientCert)
	// Streams are checked too.
	wantUnauthenticated(t, listServices(withToken(t, ""), s.dial(t, nil, "")), reasonNoClientCert)
}

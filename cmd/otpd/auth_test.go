package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/otpd/otpd/internal/testpki"
	otpv1 "github.com/otpd/otpd/proto/otp/v1"
)

// echo is an OtpService that accepts every send.
type echo struct {
	otpv1.UnimplementedOtpServiceServer
}

func (echo) SendCode(context.Context, *otpv1.SendCodeRequest) (*otpv1.SendCodeResponse, error) {
	return &otpv1.SendCodeResponse{Provider: "echo"}, nil
}

func newTestLogger(w *lockedBuffer) *slog.Logger {
	return slog.New(callerHandler{slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})})
}

// metricValue returns the value of the counter or gauge name whose labels
// include the given name, value pairs; 0 if there is none.
func metricValue(tb testing.TB, reg *prometheus.Registry, name string, labels ...string) float64 {
	tb.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue metrics
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

func sha256Hex(s string) string { sum := sha256.Sum256([]byte(s)); return hex.EncodeToString(sum[:]) }

// secured is a running gRPC server with TLS, client certificates and
// bearer tokens, and what a client needs to call it.
type secured struct {
	addr     string
	serverCA *testpki.CA
	clientCA *testpki.CA
	reg      *prometheus.Registry
	logs     *lockedBuffer
}

const goodToken = "tok-auth-server-7d1f0c5e"

func startSecured(tb testing.TB, mutate func(*config)) *secured {
	tb.Helper()
	dir := tb.TempDir()
	s := &secured{serverCA: testpki.NewCA(tb, "server CA"), clientCA: testpki.NewCA(tb, "client CA"), reg: prometheus.NewRegistry(), logs: &lockedBuffer{}}
	certPEM, keyPEM := s.serverCA.Issue(tb, "otpd", x509.ExtKeyUsageServerAuth)
	c := defaultConfig()
	c.TLS = tlsConfig{
		CertFile:     testpki.WriteFile(tb, dir, "tls.crt", certPEM),
		KeyFile:      testpki.WriteFile(tb, dir, "tls.key", keyPEM),
		ClientCAFile: testpki.WriteFile(tb, dir, "ca.crt", s.clientCA.PEM),
	}
	c.Auth.Tokens = []tokenConfig{{Name: "auth-server", SHA256: sha256Hex(goodToken)}, {Name: "admin-cli", SHA256: sha256Hex("other-token")}}
	if mutate != nil {
		mutate(c)
	}
	var errs []string
	c.validateAuth(func(key, format string, args ...any) { errs = append(errs, key) })
	if len(errs) > 0 {
		tb.Fatalf("config invalid: %v", errs)
	}
	tlsCfg, pool, err := loadTLS(c.TLS)
	if err != nil {
		tb.Fatal(err)
	}
	log := newTestLogger(s.logs)
	gs, hs := newGRPCServer(echo{}, s.reg, log, security{tls: tlsCfg, auth: newAuthenticator(c, pool, s.reg, log)})
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	tb.Cleanup(gs.Stop)
	s.addr = lis.Addr().String()
	return s
}

// dialSecured connects with the server CA trusted and, if clientCA is
// given, a client certificate it issued for cn.
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

func withToken(auth string) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	_ = cancel // bounded by the timeout; the test ends well before
	if auth == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", auth)
}

// wantUnauthenticated checks err is UNAUTHENTICATED with ErrorInfo reason.
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
			resp, err := otpv1.NewOtpServiceClient(conn).SendCode(withToken(tc.auth), &otpv1.SendCodeRequest{})
			if tc.reason != "" {
				wantUnauthenticated(t, err, tc.reason)
				return
			}
			if err != nil || resp.GetProvider() != "echo" {
				t.Fatalf("got %v, %v; want served", resp, err)
			}
		})
	}

	// Health is open by default, even without a certificate; reflection is
	// not.
	conn := s.dial(t, nil, "")
	if resp, err := healthpb.NewHealthClient(conn).Check(withToken(""), &healthpb.HealthCheckRequest{}); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("open health: %v, %v", resp, err)
	}
	stream, err := reflectionpb.NewServerReflectionClient(s.dial(t, s.clientCA, "x")).ServerReflectionInfo(withToken(""))
	if err == nil {
		// Send answers io.EOF when the server has already ended the stream
		// (it may, before reading anything): Recv has the status either way.
		_ = stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}})
		_, err = stream.Recv()
	}
	wantUnauthenticated(t, err, reasonMissingToken)

	// The caller's name is in the logs and metrics; the token never is.
	if got := metricValue(t, s.reg, "otpd_rpc_calls_total", "caller", "auth-server", "method", "/otp.v1.OtpService/SendCode", "code", "OK"); got != 2 {
		t.Errorf("otpd_rpc_calls_total{caller=auth-server,SendCode,OK} = %v, want 2", got)
	}
	for reason, want := range map[string]float64{"no_client_cert": 1, "bad_client_cert": 1, "missing_token": 2, "invalid_token": 2, "malformed_authorization": 1} {
		if got := metricValue(t, s.reg, "otpd_auth_failures_total", "reason", reason); got != want {
			t.Errorf("otpd_auth_failures_total{reason=%s} = %v, want %v", reason, got, want)
		}
	}
	logs := s.logs.String()
	if !strings.Contains(logs, `"caller":"auth-server"`) || !strings.Contains(logs, "call refused: unauthenticated") {
		t.Errorf("logs lack the caller or the refusals:\n%s", logs)
	}
	if strings.Contains(logs, goodToken) || strings.Contains(logs, "not-the-token") {
		t.Errorf("logs hold a token:\n%s", logs)
	}
}

func TestTokensWithoutTLSAndClosedHealth(t *testing.T) {
	t.Parallel()
	s := startSecured(t, func(c *config) {
		c.TLS.ClientCAFile = "" // TLS, no client certificates
		c.Auth.OpenHealth = false
		c.Auth.OpenReflection = true
	})
	conn := s.dial(t, nil, "")
	_, err := healthpb.NewHealthClient(conn).Check(withToken(""), &healthpb.HealthCheckRequest{})
	wantUnauthenticated(t, err, reasonMissingToken)
	if _, err := healthpb.NewHealthClient(conn).Check(withToken("Bearer other-token"), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("health with a token: %v", err)
	}
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(withToken(""))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatalf("open reflection: %v", err)
	}
	if _, err := otpv1.NewOtpServiceClient(conn).SendCode(withToken("Bearer other-token"), &otpv1.SendCodeRequest{}); err != nil {
		t.Fatalf("send with the second caller's token: %v", err)
	}
	if got := metricValue(t, s.reg, "otpd_rpc_calls_total", "caller", "admin-cli", "method", "/otp.v1.OtpService/SendCode", "code", "OK"); got != 1 {
		t.Errorf("otpd_rpc_calls_total{caller=admin-cli} = %v, want 1", got)
	}
}

func TestAuthConfigErrorsNameKeys(t *testing.T) {
	t.Parallel()
	yaml := minimalYAML + `tls: {key_file: /x.key, client_ca_file: /ca.crt}
auth:
  tokens:
    - {name: "", sha256: "` + sha256Hex("a") + `"}
    - {name: "auth server", sha256: "` + sha256Hex("b") + `"}
    - {name: app, sha256: "the-token-itself"}
    - {name: app, sha256: "` + strings.ToUpper(sha256Hex("a")) + `"}
`
	_, err := parseConfig([]byte(yaml), keyEnv())
	if err == nil {
		t.Fatal("parseConfig succeeded, want errors")
	}
	for _, want := range []string{
		"tls.cert_file: must be set", "auth.tokens[0].name: must be set", `auth.tokens[1].name: must be printable ASCII without blanks`,
		"auth.tokens[2].sha256: must be the 64 hex digits", `auth.tokens[3].name: "app" is auth.tokens[2]'s name too`,
		"auth.tokens[3].sha256: is auth.tokens[0]'s token too",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "the-token-itself") {
		t.Errorf("error quotes a token: %v", err)
	}
}

func TestCheckReadsTLSFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c, err := parseConfig([]byte(minimalYAML+"tls: {cert_file: "+filepath.Join(dir, "missing.crt")+", key_file: "+filepath.Join(dir, "missing.key")+"}\n"), keyEnv())
	if err != nil {
		t.Fatal(err)
	}
	if err := checkConfig(c, &strings.Builder{}); err == nil || !strings.Contains(err.Error(), "missing.crt") {
		t.Fatalf("checkConfig = %v, want an error naming the missing certificate", err)
	}
}

func TestCertificateReloadsWhenRotated(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	authority := testpki.NewCA(t, "server CA")
	c1, k1 := authority.Issue(t, "first", x509.ExtKeyUsageServerAuth)
	kp := &keyPair{certFile: testpki.WriteFile(t, dir, "tls.crt", c1), keyFile: testpki.WriteFile(t, dir, "tls.key", k1)}
	if err := kp.load(); err != nil {
		t.Fatal(err)
	}
	cn := func() string {
		cert, err := kp.get()
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return leaf.Subject.CommonName
	}
	c2, k2 := authority.Issue(t, "second", x509.ExtKeyUsageServerAuth)
	testpki.WriteFile(t, dir, "tls.key", k2)
	testpki.WriteFile(t, dir, "tls.crt", c2)
	if got := cn(); got != "first" {
		t.Fatalf("served %q before the recheck interval, want the first certificate", got)
	}
	kp.mu.Lock()
	kp.checked = time.Time{} // as if the recheck interval had passed
	kp.mu.Unlock()
	if got := cn(); got != "second" {
		t.Fatalf("served %q after rotation, want the second certificate", got)
	}
	// A half-written rotation keeps the last good certificate.
	testpki.WriteFile(t, dir, "tls.crt", []byte("garbage"))
	kp.mu.Lock()
	kp.checked = time.Time{}
	kp.mu.Unlock()
	if got := cn(); got != "second" {
		t.Fatalf("served %q after a broken rotation, want the last good certificate", got)
	}
}

package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/otpd/otpd/internal/grpcauth"
	"github.com/otpd/otpd/internal/testpki"
)

// With the tls block, the API listener serves HTTPS (HTTP/1.1 and h2)
// with the gRPC listener's certificate, and the client certificate of the
// connection reaches the auth interceptor: mTLS names the caller as on
// gRPC.
func TestAPIMutualTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	serverCA, clientCA, otherCA := testpki.NewCA(t, "server CA"), testpki.NewCA(t, "client CA"), testpki.NewCA(t, "other CA")
	certPEM, keyPEM := serverCA.Issue(t, "otpd", x509.ExtKeyUsageServerAuth)
	tlsCfg, pool, err := grpcauth.LoadTLS(grpcauth.TLSConfig{
		CertFile:     testpki.WriteFile(t, dir, "tls.crt", certPEM),
		KeyFile:      testpki.WriteFile(t, dir, "tls.key", keyPEM),
		ClientCAFile: testpki.WriteFile(t, dir, "ca.crt", clientCA.PEM),
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{reg: prometheus.NewRegistry(), logs: &lockedBuffer{}, svc: &countingService{}}
	log := slogJSON(ts.logs)
	g := NewGRPC(DefaultConfig().Listen, ts.svc, grpcauth.New(grpcauth.Config{}, pool, ts.reg, log), tlsCfg, ts.reg, log)
	cfg := DefaultConfig()
	cfg.Listen = Listen{GRPC: "127.0.0.1:0", API: "127.0.0.1:0"}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, g, ts.reg, func(context.Context) error { return nil }, log) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	var addr string
	waitFor(t, "the api address", func() bool { addr = logAttr(ts.logs.String(), "otpd serving", "api"); return addr != "" })

	roots := x509.NewCertPool()
	roots.AddCert(serverCA.Cert)
	client := func(ca *testpki.CA, h2 bool) *http.Client {
		c := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
		if ca != nil {
			cp, kp := ca.Issue(t, "auth-server", x509.ExtKeyUsageClientAuth)
			pair, err := tls.X509KeyPair(cp, kp)
			if err != nil {
				t.Fatal(err)
			}
			c.Certificates = []tls.Certificate{pair}
		}
		tr := &http.Transport{TLSClientConfig: c, Protocols: new(http.Protocols)}
		tr.Protocols.SetHTTP1(!h2)
		tr.Protocols.SetHTTP2(h2)
		return &http.Client{Transport: tr, Timeout: 10 * time.Second}
	}
	call := func(c *http.Client) (int, string, string) {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "https://"+addr+"/otp.v1.OtpService/SendCode",
			strings.NewReader(`{"recipient": "+14155550123", "usageType": "USAGE_TYPE_SIGN_IN"}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Proto, string(b)
	}
	for _, h2 := range []bool{false, true} {
		code, proto, body := call(client(clientCA, h2))
		if code != http.StatusOK || (h2 != (proto == "HTTP/2.0")) {
			t.Errorf("h2=%v: client certificate of the client CA: %d %s %s, want 200", h2, code, proto, body)
		}
		for _, ca := range []*testpki.CA{nil, otherCA} {
			if code, _, body := call(client(ca, h2)); code != http.StatusUnauthorized || !strings.Contains(body, "unauthenticated") {
				t.Errorf("h2=%v: no or foreign client certificate: %d %s, want 401 unauthenticated", h2, code, body)
			}
		}
	}
	if got := ts.metric(t, "otpd_rpc_calls_total", map[string]string{"caller": "auth-server", "entry": "connect", "code": "OK"}); got != 2 {
		t.Errorf("otpd_rpc_calls_total{caller=auth-server,entry=connect,code=OK} = %v, want 2", got)
	}
	for _, reason := range []string{"no_client_cert", "bad_client_cert"} {
		if got := ts.metric(t, "otpd_auth_failures_total", map[string]string{"reason": reason}); got != 2 {
			t.Errorf("otpd_auth_failures_total{reason=%s} = %v, want 2", reason, got)
		}
	}

	// The Logto hook's in-process call carries the connection's TLS
	// state: the client certificate authenticates it as on gRPC.
	hook := func(c *http.Client) (int, string) {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "https://"+addr+logtoSMSPath,
			strings.NewReader(`{"to":"14155550123","type":"SignIn","payload":{"code":"483920"}}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// countingService delivers anything: past auth, 200.
	if code, body := hook(client(clientCA, false)); code != http.StatusOK {
		t.Errorf("hook with a client certificate of the client CA: %d %s, want 200 (authenticated, delivered)", code, body)
	}
	if code, body := hook(client(otherCA, true)); code != http.StatusUnauthorized {
		t.Errorf("hook with a foreign client certificate: %d %s, want 401", code, body)
	}
	if got := ts.metric(t, "otpd_rpc_calls_total", map[string]string{"caller": "auth-server", "entry": "logto", "code": "OK"}); got != 1 {
		t.Errorf("otpd_rpc_calls_total{caller=auth-server,entry=logto,code=OK} = %v, want 1", got)
	}
}

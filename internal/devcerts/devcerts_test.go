package devcerts_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"

	"github.com/otpd/otpd/internal/devcerts"
	"github.com/otpd/otpd/internal/grpcauth"
)

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, rest := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" || len(rest) != 0 {
		t.Fatalf("%s: want exactly one PEM CERTIFICATE", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return c
}

func TestWriteChainsAndNames(t *testing.T) {
	t.Parallel()
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	f, err := devcerts.Write(filepath.Join(t.TempDir(), "certs"), devcerts.Options{ClientName: "auth-server", Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if !f.Exist() {
		t.Fatal("Exist() = false after Write")
	}
	for _, key := range []string{f.CAKey, f.ServerKey, f.ClientKey} {
		st, err := os.Stat(key)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", key, st.Mode().Perm())
		}
		if _, err := tls.LoadX509KeyPair(map[string]string{f.CAKey: f.CA, f.ServerKey: f.Server, f.ClientKey: f.Client}[key], key); err != nil {
			t.Errorf("key pair of %s: %v", key, err)
		}
	}
	ca, srv, cli := readCert(t, f.CA), readCert(t, f.Server), readCert(t, f.Client)
	if !ca.IsCA || ca.Subject.CommonName != "otpd dev CA" {
		t.Errorf("CA: IsCA %v, CN %q", ca.IsCA, ca.Subject.CommonName)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	at := now.Add(24 * time.Hour)
	for _, name := range []string{"localhost", "127.0.0.1", "::1"} {
		if _, err := srv.Verify(x509.VerifyOptions{Roots: roots, DNSName: name, CurrentTime: at}); err != nil {
			t.Errorf("server certificate for %s: %v", name, err)
		}
	}
	if _, err := srv.Verify(x509.VerifyOptions{Roots: roots, DNSName: "otpd.example.com", CurrentTime: at}); err == nil {
		t.Error("server certificate verifies for otpd.example.com, want only this machine's names")
	}
	if _, err := cli.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client certificate: %v", err)
	}
	if _, err := cli.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Error("client certificate verifies for server auth")
	}
	if cli.Subject.CommonName != "auth-server" {
		t.Errorf("client CN %q, want auth-server", cli.Subject.CommonName)
	}
	if !srv.NotAfter.After(now.Add(364*24*time.Hour)) || srv.NotBefore.After(now) {
		t.Errorf("server certificate valid %v to %v, want about a year from %v", srv.NotBefore, srv.NotAfter, now)
	}
}

// TestTLSServerAndClient serves grpc.health.v1 with otpd's own TLS loader
// (grpcauth.LoadTLS, the tls block) over the files, client certificates
// required, and calls it on 127.0.0.1 and [::1] by each name the server
// certificate carries.
func TestTLSServerAndClient(t *testing.T) {
	t.Parallel()
	f, err := devcerts.Write(t.TempDir(), devcerts.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srvCfg, clientCAs, err := grpcauth.LoadTLS(grpcauth.TLSConfig{CertFile: f.Server, KeyFile: f.ServerKey, ClientCAFile: f.CA})
	if err != nil {
		t.Fatal(err)
	}
	srvCfg.ClientCAs, srvCfg.ClientAuth = clientCAs, tls.RequireAndVerifyClientCert

	caPEM, err := os.ReadFile(f.CA)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	pair, err := tls.LoadX509KeyPair(f.Client, f.ClientKey)
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct{ listen, dial, serverName string }{
		{"127.0.0.1:0", "127.0.0.1", ""},
		{"127.0.0.1:0", "127.0.0.1", "localhost"},
		{"[::1]:0", "::1", ""},
	} {
		t.Run(tc.listen+"/"+tc.serverName, func(t *testing.T) {
			lis, err := net.Listen("tcp", tc.listen)
			if err != nil {
				t.Skipf("listen %s: %v", tc.listen, err)
			}
			var callers []string
			srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(srvCfg)),
				grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
					if p, ok := peer.FromContext(ctx); ok {
						if info, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(info.State.PeerCertificates) > 0 {
							callers = append(callers, info.State.PeerCertificates[0].Subject.CommonName)
						}
					}
					return h(ctx, req)
				}))
			healthpb.RegisterHealthServer(srv, health.NewServer())
			go func() { _ = srv.Serve(lis) }()
			t.Cleanup(srv.Stop)

			_, port, _ := net.SplitHostPort(lis.Addr().String())
			cliCfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots, Certificates: []tls.Certificate{pair}, ServerName: tc.serverName}
			conn, err := grpc.NewClient("passthrough:///"+net.JoinHostPort(tc.dial, port), grpc.WithTransportCredentials(credentials.NewTLS(cliCfg)))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
			if err != nil {
				t.Fatalf("health over TLS: %v", err)
			}
			if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				t.Errorf("status %v", resp.GetStatus())
			}
			if len(callers) != 1 || callers[0] != "otpctl" {
				t.Errorf("server saw client certificates %q, want [otpctl]", callers)
			}
		})
	}
}

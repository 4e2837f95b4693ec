package grpcauth

import (
	"crypto/x509"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otpd/otpd/internal/testpki"
)

func TestLoadTLSNamesMissingFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := testpki.NewCA(t, "server CA")
	certPEM, keyPEM := ca.Issue(t, "otpd", x509.ExtKeyUsageServerAuth)
	cert := testpki.WriteFile(t, dir, "tls.crt", certPEM)
	key := testpki.WriteFile(t, dir, "tls.key", keyPEM)
	missing := func(name string) string { return filepath.Join(dir, name) }
	for _, tc := range []struct {
		name      string
		cfg       TLSConfig
		key, file string
	}{
		{"certificate", TLSConfig{CertFile: missing("missing.crt"), KeyFile: key}, "tls.cert_file", "missing.crt"},
		{"key", TLSConfig{CertFile: cert, KeyFile: missing("missing.key")}, "tls.key_file", "missing.key"},
		{"client CA", TLSConfig{CertFile: cert, KeyFile: key, ClientCAFile: missing("missing-ca.crt")}, "tls.client_ca_file", "missing-ca.crt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := LoadTLS(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.key) || !strings.Contains(err.Error(), tc.file) {
				t.Fatalf("LoadTLS = %v, want an error naming %s and %s", err, tc.key, tc.file)
			}
		})
	}
	// The same files, all present, load; without mTLS there is no pool.
	cfg, pool, err := LoadTLS(TLSConfig{CertFile: cert, KeyFile: key})
	if err != nil || cfg == nil || pool != nil {
		t.Fatalf("LoadTLS = %v, %v, %v; want a TLS configuration without client CAs", cfg, pool, err)
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
		t.Helper()
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
	recheckNow := func() {
		kp.mu.Lock()
		kp.checked = time.Time{} // as if the recheck interval had passed
		kp.mu.Unlock()
	}
	c2, k2 := authority.Issue(t, "second", x509.ExtKeyUsageServerAuth)
	testpki.WriteFile(t, dir, "tls.key", k2)
	testpki.WriteFile(t, dir, "tls.crt", c2)
	if got := cn(); got != "first" {
		t.Fatalf("served %q before the recheck interval, want the first certificate", got)
	}
	recheckNow()
	if got := cn(); got != "second" {
		t.Fatalf("served %q after rotation, want the second certificate", got)
	}
	// A half-written rotation keeps the last good certificate.
	testpki.WriteFile(t, dir, "tls.crt", []byte("garbage"))
	recheckNow()
	if got := cn(); got != "second" {
		t.Fatalf("served %q after a broken rotation, want the last good certificate", got)
	}
}

package grpcauth

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// LoadTLS returns the server's TLS configuration and the client CAs (nil
// without mTLS), or nil when TLS is off. The key pair is read again when its
// files change, so that a rotated certificate (a Kubernetes Secret update,
// cert-manager) is served without a restart; the client CAs are read once.
// Errors name the key of the file at fault.
func LoadTLS(t TLSConfig) (*tls.Config, *x509.CertPool, error) {
	if !t.Enabled() {
		return nil, nil, nil
	}
	kp := &keyPair{certFile: t.CertFile, keyFile: t.KeyFile}
	if err := kp.load(); err != nil {
		return nil, nil, err
	}
	cfg := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return kp.get() },
		NextProtos:     []string{"h2"},
	}
	if t.ClientCAFile == "" {
		return cfg, nil, nil
	}
	pem, err := os.ReadFile(t.ClientCAFile)
	if err != nil {
		return nil, nil, fmt.Errorf("tls.client_ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, nil, fmt.Errorf("tls.client_ca_file %s: no PEM certificate in it", t.ClientCAFile)
	}
	// The certificate is asked for, not required, during the handshake, and
	// verified by the auth interceptor: a caller without one, or with one
	// from another CA, then gets UNAUTHENTICATED with a reason instead of a
	// bare handshake failure.
	cfg.ClientAuth = tls.RequestClientCert
	return cfg, pool, nil
}

// keyPair is a certificate and key read from files, read again when the
// files change.
type keyPair struct {
	certFile, keyFile string

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   string    // the files' sizes and modification times when read
	checked time.Time // when the files were last looked at
}

// recheck is how often the files are looked at, at most.
const recheck = 10 * time.Second

// fileStamp returns the files' sizes and modification times; an error
// names the key of the file at fault.
func (k *keyPair) fileStamp() (string, error) {
	var b strings.Builder
	for _, f := range []struct{ key, path string }{{"tls.cert_file", k.certFile}, {"tls.key_file", k.keyFile}} {
		st, err := os.Stat(f.path)
		if err != nil {
			return "", fmt.Errorf("%s: %w", f.key, err)
		}
		fmt.Fprintf(&b, "%d/%d;", st.Size(), st.ModTime().UnixNano())
	}
	return b.String(), nil
}

func (k *keyPair) load() error {
	stamp, err := k.fileStamp()
	if err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(k.certFile, k.keyFile)
	if err != nil {
		return fmt.Errorf("tls.cert_file, tls.key_file: %w", err)
	}
	k.mu.Lock()
	k.cert, k.stamp, k.checked = &cert, stamp, time.Now()
	k.mu.Unlock()
	return nil
}

// get returns the current certificate, reloading it if its files changed.
// A reload that fails (a half-written rotation) keeps the old certificate.
func (k *keyPair) get() (*tls.Certificate, error) {
	k.mu.Lock()
	due := time.Since(k.checked) >= recheck
	if due {
		k.checked = time.Now()
	}
	cert, stamp := k.cert, k.stamp
	k.mu.Unlock()
	if due {
		if now, err := k.fileStamp(); err == nil && now != stamp {
			if k.load() == nil {
				k.mu.Lock()
				cert = k.cert
				k.mu.Unlock()
			}
		}
	}
	return cert, nil
}

// Package devcerts writes a development certificate authority, a server
// certificate for otpd on this machine and a client certificate, for trying
// otpd's tls block and mTLS (make certs). Nothing here is fit for
// production: the CA's key lies next to the certificates.
package devcerts

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// The files Write puts in its directory.
const (
	CAFile        = "ca.pem"
	CAKeyFile     = "ca-key.pem"
	ServerFile    = "server.pem"
	ServerKeyFile = "server-key.pem"
	ClientFile    = "client.pem"
	ClientKeyFile = "client-key.pem"
)

// ServerDNSNames and ServerIPs are the names the server certificate is
// valid for: otpd on this machine. A unix socket needs none: otpctl checks
// the certificate against -server-name, or localhost.
var (
	ServerDNSNames = []string{"localhost"}
	ServerIPs      = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
)

// Options say what to write.
type Options struct {
	// ClientName is the client certificate's common name: the caller name
	// otpd logs and counts for mTLS calls. Default "otpctl".
	ClientName string
	// Validity is how long the certificates are valid from now. Default
	// one year.
	Validity time.Duration
	// Now is the start of validity (less an hour, for clock skew). Default
	// time.Now().
	Now time.Time
}

// Files are the absolute paths of what Write wrote.
type Files struct {
	Dir, CA, CAKey, Server, ServerKey, Client, ClientKey string
}

// Paths returns the paths of the files in dir, made absolute.
func Paths(dir string) (Files, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return Files{}, err
	}
	p := func(name string) string { return filepath.Join(abs, name) }
	return Files{
		Dir: abs, CA: p(CAFile), CAKey: p(CAKeyFile), Server: p(ServerFile), ServerKey: p(ServerKeyFile),
		Client: p(ClientFile), ClientKey: p(ClientKeyFile),
	}, nil
}

// Exist reports whether every file is already in f.Dir.
func (f Files) Exist() bool {
	for _, p := range []string{f.CA, f.CAKey, f.Server, f.ServerKey, f.Client, f.ClientKey} {
		if _, err := os.Stat(p); err != nil {
			return false
		}
	}
	return true
}

// Write makes a new CA and issues a server and a client certificate with
// it into dir (created if needed), replacing what is there. Keys are
// ECDSA P-256 in PKCS #8, readable by the owner only.
func Write(dir string, opt Options) (Files, error) {
	if opt.ClientName == "" {
		opt.ClientName = "otpctl"
	}
	if opt.Validity <= 0 {
		opt.Validity = 365 * 24 * time.Hour
	}
	if opt.Now.IsZero() {
		opt.Now = time.Now()
	}
	f, err := Paths(dir)
	if err != nil {
		return Files{}, err
	}
	if err := os.MkdirAll(f.Dir, 0o755); err != nil {
		return Files{}, err
	}
	notBefore, notAfter := opt.Now.Add(-time.Hour), opt.Now.Add(opt.Validity)

	caKey, err := newKey()
	if err != nil {
		return Files{}, err
	}
	caTmpl := &x509.Certificate{
		Subject:   pkix.Name{CommonName: "otpd dev CA", Organization: []string{"otpd development"}},
		NotBefore: notBefore, NotAfter: notAfter,
		IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := sign(caTmpl, caTmpl, caKey, caKey)
	if err != nil {
		return Files{}, fmt.Errorf("CA: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return Files{}, err
	}
	if err := writePair(f.CA, f.CAKey, caDER, caKey); err != nil {
		return Files{}, err
	}

	leaf := func(cn string, usage x509.ExtKeyUsage, certFile, keyFile string) error {
		key, err := newKey()
		if err != nil {
			return err
		}
		tmpl := &x509.Certificate{
			Subject:   pkix.Name{CommonName: cn, Organization: []string{"otpd development"}},
			NotBefore: notBefore, NotAfter: notAfter,
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		}
		if usage == x509.ExtKeyUsageServerAuth {
			tmpl.DNSNames, tmpl.IPAddresses = ServerDNSNames, ServerIPs
		}
		der, err := sign(tmpl, ca, key, caKey)
		if err != nil {
			return fmt.Errorf("%s: %w", cn, err)
		}
		return writePair(certFile, keyFile, der, key)
	}
	if err := leaf("otpd", x509.ExtKeyUsageServerAuth, f.Server, f.ServerKey); err != nil {
		return Files{}, err
	}
	if err := leaf(opt.ClientName, x509.ExtKeyUsageClientAuth, f.Client, f.ClientKey); err != nil {
		return Files{}, err
	}
	return f, nil
}

func newKey() (*ecdsa.PrivateKey, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) }

func sign(tmpl, parent *x509.Certificate, key, parentKey *ecdsa.PrivateKey) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	return x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
}

// writePair writes a certificate (world-readable) and its key (owner only).
func writePair(certFile, keyFile string, der []byte, key *ecdsa.PrivateKey) error {
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	// The key first, so that a stale key never sits beside a new
	// certificate; removed first, so that 0600 holds for a file that was
	// there with wider permissions.
	if err := os.Remove(keyFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

// Instructions is what to put in otpd.yaml and on otpctl's command line to
// use the files.
func (f Files) Instructions() string {
	return fmt.Sprintf(`otpd.yaml (TLS; client_ca_file turns on mTLS, drop it for TLS only):

tls:
  cert_file: %s
  key_file: %s
  client_ca_file: %s

otpctl (-cert and -key only with mTLS; the server certificate names localhost, 127.0.0.1 and ::1):

  otpctl -ca %s -cert %s -key %s health

Other clients: trust %s, present %s with %s.
`, f.Server, f.ServerKey, f.CA, f.CA, f.Client, f.ClientKey, f.CA, f.Client, f.ClientKey)
}

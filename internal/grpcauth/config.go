package grpcauth

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// TLSConfig is the tls block of otpd.yaml: TLS for the gRPC listener, and
// mTLS when a client CA is given. The admin HTTP port stays plain: it serves
// probes and metrics, never codes.
type TLSConfig struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ClientCAFile turns on mTLS: every call must come with a client
	// certificate issued by one of these CAs.
	ClientCAFile string `yaml:"client_ca_file"`
}

// Enabled reports whether the listener serves TLS.
func (t TLSConfig) Enabled() bool { return t.CertFile != "" || t.KeyFile != "" || t.ClientCAFile != "" }

// Validate reports the problems of the block, each naming its key relative
// to the block. The files are read by LoadTLS, at start-up and by -check.
func (t TLSConfig) Validate() error {
	if !t.Enabled() {
		return nil
	}
	var errs []error
	if t.CertFile == "" {
		errs = append(errs, errors.New("cert_file: must be set with tls"))
	}
	if t.KeyFile == "" {
		errs = append(errs, errors.New("key_file: must be set with tls"))
	}
	return errors.Join(errs...)
}

// Config is the auth block of otpd.yaml: per-caller bearer tokens and the
// services left open. DefaultConfig gives the defaults.
type Config struct {
	// Tokens lists the callers; none turns token checks off.
	Tokens []Token `yaml:"tokens"`
	// OpenHealth serves grpc.health.v1 without a token (default true), for
	// load balancers and grpc_health_probe.
	OpenHealth bool `yaml:"open_health"`
	// OpenReflection serves server reflection without a token (default
	// false).
	OpenReflection bool `yaml:"open_reflection"`
}

// Token is one caller: its name, for logs and metrics, and the hex SHA-256
// of its bearer token. otpd never holds the token itself.
type Token struct {
	Name   string `yaml:"name"`
	SHA256 string `yaml:"sha256"`
}

// DefaultConfig returns the defaults: no tokens, health open, reflection
// closed.
func DefaultConfig() Config { return Config{OpenHealth: true} }

// Validate reports the problems of the block, each naming its key relative
// to the block.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{key}, args...)...))
	}
	names := map[string]int{}
	hashes := map[string]int{}
	for i, tok := range c.Tokens {
		key := fmt.Sprintf("tokens[%d]", i)
		switch {
		case tok.Name == "":
			bad(key+".name", "must be set: it names the caller in logs and metrics")
		case strings.ContainsFunc(tok.Name, func(r rune) bool { return r <= ' ' || r > '~' }):
			bad(key+".name", "must be printable ASCII without blanks, got %q", tok.Name)
		default:
			if j, dup := names[tok.Name]; dup {
				bad(key+".name", "%q is tokens[%d]'s name too", tok.Name, j)
			}
			names[tok.Name] = i
		}
		h, ok := tok.sum()
		if !ok {
			bad(key+".sha256", "must be the 64 hex digits of the token's SHA-256 (printf %%s \"$TOKEN\" | sha256sum), not the token")
			continue
		}
		if j, dup := hashes[string(h[:])]; dup {
			bad(key+".sha256", "is tokens[%d]'s token too: give each caller its own", j)
		}
		hashes[string(h[:])] = i
	}
	return errors.Join(errs...)
}

// sum decodes the token's hash; ok is false when it is not 64 hex digits.
func (t Token) sum() (sum [sha256.Size]byte, ok bool) {
	b, err := hex.DecodeString(t.SHA256)
	if err != nil || len(b) != sha256.Size {
		return sum, false
	}
	copy(sum[:], b)
	return sum, true
}

// Describe summarises the tls and auth blocks on one line, for the start-up
// log and otpd -check.
func Describe(t TLSConfig, c Config) string {
	var parts []string
	switch {
	case t.ClientCAFile != "":
		parts = append(parts, "TLS with client certificates (mTLS)")
	case t.Enabled():
		parts = append(parts, "TLS")
	default:
		parts = append(parts, "plaintext")
	}
	if len(c.Tokens) == 0 {
		parts = append(parts, "no bearer tokens")
		return strings.Join(parts, ", ")
	}
	names := make([]string, len(c.Tokens))
	for i, t := range c.Tokens {
		names[i] = t.Name
	}
	var open []string
	if c.OpenHealth {
		open = append(open, "health")
	}
	if c.OpenReflection {
		open = append(open, "reflection")
	}
	s := "bearer tokens for " + strings.Join(names, ", ")
	if len(open) > 0 {
		s += " (open without a token: " + strings.Join(open, ", ") + ")"
	}
	return strings.Join(append(parts, s), ", ")
}

package main

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// tlsConfig is the tls block: TLS for the gRPC listener, and mTLS when a
// client CA is given. The admin HTTP port stays plain: it serves probes and
// metrics, never codes.
type tlsConfig struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ClientCAFile turns on mTLS: every call must come with a client
	// certificate issued by one of these CAs.
	ClientCAFile string `yaml:"client_ca_file"`
}

func (t tlsConfig) enabled() bool { return t.CertFile != "" || t.KeyFile != "" || t.ClientCAFile != "" }

// authConfig is the auth block: per-caller bearer tokens.
type authConfig struct {
	Tokens []tokenConfig `yaml:"tokens"`
	// OpenHealth serves grpc.health.v1 without a token (default true), for
	// load balancers and grpc_health_probe.
	OpenHealth bool `yaml:"open_health"`
	// OpenReflection serves server reflection without a token (default
	// false).
	OpenReflection bool `yaml:"open_reflection"`
}

// tokenConfig is one caller: its name, for logs and metrics, and the hex
// SHA-256 of its bearer token. otpd never holds the token itself.
type tokenConfig struct {
	Name   string `yaml:"name"`
	SHA256 string `yaml:"sha256"`
}

// validate reports the problems of the tls and auth blocks, each naming its
// key. Files are read by loadTLS, at start-up and by -check.
func (c *config) validateAuth(bad func(key, format string, args ...any)) {
	t := c.TLS
	if t.enabled() {
		if t.CertFile == "" {
			bad("tls.cert_file", "must be set with tls")
		}
		if t.KeyFile == "" {
			bad("tls.key_file", "must be set with tls")
		}
	}
	names := map[string]int{}
	hashes := map[string]int{}
	for i, tok := range c.Auth.Tokens {
		key := fmt.Sprintf("auth.tokens[%d]", i)
		switch {
		case tok.Name == "":
			bad(key+".name", "must be set: it names the caller in logs and metrics")
		case strings.ContainsFunc(tok.Name, func(r rune) bool { return r <= ' ' || r > '~' }):
			bad(key+".name", "must be printable ASCII without blanks, got %q", tok.Name)
		default:
			if j, dup := names[tok.Name]; dup {
				bad(key+".name", "%q is auth.tokens[%d]'s name too", tok.Name, j)
			}
			names[tok.Name] = i
		}
		h := strings.ToLower(tok.SHA256)
		if b, err := hex.DecodeString(h); err != nil || len(b) != sha256.Size {
			bad(key+".sha256", "must be the 64 hex digits of the token's SHA-256 (printf %%s \"$TOKEN\" | sha256sum), not the token")
			continue
		}
		if j, dup := hashes[h]; dup {
			bad(key+".sha256", "is auth.tokens[%d]'s token too: give each caller its own", j)
		}
		hashes[h] = i
	}
}

// loadTLS returns the server's TLS configuration, or nil when TLS is off.
// The key pair is read again when its files change, so that a rotated
// certificate (a Kubernetes Secret update, cert-manager) is served without
// a restart; the client CAs are read once.
func loadTLS(t tlsConfig) (*tls.Config, *x509.CertPool, error) {
	if !t.enabled() {
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

func (k *keyPair) fileStamp() (string, error) {
	var b strings.Builder
	for _, f := range []string{k.certFile, k.keyFile} {
		st, err := os.Stat(f)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "%d/%d;", st.Size(), st.ModTime().UnixNano())
	}
	return b.String(), nil
}

func (k *keyPair) load() error {
	stamp, err := k.fileStamp()
	if err != nil {
		return fmt.Errorf("tls: %w", err)
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

// errorDomain is the google.rpc.ErrorInfo domain of otpd's errors.
const errorDomain = "otpd"

// callerKey is the context key of the caller's name.
type callerKey struct{}

// anonymous names callers when caller auth is off, and callers of the
// services left open.
const anonymous = "anonymous"

// callerHandler adds the authenticated caller, when there is one, to every
// record logged with a call's context.
type callerHandler struct{ slog.Handler }

func (h callerHandler) Handle(ctx context.Context, r slog.Record) error {
	if c, ok := ctx.Value(callerKey{}).(string); ok {
		r.AddAttrs(slog.String("caller", c))
	}
	return h.Handler.Handle(ctx, r)
}

func (h callerHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return callerHandler{h.Handler.WithAttrs(attrs)}
}

func (h callerHandler) WithGroup(name string) slog.Handler {
	return callerHandler{h.Handler.WithGroup(name)}
}

// callerOf returns the name of the authenticated caller of ctx.
func callerOf(ctx context.Context) string {
	if c, ok := ctx.Value(callerKey{}).(string); ok {
		return c
	}
	return anonymous
}

// authenticator checks every call's client certificate (mTLS) and bearer
// token, as configured.
type authenticator struct {
	clientCAs      *x509.CertPool // nil: no client certificate wanted
	tokens         []tokenHash    // empty: no token wanted
	openHealth     bool
	openReflection bool
	failures       *prometheus.CounterVec
	log            *slog.Logger
}

type tokenHash struct {
	name string
	sum  [sha256.Size]byte
}

// Reasons of authentication failures: the ErrorInfo reason (upper case) and
// the otpd_auth_failures_total label (lower case).
const (
	reasonNoClientCert   = "NO_CLIENT_CERT"
	reasonBadClientCert  = "BAD_CLIENT_CERT"
	reasonMissingToken   = "MISSING_TOKEN"
	reasonInvalidToken   = "INVALID_TOKEN"
	reasonMalformedToken = "MALFORMED_AUTHORIZATION"
)

func newAuthenticator(c *config, clientCAs *x509.CertPool, reg prometheus.Registerer, log *slog.Logger) *authenticator {
	a := &authenticator{
		clientCAs: clientCAs, openHealth: c.Auth.OpenHealth, openReflection: c.Auth.OpenReflection, log: log,
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otpd_auth_failures_total",
			Help: "Calls refused with UNAUTHENTICATED. reason: no_client_cert, bad_client_cert, missing_token, invalid_token, malformed_authorization.",
		}, []string{"reason"}),
	}
	for _, t := range c.Auth.Tokens {
		var th tokenHash
		th.name = t.Name
		b, _ := hex.DecodeString(strings.ToLower(t.SHA256)) // validated
		copy(th.sum[:], b)
		a.tokens = append(a.tokens, th)
	}
	reg.MustRegister(a.failures)
	for _, r := range []string{reasonNoClientCert, reasonBadClientCert, reasonMissingToken, reasonInvalidToken, reasonMalformedToken} {
		a.failures.WithLabelValues(strings.ToLower(r))
	}
	return a
}

// enabled reports whether calls are checked at all.
func (a *authenticator) enabled() bool { return a.clientCAs != nil || len(a.tokens) > 0 }

// open reports whether method is served without authentication.
func (a *authenticator) open(method string) bool {
	switch {
	case strings.HasPrefix(method, "/grpc.health.v1.Health/"):
		return a.openHealth
	case strings.HasPrefix(method, "/grpc.reflection."):
		return a.openReflection
	}
	return false
}

// authenticate returns ctx with the caller's name, or an UNAUTHENTICATED
// status. The name is the token's when tokens are configured, else the
// client certificate's subject common name.
func (a *authenticator) authenticate(ctx context.Context, method string) (context.Context, error) {
	if !a.enabled() || a.open(method) {
		return ctx, nil
	}
	caller := ""
	if a.clientCAs != nil {
		cn, reason, err := a.verifyPeer(ctx)
		if err != nil {
			return ctx, a.refuse(ctx, method, reason, err.Error())
		}
		caller = cn
	}
	if len(a.tokens) > 0 {
		name, reason, msg := a.checkToken(ctx)
		if reason != "" {
			return ctx, a.refuse(ctx, method, reason, msg)
		}
		caller = name
	}
	if caller == "" {
		caller = anonymous
	}
	return context.WithValue(ctx, callerKey{}, caller), nil
}

func (a *authenticator) verifyPeer(ctx context.Context) (cn, reason string, err error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", reasonNoClientCert, errors.New("no client certificate: this server requires mTLS")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		return "", reasonNoClientCert, errors.New("no client certificate: this server requires mTLS")
	}
	certs := info.State.PeerCertificates
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{
		Roots: a.clientCAs, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return "", reasonBadClientCert, errors.New("client certificate not accepted: it is not issued by a trusted client CA, expired, or not for client auth")
	}
	return certs[0].Subject.CommonName, "", nil
}

// checkToken finds the caller whose token the call carries. Every
// configured hash is compared, in constant time, whatever matches.
func (a *authenticator) checkToken(ctx context.Context) (name, reason, msg string) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) == 0 {
		return "", reasonMissingToken, "missing bearer token: send the metadata \"authorization: Bearer <token>\""
	}
	scheme, token, ok := strings.Cut(vals[0], " ")
	if len(vals) != 1 || !ok || !strings.EqualFold(scheme, "bearer") || strings.TrimSpace(token) == "" {
		return "", reasonMalformedToken, "malformed authorization metadata: want one \"Bearer <token>\""
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(token)))
	found := -1
	for i, t := range a.tokens {
		if subtle.ConstantTimeCompare(sum[:], t.sum[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return "", reasonInvalidToken, "invalid bearer token"
	}
	return a.tokens[found].name, "", ""
}

func (a *authenticator) refuse(ctx context.Context, method, reason, msg string) error {
	a.failures.WithLabelValues(strings.ToLower(reason)).Inc()
	addr := ""
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		addr = p.Addr.String()
	}
	a.log.WarnContext(ctx, "call refused: unauthenticated", "method", method, "reason", reason, "peer", addr)
	st, err := status.New(codes.Unauthenticated, msg).WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: errorDomain})
	if err != nil {
		return status.Error(codes.Unauthenticated, msg)
	}
	return st.Err()
}

func (a *authenticator) unary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, err := a.authenticate(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

func (a *authenticator) stream() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, err := a.authenticate(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}
		return handler(srv, &callerStream{ServerStream: ss, ctx: ctx})
	}
}

// callerStream is a ServerStream whose context carries the caller.
type callerStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *callerStream) Context() context.Context { return s.ctx }

// describeSecurity summarises the tls and auth blocks on one line.
func describeSecurity(c *config) string {
	var parts []string
	switch {
	case c.TLS.ClientCAFile != "":
		parts = append(parts, "TLS with client certificates (mTLS)")
	case c.TLS.enabled():
		parts = append(parts, "TLS")
	default:
		parts = append(parts, "plaintext")
	}
	if len(c.Auth.Tokens) == 0 {
		parts = append(parts, "no bearer tokens")
	} else {
		names := make([]string, len(c.Auth.Tokens))
		for i, t := range c.Auth.Tokens {
			names[i] = t.Name
		}
		open := []string{}
		if c.Auth.OpenHealth {
			open = append(open, "health")
		}
		if c.Auth.OpenReflection {
			open = append(open, "reflection")
		}
		s := "bearer tokens for " + strings.Join(names, ", ")
		if len(open) > 0 {
			s += " (open without a token: " + strings.Join(open, ", ") + ")"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}

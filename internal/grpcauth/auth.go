// Package grpcauth authenticates otpd's callers: TLS for the gRPC listener
// (with certificate reload on rotation), client certificates (mTLS) and
// per-caller bearer tokens checked on every call, and the caller's name in
// the call's context for logs and metrics.
package grpcauth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"errors"
	"log/slog"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// errorDomain is the google.rpc.ErrorInfo domain of otpd's errors.
const errorDomain = "otpd"

// callerKey is the context key of the caller's name.
type callerKey struct{}

// vouchedKey is the context key of a caller that this process has
// already authenticated by other means (see Vouch).
type vouchedKey struct{}

// Vouch returns ctx for an in-process call whose caller this process has
// already authenticated by other means than a token or a client
// certificate: a webhook signature checked by a hook of listen.api. The
// Authenticator takes the call as name's without asking for either. Only
// code in this process can set a context value, so no request from the
// network can carry it.
func Vouch(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, vouchedKey{}, name)
}

// Anonymous names callers when caller auth is off, and callers of the
// services left open.
const Anonymous = "anonymous"

// callerHandler adds the authenticated caller, when there is one, to every
// record logged with a call's context.
type callerHandler struct{ slog.Handler }

// LogHandler wraps h so that every record logged with a call's context
// carries the authenticated caller.
func LogHandler(h slog.Handler) slog.Handler { return callerHandler{h} }

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

// Caller returns the name of the authenticated caller of ctx.
func Caller(ctx context.Context) string {
	if c, ok := ctx.Value(callerKey{}).(string); ok {
		return c
	}
	return Anonymous
}

// Authenticator checks every call's client certificate (mTLS) and bearer
// token, as configured.
type Authenticator struct {
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

// New returns the Authenticator of c, checking client certificates against
// clientCAs (nil: none wanted; see LoadTLS) and counting refusals in
// otpd_auth_failures_total. c must pass Validate.
func New(c Config, clientCAs *x509.CertPool, reg prometheus.Registerer, log *slog.Logger) *Authenticator {
	a := &Authenticator{
		clientCAs: clientCAs, openHealth: c.OpenHealth, openReflection: c.OpenReflection, log: log,
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otpd_auth_failures_total",
			Help: "Calls refused with UNAUTHENTICATED. reason: no_client_cert, bad_client_cert, missing_token, invalid_token, malformed_authorization.",
		}, []string{"reason"}),
	}
	for _, t := range c.Tokens {
		sum, _ := t.sum() // validated
		a.tokens = append(a.tokens, tokenHash{name: t.Name, sum: sum})
	}
	reg.MustRegister(a.failures)
	for _, r := range []string{reasonNoClientCert, reasonBadClientCert, reasonMissingToken, reasonInvalidToken, reasonMalformedToken} {
		a.failures.WithLabelValues(strings.ToLower(r))
	}
	return a
}

// enabled reports whether calls are checked at all. A nil Authenticator
// checks nothing.
func (a *Authenticator) enabled() bool {
	return a != nil && (a.clientCAs != nil || len(a.tokens) > 0)
}

// open reports whether method is served without authentication.
func (a *Authenticator) open(method string) bool {
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
func (a *Authenticator) authenticate(ctx context.Context, method string) (context.Context, error) {
	if name, ok := ctx.Value(vouchedKey{}).(string); ok {
		return context.WithValue(ctx, callerKey{}, name), nil
	}
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
		caller = Anonymous
	}
	return context.WithValue(ctx, callerKey{}, caller), nil
}

func (a *Authenticator) verifyPeer(ctx context.Context) (cn, reason string, err error) {
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
func (a *Authenticator) checkToken(ctx context.Context) (name, reason, msg string) {
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

func (a *Authenticator) refuse(ctx context.Context, method, reason, msg string) error {
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

// Unary authenticates unary calls.
func (a *Authenticator) Unary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, err := a.authenticate(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// Stream authenticates streaming calls.
func (a *Authenticator) Stream() grpc.StreamServerInterceptor {
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

// Package client is a small Go client for otpd's otp.v1.OtpService, for
// auth servers that call otpd: it dials TCP, a unix socket (the sidecar) or
// TLS, sends a bearer token on every call, gives every send an idempotency
// key, and retries what otpd says is worth retrying (UNAVAILABLE, and a send
// still in flight) after the delay of its RetryInfo, within the call's
// deadline. A rate limit (RESOURCE_EXHAUSTED) is returned at once: it is the
// user's to see, with its RetryInfo.
//
//	c, err := client.New("unix:///run/otpd/otpd.sock", client.WithToken(os.Getenv("OTPD_TOKEN")))
//	...
//	resp, err := c.SendCode(ctx, &otpv1.SendCodeRequest{Recipient: "+14155550123", UsageType: otpv1.UsageType_USAGE_TYPE_SIGN_IN})
package client

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/credentials/local"
	"google.golang.org/grpc/status"

	otpv1 "github.com/otpd/otpd/proto/otp/v1"
)

// Client calls one otpd. It is safe for concurrent use.
type Client struct {
	conn *grpc.ClientConn
	otp  otpv1.OtpServiceClient
	opts options
}

type options struct {
	token       string
	tls         *tls.Config
	insecure    bool
	maxAttempts int
	maxWait     time.Duration
	dial        []grpc.DialOption
}

// Option configures a Client.
type Option func(*options)

// WithToken sends "authorization: Bearer <token>" on every call (otpd's
// auth.tokens). Over a unix socket or loopback TCP without TLS it travels
// with gRPC's local credentials; elsewhere it needs WithTLS.
func WithToken(token string) Option { return func(o *options) { o.token = token } }

// WithTLS dials with TLS (and a client certificate, for mTLS, when cfg has
// one).
func WithTLS(cfg *tls.Config) Option { return func(o *options) { o.tls = cfg } }

// WithInsecure dials a remote address in plaintext. Without it a plaintext
// connection is only made to a unix socket or a loopback address, so that
// a token never crosses a network in clear by accident.
func WithInsecure() Option { return func(o *options) { o.insecure = true } }

// WithRetries sets how many attempts a call makes at most (3; 1 turns
// retries off) and the longest RetryInfo delay it waits for (5s): a longer
// one, or one that would end after the call's deadline, is returned.
func WithRetries(attempts int, maxWait time.Duration) Option {
	return func(o *options) { o.maxAttempts, o.maxWait = attempts, maxWait }
}

// WithDialOptions adds gRPC dial options (interceptors, keepalive, ...).
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *options) { o.dial = append(o.dial, opts...) }
}

// New returns a Client of the otpd at target: "host:port" or
// "unix:///path/to.sock". It does not wait for the connection.
func New(target string, opts ...Option) (*Client, error) {
	o := options{maxAttempts: 3, maxWait: 5 * time.Second}
	for _, opt := range opts {
		opt(&o)
	}
	if o.maxAttempts < 1 {
		return nil, errors.New("client: WithRetries needs at least 1 attempt")
	}
	var creds credentials.TransportCredentials
	switch {
	case o.tls != nil:
		creds = credentials.NewTLS(o.tls)
	case o.insecure:
		creds = insecure.NewCredentials()
	default:
		// Unix sockets and loopback only: anything else fails to connect
		// with an error that says so.
		creds = local.NewCredentials()
	}
	dial := append([]grpc.DialOption{grpc.WithTransportCredentials(creds)}, o.dial...)
	if o.token != "" {
		dial = append(dial, grpc.WithPerRPCCredentials(bearer(o.token)))
	}
	if !strings.HasPrefix(target, "unix://") && !strings.Contains(target, "://") {
		target = "passthrough:///" + target
	}
	conn, err := grpc.NewClient(target, dial...)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	return &Client{conn: conn, otp: otpv1.NewOtpServiceClient(conn), opts: o}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Conn is the underlying connection, for the health service or reflection.
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// SendCode sends a code. A request without an idempotency key gets a fresh
// random one, so that the retries of this call can never send twice.
func (c *Client) SendCode(ctx context.Context, req *otpv1.SendCodeRequest, opts ...grpc.CallOption) (*otpv1.SendCodeResponse, error) {
	if req.GetIdempotencyKey() == "" {
		req.IdempotencyKey = newKey()
	}
	return retry(ctx, c.opts, func() (*otpv1.SendCodeResponse, error) { return c.otp.SendCode(ctx, req, opts...) })
}

// DeliverCode delivers a code the caller made (an identity server that
// checks its own codes). Like SendCode, a request without an idempotency
// key gets a fresh random one.
func (c *Client) DeliverCode(ctx context.Context, req *otpv1.DeliverCodeRequest, opts ...grpc.CallOption) (*otpv1.DeliverCodeResponse, error) {
	if req.GetIdempotencyKey() == "" {
		req.IdempotencyKey = newKey()
	}
	return retry(ctx, c.opts, func() (*otpv1.DeliverCodeResponse, error) { return c.otp.DeliverCode(ctx, req, opts...) })
}

// VerifyCode checks a code. Retrying it is safe: otpd answers UNAVAILABLE
// only when the verification changed nothing (or was undone).
func (c *Client) VerifyCode(ctx context.Context, req *otpv1.VerifyCodeRequest, opts ...grpc.CallOption) (*otpv1.VerifyCodeResponse, error) {
	return retry(ctx, c.opts, func() (*otpv1.VerifyCodeResponse, error) { return c.otp.VerifyCode(ctx, req, opts...) })
}

// CancelCode kills the live code of a recipient and usage type (sign-out,
// an account change). Retrying it is safe: a cancel is idempotent (a
// retry whose first attempt did cancel answers cancelled false).
func (c *Client) CancelCode(ctx context.Context, req *otpv1.CancelCodeRequest, opts ...grpc.CallOption) (*otpv1.CancelCodeResponse, error) {
	return retry(ctx, c.opts, func() (*otpv1.CancelCodeResponse, error) { return c.otp.CancelCode(ctx, req, opts...) })
}

// GetCodeStatus tells whether a recipient has a live code for a usage
// type, with its expiry, the attempts left and the end of the resend
// cooldown. Retrying it is safe: it changes nothing.
func (c *Client) GetCodeStatus(ctx context.Context, req *otpv1.GetCodeStatusRequest, opts ...grpc.CallOption) (*otpv1.GetCodeStatusResponse, error) {
	return retry(ctx, c.opts, func() (*otpv1.GetCodeStatusResponse, error) { return c.otp.GetCodeStatus(ctx, req, opts...) })
}

// retry runs call until it succeeds, fails with an error not worth
// retrying, or runs out of attempts or time.
func retry[T any](ctx context.Context, o options, call func() (T, error)) (T, error) {
	for attempt := 1; ; attempt++ {
		resp, err := call()
		wait, ok := retryable(err)
		if err == nil || !ok || attempt >= o.maxAttempts || wait > o.maxWait {
			return resp, err
		}
		if d, has := ctx.Deadline(); has && time.Until(d) < wait {
			return resp, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return resp, err
		case <-t.C:
		}
	}
}

// retryable reports whether err is worth another attempt and after how
// long: UNAVAILABLE (Redis or every provider down for now) and ABORTED (the
// same idempotent send still in flight), after their RetryInfo (100ms when
// there is none).
func retryable(err error) (time.Duration, bool) {
	st, ok := status.FromError(err)
	if !ok || (st.Code() != codes.Unavailable && st.Code() != codes.Aborted) {
		return 0, false
	}
	wait := 100 * time.Millisecond
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			wait = ri.GetRetryDelay().AsDuration()
		}
	}
	return wait, true
}

func newKey() string {
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// bearer is the token as per-call metadata.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

// RequireTransportSecurity is false because New already chose a transport
// that protects the token: TLS, gRPC's local credentials (a unix socket or
// loopback, whose security level grpc-go would otherwise refuse for loopback
// TCP), or plaintext the caller asked for by name (WithInsecure).
func (bearer) RequireTransportSecurity() bool { return false }

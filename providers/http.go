package providers

import (
	"context"
	"net"
	"net/http"
	"time"
)

// NewTransport returns the HTTP transport a provider shares between its
// calls: http.DefaultTransport's settings (proxy from the environment,
// HTTP/2, dial and TLS handshake timeouts) with enough idle connections per
// host to keep a busy provider's connections warm. The default keeps two.
func NewTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 256
	t.MaxIdleConnsPerHost = 64
	t.IdleConnTimeout = 90 * time.Second
	t.DialContext = (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	t.ResponseHeaderTimeout = 0 // the call's own deadline bounds the wait
	return t
}

// DeadlineClient returns an *http.Client for one call through an SDK that
// takes no context. Every request the client sends carries ctx, so that
// cancelling ctx aborts it, and the client's Timeout is what is left of ctx's
// deadline, for SDKs that build requests of their own. A ctx that has already
// ended gives its error.
func DeadlineClient(ctx context.Context, base http.RoundTripper) (*http.Client, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c := &http.Client{Transport: ctxTransport{ctx: ctx, base: base}}
	if deadline, ok := ctx.Deadline(); ok {
		left := time.Until(deadline)
		if left <= 0 {
			return nil, context.DeadlineExceeded
		}
		c.Timeout = left
	}
	return c, nil
}

// ctxTransport sends every request with its ctx in place of the request's
// own context.
type ctxTransport struct {
	ctx  context.Context
	base http.RoundTripper
}

// RoundTrip sends r with t.ctx. The context http.Client gives r for its
// Timeout has the same deadline as t.ctx, so nothing is lost by replacing it.
func (t ctxTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return t.base.RoundTrip(r.WithContext(t.ctx))
}

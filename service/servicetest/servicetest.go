// Package servicetest builds otpd's real service for the tests of the
// layers above it (the server, the client): the in-memory store, the
// embedded templates, and a fake provider on both channels whose messages
// the test reads.
package servicetest

import (
	"testing"

	"github.com/otpd/otpd/otp"
	"github.com/otpd/otpd/providers"
	"github.com/otpd/otpd/providers/fake"
	"github.com/otpd/otpd/service"
	"github.com/otpd/otpd/service/memstore"
	"github.com/otpd/otpd/templates"
)

// Secret is the HMAC secret of New's service.
const Secret = "servicetest-secret-0123456789abcdef"

// New returns the service with the default configuration, changed by
// mutate if given, and the fake provider that delivers its messages.
func New(tb testing.TB, mutate func(*service.Config), opts ...service.Option) (*service.Service, *fake.Provider) {
	tb.Helper()
	p, err := fake.New("fake", fake.Config{})
	if err != nil {
		tb.Fatal(err)
	}
	routes := make([]providers.Route, 0, len(otp.Channels))
	for _, ch := range otp.Channels {
		routes = append(routes, providers.Route{Name: "fake", Channel: ch, Sender: p})
	}
	router, err := providers.NewRouter(routes, providers.RouterOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	renderer, err := templates.New(templates.DefaultOptions())
	if err != nil {
		tb.Fatal(err)
	}
	cfg := service.DefaultConfig()
	cfg.Secret = Secret
	if mutate != nil {
		mutate(&cfg)
	}
	svc, err := service.New(cfg, memstore.New(), router, renderer, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	return svc, p
}

// Package service is otpd's domain: the OtpService gRPC handlers, code
// generation and keyed hashing, the rate limits, and the Store contract that
// the Redis and in-memory stores implement.
//
// A code is sent in send.go and checked in verify.go; the limits are in
// limits.go, the error model in errors.go, and what happens when the
// store's answer is lost (retries with the same ids, undos) in undo.go.
// Every check-and-update runs atomically inside the Store (a Lua script in
// Redis).
package service

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/otpd/otpd/otp"
	otpv1 "github.com/otpd/otpd/proto/otp/v1"
	"github.com/otpd/otpd/templates"
)

// Sender delivers a message through the configured providers, failing over
// between them (providers.Router).
type Sender interface {
	// Serves reports whether any provider serves the recipient, so that a
	// send nobody can deliver is refused before it counts anywhere.
	// u is the usage type: a provider that cannot serve it (such as
	// Tencent without an invitation template) does not count.
	Serves(ch otp.Channel, to string, u otp.UsageType) bool
	Send(ctx context.Context, msg otp.Message) (otp.Receipt, error)
}

// Renderer renders otpd's own templates (templates.Renderer).
type Renderer interface {
	MatchLocale(tag string) (string, error)
	// Has reports whether Render has a template for the channel, locale
	// and usage type: always, except for OrganizationInvitation.
	Has(ch otp.Channel, locale string, u otp.UsageType) bool
	Render(ch otp.Channel, locale string, u otp.UsageType, d templates.Data) (otp.Content, error)
}

// Option configures a Service.
type Option func(*Service)

// WithClock replaces time.Now, for tests.
func WithClock(now func() time.Time) Option { return func(s *Service) { s.now = now } }

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(s *Service) { s.log = l } }

// WithRegisterer registers the service's metrics (default: a private
// registry).
func WithRegisterer(r prometheus.Registerer) Option { return func(s *Service) { s.reg = r } }

// Service implements otp.v1.OtpService.
type Service struct {
	otpv1.UnimplementedOtpServiceServer

	cfg      Config
	store    Store
	sender   Sender
	renderer Renderer
	keys     *keyring
	// previous are the keyrings of Config.PreviousSecrets, in order.
	previous []*keyring
	phones   *phoneCache
	fraud    *fraudGuard
	tests    *testRecipients
	now      func() time.Time
	log      *slog.Logger
	reg      prometheus.Registerer
	metrics  *metrics
	undo     *undoer
}

var _ otpv1.OtpServiceServer = (*Service)(nil)

// New returns a Service. cfg must pass Validate.
func New(cfg Config, store Store, sender Sender, renderer Renderer, opts ...Option) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	keys := newKeyring([]byte(cfg.Secret.Reveal()))
	var previous []*keyring
	for _, p := range cfg.PreviousSecrets {
		previous = append(previous, newKeyring([]byte(p.Reveal())))
	}
	s := &Service{
		cfg: cfg, store: store, sender: sender, renderer: renderer, keys: keys, previous: previous,
		phones: newPhoneCache(defaultPhoneCacheSize),
		now:    time.Now, log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	s.fraud, s.tests = newFraudGuard(cfg.Fraud), newTestRecipients(cfg.TestRecipients)
	// Test recipients' numbers may be fictional: found before the
	// numbering plan is asked, on SendCode and VerifyCode alike.
	s.phones.parsePhone = s.tests.parser(s.phones.parsePhone)
	for _, o := range opts {
		o(s)
	}
	s.metrics = newMetrics(s.reg)
	s.undo = newUndoer()
	return s, nil
}

// Ping reports whether the store takes writes now (see Store.Ping), for
// health checks.
func (s *Service) Ping(ctx context.Context) error { return s.store.Ping(ctx) }

// storeFailed logs a failed store step and returns its result label:
// "canceled" when the caller canceled the call (logged at info: nothing is
// wrong with the store, and store_error feeds the Redis alert), else
// "store_error".
func storeFailed(ctx context.Context, log callLog, step string, err error) string {
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		log.InfoContext(ctx, step+": call canceled by the caller")
		return "canceled"
	}
	log.ErrorContext(ctx, step, slog.Any("error", err))
	return "store_error"
}

// detached returns a context for clean-up work that must run even when ctx
// is done, bounded on its own.
func detached(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
}

// ms is a duration in milliseconds, for logs.
func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

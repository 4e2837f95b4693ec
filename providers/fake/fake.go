// Package fake is a provider that does no I/O and fails on demand, for tests
// and load tests only: it accepts messages, fails them transiently or
// permanently, fails the first few, or takes its time, as configured or as a
// test sets it while running.
//
// Release builds of otpd do not carry it: "type: fake" is known only to
// binaries built with -tags otpd_fake (internal/registry), so that a
// provider that delivers nothing is never one typo away from production.
package fake

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/otpd/otpd/otp"
	"github.com/otpd/otpd/providers"
)

var _ providers.Sender = (*Provider)(nil)

// maxSent is how many accepted messages a Provider keeps for Sent. Older
// ones are dropped, so that a load test does not grow without bound.
const maxSent = 1024

// The causes of the failures a fake provider makes up.
var (
	errTransient = errors.New("fail message on purpose (transient)")
	errPermanent = errors.New("fail message on purpose (permanent)")
)

// Provider is a fake provider. It is safe for concurrent use.
type Provider struct {
	name string
	cfg  Config

	mu    sync.Mutex
	mode  string
	delay time.Duration
	calls int
	sent  []otp.Message // a ring of the last maxSent accepted messages
	next  int           // where the next accepted message goes in sent, once it is full
}

// New returns a fake provider called name.
func New(name string, cfg Config) (*Provider, error) {
	if name == "" {
		return nil, errors.New("create fake provider: name is empty")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("create fake provider %q: %w", name, err)
	}
	if cfg.Mode == "" {
		cfg.Mode = ModeOK
	}
	return &Provider{name: name, cfg: cfg, mode: cfg.Mode, delay: cfg.Delay}, nil
}

// Send waits for the delay, if any, then accepts msg or fails it according
// to FailFirst and the mode. A context that ends first fails the send
// transiently ("timeout" or "canceled").
func (p *Provider) Send(ctx context.Context, msg otp.Message) (otp.Receipt, error) {
	p.mu.Lock()
	p.calls++
	n, mode, delay := p.calls, p.mode, p.delay
	p.mu.Unlock()

	if err := ctx.Err(); err != nil {
		return otp.Receipt{}, providers.ClassifyTransport(p.name, err)
	}
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return otp.Receipt{}, providers.ClassifyTransport(p.name, ctx.Err())
		case <-t.C:
		}
	}

	switch {
	case n <= p.cfg.FailFirst || mode == ModeTransient:
		return otp.Receipt{}, providers.Transient(p.name, p.reason("fake_transient"), errTransient)
	case mode == ModePermanent:
		return otp.Receipt{}, providers.Permanent(p.name, p.reason("fake_permanent"), errPermanent)
	}

	p.mu.Lock()
	if len(p.sent) < maxSent {
		p.sent = append(p.sent, msg)
	} else {
		p.sent[p.next] = msg
		p.next = (p.next + 1) % maxSent
	}
	p.mu.Unlock()
	return otp.Receipt{Provider: p.name, MessageID: "fake-" + strconv.Itoa(n)}, nil
}

func (p *Provider) reason(def string) string {
	if p.cfg.Reason != "" {
		return p.cfg.Reason
	}
	return def
}

// SetMode switches how later sends end. It panics on a mode other than
// ModeOK, ModeTransient and ModePermanent, which is a bug in the test.
func (p *Provider) SetMode(mode string) {
	if err := validMode(mode); err != nil || mode == "" {
		panic(fmt.Sprintf("fake: set mode: unknown mode %q", mode))
	}
	p.mu.Lock()
	p.mode = mode
	p.mu.Unlock()
}

// SetDelay sets how long later sends take; 0 answers at once.
func (p *Provider) SetDelay(d time.Duration) {
	p.mu.Lock()
	p.delay = max(d, 0)
	p.mu.Unlock()
}

// Sent returns copies of the messages the provider accepted, oldest first:
// the last 1024 of them.
func (p *Provider) Sent() []otp.Message {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]otp.Message, 0, len(p.sent))
	out = append(out, p.sent[p.next:]...)
	return append(out, p.sent[:p.next]...)
}

// Calls returns how many times Send was called, whatever the outcome.
func (p *Provider) Calls() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls
}

// Reset forgets the calls and the accepted messages and restores the
// configured mode and delay, so that FailFirst applies again.
func (p *Provider) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls, p.sent, p.next = 0, nil, 0
	p.mode, p.delay = p.cfg.Mode, p.cfg.Delay
}

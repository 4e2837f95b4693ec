package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/otpd/otpd/otp"
)

// The limits, as named in configuration, errors and metrics.
const (
	limitResend             = "resend_interval"
	limitPerRecipient       = "per_recipient"
	limitPerIP              = "per_ip"
	limitPerCountry         = "per_country"
	limitVerifyPerRecipient = "verify_per_recipient"
	limitVerifyPerIP        = "verify_per_ip"
)

// Limits is the limits block of otpd.yaml. Every limit is enforced
// atomically by the Store: per recipient inside the send's or the verify's
// own script, the shared windows (per IP, per country, verify per IP) as
// Slots.
type Limits struct {
	// ResendInterval is the cooldown per recipient and usage type (60s); 0
	// disables it.
	ResendInterval time.Duration `yaml:"resend_interval"`
	// PerRecipient limits sends per recipient (5 per 10m).
	PerRecipient Window `yaml:"per_recipient"`
	// PerIP limits sends per client IP, when the caller gives one (20 per 1h).
	PerIP Window `yaml:"per_ip"`
	// PerCountry limits SMS sends per country calling code (1000 per 1h).
	PerCountry Window `yaml:"per_country"`
	// VerifyPerRecipient limits wrong verifications per recipient across
	// codes (20 per 1h).
	VerifyPerRecipient Window `yaml:"verify_per_recipient"`
	// VerifyPerIP limits wrong verifications per client IP (IPv6 per /64)
	// across recipients, when the caller gives one (100 per 1h): one
	// address cannot spread its guesses over many recipients.
	VerifyPerIP Window `yaml:"verify_per_ip"`
}

// Window is a sliding-window limit: at most Count events per Window. A zero
// Count disables it.
type Window struct {
	Count  int           `yaml:"count"`
	Window time.Duration `yaml:"window"`
}

// Enabled reports whether the limit applies.
func (w Window) Enabled() bool { return w.Count > 0 && w.Window > 0 }

// DefaultLimits returns the documented defaults.
func DefaultLimits() Limits {
	return Limits{
		ResendInterval:     60 * time.Second,
		PerRecipient:       Window{Count: 5, Window: 10 * time.Minute},
		PerIP:              Window{Count: 20, Window: time.Hour},
		PerCountry:         Window{Count: 1000, Window: time.Hour},
		VerifyPerRecipient: Window{Count: 20, Window: time.Hour},
		VerifyPerIP:        Window{Count: 100, Window: time.Hour},
	}
}

// validate checks the limits; errors name the key of otpd.yaml.
func (l Limits) validate() error {
	var errs []error
	if l.ResendInterval < 0 {
		errs = append(errs, errors.New("limits.resend_interval: must not be negative"))
	}
	for _, w := range []struct {
		key string
		w   Window
	}{
		{limitPerRecipient, l.PerRecipient}, {limitPerIP, l.PerIP},
		{limitPerCountry, l.PerCountry}, {limitVerifyPerRecipient, l.VerifyPerRecipient},
		{limitVerifyPerIP, l.VerifyPerIP},
	} {
		if w.w.Count < 0 {
			errs = append(errs, fmt.Errorf("limits.%s.count: must not be negative (0 disables the limit)", w.key))
		}
		if w.w.Count != 0 && w.w.Window < time.Second {
			errs = append(errs, fmt.Errorf("limits.%s.window: must be at least 1s", w.key))
		}
	}
	return errors.Join(errs...)
}

// sendSlots lists the shared limits a send counts against, with room for
// the conversion rule's slots, which conversionSlots appends: one
// allocation for all of them.
func (s *Service) sendSlots(r sendRequest) []Slot {
	perIP := r.ip != "" && s.cfg.Limits.PerIP.Enabled()
	perCountry := r.rcpt.channel == otp.SMS && s.cfg.Limits.PerCountry.Enabled()
	n := 0
	if perIP {
		n++
	}
	if perCountry {
		n++
	}
	if s.converts(r) {
		n += maxConversionSlots
	}
	if n == 0 {
		return nil
	}
	slots := make([]Slot, 0, n)
	if perIP {
		slots = append(slots, s.ipSlot(limitPerIP, "", r.ip, s.cfg.Limits.PerIP))
	}
	if perCountry {
		slots = append(slots, Slot{Limit: limitPerCountry, Key: "cc:" + r.rcpt.country, Window: s.cfg.Limits.PerCountry})
	}
	return slots
}

// verifySlot is the client IP's verify window, nil when the caller gave no
// IP or the limit is off. Its key differs from the send window's of the
// same IP.
func (s *Service) verifySlot(ip string) *Slot {
	if ip == "" || !s.cfg.Limits.VerifyPerIP.Enabled() {
		return nil
	}
	sl := s.ipSlot(limitVerifyPerIP, "v", ip, s.cfg.Limits.VerifyPerIP)
	return &sl
}

func (s *Service) limited(ctx context.Context, count func(provider, result string), log callLog, limit string, retryAfter time.Duration) error {
	count("", "rate_limited")
	s.metrics.rateLimited.WithLabelValues(limit).Inc()
	log.InfoContext(ctx, "send rate limited", slog.String("limit", limit), slog.String("retry_after", retryAfter.String()))
	return &rateLimitError{limit: limit, retryAfter: retryAfter}
}

package service

import (
	"errors"
	"fmt"
	"time"

	"github.com/otpd/otpd/internal/redact"
	"github.com/otpd/otpd/templates"
)

// Config is what the service owns of otpd.yaml: the secret, the code rules,
// the limits and the send deadlines, all keys at the file's root.
// DefaultConfig gives the defaults.
type Config struct {
	// Secret keys every hash otpd stores; at least MinSecretLen bytes.
	Secret redact.Secret `yaml:"secret"`
	// PreviousSecrets are other secrets whose state still counts, at most
	// MaxPreviousSecrets, each as long as Secret must be (none): a code
	// issued under one verifies, and windows, cooldowns and idempotency
	// records carry over, moved to Secret's keys the first time a call
	// touches them. New state is written under Secret only. README
	// "Rotating the secret" gives the procedure.
	PreviousSecrets []redact.Secret `yaml:"previous_secrets"`
	// Code holds the rules of a code.
	Code CodeConfig `yaml:"code"`
	// Limits holds the rate limits.
	Limits Limits `yaml:"limits"`
	// SendTimeout bounds a SendCode call when the caller's deadline is later
	// or absent (15s).
	SendTimeout time.Duration `yaml:"send_timeout"`
	// IdempotencyTTL is how long the answer to an idempotent send is kept
	// (24h).
	IdempotencyTTL time.Duration `yaml:"idempotency_ttl"`
	// Fraud is the fraud guard against SMS pumping (fraud.go).
	Fraud Fraud `yaml:"fraud"`
	// TestRecipients have a fixed code and are never delivered to, for
	// app-store review and end-to-end tests; at most MaxTestRecipients
	// (see TestRecipient).
	TestRecipients []TestRecipient `yaml:"test_recipients"`
	// AppName is inserted as {{app_name}} and handed to providers; it is
	// templates.app_name in otpd.yaml.
	AppName string `yaml:"-"`
}

// CodeConfig is the code block of otpd.yaml.
type CodeConfig struct {
	// Length is the number of digits of a code, 4 to 10 (6).
	Length int `yaml:"length"`
	// TTL is how long a code stays valid (10m).
	TTL time.Duration `yaml:"ttl"`
	// MaxAttempts is how many wrong verifications kill a code (5).
	MaxAttempts int `yaml:"max_attempts"`
	// KeepPrevious is how many earlier codes stay valid when a new one is
	// sent, 0 to MaxKeepPrevious (0: a new code replaces the old one).
	// Kept codes share the live code's attempts (a resend does not reset
	// them while they are live) and keep their own expiry; the first right
	// code consumes them all.
	KeepPrevious int `yaml:"keep_previous"`
}

// MaxKeepPrevious bounds CodeConfig.KeepPrevious: each kept code is one
// more code an attacker's guess can hit.
const MaxKeepPrevious = 4

// DefaultConfig returns the documented defaults, without a secret.
func DefaultConfig() Config {
	return Config{
		Code:           CodeConfig{Length: 6, TTL: 10 * time.Minute, MaxAttempts: 5},
		Limits:         DefaultLimits(),
		SendTimeout:    15 * time.Second,
		IdempotencyTTL: 24 * time.Hour,
		Fraud:          DefaultFraud(),
		AppName:        templates.DefaultOptions().AppName,
	}
}

// Validate checks the configuration; errors name the key of otpd.yaml.
func (c Config) Validate() error {
	var errs []error
	check := func(ok bool, key, msg string) {
		if !ok {
			errs = append(errs, fmt.Errorf("%s: %s", key, msg))
		}
	}
	check(len(c.Secret) >= MinSecretLen, "secret",
		fmt.Sprintf("must be at least %d bytes (set OTPD_HMAC_KEY to a long random value)", MinSecretLen))
	check(len(c.PreviousSecrets) <= MaxPreviousSecrets, "previous_secrets",
		fmt.Sprintf("at most %d (each costs every call a little more work in Redis; drop those older than the rotation's wait)", MaxPreviousSecrets))
	for i, p := range c.PreviousSecrets {
		key := fmt.Sprintf("previous_secrets[%d]", i)
		check(len(p) >= MinSecretLen, key, fmt.Sprintf("must be at least %d bytes, as secret", MinSecretLen))
		check(p != c.Secret, key, "is the same as secret")
		for j, q := range c.PreviousSecrets[:i] {
			check(p != q, key, fmt.Sprintf("is the same as previous_secrets[%d]", j))
		}
	}
	check(c.Code.Length >= 4 && c.Code.Length <= 10, "code.length", "must be between 4 and 10")
	check(c.Code.TTL >= time.Second, "code.ttl", "must be at least 1s")
	check(c.Code.MaxAttempts >= 1 && c.Code.MaxAttempts <= 100, "code.max_attempts", "must be between 1 and 100")
	check(c.Code.KeepPrevious >= 0 && c.Code.KeepPrevious <= MaxKeepPrevious, "code.keep_previous",
		fmt.Sprintf("must be between 0 and %d", MaxKeepPrevious))
	if err := c.Limits.validate(); err != nil {
		errs = append(errs, err)
	}
	check(c.SendTimeout >= 100*time.Millisecond, "send_timeout", "must be at least 100ms")
	check(c.IdempotencyTTL >= time.Minute, "idempotency_ttl", "must be at least 1m")
	if err := c.Fraud.validate(); err != nil {
		errs = append(errs, err)
	}
	if err := validateTestRecipients(c.TestRecipients, c.Code.Length, c.Limits.VerifyPerRecipient); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

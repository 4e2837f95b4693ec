package fake

import (
	"fmt"
	"time"

	"github.com/otpd/otpd/providers"
)

// The modes of a fake provider.
const (
	// ModeOK accepts every message.
	ModeOK = "ok"
	// ModeTransient fails every message with a transient error.
	ModeTransient = "transient"
	// ModePermanent fails every message with a permanent error.
	ModePermanent = "permanent"
)

// Config configures a fake provider. The zero value accepts every message at
// once.
type Config struct {
	// Mode is how sends end: ModeOK (the default if empty), ModeTransient or
	// ModePermanent.
	Mode string
	// Reason is the Reason of the errors the provider returns;
	// "fake_transient" or "fake_permanent" if empty.
	Reason string
	// Delay is how long each send takes, or until its context ends, which
	// fails it transiently. 0 answers at once.
	Delay time.Duration
	// FailFirst makes the first FailFirst sends fail transiently whatever
	// the mode.
	FailFirst int
}

// wireConfig is Config as written in the configuration file.
type wireConfig struct {
	Mode      string `json:"mode"`
	Reason    string `json:"reason"`
	Delay     string `json:"delay"` // a Go duration such as "2s"
	FailFirst int    `json:"failFirst"`
	// Endpoint is accepted, as every provider takes one, and unused: the
	// fake provider does no I/O.
	Endpoint string `json:"endpoint"`
}

// ParseConfig decodes the JSON config block of a fake provider, such as
// {"mode": "transient", "reason": "http_503", "delay": "2s", "failFirst": 1},
// and validates it. Unknown keys are an error; an empty block or null gives
// the zero Config.
func ParseConfig(raw []byte) (Config, error) {
	var w wireConfig
	if err := providers.DecodeConfig("fake", raw, &w); err != nil {
		return Config{}, err
	}
	cfg := Config{Mode: w.Mode, Reason: w.Reason, FailFirst: w.FailFirst}
	if w.Delay != "" {
		d, err := time.ParseDuration(w.Delay)
		if err != nil {
			return Config{}, fmt.Errorf("delay: parse %q: want a duration such as \"2s\"", w.Delay)
		}
		cfg.Delay = d
	}
	return cfg, cfg.Validate()
}

// Validate returns an error naming the first field of c that is invalid.
func (c Config) Validate() error {
	if err := validMode(c.Mode); err != nil {
		return fmt.Errorf("mode: %w", err)
	}
	if c.Delay < 0 {
		return fmt.Errorf("delay: must not be negative, got %s", c.Delay)
	}
	if c.FailFirst < 0 {
		return fmt.Errorf("failFirst: must not be negative, got %d", c.FailFirst)
	}
	return nil
}

func validMode(m string) error {
	switch m {
	case "", ModeOK, ModeTransient, ModePermanent:
		return nil
	}
	return fmt.Errorf("unknown mode %q, want %q, %q or %q", m, ModeOK, ModeTransient, ModePermanent)
}

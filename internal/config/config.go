// Package config reads otpd.yaml: ${ENV} references expanded, decoded
// strictly (an unknown key is an error) over the defaults of each
// component, and validated by asking each component about its own block.
// Every error names its key. The components own their settings, defaults
// and checks; this package only puts them in their place in the file.
package config

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"

	"github.com/otpd/otpd/internal/grpcauth"
	"github.com/otpd/otpd/internal/redact"
	"github.com/otpd/otpd/internal/registry"
	"github.com/otpd/otpd/internal/server"
	"github.com/otpd/otpd/providers"
	"github.com/otpd/otpd/service"
	"github.com/otpd/otpd/service/redisstore"
	"github.com/otpd/otpd/templates"
)

// Config is otpd.yaml. Defaults are documented beside each component's
// fields, in README.md and in deploy/otpd.example.yaml.
type Config struct {
	// Server holds listen, shutdown and health.
	Server server.Config `yaml:",inline"`
	// Service holds secret, code, limits, send_timeout and
	// idempotency_ttl.
	Service   service.Config     `yaml:",inline"`
	TLS       grpcauth.TLSConfig `yaml:"tls"`
	Auth      grpcauth.Config    `yaml:"auth"`
	Redis     redisstore.Config  `yaml:"redis"`
	Templates templates.Options  `yaml:"templates"`
	Providers []registry.Spec    `yaml:"providers"`
	Delivery  providers.Delivery `yaml:"delivery"`
	Log       Log                `yaml:"log"`

	// Dev is set for the built-in development configuration (Dev): an
	// in-memory store instead of Redis, a random secret.
	Dev bool `yaml:"-"`
}

// Log is the log block.
type Log struct {
	// Level is debug, info (the default), warn or error.
	Level string `yaml:"level"`
}

// SlogLevel returns the level; it must have passed Validate.
func (l Log) SlogLevel() slog.Level {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(l.Level))
	return lv
}

// Default returns the configuration of a file that sets nothing: each
// component's defaults.
func Default() *Config {
	return &Config{
		Server:    server.DefaultConfig(),
		Service:   service.DefaultConfig(),
		Auth:      grpcauth.DefaultConfig(),
		Redis:     redisstore.DefaultConfig(),
		Templates: templates.DefaultOptions(),
		Delivery:  providers.DefaultDelivery(),
		Log:       Log{Level: "info"},
	}
}

// Dev returns what otpd runs with when no configuration is given: an
// in-memory store, the console provider on both channels, and a random
// secret, so that codes do not outlive the process.
func Dev() *Config {
	c := Default()
	c.Dev = true
	c.Providers = []registry.Spec{{Name: "console", Type: "console"}}
	// Connect, gRPC-Web and the hooks too, on loopback: curl, Node and a
	// local Logto can try otpd without a configuration file.
	c.Server.Listen.API = "127.0.0.1:8080"
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	c.Service.Secret = redact.Secret(hex.EncodeToString(secret))
	return c
}

// Validate checks the whole configuration: each component checks its own
// block, and every error names its key.
func (c *Config) Validate() error {
	var errs []error
	add := func(prefix string, err error) { errs = append(errs, under(prefix, err)...) }
	add("", c.Server.Validate())
	add("", c.Service.Validate())
	add("tls", c.TLS.Validate())
	add("auth", c.Auth.Validate())
	if !c.Dev {
		add("redis", c.Redis.Validate())
	}
	add("templates", c.Templates.Validate())
	add("delivery", c.Delivery.Validate())
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(c.Log.Level)); err != nil {
		errs = append(errs, fmt.Errorf("log.level: %q is not one of debug, info, warn, error", c.Log.Level))
	}
	if len(c.Providers) == 0 {
		errs = append(errs, errors.New("providers: configure at least one provider"))
	}
	seen := map[string]int{}
	for i, p := range c.Providers {
		key := fmt.Sprintf("providers[%d]", i)
		add(key, p.Validate())
		if j, dup := seen[p.Name]; dup && p.Name != "" {
			errs = append(errs, fmt.Errorf("%s.name: %q is providers[%d]'s name too", key, p.Name, j))
		} else {
			seen[p.Name] = i
		}
	}
	return errors.Join(errs...)
}

// under returns the errors of err, each prefixed with the key of the block
// that reported it.
func under(prefix string, err error) []error {
	if err == nil {
		return nil
	}
	errs := Split(err)
	if prefix == "" {
		return errs
	}
	out := make([]error, len(errs))
	for i, e := range errs {
		out[i] = fmt.Errorf("%s.%w", prefix, e)
	}
	return out
}

// Split returns the errors of a joined error, flattened, or err itself.
func Split(err error) []error {
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return []error{err}
	}
	var out []error
	for _, e := range j.Unwrap() {
		out = append(out, Split(e)...)
	}
	return out
}

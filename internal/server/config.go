package server

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// Config is what the server owns of otpd.yaml: the listen, shutdown and
// health blocks, keys at the file's root. DefaultConfig gives the defaults.
type Config struct {
	Listen   Listen   `yaml:"listen"`
	Shutdown Shutdown `yaml:"shutdown"`
	Health   Health   `yaml:"health"`
}

// Listen is the listen block.
type Listen struct {
	// GRPC is host:port or unix:///path/to.sock ("127.0.0.1:50051").
	GRPC string `yaml:"grpc"`
	// HTTP serves /metrics, /healthz and /readyz ("127.0.0.1:9464"); empty
	// turns it off.
	HTTP string `yaml:"http"`
}

// Shutdown is the shutdown block.
type Shutdown struct {
	// Delay keeps serving (health NOT_SERVING) before draining, so that load
	// balancers notice first (0).
	Delay time.Duration `yaml:"delay"`
	// Timeout bounds the drain of in-flight calls (20s).
	Timeout time.Duration `yaml:"timeout"`
}

// Health is the health block.
type Health struct {
	// Interval is how often the store is pinged for health (2s).
	Interval time.Duration `yaml:"interval"`
}

// DefaultConfig returns the defaults: loopback listeners, a 20s drain, a
// store ping every 2s.
func DefaultConfig() Config {
	return Config{
		Listen:   Listen{GRPC: "127.0.0.1:50051", HTTP: "127.0.0.1:9464"},
		Shutdown: Shutdown{Timeout: 20 * time.Second},
		Health:   Health{Interval: 2 * time.Second},
	}
}

// Validate checks the blocks; errors name the key of otpd.yaml.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{key}, args...)...))
	}
	if c.Listen.GRPC == "" {
		bad("listen.grpc", "must be set")
	} else if err := checkAddr(c.Listen.GRPC); err != nil {
		bad("listen.grpc", "%v", err)
	}
	if c.Listen.HTTP != "" {
		if err := checkAddr(c.Listen.HTTP); err != nil {
			bad("listen.http", "%v", err)
		}
	}
	if c.Shutdown.Timeout < time.Second {
		bad("shutdown.timeout", "must be at least 1s")
	}
	if c.Shutdown.Delay < 0 {
		bad("shutdown.delay", "must not be negative")
	}
	if c.Health.Interval < 100*time.Millisecond {
		bad("health.interval", "must be at least 100ms")
	}
	return errors.Join(errs...)
}

func checkAddr(addr string) error {
	if path, ok := strings.CutPrefix(addr, "unix://"); ok {
		if path == "" {
			return errors.New("unix:// needs a socket path, such as unix:///run/otpd/otpd.sock")
		}
		return nil
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port or unix:///path", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q has no valid port", addr)
	}
	return nil
}

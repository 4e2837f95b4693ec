package server

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/otpd/otpd/internal/ipprefix"
)

// Config is what the server owns of otpd.yaml: the listen, shutdown and
// health blocks, keys at the file's root. DefaultConfig gives the defaults.
type Config struct {
	Listen   Listen   `yaml:"listen"`
	Shutdown Shutdown `yaml:"shutdown"`
	Health   Health   `yaml:"health"`
	Hooks    Hooks    `yaml:"hooks"`
}

// Hooks is the hooks block: the identity servers' delivery hooks that
// listen.api serves.
type Hooks struct {
	Logto    LogtoHook    `yaml:"logto"`
	Supabase SupabaseHook `yaml:"supabase"`
	// SendTimeout bounds each hook call: the service's send_timeout, set
	// by the caller of Run (identity servers such as Logto never time
	// out). 0: defaultHookTimeout.
	SendTimeout time.Duration `yaml:"-"`
}

// LogtoHook is hooks.logto: POST /hooks/logto/sms and /hooks/logto/email.
type LogtoHook struct {
	// IgnoreIPs lists the addresses (IPs or CIDR prefixes) whose "ip" is
	// not an end user's and is not passed on as client_ip, so that the
	// per-IP limit does not count them: Logto's Management API sends the
	// calling backend's address.
	IgnoreIPs []string `yaml:"ignore_ips"`
}

// SupabaseHook is hooks.supabase: POST /hooks/supabase/sms and
// /hooks/supabase/email, Supabase Auth's Send SMS and Send Email hooks.
type SupabaseHook struct {
	// Secrets are the hook's secrets as Supabase shows them,
	// "v1,whsec_<base64>": a request must be signed (Standard Webhooks)
	// with one of them. Several during a rotation. Empty turns the hook
	// off (its paths answer 404).
	Secrets []string `yaml:"secrets"`
	// IgnoreIPs: as hooks.logto.ignore_ips, for metadata.ip_address
	// (Supabase's Admin API sends the calling backend's address).
	IgnoreIPs []string `yaml:"ignore_ips"`
	// Timeout bounds a hook call, below send_timeout (4s): Supabase Auth
	// gives a hook 5 s, then fails the user's request and discards the
	// code, so a code delivered later is a code that cannot verify.
	Timeout time.Duration `yaml:"timeout"`
}

// ignored parses IgnoreIPs, which Validate checked.
func (l LogtoHook) ignored() ipFilter { return parsePrefixes(l.IgnoreIPs) }

// parsePrefixes parses addresses or prefixes that Validate checked.
func parsePrefixes(list []string) ipFilter {
	var ps []netip.Prefix
	for _, s := range list {
		if p, err := ipprefix.Parse(s); err == nil {
			ps = append(ps, p)
		}
	}
	return ps
}

// Listen is the listen block. Its connection keys bound what a peer can
// hold open on the gRPC listener (TCP or unix socket): otpd may face the
// open internet, and every open connection costs memory and goroutines.
type Listen struct {
	// GRPC is host:port or unix:///path/to.sock ("127.0.0.1:50051").
	GRPC string `yaml:"grpc"`
	// HTTP serves /metrics, /healthz and /readyz ("127.0.0.1:9464"); empty
	// turns it off.
	HTTP string `yaml:"http"`
	// API serves every RPC of the gRPC listener over HTTP/1.1 and h2c (HTTPS
	// with the tls block): the Connect protocol (JSON and binary), gRPC-Web
	// and gRPC, at /otp.v1.OtpService/<Method> ("127.0.0.1:8080" or
	// unix:///path); empty (the default) turns it off. Calls go through the
	// gRPC server's own interceptors: caller auth, limits, metrics and logs
	// are the gRPC listener's.
	API string `yaml:"api"`

	// MaxConnections caps the gRPC connections open at once (1000); a
	// connection beyond it is closed as soon as it is accepted. Idle and
	// silent connections are reaped (IdleTimeout, HandshakeTimeout), so a
	// full cap frees up by itself.
	MaxConnections int `yaml:"max_connections"`
	// MaxConnectionsPerIP caps the connections of one client address, IPv6
	// per /64 (100; 0 turns it off), so that one host cannot take every slot
	// of MaxConnections. Unix-socket peers have no address: only
	// MaxConnections applies to them. Turn it off or raise it behind a proxy
	// that hides client addresses.
	MaxConnectionsPerIP int `yaml:"max_connections_per_ip"`
	// MaxConcurrentStreams caps the calls in flight on one connection (250,
	// as Go's net/http); further calls wait on the client side.
	MaxConcurrentStreams int `yaml:"max_concurrent_streams"`
	// HandshakeTimeout bounds the TLS handshake and HTTP/2 preface of a new
	// connection (10s); a peer that stays silent is closed after it.
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`
	// IdleTimeout closes a connection (GOAWAY) that has had no call in
	// flight for this long (2m). Clients reconnect on their next call.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxConnectionAge closes every connection after about this long
	// (5m, ±10% jitter; 0 turns it off), so that clients spread over new
	// replicas after a scale-up and no connection is held for ever.
	MaxConnectionAge time.Duration `yaml:"max_connection_age"`
	// MaxConnectionAgeGrace is how long calls in flight on a connection that
	// reached MaxConnectionAge may finish before it is cut (1m; 0: no bound).
	MaxConnectionAgeGrace time.Duration `yaml:"max_connection_age_grace"`
	// KeepaliveTime is how long a connection may stay silent before otpd
	// pings the peer (1m); KeepaliveTimeout how long the ping may go
	// unanswered before the connection is closed (20s). They find dead peers
	// that hold calls (a health Watch) open.
	KeepaliveTime    time.Duration `yaml:"keepalive_time"`
	KeepaliveTimeout time.Duration `yaml:"keepalive_timeout"`
	// MinPingInterval is the shortest interval between client keepalive
	// pings that otpd tolerates (10s, gRPC clients' own minimum); a client
	// pinging faster is sent GOAWAY ("too_many_pings"). Pings are allowed
	// without calls in flight: they do not keep a connection from
	// IdleTimeout.
	MinPingInterval time.Duration `yaml:"min_ping_interval"`
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

// DefaultConfig returns the defaults: loopback listeners with connection
// limits safe on the open internet, a 20s drain, a store ping every 2s.
func DefaultConfig() Config {
	return Config{
		Listen: Listen{
			GRPC: "127.0.0.1:50051", HTTP: "127.0.0.1:9464",
			MaxConnections:        1000,
			MaxConnectionsPerIP:   100,
			MaxConcurrentStreams:  250,
			HandshakeTimeout:      10 * time.Second,
			IdleTimeout:           2 * time.Minute,
			MaxConnectionAge:      5 * time.Minute,
			MaxConnectionAgeGrace: time.Minute,
			KeepaliveTime:         time.Minute,
			KeepaliveTimeout:      20 * time.Second,
			MinPingInterval:       10 * time.Second,
		},
		Shutdown: Shutdown{Timeout: 20 * time.Second},
		Health:   Health{Interval: 2 * time.Second},
		Hooks:    Hooks{Supabase: SupabaseHook{Timeout: 4 * time.Second}},
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
	if c.Listen.API != "" {
		if err := checkAddr(c.Listen.API); err != nil {
			bad("listen.api", "%v", err)
		}
	}
	c.Listen.validateConns(bad)
	if c.Shutdown.Timeout < time.Second {
		bad("shutdown.timeout", "must be at least 1s")
	}
	if c.Shutdown.Delay < 0 {
		bad("shutdown.delay", "must not be negative")
	}
	if c.Health.Interval < 100*time.Millisecond {
		bad("health.interval", "must be at least 100ms")
	}
	for _, h := range []struct {
		name string
		ips  []string
	}{{"logto", c.Hooks.Logto.IgnoreIPs}, {"supabase", c.Hooks.Supabase.IgnoreIPs}} {
		for i, ip := range h.ips {
			if _, err := ipprefix.Parse(ip); err != nil {
				bad(fmt.Sprintf("hooks.%s.ignore_ips[%d]", h.name, i), "%q is not an IP address or a CIDR prefix (such as 10.0.0.0/8): %v", ip, err)
			}
		}
	}
	for i, s := range c.Hooks.Supabase.Secrets {
		if _, err := parseWebhookSecret(s); err != nil {
			// Never the secret itself.
			bad(fmt.Sprintf("hooks.supabase.secrets[%d]", i), "%v", err)
		}
	}
	if c.Hooks.Supabase.Timeout < 100*time.Millisecond {
		bad("hooks.supabase.timeout", "must be at least 100ms")
	}
	return errors.Join(errs...)
}

// validateConns checks the connection keys of the listen block.
func (l Listen) validateConns(bad func(key, format string, args ...any)) {
	if l.MaxConnections < 1 {
		bad("listen.max_connections", "must be at least 1")
	}
	if l.MaxConnectionsPerIP < 0 {
		bad("listen.max_connections_per_ip", "must not be negative (0 turns it off)")
	}
	if l.MaxConcurrentStreams < 1 || l.MaxConcurrentStreams > math.MaxUint32 {
		bad("listen.max_concurrent_streams", "must be from 1 to %d", uint32(math.MaxUint32))
	}
	atLeast := func(key string, d, floor time.Duration) {
		if d < floor {
			bad(key, "must be at least %s", floor)
		}
	}
	atLeast("listen.handshake_timeout", l.HandshakeTimeout, 100*time.Millisecond)
	atLeast("listen.idle_timeout", l.IdleTimeout, time.Second)
	if l.MaxConnectionAge != 0 {
		atLeast("listen.max_connection_age", l.MaxConnectionAge, time.Second)
	}
	if l.MaxConnectionAgeGrace < 0 {
		bad("listen.max_connection_age_grace", "must not be negative")
	}
	// gRPC clients never ping more often than every 10s, and a server that
	// pings more often than every second mostly measures itself.
	atLeast("listen.keepalive_time", l.KeepaliveTime, time.Second)
	atLeast("listen.keepalive_timeout", l.KeepaliveTimeout, 100*time.Millisecond)
	// grpc-go reads a MinTime of 0 as its default, 5m.
	atLeast("listen.min_ping_interval", l.MinPingInterval, time.Second)
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

package redisstore

import (
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/otpd/otpd/internal/redact"
)

// Config is the redis block of otpd.yaml: one URL for a single node, or
// addrs with master_name (Sentinel) or cluster. DefaultConfig gives the
// defaults.
type Config struct {
	// URL is redis[s]://[user:password@]host:port[/db] of a single node.
	URL string `yaml:"url"`
	// Addrs lists Sentinel or Cluster seed addresses, or one node.
	Addrs []string `yaml:"addrs"`
	// MasterName selects Sentinel: the name of the monitored master.
	MasterName string `yaml:"master_name"`
	// Cluster selects Redis Cluster.
	Cluster  bool          `yaml:"cluster"`
	Username string        `yaml:"username"`
	Password redact.Secret `yaml:"password"`
	DB       int           `yaml:"db"`
	TLS      bool          `yaml:"tls"`
	// Prefix starts every key otpd writes ("otpd:").
	Prefix string `yaml:"prefix"`
	// PoolSize bounds the connections per node (go-redis's default if 0).
	PoolSize int `yaml:"pool_size"`
	// Timeout bounds dialling and each read and write (1s).
	Timeout time.Duration `yaml:"timeout"`
	// AllowEviction lets otpd run on a Redis whose maxmemory-policy may
	// evict keys (allkeys-*, volatile-*: every otpd key has a TTL), with a
	// loud warning instead of a refusal to start (false). Evicted keys are
	// lifted limits: a window, a cooldown or an attempt count that is gone.
	AllowEviction bool `yaml:"allow_eviction"`
}

// DefaultConfig returns the defaults; a URL or addrs must still be set.
func DefaultConfig() Config { return Config{Prefix: DefaultPrefix, Timeout: time.Second} }

// Validate checks the block; errors name the key relative to it.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, msg string) { errs = append(errs, fmt.Errorf("%s: %s", key, msg)) }
	switch {
	case c.URL == "" && len(c.Addrs) == 0:
		bad("url", "set url (one node) or addrs (Sentinel, Cluster)")
	case c.URL != "" && len(c.Addrs) > 0:
		bad("addrs", "cannot be combined with url: set one of them")
	case c.MasterName != "" && c.Cluster:
		bad("cluster", "cannot be combined with master_name")
	}
	if c.URL != "" {
		// A URL carries these itself; a second place to set them would be
		// silently ignored.
		for _, f := range []struct {
			key string
			set bool
		}{
			{"username", c.Username != ""}, {"db", c.DB != 0}, {"tls", c.TLS},
			{"master_name", c.MasterName != ""}, {"cluster", c.Cluster},
		} {
			if f.set {
				bad(f.key, "cannot be combined with redis.url: put it in the URL (redis[s]://user:password@host:port/db) or use addrs")
			}
		}
		if _, err := redis.ParseURL(c.URL); err != nil {
			bad("url", "not a redis:// or rediss:// URL")
		}
	}
	if c.Timeout < 10*time.Millisecond {
		bad("timeout", "must be at least 10ms")
	}
	if c.PoolSize < 0 {
		bad("pool_size", "must not be negative")
	}
	return errors.Join(errs...)
}

// MarshalYAML encodes the block with the password of url, if it has one,
// as "<redacted>", as the password key already prints (redact.Secret): otpd
// -check -json prints the effective configuration, and a URL from
// ${REDIS_URL} often carries the password.
func (c Config) MarshalYAML() (any, error) {
	type plain Config // Config without this method
	p := plain(c)
	p.URL = redact.URL(c.URL)
	return p, nil
}

// protocol is the RESP version otpd speaks: 2. Its scripts answer in
// RESP2 types either way, and it uses none of RESP3's additions (push
// notifications, client-side caching); with RESP3, go-redis checks for a
// pending push notification before each reply it reads, which cost about
// 1.5 µs of otpd's CPU per call under load (BenchmarkVerifyCode, 6
// interleaved rounds: 16.2 against 14.6 µs, median).
const protocol = 2

// Client returns the go-redis client of c, which must pass Validate: a
// single-node client for a URL, else a Sentinel, Cluster or single-node
// client as go-redis's UniversalClient picks from the addresses.
//
// The client never re-sends a command on its own (MaxRetries -1): a
// script whose reply timed out may have run, and running it again blindly
// could answer the caller with the refusal its own first run caused. The
// service retries instead, with the same ids, which the scripts recognise.
func (c Config) Client() (redis.UniversalClient, error) {
	if c.URL != "" {
		opts, err := redis.ParseURL(c.URL)
		if err != nil {
			// ParseURL's error may quote the URL, password included.
			return nil, errors.New("redis.url: not a redis:// or rediss:// URL")
		}
		opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout = c.Timeout, c.Timeout, c.Timeout
		opts.ContextTimeoutEnabled = true
		opts.MaxRetries = -1
		if opts.Protocol == 0 { // a ?protocol= in the URL wins
			opts.Protocol = protocol
		}
		if c.PoolSize > 0 {
			opts.PoolSize = c.PoolSize
		}
		if c.Password != "" {
			opts.Password = c.Password.Reveal()
		}
		return redis.NewClient(opts), nil
	}
	opts := &redis.UniversalOptions{
		Addrs:                 c.Addrs,
		MasterName:            c.MasterName,
		IsClusterMode:         c.Cluster,
		Username:              c.Username,
		Password:              c.Password.Reveal(),
		DB:                    c.DB,
		PoolSize:              c.PoolSize,
		DialTimeout:           c.Timeout,
		ReadTimeout:           c.Timeout,
		WriteTimeout:          c.Timeout,
		ContextTimeoutEnabled: true,
		MaxRetries:            -1,
		Protocol:              protocol,
	}
	if c.TLS {
		opts.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return redis.NewUniversalClient(opts), nil
}

package redisstore

import (
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.yaml.in/yaml/v3"

	"github.com/otpd/otpd/internal/errtest"
)

// TestMarshalYAMLRedactsPasswords: the effective configuration that otpd
// -check -json prints never holds a Redis password, in the password key or
// in the URL.
func TestMarshalYAMLRedactsPasswords(t *testing.T) {
	t.Parallel()
	const password = "Sup3r-S3cret-R3dis-P4ss"
	tests := []struct {
		name    string
		url     string
		wantURL string
	}{
		{"no URL", "", ""},
		{"no userinfo", "redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"},
		{"user without password", "rediss://otpd@redis:6380/1", "rediss://otpd@redis:6380/1"},
		{"user and password", "redis://otpd:" + password + "@redis:6379/0", "redis://otpd:<redacted>@redis:6379/0"},
		{"password only", "redis://:" + password + "@redis:6379/2", "redis://:<redacted>@redis:6379/2"},
		{"password with an @", "redis://:p@" + password + "@redis:6379", "redis://:<redacted>@redis:6379"},
		{"escaped password", "rediss://otpd:" + password + "%2F%3A@redis:6380/0?dial_timeout=3s", "rediss://otpd:<redacted>@redis:6380/0?dial_timeout=3s"},
		{"unix socket", "unix://otpd:" + password + "@/run/redis.sock?db=1", "unix://otpd:<redacted>@/run/redis.sock?db=1"},
		{"unparseable", "redis://otpd:" + password + " x@redis:port:bad/0", "<redacted>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := DefaultConfig()
			c.URL, c.Password = tt.url, password
			b, err := yaml.Marshal(map[string]any{"redis": c})
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(b), password) {
				t.Errorf("encoded block holds the password:\n%s", b)
			}
			var got struct {
				Redis struct {
					URL      string `yaml:"url"`
					Password string `yaml:"password"`
					Prefix   string `yaml:"prefix"`
					Timeout  string `yaml:"timeout"`
				} `yaml:"redis"`
			}
			if err := yaml.Unmarshal(b, &got); err != nil {
				t.Fatalf("%v\n%s", err, b)
			}
			if got.Redis.URL != tt.wantURL || got.Redis.Password != "<redacted>" || got.Redis.Prefix != DefaultPrefix || got.Redis.Timeout != "1s" {
				t.Errorf("encoded %+v, want url %q, password <redacted> and the defaults", got.Redis, tt.wantURL)
			}
			if c.URL != tt.url {
				t.Errorf("MarshalYAML changed the configuration's URL to %q", c.URL)
			}
		})
	}
}

func TestValidateNamesKeys(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(*Config)
		want   []string // error prefixes, in order; none means valid
	}{
		{"url", func(c *Config) {}, nil},
		{"neither", func(c *Config) { c.URL = "" }, []string{"url: set url (one node) or addrs (Sentinel, Cluster)"}},
		{"both", func(c *Config) { c.Addrs = []string{"r:6379"} }, []string{"addrs: cannot be combined with url: set one of them"}},
		{"sentinel", func(c *Config) { c.URL, c.Addrs, c.MasterName = "", []string{"s:26379"}, "m" }, nil},
		{"sentinel and cluster", func(c *Config) { c.URL, c.Addrs, c.MasterName, c.Cluster = "", []string{"s:26379"}, "m", true },
			[]string{"cluster: cannot be combined with master_name"}},
		{"url with keys it carries", func(c *Config) { c.Username, c.DB, c.TLS = "u", 1, true },
			[]string{"username: cannot be combined with redis.url", "db: cannot be combined", "tls: cannot be combined"}},
		{"unparseable url", func(c *Config) { c.URL = "redis://u:pa ss@h:port:bad/0" }, []string{"url: not a redis:// or rediss:// URL"}},
		{"timeout", func(c *Config) { c.Timeout = 0 }, []string{"timeout: must be at least 10ms"}},
		{"pool size", func(c *Config) { c.PoolSize = -1 }, []string{"pool_size: must not be negative"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := DefaultConfig()
			c.URL = "redis://127.0.0.1:6379/0"
			tt.mutate(&c)
			err := c.Validate()
			errtest.WantPrefixes(t, err, tt.want)
			if err != nil && strings.Contains(err.Error(), "pa ss") {
				t.Errorf("error quotes the URL: %v", err)
			}
		})
	}
}

// Every client Config builds leaves retries to the service: go-redis
// re-sends nothing on its own (MaxRetries -1, which go-redis keeps as 0
// retries on single-node and Sentinel clients and as -1 on Cluster).
func TestClientNeverRetries(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]Config{
		"url":      {URL: "redis://127.0.0.1:1/0?max_retries=5", Timeout: time.Second},
		"addrs":    {Addrs: []string{"127.0.0.1:1"}, Timeout: time.Second},
		"sentinel": {Addrs: []string{"127.0.0.1:1"}, MasterName: "m", Timeout: time.Second},
		"cluster":  {Addrs: []string{"127.0.0.1:1", "127.0.0.1:2"}, Cluster: true, Timeout: time.Second},
	} {
		rdb, err := cfg.Client()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var retries int
		switch c := rdb.(type) {
		case *redis.Client:
			retries = c.Options().MaxRetries
		case *redis.ClusterClient:
			retries = c.Options().MaxRetries
		default:
			t.Fatalf("%s: client %T", name, rdb)
		}
		_ = rdb.Close()
		if retries > 0 {
			t.Errorf("%s: MaxRetries %d, want no retries", name, retries)
		}
	}
}

// TestClientSpeaksRESP2: every client Config.Client builds speaks RESP2
// (protocol), on a single node, Sentinel and Cluster alike, unless the
// URL asks for another protocol. The service's harness speaks RESP2 too,
// so every conformance case runs over it.
func TestClientSpeaksRESP2(t *testing.T) {
	t.Parallel()
	protocolOf := func(t *testing.T, c Config) int {
		t.Helper()
		rdb, err := c.Client()
		if err != nil {
			t.Fatal(err)
		}
		defer rdb.Close()
		switch r := rdb.(type) {
		case *redis.Client:
			return r.Options().Protocol
		case *redis.ClusterClient:
			return r.Options().Protocol
		}
		t.Fatalf("client %T", rdb)
		return 0
	}
	for _, tt := range []struct {
		name string
		c    func(*Config)
		want int
	}{
		{"url", func(c *Config) { c.URL = "redis://127.0.0.1:6379/0" }, 2},
		{"url asking for RESP3", func(c *Config) { c.URL = "redis://127.0.0.1:6379/0?protocol=3" }, 3},
		{"addrs", func(c *Config) { c.Addrs = []string{"127.0.0.1:6379"} }, 2},
		{"sentinel", func(c *Config) { c.Addrs, c.MasterName = []string{"127.0.0.1:26379"}, "mymaster" }, 2},
		{"cluster", func(c *Config) { c.Addrs, c.Cluster = []string{"127.0.0.1:7000"}, true }, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.c(&c)
			if got := protocolOf(t, c); got != tt.want {
				t.Errorf("protocol %d, want %d", got, tt.want)
			}
		})
	}
}

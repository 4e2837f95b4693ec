package redisstore_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/otpd/otpd/internal/redistest"
	"github.com/otpd/otpd/service"
	"github.com/otpd/otpd/service/redisstore"
)

// storeOn opens a Store with otpd's own client for cfg (URL or addrs
// set), closed when the test ends.
func storeOn(tb testing.TB, cfg redisstore.Config, opts ...redisstore.Option) (*redisstore.Store, redis.UniversalClient) {
	tb.Helper()
	if cfg.Timeout == 0 {
		cfg.Timeout = redisstore.DefaultConfig().Timeout
	}
	rdb, err := cfg.Client()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = rdb.Close() })
	return redisstore.New(rdb, "", opts...), rdb
}

func urlConfig(url string) redisstore.Config {
	cfg := redisstore.DefaultConfig()
	cfg.URL = url
	return cfg
}

// wantUnavailable fails unless err is a store error marked
// service.ErrStoreUnavailable whose text has want.
func wantUnavailable(tb testing.TB, what string, err error, want string) {
	tb.Helper()
	if !errors.Is(err, service.ErrStoreUnavailable) || !strings.Contains(err.Error(), want) {
		tb.Fatalf("%s: %v, want %s marked ErrStoreUnavailable", what, err, want)
	}
}

// The health probe fails exactly while Redis refuses writes, though PING
// still answers: over maxmemory under noeviction (OOM) and on a master
// demoted to a replica (READONLY); it passes again once writes do.
func TestPingFollowsWritability(t *testing.T) {
	t.Parallel()
	srv := redistest.StartWith(t, "--maxmemory-policy", "noeviction")
	other := redistest.Start(t)
	admin := srv.Client()
	s, _ := storeOn(t, urlConfig(srv.URL()))
	ctx := context.Background()
	step := func(what string, cmd ...any) {
		t.Helper()
		if err := admin.Do(ctx, cmd...).Err(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("probe of a writable Redis: %v", err)
	}

	step("fill Redis", "CONFIG", "SET", "maxmemory", "1") // any data is over 1 byte
	if err := admin.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING under OOM: %v (it should answer: that is why the probe writes)", err)
	}
	wantUnavailable(t, "probe under OOM", s.Ping(ctx), "OOM")
	step("make room", "CONFIG", "SET", "maxmemory", "0")
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("probe with room again: %v", err)
	}

	step("demote", "REPLICAOF", "127.0.0.1", strings.Split(other.Addr(), ":")[1])
	wantUnavailable(t, "probe of a demoted master", s.Ping(ctx), "READONLY")
	step("promote", "REPLICAOF", "NO", "ONE")
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("probe once promoted again: %v", err)
	}
	if keys := admin.Keys(ctx, "otpd:*").Val(); len(keys) != 1 || keys[0] != "otpd:{health}:probe" {
		t.Fatalf("keys after the probes: %v, want otpd:{health}:probe alone", keys)
	}
	if ttl := admin.PTTL(ctx, "otpd:{health}:probe").Val(); ttl <= 0 {
		t.Fatalf("probe key TTL %v, want it to expire", ttl)
	}
}

// On Cluster the probe writes one key on every master, so that one full
// or demoted shard is seen: with one master over maxmemory the probe
// fails, and passes once it has room.
func TestPingProbesEveryClusterMaster(t *testing.T) {
	t.Parallel()
	c := redistest.StartClusterWith(t, 3, "--maxmemory-policy", "noeviction")
	cfg := redisstore.DefaultConfig()
	cfg.Addrs, cfg.Cluster = c.Addrs(), true
	s, _ := storeOn(t, cfg)
	ctx := context.Background()
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("probe: %v", err)
	}
	for _, n := range c.Nodes {
		keys := n.Client().Keys(ctx, "otpd:*:probe").Val()
		if len(keys) != 1 {
			t.Fatalf("probe keys on %s: %v, want one on each master", n.Addr(), keys)
		}
	}
	full := c.Nodes[1].Client()
	if err := full.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	wantUnavailable(t, "probe with one master full", s.Ping(ctx), "OOM")
	if err := full.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("probe with room again: %v", err)
	}
}

// The start-up check of maxmemory-policy, on every topology and with
// CONFIG refused as managed Redis does.
func TestCheckEviction(t *testing.T) {
	t.Parallel()
	type result struct {
		refused, warning string // text the error or the warning must have ("" none)
	}
	for _, tc := range []struct {
		name  string
		args  []string // redis-server arguments
		allow bool
		deny  string // commands an ACL user otpd connects as may not run ("-config")
		want  result
	}{
		{name: "noeviction", args: []string{"--maxmemory-policy", "noeviction"}},
		{name: "allkeys-lru refused", args: []string{"--maxmemory-policy", "allkeys-lru"},
			want: result{refused: "maxmemory-policy is allkeys-lru on 127.0.0.1:"}},
		{name: "volatile-ttl refused (every otpd key has a TTL)", args: []string{"--maxmemory-policy", "volatile-ttl"},
			want: result{refused: "maxmemory-policy is volatile-ttl"}},
		{name: "allkeys-lfu allowed, with a warning", args: []string{"--maxmemory-policy", "allkeys-lfu"}, allow: true,
			want: result{warning: "maxmemory-policy is allkeys-lfu on 127.0.0.1:"}},
		{name: "CONFIG renamed: INFO read, evicting refused", args: []string{"--maxmemory-policy", "allkeys-random", "--rename-command", "CONFIG", ""},
			want: result{refused: "maxmemory-policy is allkeys-random"}},
		{name: "CONFIG renamed: INFO read, noeviction passes", args: []string{"--rename-command", "CONFIG", ""}},
		{name: "CONFIG refused by ACL: INFO read", args: []string{"--maxmemory-policy", "volatile-lru"}, deny: "-config",
			want: result{refused: "maxmemory-policy is volatile-lru"}},
		{name: "CONFIG and INFO refused: warned, not refused", args: []string{"--maxmemory-policy", "allkeys-lru"}, deny: "-config -info",
			want: result{warning: "cannot read redis maxmemory-policy on 127.0.0.1:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := redistest.StartWith(t, tc.args...)
			cfg := urlConfig(srv.URL())
			if tc.deny != "" {
				rules := append([]any{"ACL", "SETUSER", "otpd", "on", ">pw", "~*", "+@all"}, toAny(strings.Fields(tc.deny))...)
				if err := srv.Client().Do(context.Background(), rules...).Err(); err != nil {
					t.Fatal(err)
				}
				cfg.URL = "redis://otpd:pw@" + srv.Addr() + "/0"
			}
			_, rdb := storeOn(t, cfg)
			warning, err := redisstore.CheckEviction(context.Background(), rdb, tc.allow)
			checkEviction(t, warning, err, tc.want.refused, tc.want.warning)
		})
	}

	t.Run("cluster: one master evicting", func(t *testing.T) {
		t.Parallel()
		c := redistest.StartCluster(t, 3)
		if err := c.Nodes[2].Client().ConfigSet(context.Background(), "maxmemory-policy", "allkeys-lru").Err(); err != nil {
			t.Fatal(err)
		}
		cfg := redisstore.DefaultConfig()
		cfg.Addrs, cfg.Cluster = c.Addrs(), true
		_, rdb := storeOn(t, cfg)
		warning, err := redisstore.CheckEviction(context.Background(), rdb, false)
		checkEviction(t, warning, err, "maxmemory-policy is allkeys-lru on "+c.Nodes[2].Addr(), "")
	})

	t.Run("sentinel: the master's policy", func(t *testing.T) {
		t.Parallel()
		master := redistest.StartWith(t, "--maxmemory-policy", "volatile-lfu")
		sentinel := redistest.StartSentinel(t, master, "otpd")
		cfg := redisstore.DefaultConfig()
		cfg.Addrs, cfg.MasterName = []string{sentinel.Addr()}, "otpd"
		_, rdb := storeOn(t, cfg)
		warning, err := redisstore.CheckEviction(context.Background(), rdb, false)
		checkEviction(t, warning, err, "maxmemory-policy is volatile-lfu on the Sentinel master", "")
	})

	t.Run("unreachable: unknown, not refused", func(t *testing.T) {
		t.Parallel()
		srv := redistest.Start(t)
		srv.Stop()
		_, rdb := storeOn(t, urlConfig(srv.URL()))
		warning, err := redisstore.CheckEviction(context.Background(), rdb, false)
		var evicting *redisstore.EvictionError
		if !errors.Is(err, service.ErrStoreUnavailable) || errors.As(err, &evicting) || warning != "" {
			t.Fatalf("check of a stopped Redis: %q, %v; want an error marked ErrStoreUnavailable", warning, err)
		}
	})
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

func checkEviction(tb testing.TB, warning string, err error, refused, warned string) {
	tb.Helper()
	var evicting *redisstore.EvictionError
	switch {
	case refused != "":
		if !errors.As(err, &evicting) || !strings.Contains(err.Error(), refused) || !strings.Contains(err.Error(), "redis.allow_eviction: true") {
			tb.Fatalf("check: %q, %v; want an *EvictionError with %q naming redis.allow_eviction: true", warning, err, refused)
		}
	case err != nil:
		tb.Fatalf("check: %v, want no error", err)
	case warned == "" && warning != "":
		tb.Fatalf("check warned %q, want nothing", warning)
	case !strings.Contains(warning, warned):
		tb.Fatalf("check warned %q, want %q", warning, warned)
	}
}

// With WithEvictionCheck the probe reads the policy again once Redis
// answers after a failure (a restart, a failover): a policy changed to an
// evicting one fails it, with the refusal; allowed, it warns once.
func TestPingRechecksEvictionPolicy(t *testing.T) {
	t.Parallel()
	for _, allow := range []bool{false, true} {
		name := map[bool]string{false: "refused", true: "allowed"}[allow]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv := redistest.Start(t)
			admin := srv.Client()
			var mu sync.Mutex
			var warnings []string
			s, _ := storeOn(t, urlConfig(srv.URL()), redisstore.WithEvictionCheck(allow, func(msg string) {
				mu.Lock()
				warnings = append(warnings, msg)
				mu.Unlock()
			}))
			ctx := context.Background()
			if err := s.CheckEviction(ctx); err != nil {
				t.Fatalf("start-up check: %v", err)
			}
			set := func(k, v string) {
				t.Helper()
				if err := admin.ConfigSet(ctx, k, v).Err(); err != nil {
					t.Fatal(err)
				}
			}
			set("maxmemory-policy", "allkeys-lru")
			if err := s.Ping(ctx); err != nil {
				t.Fatalf("probe before any failure: %v (the policy is read again after one, or a minute on)", err)
			}
			// A failed probe, then a good one: the policy is read again.
			set("maxmemory", "1")
			if err := s.Ping(ctx); err == nil {
				t.Fatal("probe under OOM passed")
			}
			set("maxmemory", "0")
			for range 3 {
				err := s.Ping(ctx)
				var evicting *redisstore.EvictionError
				if allow && err != nil {
					t.Fatalf("probe with the evicting policy allowed: %v", err)
				}
				if !allow && !errors.As(err, &evicting) {
					t.Fatalf("probe once the policy evicts: %v, want the *EvictionError", err)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if want := map[bool]int{false: 0, true: 1}[allow]; len(warnings) != want || (allow && !strings.Contains(warnings[0], "allkeys-lru")) {
				t.Fatalf("warnings %q, want %d about allkeys-lru", warnings, want)
			}
		})
	}
}

package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/otpd/otpd/internal/redistest"
	"github.com/otpd/otpd/service"
	"github.com/otpd/otpd/service/redisstore"
	"github.com/otpd/otpd/service/storetest"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	checker := &slotChecker{}
	t.Cleanup(func() {
		// A send with shared slots, and a verification with a per-IP
		// window, are one script on a single node: the only scripts
		// spanning hash tags are those, and only their windows are off
		// the recipient's tag.
		if checker.scripts() == 0 || checker.crossTag() == 0 {
			t.Errorf("%d scripts ran, %d of them across hash tags: want sends with their slots in one script", checker.scripts(), checker.crossTag())
		}
		for _, keys := range checker.crossKeys() {
			tag := hashTag(keys[0])
			ok := strings.Contains(keys[0], ":code:") && strings.HasPrefix(tag, "r:")
			for _, k := range keys[1:] {
				ok = ok && (hashTag(k) == tag || strings.HasSuffix(k, ":window"))
			}
			if !ok {
				t.Errorf("script keys %v span hash tags and are not a send's or a verification's", keys)
			}
		}
	})
	storetest.Run(t, func(tb testing.TB) service.Store {
		rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), PoolSize: 64})
		tb.Cleanup(func() { _ = rdb.Close() })
		rdb.AddHook(checker)
		return redisstore.New(rdb, "")
	})
}

// The same rules behind a proxy that shards keys and refuses a script
// across hash tags with CROSSSLOT, as some managed Redis offerings do on a
// plain (non-cluster) connection: the store learns it on its first send
// with shared slots, and takes them first from then on.
func TestConformanceBehindShardingProxy(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	proxy := &slotChecker{refuse: true}
	storetest.Run(t, func(tb testing.TB) service.Store {
		rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), PoolSize: 64})
		tb.Cleanup(func() { _ = rdb.Close() })
		rdb.AddHook(proxy)
		return redisstore.New(rdb, "")
	})
	t.Cleanup(func() {
		if proxy.crossTag() == 0 {
			t.Error("the proxy refused no script: the fallback was not exercised")
		}
	})
}

// Behind such a proxy the first send with slots is refused once and
// answered anyway; later sends take the slots first without asking again.
func TestShardingProxyLearntOnce(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	proxy := &slotChecker{refuse: true}
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	rdb.AddHook(proxy)
	s := redisstore.New(rdb, "")
	slot := service.Slot{Limit: "per_country", Key: "cc:1", Window: service.Window{Count: 3, Window: time.Hour}}
	now := time.Now()
	for i := range 5 {
		want := service.SendAccepted
		if i >= 3 {
			want = service.SendSlotLimited
		}
		res, err := s.BeginSend(context.Background(), service.SendParams{
			Recipient: fmt.Sprint("r", i), Usage: "sign_in", CodeHash: []byte("h"), VerificationID: fmt.Sprint("v", i),
			Now: now, TTL: time.Minute, MaxAttempts: 5, Slots: []service.Slot{slot},
		})
		if err != nil || res.Status != want {
			t.Fatalf("send %d: %+v, %v; want status %d", i, res, err, want)
		}
	}
	if n := proxy.crossTag(); n != 1 {
		t.Fatalf("the proxy refused %d scripts, want 1", n)
	}
}

// The same rules on a real 3-node Redis Cluster: a script whose keys span
// slots fails there with CROSSSLOT, and TakeSlots' pipeline is split among
// the nodes that own the windows.
func TestConformanceOnCluster(t *testing.T) {
	t.Parallel()
	cluster := redistest.StartCluster(t, 3)
	storetest.Run(t, func(tb testing.TB) service.Store {
		rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cluster.Addrs(), PoolSize: 64})
		tb.Cleanup(func() { _ = rdb.Close() })
		return redisstore.New(rdb, "")
	})
	t.Cleanup(func() {
		// The suite's keys were spread over every node: the cluster was
		// really used as one.
		for _, n := range cluster.Nodes {
			if keys, err := n.Client().DBSize(context.Background()).Result(); err != nil || keys == 0 {
				t.Errorf("cluster node %s holds %d keys (%v)", n.Addr(), keys, err)
			}
		}
	})
}

// Through Sentinel, and on after a failover: the store follows the new
// master with the same client, and the scripts load again on it.
func TestSentinelFailover(t *testing.T) {
	t.Parallel()
	master := redistest.Start(t)
	replica := redistest.StartReplica(t, master)
	sentinel := redistest.StartSentinel(t, master, "otpd")
	rdb := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: "otpd", SentinelAddrs: []string{sentinel.Addr()}, MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	s := redisstore.New(rdb, "")
	ctx := context.Background()
	now := time.Now()
	send := func(rid string) error {
		_, err := s.BeginSend(ctx, service.SendParams{Recipient: rid, Usage: "sign_in", CodeHash: []byte("h"), VerificationID: "v-" + rid,
			Now: now, TTL: time.Minute, MaxAttempts: 5, PerRecipient: service.Window{Count: 5, Window: time.Minute}})
		return err
	}
	if err := send("before"); err != nil {
		t.Fatalf("send through Sentinel: %v", err)
	}
	master.Stop()
	var err error
	for deadline := time.Now().Add(30 * time.Second); ; {
		if err = send("after"); err == nil {
			break
		}
		if !errors.Is(err, service.ErrStoreUnavailable) || time.Now().After(deadline) {
			t.Fatalf("send while the master is down: %v, want ErrStoreUnavailable until a new master serves", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	res, err := s.Verify(ctx, service.VerifyParams{Recipient: "after", Usage: "sign_in", CodeHash: []byte("h"), Now: now, AttemptID: "a"})
	if err != nil || res.Status != service.VerifyOK {
		t.Fatalf("verify on the new master: %+v, %v", res, err)
	}
	if role, err := replica.Client().Do(ctx, "ROLE").Slice(); err != nil || role[0] != "master" {
		t.Fatalf("the replica's role is %v (%v), want master", role, err)
	}
}

// slotChecker records the scripts whose keys span more than one hash tag,
// which Redis Cluster refuses with CROSSSLOT; with refuse set it refuses
// them so too, as a sharding proxy would, before they reach Redis.
type slotChecker struct {
	refuse bool
	mu     sync.Mutex
	n      int
	cross  [][]string
}

func (c *slotChecker) scripts() int  { c.mu.Lock(); defer c.mu.Unlock(); return c.n }
func (c *slotChecker) crossTag() int { c.mu.Lock(); defer c.mu.Unlock(); return len(c.cross) }
func (c *slotChecker) crossKeys() [][]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.cross)
}

// crossSlotError is the reply of Redis Cluster, and of sharding proxies,
// to keys of several slots.
type crossSlotError struct{}

func (crossSlotError) Error() string { return "CROSSSLOT Keys in request don't hash to the same slot" }
func (crossSlotError) RedisError()   {}

func (c *slotChecker) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *slotChecker) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !c.check(cmd) {
			cmd.SetErr(crossSlotError{})
			return cmd.Err()
		}
		return next(ctx, cmd)
	}
}

func (c *slotChecker) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			if !c.check(cmd) {
				// Only single-tag scripts are pipelined (TakeSlots).
				cmd.SetErr(crossSlotError{})
				return cmd.Err()
			}
		}
		return next(ctx, cmds)
	}
}

// check records cmd and reports whether it may go on to Redis.
func (c *slotChecker) check(cmd redis.Cmder) bool {
	name := strings.ToLower(cmd.Name())
	if name != "eval" && name != "evalsha" {
		return true
	}
	args := cmd.Args()
	n, _ := strconv.Atoi(fmt.Sprint(args[2]))
	tags := map[string]bool{}
	var keys []string
	for _, k := range args[3 : 3+n] {
		keys = append(keys, fmt.Sprint(k))
		tags[hashTag(fmt.Sprint(k))] = true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	if len(tags) == 1 && !tags[""] {
		return true
	}
	c.cross = append(c.cross, keys)
	return !c.refuse
}

// hashTag is the part of a key Redis Cluster hashes: the text between the
// first "{" and the next "}".
func hashTag(key string) string {
	i := strings.IndexByte(key, '{')
	if i < 0 {
		return ""
	}
	j := strings.IndexByte(key[i+1:], '}')
	if j <= 0 {
		return ""
	}
	return key[i+1 : i+1+j]
}

func TestUnreachableIsUnavailable(t *testing.T) {
	t.Parallel()
	// A port nothing listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer rdb.Close()
	s := redisstore.New(rdb, "")
	ctx := context.Background()
	for name, err := range map[string]error{
		"ping": s.Ping(ctx),
		"verify": func() error {
			_, err := s.Verify(ctx, service.VerifyParams{Recipient: "r", Usage: "sign_in"})
			return err
		}(),
		"send": func() error {
			_, err := s.BeginSend(ctx, service.SendParams{Recipient: "r", Usage: "sign_in"})
			return err
		}(),
		"slots": func() error {
			_, err := s.TakeSlots(ctx, time.Now(), "m", []service.Slot{{Limit: "per_ip", Key: "ip:x", Window: service.Window{Count: 1, Window: time.Second}}})
			return err
		}(),
	} {
		if !errors.Is(err, service.ErrStoreUnavailable) {
			t.Errorf("%s with Redis unreachable: %v, want ErrStoreUnavailable", name, err)
		}
	}
}

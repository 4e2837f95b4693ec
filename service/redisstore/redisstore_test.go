package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"net"
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
	checker := &slotChecker{tb: t}
	t.Cleanup(func() {
		if checker.scripts() == 0 {
			t.Errorf("no script ran: the hash-tag check looked at nothing")
		}
	})
	storetest.Run(t, func(tb testing.TB) service.Store {
		rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), PoolSize: 64})
		tb.Cleanup(func() { _ = rdb.Close() })
		rdb.AddHook(checker)
		return redisstore.New(rdb, "")
	})
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

// slotChecker fails the test when a script touches keys of more than one
// hash tag, which Redis Cluster would refuse with CROSSSLOT.
type slotChecker struct {
	tb testing.TB
	mu sync.Mutex
	n  int
}

func (c *slotChecker) scripts() int { c.mu.Lock(); defer c.mu.Unlock(); return c.n }

func (c *slotChecker) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *slotChecker) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.check(cmd)
		return next(ctx, cmd)
	}
}

func (c *slotChecker) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			c.check(cmd)
		}
		return next(ctx, cmds)
	}
}

func (c *slotChecker) check(cmd redis.Cmder) {
	name := strings.ToLower(cmd.Name())
	if name != "eval" && name != "evalsha" {
		return
	}
	args := cmd.Args()
	n, _ := strconv.Atoi(fmt.Sprint(args[2]))
	tags := map[string]bool{}
	for _, k := range args[3 : 3+n] {
		tags[hashTag(fmt.Sprint(k))] = true
	}
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
	if len(tags) != 1 || tags[""] {
		c.tb.Errorf("script keys %v span hash tags %v: Redis Cluster would refuse them", args[3:3+n], tags)
	}
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

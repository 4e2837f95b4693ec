package redistest

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestStartStopRestart(t *testing.T) {
	t.Parallel()
	s := Start(t)
	c := s.Client()
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("set: %v", err)
	}
	s.Stop()
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("ping succeeded after Stop")
	}
	s.Restart()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("ping after restart: %v", err)
	}
	if n, _ := c.Exists(ctx, "k").Result(); n != 0 {
		t.Fatal("restarted server kept data")
	}
}

func TestCluster(t *testing.T) {
	t.Parallel()
	c := StartCluster(t, 3).Client()
	ctx := context.Background()
	// Keys on every node: the client follows the slots.
	for i := range 30 {
		if err := c.Set(ctx, fmt.Sprint("k", i), i, 0).Err(); err != nil {
			t.Fatalf("set on the cluster: %v", err)
		}
	}
	var nodes atomic.Int32 // ForEachMaster runs in parallel
	err := c.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
		if k, err := n.DBSize(ctx).Result(); err != nil || k == 0 {
			return fmt.Errorf("node %s holds %d keys (%v)", n.Options().Addr, k, err)
		}
		nodes.Add(1)
		return nil
	})
	if err != nil || nodes.Load() != 3 {
		t.Fatalf("%d masters: %v", nodes.Load(), err)
	}
}

func TestSentinelFailover(t *testing.T) {
	t.Parallel()
	master := Start(t)
	replica := StartReplica(t, master)
	sentinel := StartSentinel(t, master, "otpd")
	c := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: "otpd", SentinelAddrs: []string{sentinel.Addr()}})
	t.Cleanup(func() { _ = c.Close() })
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("set through the sentinel: %v", err)
	}
	master.Stop()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := c.Set(ctx, "k2", "v", 0).Err()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new master after the old one stopped: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got, err := replica.Client().Get(ctx, "k2").Result(); err != nil || got != "v" {
		t.Fatalf("the replica did not become the master: %q, %v", got, err)
	}
}

// A port taken between freePort and redis-server's bind is noticed, even
// though the taker answers PING: start fails (and Start retries) instead
// of handing the test another test's server.
func TestStartOnTakenPort(t *testing.T) {
	t.Parallel()
	owner := Start(t)
	s := &Server{tb: t, dir: t.TempDir(), port: owner.port}
	err := s.start()
	if err == nil {
		s.Stop()
		t.Fatal("start on a port another redis-server holds succeeded")
	}
	if err := owner.Client().Ping(context.Background()).Err(); err != nil {
		t.Fatalf("the port's owner was disturbed: %v", err)
	}
}

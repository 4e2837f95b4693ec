package redistest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a Redis Cluster of masters without replicas, each its own
// redis-server owned by one test.
type Cluster struct {
	Nodes []*Server
}

// StartCluster starts n redis-servers in cluster mode, spreads the 16384
// hash slots evenly among them and waits until every node sees the cluster
// as ok. The servers stop when tb ends.
func StartCluster(tb testing.TB, n int) *Cluster {
	tb.Helper()
	return StartClusterWith(tb, n)
}

// StartClusterWith is StartCluster with more redis-server arguments for
// every node ("--enable-debug-command", "yes").
func StartClusterWith(tb testing.TB, n int, args ...string) *Cluster {
	tb.Helper()
	c := &Cluster{}
	for range n {
		c.Nodes = append(c.Nodes, start(tb, &Server{tb: tb, dir: tb.TempDir(), cluster: true, args: args}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i, s := range c.Nodes {
		cl := redis.NewClient(&redis.Options{Addr: s.Addr()})
		err := cl.ClusterAddSlotsRange(ctx, i*16384/n, (i+1)*16384/n-1).Err()
		if err == nil && i > 0 {
			err = cl.Do(ctx, "CLUSTER", "MEET", "127.0.0.1", c.Nodes[0].port, c.Nodes[0].busPort).Err()
		}
		_ = cl.Close()
		if err != nil {
			tb.Fatalf("set up cluster node %s: %v", s.Addr(), err)
		}
	}
	for _, s := range c.Nodes {
		cl := redis.NewClient(&redis.Options{Addr: s.Addr()})
		for {
			info, err := cl.ClusterInfo(ctx).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") &&
				strings.Contains(info, "cluster_known_nodes:"+strconv.Itoa(n)+"\r") {
				break
			}
			if ctx.Err() != nil {
				_ = cl.Close()
				tb.Fatalf("cluster node %s not ok: %v\n%s", s.Addr(), err, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
		_ = cl.Close()
	}
	return c
}

// Addrs are the nodes' host:port.
func (c *Cluster) Addrs() []string {
	var out []string
	for _, s := range c.Nodes {
		out = append(out, s.Addr())
	}
	return out
}

// Client returns a cluster client, closed when the test ends.
func (c *Cluster) Client() *redis.ClusterClient {
	cl := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	c.Nodes[0].tb.Cleanup(func() { _ = cl.Close() })
	return cl
}

// StartReplica starts a redis-server that replicates master. It stops when
// tb ends.
func StartReplica(tb testing.TB, master *Server) *Server {
	tb.Helper()
	return StartWith(tb, "--replicaof", "127.0.0.1", strconv.Itoa(master.port))
}

// StartSentinel starts a Sentinel that watches master under name, alone
// (quorum 1) and quick to act (down after 500 ms), so that a test sees a
// failover within seconds. It stops when tb ends.
func StartSentinel(tb testing.TB, master *Server, name string) *Server {
	tb.Helper()
	dir := tb.TempDir()
	conf := filepath.Join(dir, "sentinel.conf")
	text := fmt.Sprintf("sentinel monitor %[1]s 127.0.0.1 %[2]d 1\n"+
		"sentinel down-after-milliseconds %[1]s 500\n"+
		"sentinel failover-timeout %[1]s 5000\n", name, master.port)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		tb.Fatal(err)
	}
	return start(tb, &Server{tb: tb, dir: dir, conf: conf})
}

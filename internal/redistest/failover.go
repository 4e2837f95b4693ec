package redistest

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// ReplicatedCluster is a Redis Cluster whose every master has one
// replica, quick to fail over: a test kills a master and sees its replica
// promoted within seconds.
type ReplicatedCluster struct {
	*Cluster           // Nodes are the masters
	Replicas []*Server // Replicas[i] replicates Nodes[i]
}

// clusterNodeTimeout is the cluster-node-timeout of a ReplicatedCluster: a
// master silent this long is failing, and its replica is promoted about a
// second later.
const clusterNodeTimeout = "1000"

// StartReplicatedCluster starts n masters as StartClusterWith does, then
// one replica of each, and waits until every replica is in sync and every
// node sees the cluster ok. The servers stop when tb ends.
func StartReplicatedCluster(tb testing.TB, n int, args ...string) *ReplicatedCluster {
	tb.Helper()
	// Given last, these win over start's own node timeout. A master
	// serves a new replica at once, rather than after the default 5s wait
	// for more replicas to share one transfer.
	args = append(args, "--cluster-node-timeout", clusterNodeTimeout, "--repl-diskless-sync-delay", "0")
	rc := &ReplicatedCluster{Cluster: StartClusterWith(tb, n, args...)}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, m := range rc.Nodes {
		r := start(tb, &Server{tb: tb, dir: tb.TempDir(), cluster: true, args: args})
		rc.Replicas = append(rc.Replicas, r)
		mc := redis.NewClient(&redis.Options{Addr: m.Addr()})
		id, err := mc.Do(ctx, "CLUSTER", "MYID").Text()
		_ = mc.Close()
		if err != nil {
			tb.Fatalf("cluster node %s: %v", m.Addr(), err)
		}
		rcl := redis.NewClient(&redis.Options{Addr: r.Addr()})
		err = rcl.Do(ctx, "CLUSTER", "MEET", "127.0.0.1", m.port, m.busPort).Err()
		// REPLICATE fails ("Unknown node") until the replica has heard of
		// the master by gossip.
		for err == nil {
			if err = rcl.Do(ctx, "CLUSTER", "REPLICATE", id).Err(); err == nil || ctx.Err() != nil {
				break
			}
			err = nil
			time.Sleep(50 * time.Millisecond)
		}
		_ = rcl.Close()
		if err != nil {
			tb.Fatalf("make %s a replica of %s: %v", r.Addr(), m.Addr(), err)
		}
	}
	for _, r := range rc.Replicas {
		waitInfo(ctx, tb, r, "replication", "master_link_status:up")
	}
	for _, s := range append(append([]*Server{}, rc.Nodes...), rc.Replicas...) {
		waitClusterOK(ctx, tb, s, 2*n)
	}
	return rc
}

// WaitFailover waits until the replica of master i, which the test
// stopped, is a master and every node still running sees the cluster ok
// again, and returns it.
func (rc *ReplicatedCluster) WaitFailover(tb testing.TB, i int) *Server {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := rc.Replicas[i]
	waitInfo(ctx, tb, r, "replication", "role:master")
	for j, s := range rc.Nodes {
		if j != i {
			waitClusterOK(ctx, tb, s, 0)
		}
	}
	for _, s := range rc.Replicas {
		waitClusterOK(ctx, tb, s, 0)
	}
	return r
}

// waitInfo waits until INFO section of s has the line want.
func waitInfo(ctx context.Context, tb testing.TB, s *Server, section, want string) {
	tb.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr()})
	defer c.Close()
	for {
		info, err := c.Info(ctx, section).Result()
		if err == nil && strings.Contains(info, "\n"+want+"\r") {
			return
		}
		if ctx.Err() != nil {
			tb.Fatalf("redis %s: no %q in INFO %s: %v\n%s", s.Addr(), want, section, err, info)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitClusterOK waits until s sees the cluster ok and, when nodes > 0,
// knows that many nodes.
func waitClusterOK(ctx context.Context, tb testing.TB, s *Server, nodes int) {
	tb.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr()})
	defer c.Close()
	for {
		info, err := c.ClusterInfo(ctx).Result()
		if err == nil && strings.Contains(info, "cluster_state:ok") &&
			(nodes == 0 || strings.Contains(info, "cluster_known_nodes:"+strconv.Itoa(nodes)+"\r")) {
			return
		}
		if ctx.Err() != nil {
			tb.Fatalf("cluster node %s not ok: %v\n%s", s.Addr(), err, info)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

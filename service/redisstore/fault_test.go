package redisstore_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/otpd/otpd/internal/redistest"
	"github.com/otpd/otpd/service"
	"github.com/otpd/otpd/service/redisstore"
)

var debug = []string{"--enable-debug-command", "yes"}

func sendParams(rid string, now time.Time) service.SendParams {
	return service.SendParams{
		Recipient: rcpt(rid), Usage: "sign_in", CodeHash: []byte("right"), VerificationID: "v-" + rid, Now: now,
		TTL: 10 * time.Minute, MaxAttempts: 5, Cooldown: time.Minute, PerRecipient: service.Window{Count: 5, Window: time.Hour},
	}
}

func verifyParams(rid, hash, attempt string, now time.Time) service.VerifyParams {
	return service.VerifyParams{
		Recipient: rcpt(rid), Usage: "sign_in", CodeHash: []byte(hash), Now: now, AttemptID: attempt,
		PerRecipient: service.Window{Count: 20, Window: time.Hour}, Grace: time.Minute,
	}
}

// Under maxmemory with noeviction, every script that could count a guess,
// store a code or take a slot is refused whole, before it runs, and the
// refusal says nothing was applied; the clean-up scripts still run.
func TestOOMRefusesScriptsWhole(t *testing.T) {
	t.Parallel()
	srv := redistest.StartWithDebug(t, "--maxmemory-policy", "noeviction")
	admin := srv.Client()
	cfg := redisstore.DefaultConfig()
	cfg.URL = srv.URL()
	rdb, err := cfg.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	s := redisstore.New(rdb, "")
	ctx := context.Background()
	now := time.Now()
	for _, rid := range []string{"guessed", "consumed", "aborted"} {
		if res, err := s.BeginSend(ctx, sendParams(rid, now)); err != nil || res.Status != service.SendAccepted {
			t.Fatalf("send: %+v, %v", res, err)
		}
	}
	if res, err := s.Verify(ctx, verifyParams("consumed", "right", "a-ok", now)); err != nil || res.Status != service.VerifyOK {
		t.Fatalf("verify: %+v, %v", res, err)
	}

	info := admin.Info(ctx, "memory").Val()
	used, _ := strconv.ParseInt(strings.TrimSpace(strings.SplitN(strings.SplitN(info, "used_memory:", 2)[1], "\r\n", 2)[0]), 10, 64)
	if err := admin.ConfigSet(ctx, "maxmemory", strconv.FormatInt(used+1<<20, 10)).Err(); err != nil {
		t.Fatal(err)
	}
	if err := admin.Do(ctx, "DEBUG", "POPULATE", 100000, "junk", 64).Err(); err != nil {
		t.Fatal(err)
	}
	if err := admin.Set(ctx, "probe", "x", 0).Err(); !redis.IsOOMError(err) {
		t.Fatalf("Redis is not full: %v", err)
	}

	slot := service.Slot{Limit: "per_ip", Key: "ip:x", Window: service.Window{Count: 5, Window: time.Hour}}
	withSlot := sendParams("new-with-slot", now)
	withSlot.Slots = []service.Slot{slot}
	perIP := verifyParams("guessed", "wrong", "a-ip", now)
	perIP.PerIP = &service.Slot{Limit: "verify_per_ip", Key: "vip:x", Window: service.Window{Count: 5, Window: time.Hour}}
	for name, call := range map[string]func() error{
		"send":                func() error { _, err := s.BeginSend(ctx, sendParams("new", now)); return err },
		"send with its slots": func() error { _, err := s.BeginSend(ctx, withSlot); return err },
		"wrong code":          func() error { _, err := s.Verify(ctx, verifyParams("guessed", "wrong", "a-1", now)); return err },
		"wrong code, per IP":  func() error { _, err := s.Verify(ctx, perIP); return err },
		"right code":          func() error { _, err := s.Verify(ctx, verifyParams("guessed", "right", "a-2", now)); return err },
		"slots": func() error {
			_, err := s.TakeSlots(ctx, now, "m", []service.Slot{slot})
			return err
		},
	} {
		err := call()
		if !redis.IsOOMError(err) || !errors.Is(err, service.ErrStoreUnavailable) || !errors.Is(err, service.ErrNotApplied) {
			t.Errorf("%s under OOM: %v, want OOM marked ErrStoreUnavailable and ErrNotApplied", name, err)
		}
	}
	// Clean-up runs: what a call left must go even when Redis is full.
	if err := s.AbortSend(ctx, service.AbortParams{Recipient: rcpt("aborted"), Usage: "sign_in", VerificationID: "v-aborted", Uncount: true, Tombstone: time.Minute}); err != nil {
		t.Errorf("abort under OOM: %v", err)
	}
	if err := s.UndoVerify(ctx, service.UndoVerifyParams{Recipient: rcpt("consumed"), Usage: "sign_in", AttemptID: "a-ok", Now: now, Tombstone: time.Minute}); err != nil {
		t.Errorf("undo verify under OOM: %v", err)
	}
	if err := s.ReleaseSlots(ctx, "m", []service.Slot{slot}); err != nil {
		t.Errorf("release slots under OOM: %v", err)
	}

	if err := admin.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		rid, hash string
		want      service.VerifyStatus
		left      int
	}{
		{"guessed", "wrong", service.VerifyMismatch, 4}, // nothing counted under OOM
		{"guessed", "right", service.VerifyOK, 0},
		{"consumed", "right", service.VerifyOK, 0}, // restored by the undo
		{"aborted", "right", service.VerifyExpired, 0},
	} {
		res, err := s.Verify(ctx, verifyParams(c.rid, c.hash, "after-"+c.rid+c.hash, now))
		if err != nil || res.Status != c.want || res.AttemptsRemaining != c.left {
			t.Errorf("verify %s/%s with room again: %+v, %v; want status %d, %d left", c.rid, c.hash, res, err, c.want, c.left)
		}
	}
}

// The client never re-sends a script whose reply timed out, on a single
// node and on Cluster (whose client re-sends timed-out commands on its
// own unless they are marked): the script runs once, after the stall, and
// the same call made again is recognised.
func TestScriptsAreNeverResent(t *testing.T) {
	t.Parallel()
	for _, topology := range []string{"single node", "cluster"} {
		t.Run(topology, func(t *testing.T) {
			t.Parallel()
			cfg := redisstore.DefaultConfig()
			// A stall (1s) longer than the timeout but shorter than two: a
			// client that re-sends after the timeout gets its copy through
			// once Redis wakes.
			cfg.Timeout = 600 * time.Millisecond
			var nodes []*redistest.Server
			if topology == "cluster" {
				c := redistest.StartClusterWith(t, 3, debug...)
				cfg.Addrs, cfg.Cluster, nodes = c.Addrs(), true, c.Nodes
			} else {
				srv := redistest.StartWithDebug(t)
				cfg.URL, nodes = srv.URL(), []*redistest.Server{srv}
			}
			rdb, err := cfg.Client()
			if err != nil {
				t.Fatal(err)
			}
			defer rdb.Close()
			s := redisstore.New(rdb, "")
			ctx := context.Background()
			now := time.Now()
			// A connection to every node, so that the call below is
			// written at once rather than stuck in a handshake.
			if _, err := s.BeginSend(ctx, sendParams("warm-up", now)); err != nil {
				t.Fatal(err)
			}
			if c, ok := rdb.(*redis.ClusterClient); ok {
				if err := c.ForEachShard(ctx, func(ctx context.Context, n *redis.Client) error { return n.Ping(ctx).Err() }); err != nil {
					t.Fatal(err)
				}
			}
			admins := make([]*redis.Client, len(nodes))
			for i, n := range nodes {
				admins[i] = redis.NewClient(&redis.Options{Addr: n.Addr(), MaxRetries: -1, ReadTimeout: 10 * time.Second})
				defer admins[i].Close()
				if err := admins[i].ConfigResetStat(ctx).Err(); err != nil {
					t.Fatal(err)
				}
			}

			var wg sync.WaitGroup
			for _, a := range admins {
				wg.Go(func() { _ = a.Do(ctx, "DEBUG", "SLEEP", "1").Err() })
			}
			for _, n := range nodes {
				waitStalled(t, n.Addr())
			}
			p := sendParams("stalled", now)
			_, err = s.BeginSend(ctx, p)
			if !errors.Is(err, service.ErrStoreUnavailable) || errors.Is(err, service.ErrNotApplied) {
				t.Fatalf("send during the stall: %v, want ErrStoreUnavailable with an unknown outcome", err)
			}
			wg.Wait()

			runs := func() int {
				n := 0
				for _, a := range admins {
					for _, l := range strings.Split(a.Info(ctx, "commandstats").Val(), "\r\n") {
						for _, cmd := range []string{"cmdstat_evalsha:calls=", "cmdstat_eval:calls="} {
							if rest, ok := strings.CutPrefix(l, cmd); ok {
								c, _ := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
								n += c
							}
						}
					}
				}
				return n
			}
			// The call was written before the client gave up: Redis runs it
			// once it wakes, with any copy the client might have re-sent.
			for deadline := time.Now().Add(5 * time.Second); runs() == 0; {
				if time.Now().After(deadline) {
					t.Fatal("the send's script never ran")
				}
				time.Sleep(10 * time.Millisecond)
			}
			if n := runs(); n != 1 {
				t.Fatalf("the send's script ran %d times for one call, want 1 (the client re-sent it)", n)
			}
			// It ran after the stall: the same call again is answered
			// accepted, not refused by its own cooldown.
			if res, err := s.BeginSend(ctx, p); err != nil || res.Status != service.SendAccepted {
				t.Fatalf("the same send again: %+v, %v; want accepted", res, err)
			}
		})
	}
}

// waitStalled waits until the server at addr answers nothing.
func waitStalled(tb testing.TB, addr string) {
	tb.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, ReadTimeout: 50 * time.Millisecond, PoolSize: 1})
	defer c.Close()
	for deadline := time.Now().Add(5 * time.Second); c.Ping(context.Background()).Err() == nil; {
		if time.Now().After(deadline) {
			tb.Fatalf("%s never stalled", addr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

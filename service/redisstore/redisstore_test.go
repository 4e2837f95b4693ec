package redisstore_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
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

// rcpt is the recipient whose id is rid, in a bucket of its own (as far
// as 4096 buckets go).
func rcpt(rid string, previous ...string) service.Recipient {
	sum := sha256.Sum256([]byte(rid))
	return service.Recipient{ID: rid, Bucket: hex.EncodeToString(sum[:2])[:3], Previous: previous}
}

func TestConformance(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	checker := &slotChecker{}
	t.Cleanup(func() {
		// A send with shared slots, and a verification with a per-IP
		// window, are one script on a single node: the only scripts
		// spanning hash tags are those, and only their windows and
		// verified counts (and their previous keys) are off the
		// recipient's bucket.
		if checker.scripts() == 0 || checker.crossTag() == 0 {
			t.Errorf("%d scripts ran, %d of them across hash tags: want sends with their slots in one script", checker.scripts(), checker.crossTag())
		}
		for _, keys := range checker.crossKeys() {
			tag := hashTag(keys[0])
			ok := strings.HasSuffix(keys[0], ":r") && len(tag) == 3
			for _, k := range keys[1:] {
				ok = ok && (hashTag(k) == tag || strings.HasSuffix(k, ":window") || strings.HasSuffix(k, ":verified"))
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
			Recipient: rcpt(fmt.Sprint("r", i)), Usage: "sign_in", CodeHash: []byte("h"), VerificationID: fmt.Sprint("v", i),
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
		_, err := s.BeginSend(ctx, service.SendParams{Recipient: rcpt(rid), Usage: "sign_in", CodeHash: []byte("h"), VerificationID: "v-" + rid,
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
	res, err := s.Verify(ctx, service.VerifyParams{Recipient: rcpt("after"), Usage: "sign_in", CodeHash: []byte("h"), Now: now, AttemptID: "a"})
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
		// Each command of a pipeline is refused or run on its own, as a
		// sharding proxy answers each.
		var pass []redis.Cmder
		var err error
		for _, cmd := range cmds {
			if c.check(cmd) {
				pass = append(pass, cmd)
			} else {
				cmd.SetErr(crossSlotError{})
				err = cmd.Err()
			}
		}
		if len(pass) > 0 {
			if perr := next(ctx, pass); err == nil {
				err = perr
			}
		}
		return err
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
	rdb := redis.NewClient(&redis.Options{Addr: refusedAddr(t), MaxRetries: -1})
	defer rdb.Close()
	s := redisstore.New(rdb, "")
	ctx := context.Background()
	for name, err := range map[string]error{
		"ping": s.Ping(ctx),
		"verify": func() error {
			_, err := s.Verify(ctx, service.VerifyParams{Recipient: rcpt("r"), Usage: "sign_in"})
			return err
		}(),
		"send": func() error {
			_, err := s.BeginSend(ctx, service.SendParams{Recipient: rcpt("r"), Usage: "sign_in"})
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

// The key layout, and what a rotation does to it: every key of a
// recipient, under every secret, carries its bucket as the hash tag; a
// call with previous ids moves what the previous keys held to the current
// ones (a rename keeps the expiry; a merged record expires with the
// later), and no previous key is left.
func TestRotationMovesKeys(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client()
	s := redisstore.New(rdb, "")
	ctx := context.Background()
	now := time.Now()
	old := service.Recipient{ID: "old", Bucket: "abc"}
	onlyCur := service.Recipient{ID: "cur", Bucket: "abc"}
	cur := service.Recipient{ID: "cur", Bucket: "abc", Previous: []string{"old"}}
	send := func(r service.Recipient, usage, vid string, key service.IdempotencyKey) {
		t.Helper()
		res, err := s.BeginSend(ctx, service.SendParams{Recipient: r, Usage: usage, CodeHash: []byte("h-" + r.ID), VerificationID: vid,
			Now: now, TTL: 10 * time.Minute, MaxAttempts: 5, Cooldown: time.Minute, PerRecipient: service.Window{Count: 5, Window: 10 * time.Minute},
			IdempotencyKey: key, Fingerprint: "sms/" + usage, PendingTTL: 20 * time.Second})
		if err != nil || res.Status != service.SendAccepted && res.Status != service.SendReplay {
			t.Fatalf("send: %+v, %v", res, err)
		}
	}
	verify := func(r service.Recipient, usage, attempt string, window time.Duration, want service.VerifyStatus) {
		t.Helper()
		res, err := s.Verify(ctx, service.VerifyParams{Recipient: r, Usage: usage, CodeHash: []byte("wrong"), PreviousCodeHashes: [][]byte{[]byte("wrong")}[:len(r.Previous)],
			Now: now, AttemptID: attempt, PerRecipient: service.Window{Count: 20, Window: window}})
		if err != nil || res.Status != want {
			t.Fatalf("verify: %+v, %v; want status %d", res, err, want)
		}
	}
	send(old, "sign_in", "v1", service.IdempotencyKey{ID: "k-old"})
	if err := s.CompleteSend(ctx, old, service.IdempotencyKey{ID: "k-old"}, []byte("answer"), time.Hour); err != nil {
		t.Fatal(err)
	}
	verify(old, "sign_in", "a1", time.Hour, service.VerifyMismatch)
	// The current secret's verify window already holds an attempt, and
	// expires later: the merged window expires with it.
	send(onlyCur, "register", "v2", service.IdempotencyKey{})
	verify(onlyCur, "register", "a2", 2*time.Hour, service.VerifyMismatch)

	keys := rdb.Keys(ctx, "*").Val()
	slices.Sort(keys)
	want := []string{"otpd:{abc}:cur:r", "otpd:{abc}:old:idem:k-old", "otpd:{abc}:old:r"}
	if !slices.Equal(keys, want) {
		t.Fatalf("keys before the rotation:\n got %v\nwant %v", keys, want)
	}
	pttl := func(key string) time.Duration { t.Helper(); return rdb.PTTL(ctx, key).Val() }
	fields := func(key string) map[string]string { t.Helper(); return rdb.HGetAll(ctx, key).Val() }
	oldRec, idemTTL := fields("otpd:{abc}:old:r"), pttl("otpd:{abc}:old:idem:k-old")
	// One record per recipient: the sign-in code and its cooldown, the
	// send and the wrong attempt in the windows.
	for _, f := range []string{"sh", "si", "se", "sa", "sd", "Sv1", "Va1"} {
		if _, ok := oldRec[f]; !ok {
			t.Errorf("the previous record has no field %q: %v", f, oldRec)
		}
	}
	if got := pttl("otpd:{abc}:old:r"); got > time.Hour || got < time.Hour-5*time.Second {
		t.Errorf("the previous record expires in %v, want with its verify window, 1h", got)
	}

	// Under the rotated secret: a verification without a live code (it
	// moves the record and adds nothing), a wrong code, and an idempotent
	// retry.
	verify(cur, "generic", "a3", time.Hour, service.VerifyExpired)
	if got := pttl("otpd:{abc}:cur:r"); got > 2*time.Hour || got < 2*time.Hour-5*time.Second {
		t.Errorf("the merged record expires in %v, want the later expiry, 2h", got)
	}
	verify(cur, "sign_in", "a4", time.Hour, service.VerifyMismatch)
	send(cur, "sign_in", "v3", service.IdempotencyKey{ID: "k-cur", Previous: []string{"k-old"}})

	if left := rdb.Keys(ctx, "otpd:{abc}:old:*").Val(); len(left) != 0 {
		t.Errorf("previous keys left after the move: %v", left)
	}
	if got := pttl("otpd:{abc}:cur:idem:k-cur"); got > idemTTL || got < idemTTL-5*time.Second {
		t.Errorf("the moved idempotency record expires in %v, want about %v (kept over the move)", got, idemTTL)
	}
	rec := fields("otpd:{abc}:cur:r")
	for f, want := range map[string]string{
		// The moved code, one wrong attempt more (3 of 5 left), and its
		// cooldown, which now names its send.
		"sh": "h-old", "si": "v1", "se": oldRec["se"], "sa": "3", "sd": oldRec["sd"] + ":v1",
		"rh": "h-cur", "ri": "v2", // the current secret's own code stays
	} {
		if rec[f] != want {
			t.Errorf("merged record field %q = %q, want %q", f, rec[f], want)
		}
	}
	var sends, verifies int
	for f := range rec {
		switch f[0] {
		case 'S':
			sends++
		case 'V':
			verifies++
		}
	}
	if sends != 2 || verifies != 3 {
		t.Errorf("the merged windows hold %d sends and %d attempts, want 2 and 3: %v", sends, verifies, rec)
	}
	if rec := rdb.HGet(ctx, "otpd:{abc}:cur:idem:k-cur", "resp").Val(); rec != "answer" {
		t.Errorf("the moved idempotency record answers %q", rec)
	}
	// Slot windows: in their bucket when keyed, on their own tag when not.
	ip := service.Slot{Limit: "per_ip", Key: "ip:x", Bucket: "def", Window: service.Window{Count: 5, Window: time.Hour}}
	cc := service.Slot{Limit: "per_country", Key: "cc:1", Window: service.Window{Count: 5, Window: time.Hour}}
	if _, err := s.TakeSlots(ctx, now, "m", []service.Slot{ip, cc}); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"otpd:{def}:ip:x:window", "otpd:{cc:1}:window"} {
		if rdb.Exists(ctx, key).Val() != 1 {
			t.Errorf("no key %s", key)
		}
	}
}

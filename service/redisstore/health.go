package redisstore

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// The health probe is a write, not a PING: Redis answers PING while it
// refuses every write otpd needs (over maxmemory under noeviction, as a
// replica or a demoted master, while loading, without its master, below
// min-replicas-to-write), and a replica that keeps taking traffic then
// answers every call UNAVAILABLE. The probe is a script declared like
// otpd's own (a shebang without allow-oom), so Redis refuses it whole
// exactly when it would refuse theirs.
//
// Cost: one tiny script (a SET of a one-byte value with a 10 s expiry) per
// health.interval on each master; on Cluster also one CLUSTER SHARDS, to
// find a key on each master, since each shard can be full or demoted on
// its own.

// healthScript sets its key for ARGV[1] milliseconds.
var healthScript = newScript(guarded + `
redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
return 1
`)

// probeTTL is how long a probe key lives: one key per master, rewritten at
// every probe.
const probeTTL = 10 * time.Second

// Ping implements service.Store: it reports whether Redis takes writes
// now, on every master, with the store's errors (a refusal such as OOM or
// READONLY is service.ErrStoreUnavailable). With WithEvictionCheck it also
// fails, with an *EvictionError, while the maxmemory-policy may evict.
func (s *Store) Ping(ctx context.Context) error {
	keys, err := s.probeKeys(ctx)
	if err == nil {
		calls := make([]scriptCall, len(keys))
		for i, k := range keys {
			calls[i] = scriptCall{script: healthScript, keys: []string{k}, args: []any{ms(probeTTL)}}
		}
		_, err = s.runAll(ctx, calls)
	}
	if err != nil {
		s.forget()
		if cc, ok := s.rdb.(*redis.ClusterClient); ok {
			// The client reloads its slot map on a redirection, on a retry
			// or once a minute; otpd's scripts are never retried, and a dead
			// master redirects nobody. So a failed probe reloads it: after a
			// failover, calls find the promoted replica within a health
			// interval of its election.
			cc.ReloadState(ctx)
		}
		return wrap("health probe", err)
	}
	return s.recheck(ctx)
}

// probeKeys are the keys the probe writes: one on a single node or behind
// Sentinel, one per master on Cluster, each on a slot that master serves.
func (s *Store) probeKeys(ctx context.Context) ([]string, error) {
	cc, ok := s.rdb.(*redis.ClusterClient)
	if !ok {
		return []string{s.tag("health") + ":probe"}, nil
	}
	shards, err := cc.ClusterShards(ctx).Result()
	if err != nil {
		return nil, err
	}
	var keys []string
	for _, sh := range shards {
		if len(sh.Slots) > 0 { // a shard without slots serves no key of otpd's
			keys = append(keys, s.tag(slotTag(int(sh.Slots[0].Start)))+":probe")
		}
	}
	return keys, nil
}

// slotTags caches slotTag's answers: a cluster has few masters, and their
// slots rarely move.
var slotTags sync.Map // int → string

// slotTag returns a hash tag ("health-N") whose key slot is slot.
func slotTag(slot int) string {
	if t, ok := slotTags.Load(slot); ok {
		return t.(string)
	}
	// About 16384 tries on average, once per slot. Should no tag of the
	// first 2^22 reach the slot (never seen), "health" probes whichever
	// master serves its slot instead.
	t := "health"
	for n := range 1 << 22 {
		if c := "health-" + strconv.Itoa(n); keySlot(c) == slot {
			t = c
			break
		}
	}
	slotTags.Store(slot, t)
	return t
}

// keySlot is Redis Cluster's slot of a hash tag's content: CRC16 (XMODEM)
// modulo 16384.
func keySlot(tag string) int {
	var crc uint16
	for i := range len(tag) {
		crc ^= uint16(tag[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc % 16384)
}

// Package redisstore is the Redis implementation of service.Store: every
// check-and-update is one Lua script, and all keys of one recipient, under
// the current and the previous secrets, share a hash tag (its bucket), so
// the store runs on a single node, Sentinel or Cluster alike.
//
// Redis never holds a plaintext code or recipient: keys carry keyed hashes
// made by the service, values hold code hashes, counters and verification
// ids.
package redisstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/otpd/otpd/service"
)

// DefaultPrefix starts every key otpd writes.
const DefaultPrefix = "otpd:"

// Store is a service.Store on Redis.
type Store struct {
	rdb    redis.UniversalClient
	batch  batcher // the scripts of concurrent calls, sent together
	prefix string
	// local is the clock the callers' times are compared with: a call's
	// offset from it moves Redis's clock in the scripts.
	local func() time.Time
	// split is set where a call's shared windows, on hash tags of their
	// own, cannot be in its script: on Redis Cluster, and behind a proxy
	// that shards keys (it answers CROSSSLOT, learnt on the first call).
	split atomic.Bool
	// evict is the maxmemory-policy check of WithEvictionCheck, or nil.
	evict *evictionCheck
}

var _ service.Store = (*Store)(nil)

// Option configures a Store.
type Option func(*Store)

// WithLocalClock replaces time.Now as the clock that callers' times are
// measured against. The scripts keep time by Redis's clock plus the
// caller's offset from this one: tests give a store the skewed clock of a
// replica whose whole machine is off.
func WithLocalClock(now func() time.Time) Option { return func(s *Store) { s.local = now } }

// New returns a Store on rdb; every key starts with prefix (DefaultPrefix
// when empty). The caller owns rdb and closes it. rdb should not re-send
// commands on its own (Config.Client sets MaxRetries -1); the store also
// marks every script call as not retryable, which the Cluster client
// honours too.
func New(rdb redis.UniversalClient, prefix string, opts ...Option) *Store {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	s := &Store{rdb: rdb, prefix: prefix, local: time.Now}
	s.batch.rdb = rdb
	for _, o := range opts {
		o(s)
	}
	_, cluster := rdb.(*redis.ClusterClient)
	s.split.Store(cluster)
	return s
}

// offset is what a caller's time adds to Redis's clock, in milliseconds:
// about 0 in production, where both clocks are the machine's.
func (s *Store) offset(now time.Time) int64 { return now.Sub(s.local()).Milliseconds() }

// Key layout. {tag} is the Cluster hash tag: a bucket
// (service.Recipient.Bucket, service.Slot.Bucket), which no secret enters,
// so that a subject's keys under the current and the previous secrets
// share one hash slot; or, for a subject that is not keyed (a country
// calling code), its own key.
func (s *Store) tag(id string) string { return s.prefix + "{" + id + "}" }

type recipientKeys struct{ rec, idem string }

// recipientKeys are the keys of the recipient whose id (under one secret)
// is id; idem is an idempotency key's id under the same secret, or empty.
// rec is the recipient's record (recordLua): its codes, cooldowns and
// windows, one hash.
func (s *Store) recipientKeys(bucket, id, idem string) recipientKeys {
	t := s.tag(bucket) + ":" + id
	return recipientKeys{rec: t + ":r", idem: t + ":idem:" + idem}
}

// keysOf are r's keys under the current secret.
func (s *Store) keysOf(r service.Recipient, idem service.IdempotencyKey) recipientKeys {
	return s.recipientKeys(r.Bucket, r.ID, idem.ID)
}

// previousKeys are r's keys under each previous secret; idem of one has
// an empty idem id when the call has no idempotency key under it.
func (s *Store) previousKeys(r service.Recipient, idem service.IdempotencyKey) []recipientKeys {
	if len(r.Previous) == 0 {
		return nil
	}
	out := make([]recipientKeys, len(r.Previous))
	for i, id := range r.Previous {
		var k string
		if idem.ID != "" && i < len(idem.Previous) {
			k = idem.Previous[i]
		}
		out[i] = s.recipientKeys(r.Bucket, id, k)
		if k == "" {
			out[i].idem = ""
		}
	}
	return out
}

// storedHashLen is how much of a code's hash the store keeps: 128 bits of
// HMAC-SHA256, a tag no one without the secret can compute (NIST SP
// 800-107 allows truncation to 64), for a code of 20 to 33 bits that
// max_attempts guards anyway. The 16 bytes it saves keep a recipient's
// record (recordLua) in a smaller allocation.
const storedHashLen = 16

// stored is the part of a code's hash the store keeps and compares.
func stored(h []byte) []byte {
	if len(h) > storedHashLen {
		return h[:storedHashLen]
	}
	return h
}

// usageTags are the usage types' tags in a recipient's record
// (recordLua): one letter each, neither S nor V.
var usageTags = map[string]string{
	"register":                   "r",
	"sign_in":                    "s",
	"forgot_password":            "f",
	"generic":                    "g",
	"user_permission_validation": "u",
	"bind_new_identifier":        "b",
	"mfa_verification":           "m",
	"bind_mfa":                   "n",
	"organization_invitation":    "o",
}

// usageTag is usage's tag in a recipient's record: its letter, or
// {usage} for a usage type without one.
func usageTag(usage string) string {
	if t, ok := usageTags[usage]; ok {
		return t
	}
	return "{" + strings.ReplaceAll(usage, "}", "") + "}"
}

// slotKey is a shared slot's window.
func (s *Store) slotKey(sl service.Slot) string { return s.windowKey(sl.Bucket, sl.Key) }

// verifiedKey is a conversion slot's verified counts (conversionLua), in
// the slot's bucket: next to its window, under the same hash tag.
func (s *Store) verifiedKey(bucket, key string) string {
	return strings.TrimSuffix(s.windowKey(bucket, key), ":window") + ":verified"
}

// windowKey is the window of the slot subject key: in bucket, or on a hash
// tag of its own when bucket is empty.
func (s *Store) windowKey(bucket, key string) string {
	if bucket == "" {
		return s.tag(key) + ":window"
	}
	return s.tag(bucket) + ":" + key + ":window"
}

// moves are the (previous, current) key pairs whose state a script moves
// before it decides anything (migrateLua): what a rotated secret's keys
// hold goes to the current secret's. Empty when no previous secret is
// configured, and then a script does no extra work.
type moves struct {
	keys  []string // previous, current, previous, current, ...
	kinds []byte   // one per pair
}

// The kinds of state moved, each merged its own way where both keys of a
// pair hold some (migrateLua).
const (
	moveRecord = 'r' // a recipient's record: merged (merge_record)
	moveWindow = 'z' // a window: the union of both
	moveCounts = 'n' // counts (a hash of numbers): summed
	moveIdem   = 'k' // an idempotency record: the current one wins
)

func (m *moves) add(kind byte, from, to string) {
	m.keys = append(m.keys, from, to)
	m.kinds = append(m.kinds, kind)
}

// slot adds the moves of a slot's window, and of a conversion slot's
// verified counts, from its previous keys.
func (m *moves) slot(s *Store, sl service.Slot) {
	for _, p := range sl.Previous {
		m.add(moveWindow, s.windowKey(sl.Bucket, p), s.slotKey(sl))
		if sl.Conversion != nil {
			m.add(moveCounts, s.verifiedKey(sl.Bucket, p), s.verifiedKey(sl.Bucket, sl.Key))
		}
	}
}

// ratio is a conversion slot's ratio as a script argument, "" for a plain
// window.
func ratio(sl service.Slot) string {
	if sl.Conversion == nil {
		return ""
	}
	return strconv.FormatFloat(sl.Conversion.Ratio, 'g', -1, 64)
}

// record is a conversion slot's record flag as a script argument.
func record(sl service.Slot) string {
	if sl.Conversion != nil && sl.Conversion.Record {
		return "1"
	}
	return "0"
}

// slotLimit is the count a slot's script compares with: a window's Count,
// a conversion slot's MinUnverified.
func slotLimit(sl service.Slot) int {
	if sl.Conversion != nil {
		return sl.Conversion.MinUnverified
	}
	return sl.Window.Count
}

func ms(d time.Duration) int64 { return d.Milliseconds() }

func fromMS(v int64) time.Duration { return time.Duration(v) * time.Millisecond }

// TakeSlots implements service.Store. Each slot has a hash tag of its
// own, so the slots are taken one script each, in one pipelined round trip; when any is
// full, those taken are given back.
func (s *Store) TakeSlots(ctx context.Context, now time.Time, member string, slots []service.Slot) (*service.SlotDenial, error) {
	d, _, err := s.takeSlots(ctx, now, member, slots)
	return d, err
}

// takeSlots is TakeSlots; over names the first conversion slot in record
// mode that was over its threshold.
func (s *Store) takeSlots(ctx context.Context, now time.Time, member string, slots []service.Slot) (*service.SlotDenial, string, error) {
	calls := make([]scriptCall, len(slots))
	off := s.offset(now)
	for i, sl := range slots {
		var m moves
		m.slot(s, sl)
		calls[i] = scriptCall{
			script: slotScript,
			keys:   append([]string{s.slotKey(sl)}, m.keys...),
			args:   []any{off, ms(sl.Window.Window), sl.Window.Count, member, string(m.kinds)},
		}
		if sl.Conversion != nil {
			calls[i] = scriptCall{
				script: convSlotScript,
				keys:   append([]string{s.slotKey(sl), s.verifiedKey(sl.Bucket, sl.Key)}, m.keys...),
				args:   []any{off, ms(sl.Window.Window), sl.Conversion.MinUnverified, ratio(sl), record(sl), member, string(m.kinds)},
			}
		}
	}
	results, err := s.runAll(ctx, calls)
	var denial *service.SlotDenial
	var taken []service.Slot
	over := ""
	for i, r := range results {
		if r.err != nil {
			continue
		}
		v, perr := ints(r.val, 2)
		if perr != nil {
			err = errors.Join(err, perr)
			continue
		}
		if v[0] == 1 {
			taken = append(taken, slots[i])
			if w, _ := ints(r.val, 3); len(w) == 3 && w[2] == 1 && over == "" {
				over = slots[i].Limit
			}
		} else if denial == nil {
			denial = &service.SlotDenial{Limit: slots[i].Limit, RetryAfter: fromMS(v[1])}
		}
	}
	if err != nil || denial != nil {
		if len(taken) > 0 {
			if rerr := s.ReleaseSlots(context.WithoutCancel(ctx), member, taken); rerr != nil {
				err = errors.Join(err, rerr)
			}
		}
		if err != nil {
			return nil, "", wrap("take slots", err)
		}
		over = ""
	}
	return denial, over, nil
}

// CreditSlots implements service.Store: one script per conversion slot
// (each on its own hash tag), in one pipelined round trip.
func (s *Store) CreditSlots(ctx context.Context, now time.Time, member string, slots []service.Slot) error {
	var calls []scriptCall
	off := s.offset(now)
	for _, sl := range slots {
		if sl.Conversion == nil {
			continue
		}
		var m moves
		m.slot(s, sl)
		calls = append(calls, scriptCall{
			script: creditScript,
			keys:   append([]string{s.slotKey(sl), s.verifiedKey(sl.Bucket, sl.Key)}, m.keys...),
			args:   []any{off, ms(sl.Window.Window), member, string(m.kinds)},
		})
	}
	if len(calls) == 0 {
		return nil
	}
	_, err := s.runAll(ctx, calls)
	return wrap("credit slots", err)
}

// ReleaseSlots implements service.Store.
func (s *Store) ReleaseSlots(ctx context.Context, member string, slots []service.Slot) error {
	if len(slots) == 0 {
		return nil
	}
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, sl := range slots {
			p.ZRem(ctx, s.slotKey(sl), member)
			// A replica whose current secret is one of this one's
			// previous ones may have moved the window since.
			for _, prev := range sl.Previous {
				p.ZRem(ctx, s.windowKey(sl.Bucket, prev), member)
			}
		}
		return nil
	})
	return wrap("release slots", err)
}

// crossSlot reports whether err is the refusal of keys on several hash
// slots (Redis Cluster, sharding proxies): refused before it ran, so
// nothing changed.
func crossSlot(err error) bool { return redis.HasErrorPrefix(err, "CROSSSLOT") }

// BeginSend implements service.Store. On a single node or behind Sentinel
// it is one script, shared slots included. On Redis Cluster, or behind a
// sharding proxy, the slots are taken first (TakeSlots, one round trip),
// then the send's script runs and the slots go again when it refuses.
func (s *Store) BeginSend(ctx context.Context, p service.SendParams) (service.SendResult, error) {
	if len(p.Slots) == 0 {
		return s.beginSend(ctx, p, nil)
	}
	if !s.split.Load() {
		res, err := s.beginSend(ctx, p, p.Slots)
		if !crossSlot(err) {
			return res, err
		}
		// From now on, and for this send, the slots go first.
		s.split.Store(true)
	}
	denial, over, err := s.takeSlots(ctx, p.Now, p.VerificationID, p.Slots)
	if err != nil {
		return service.SendResult{}, err
	}
	if denial != nil {
		return service.SendResult{Status: service.SendSlotLimited, RetryAfter: denial.RetryAfter, Limit: denial.Limit}, nil
	}
	res, err := s.beginSend(ctx, p, nil)
	if err == nil && res.Status != service.SendAccepted {
		if err := s.ReleaseSlots(context.WithoutCancel(ctx), p.VerificationID, p.Slots); err != nil {
			return service.SendResult{}, err
		}
	}
	if err == nil && res.Status == service.SendAccepted {
		res.Over = over
	}
	return res, err
}

// beginSend runs sendScript with the given slots in it.
func (s *Store) beginSend(ctx context.Context, p service.SendParams, slots []service.Slot) (service.SendResult, error) {
	k := s.keysOf(p.Recipient, p.IdempotencyKey)
	useIdem := "0"
	if p.IdempotencyKey.ID != "" {
		useIdem = "1"
	}
	perCount, perWindow := p.PerRecipient.Count, ms(p.PerRecipient.Window)
	if !p.PerRecipient.Enabled() {
		perCount, perWindow = 0, 0
	}
	m := s.recordMoves(p.Recipient, k, p.IdempotencyKey)
	for _, sl := range slots {
		m.slot(s, sl)
	}
	keys := make([]string, 2, 2+2*len(slots)+len(m.keys))
	keys[0], keys[1] = k.rec, k.idem
	args := make([]any, 15, 15+4*len(slots))
	args[0], args[1], args[2], args[3], args[4], args[5] = s.offset(p.Now), ms(p.TTL), p.MaxAttempts, ms(p.Cooldown), perCount, perWindow
	codeHash := stored(p.CodeHash)
	if p.NoCode {
		codeHash = nil // an empty hash: the script stores no code
	}
	args[6], args[7], args[8], args[9], args[10] = p.VerificationID, codeHash, useIdem, p.Fingerprint, ms(p.PendingTTL)
	args[11], args[12], args[13] = string(m.kinds), p.KeepPrevious, p.Credit
	if p.NoCode {
		args[13] = ""
	}
	args[14] = usageTag(p.Usage)
	for _, sl := range slots {
		keys = append(keys, s.slotKey(sl), s.verifiedKey(sl.Bucket, sl.Key))
		args = append(args, ms(sl.Window.Window), slotLimit(sl), ratio(sl), record(sl))
	}
	keys = append(keys, m.keys...)
	val, err := s.run(ctx, sendScript, keys, args...)
	if err != nil {
		return service.SendResult{}, wrap("begin send", err)
	}
	arr, ok := val.([]any)
	if !ok || len(arr) < 2 {
		return service.SendResult{}, fmt.Errorf("begin send: unexpected reply %T", val)
	}
	v, err := ints(arr[:2], 2)
	if err != nil {
		return service.SendResult{}, fmt.Errorf("begin send: %w", err)
	}
	if v[0] == 7 {
		return service.SendResult{}, undone("begin send")
	}
	res := service.SendResult{Status: service.SendStatus(v[0]), RetryAfter: fromMS(v[1])}
	if res.Status == service.SendAccepted && len(arr) >= 3 {
		if i, _ := arr[2].(int64); i >= 1 && int(i) <= len(slots) {
			res.Over = slots[i-1].Limit
		}
	}
	if res.Status == service.SendSlotLimited {
		i, _ := arr[len(arr)-1].(int64)
		if len(arr) < 3 || i < 1 || int(i) > len(slots) {
			return service.SendResult{}, fmt.Errorf("begin send: slot denial %v names no slot", arr)
		}
		res.Limit = slots[i-1].Limit
	}
	if res.Status == service.SendReplay {
		if len(arr) < 3 {
			return service.SendResult{}, errors.New("begin send: replay without an answer")
		}
		str, _ := arr[2].(string)
		res.Replay = []byte(str)
	}
	return res, nil
}

// LookupSend implements service.Store. With previous secrets it reads the
// record under each of them too, in one round trip, and answers from the
// first found, the current secret's first; it moves nothing (BeginSend
// does).
func (s *Store) LookupSend(ctx context.Context, r service.Recipient, key service.IdempotencyKey, fingerprint string) (service.SendResult, error) {
	k := s.keysOf(r, key)
	previous := s.previousKeys(r, key)
	if len(previous) == 0 {
		rec, err := s.rdb.HMGet(ctx, k.idem, "fp", "resp").Result()
		if err != nil {
			return service.SendResult{}, wrap("look up send", err)
		}
		return idempotencyResult(rec[0], rec[1], fingerprint), nil
	}
	cmds := []*redis.SliceCmd{}
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		cmds = append(cmds, p.HMGet(ctx, k.idem, "fp", "resp"))
		for _, old := range previous {
			if old.idem != "" {
				cmds = append(cmds, p.HMGet(ctx, old.idem, "fp", "resp"))
			}
		}
		return nil
	})
	if err != nil {
		return service.SendResult{}, wrap("look up send", err)
	}
	for _, c := range cmds {
		if rec := c.Val(); rec[0] != nil {
			return idempotencyResult(rec[0], rec[1], fingerprint), nil
		}
	}
	return service.SendResult{Status: service.SendAccepted}, nil
}

func idempotencyResult(fp, resp any, fingerprint string) service.SendResult {
	switch fp, _ := fp.(string); {
	case fp == "":
		return service.SendResult{Status: service.SendAccepted}
	case fp != fingerprint:
		return service.SendResult{Status: service.SendIdempotencyMismatch}
	}
	if answer, ok := resp.(string); ok {
		return service.SendResult{Status: service.SendReplay, Replay: []byte(answer)}
	}
	return service.SendResult{Status: service.SendInProgress}
}

// CompleteSend implements service.Store.
func (s *Store) CompleteSend(ctx context.Context, r service.Recipient, key service.IdempotencyKey, answer []byte, ttl time.Duration) error {
	k := s.keysOf(r, key)
	var m moves
	for _, old := range s.previousKeys(r, key) {
		if old.idem != "" {
			m.add(moveIdem, old.idem, k.idem)
		}
	}
	_, err := s.run(ctx, completeScript, append([]string{k.idem}, m.keys...), answer, ms(ttl), string(m.kinds))
	return wrap("complete send", err)
}

// AbortSend implements service.Store.
func (s *Store) AbortSend(ctx context.Context, p service.AbortParams) error {
	k := s.keysOf(p.Recipient, p.IdempotencyKey)
	useIdem, uncount := "0", "0"
	if p.IdempotencyKey.ID != "" {
		useIdem = "1"
	}
	if p.Uncount {
		uncount = "1"
	}
	m := s.recordMoves(p.Recipient, k, p.IdempotencyKey)
	keys := append([]string{k.rec, k.idem}, m.keys...)
	_, err := s.run(ctx, abortScript, keys, p.VerificationID, useIdem, uncount, ms(p.Tombstone), string(m.kinds),
		s.offset(p.Now), stored(p.CodeHash), usageTag(p.Usage))
	return wrap("abort send", err)
}

// recordMoves are the moves (migrateLua) of r's record to k.rec, and of
// its idempotency record to k.idem where the call has a key, from r's
// keys under each previous secret.
func (s *Store) recordMoves(r service.Recipient, k recipientKeys, idem service.IdempotencyKey) moves {
	var m moves
	for _, old := range s.previousKeys(r, idem) {
		m.add(moveRecord, old.rec, k.rec)
		if old.idem != "" {
			m.add(moveIdem, old.idem, k.idem)
		}
	}
	return m
}

// records are r's records under the current and every previous secret
// (one bucket, one hash slot).
func (s *Store) records(r service.Recipient) []string {
	keys := []string{s.keysOf(r, service.IdempotencyKey{}).rec}
	for _, old := range s.previousKeys(r, service.IdempotencyKey{}) {
		keys = append(keys, old.rec)
	}
	return keys
}

// CancelCode implements service.Store: one script deletes the code under
// the current and every previous secret (one bucket, one hash slot).
func (s *Store) CancelCode(ctx context.Context, p service.CodeParams) (bool, error) {
	val, err := s.run(ctx, cancelScript, s.records(p.Recipient), s.offset(p.Now), usageTag(p.Usage))
	if err != nil {
		return false, wrap("cancel code", err)
	}
	n, ok := val.(int64)
	if !ok {
		return false, fmt.Errorf("cancel code: unexpected reply %v", val)
	}
	return n == 1, nil
}

// CodeStatus implements service.Store: one read-only script reads the
// code and the cooldown under the current and every previous secret.
func (s *Store) CodeStatus(ctx context.Context, p service.CodeParams) (service.CodeStatus, error) {
	val, err := s.run(ctx, statusScript, s.records(p.Recipient), s.offset(p.Now), usageTag(p.Usage))
	if err != nil {
		return service.CodeStatus{}, wrap("code status", err)
	}
	v, err := ints(val, 5)
	if err != nil {
		return service.CodeStatus{}, fmt.Errorf("code status: %w", err)
	}
	st := service.CodeStatus{Live: v[0] == 1, AttemptsRemaining: int(v[2]), ValidCodes: int(v[3])}
	if st.Live {
		st.ExpiresAt = time.UnixMilli(v[1])
	}
	if v[4] > 0 {
		st.ResendAfter = time.UnixMilli(v[4])
	}
	return st, nil
}

// Verify implements service.Store. On a single node or behind Sentinel
// it is one script, the per-IP window included. In split mode the per-IP
// window is taken first (as a send's slots), then given back unless the
// code was wrong or there was no live code.
func (s *Store) Verify(ctx context.Context, p service.VerifyParams) (service.VerifyResult, error) {
	if p.PerIP == nil {
		return s.verify(ctx, p, false)
	}
	if !s.split.Load() {
		res, err := s.verify(ctx, p, true)
		if !crossSlot(err) {
			return res, err
		}
		s.split.Store(true)
	}
	denial, err := s.TakeSlots(ctx, p.Now, p.AttemptID, []service.Slot{*p.PerIP})
	if err != nil {
		return service.VerifyResult{}, err
	}
	if denial != nil {
		return service.VerifyResult{Status: service.VerifyRateLimited, RetryAfter: denial.RetryAfter, ByIP: true}, nil
	}
	res, err := s.verify(ctx, p, false)
	counted := res.Status == service.VerifyMismatch || res.Status == service.VerifyExpired
	if (err == nil && !counted) || errors.Is(err, service.ErrNotApplied) {
		// Only a wrong code, or one for no live code, counts. A release
		// that fails leaves the slot counted: one attempt too many against
		// the IP, never one too few.
		_ = s.ReleaseSlots(context.WithoutCancel(ctx), p.AttemptID, []service.Slot{*p.PerIP})
	}
	return res, err
}

// verify runs verifyScript, with the per-IP window in it when withIP.
func (s *Store) verify(ctx context.Context, p service.VerifyParams, withIP bool) (service.VerifyResult, error) {
	k := s.keysOf(p.Recipient, service.IdempotencyKey{})
	perCount, perWindow := p.PerRecipient.Count, ms(p.PerRecipient.Window)
	if !p.PerRecipient.Enabled() {
		perCount, perWindow = 0, 0
	}
	m := s.recordMoves(p.Recipient, k, service.IdempotencyKey{})
	keys := []string{k.rec}
	args := make([]any, 10, 10+len(p.PreviousCodeHashes))
	args[0], args[1], args[2], args[3], args[4], args[5] = s.offset(p.Now), stored(p.CodeHash), perCount, perWindow, p.AttemptID, ms(p.Grace)
	args[6], args[7] = 0, 0
	if withIP {
		keys = append(keys, s.slotKey(*p.PerIP))
		args[6], args[7] = p.PerIP.Window.Count, ms(p.PerIP.Window.Window)
		m.slot(s, *p.PerIP)
	}
	args[8], args[9] = string(m.kinds), usageTag(p.Usage)
	for _, h := range p.PreviousCodeHashes {
		args = append(args, stored(h))
	}
	keys = append(keys, m.keys...)
	val, err := s.run(ctx, verifyScript, keys, args...)
	if err != nil {
		return service.VerifyResult{}, wrap("verify", err)
	}
	v, err := ints(val, 4)
	if err != nil {
		return service.VerifyResult{}, fmt.Errorf("verify: %w", err)
	}
	if v[0] == 5 {
		return service.VerifyResult{}, undone("verify")
	}
	res := service.VerifyResult{Status: service.VerifyStatus(v[0]), AttemptsRemaining: int(v[1]), RetryAfter: fromMS(v[2])}
	if res.Status == service.VerifyRateLimited {
		res.ByIP = v[3] == 2
	}
	if arr, _ := val.([]any); res.Status == service.VerifyOK && len(arr) >= 6 {
		res.VerificationID, _ = arr[4].(string)
		res.Credit, _ = arr[5].(string)
	}
	return res, nil
}

// UndoVerify implements service.Store.
func (s *Store) UndoVerify(ctx context.Context, p service.UndoVerifyParams) error {
	k := s.keysOf(p.Recipient, service.IdempotencyKey{})
	m := s.recordMoves(p.Recipient, k, service.IdempotencyKey{})
	keys := append([]string{k.rec}, m.keys...)
	_, err := s.run(ctx, undoVerifyScript, keys, s.offset(p.Now), p.AttemptID, ms(p.Tombstone), string(m.kinds), usageTag(p.Usage))
	return wrap("undo verify", err)
}

// noRetry marks a command that the client must never send twice: a script
// whose reply was lost may have run, and only the service, which knows the
// ids, retries it. go-redis honours the mark on every client, including
// the Cluster client, whose own loop otherwise re-sends a command that
// timed out (MaxRedirects, whatever MaxRetries says).
type noRetry struct{ *redis.Cmd }

func (noRetry) NoRetry() bool { return true }

// run runs a script by SHA and, when the server does not have it cached,
// by body; neither is ever re-sent by the client. Concurrent calls' scripts
// leave together (batcher).
func (s *Store) run(ctx context.Context, sc *script, keys []string, args ...any) (any, error) {
	val, err := s.batch.process(ctx, sc.cmd(ctx, true, keys, args))
	if redis.HasErrorPrefix(err, "NOSCRIPT") {
		val, err = s.batch.process(ctx, sc.cmd(ctx, false, keys, args))
	}
	return val, err
}

// cmd is an EVALSHA (bySHA) or EVAL of the script.
func (sc *script) cmd(ctx context.Context, bySHA bool, keys []string, args []any) *redis.Cmd {
	a := make([]any, 0, 3+len(keys)+len(args))
	if bySHA {
		a = append(a, "evalsha", sc.hash)
	} else {
		a = append(a, "eval", sc.src)
	}
	a = append(a, len(keys))
	for _, k := range keys {
		a = append(a, k)
	}
	return redis.NewCmd(ctx, append(a, args...)...)
}

type scriptCall struct {
	script *script
	keys   []string
	args   []any
}

type scriptResult struct {
	val any
	err error
}

// runAll runs independent scripts by SHA, together (batcher: in one
// pipeline, with other calls' scripts), and any the server did not have
// cached (after a restart or a failover) again by body.
func (s *Store) runAll(ctx context.Context, calls []scriptCall) ([]scriptResult, error) {
	cmds := make([]*redis.Cmd, len(calls))
	for i, c := range calls {
		cmds[i] = c.script.cmd(ctx, true, c.keys, c.args)
	}
	out := make([]scriptResult, len(calls))
	if err := s.batch.processAll(ctx, cmds...); err != nil {
		for i := range out {
			out[i].err = err
		}
		return out, err
	}
	var errs []error
	for i, c := range calls {
		val, err := cmds[i].Result()
		if redis.HasErrorPrefix(err, "NOSCRIPT") {
			val, err = s.run(ctx, c.script, c.keys, c.args...)
		}
		out[i] = scriptResult{val, err}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return out, errors.Join(errs...)
}

// ints reads a Lua array reply of at least n integers.
func ints(val any, n int) ([]int64, error) {
	arr, ok := val.([]any)
	if !ok || len(arr) < n {
		return nil, fmt.Errorf("unexpected script reply %v", val)
	}
	out := make([]int64, n)
	for i := range n {
		v, ok := arr[i].(int64)
		if !ok {
			return nil, fmt.Errorf("unexpected script reply element %v", arr[i])
		}
		out[i] = v
	}
	return out, nil
}

// storeError is a failed store step, marked for the service: with
// service.ErrStoreUnavailable when Redis cannot serve now, and with
// service.ErrNotApplied when Redis certainly did nothing.
type storeError struct {
	op    string
	err   error
	marks []error
}

func (e *storeError) Error() string   { return e.op + ": " + e.err.Error() }
func (e *storeError) Unwrap() []error { return append([]error{e.err}, e.marks...) }

// wrap marks err. Network failures and timeouts, and server replies that
// mean "not now" (a full, loading, read-only, failing-over or busy
// server), are service.ErrStoreUnavailable; of those, a call that was never
// sent or that the server refused before running it is also
// service.ErrNotApplied. A timeout after the call was sent, a cancelled
// call, or a script error is neither of the latter: the call may have run.
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	e := &storeError{op: op, err: err}
	switch {
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		// The caller's context ended: not Redis's fault, outcome unknown.
	case refused(err) || neverSent(err):
		e.marks = []error{service.ErrStoreUnavailable, service.ErrNotApplied}
	case lost(err):
		e.marks = []error{service.ErrStoreUnavailable}
	}
	return e
}

// undone is the answer to a late copy of a call whose undo already ran.
func undone(op string) error {
	return &storeError{op: op, err: service.ErrUndone, marks: []error{service.ErrNotApplied}}
}

// notNow are the prefixes of the server's replies that refuse a command
// before running it, for a reason that passes.
var notNow = []string{
	"OOM",         // maxmemory reached under noeviction: scripts are refused whole
	"LOADING",     // loading the dataset after a restart
	"READONLY",    // a replica, or a master that was failed over
	"MASTERDOWN",  // a replica that lost its master
	"CLUSTERDOWN", // the cluster is not ok
	"TRYAGAIN",    // a multi-key command during a resharding
	"MOVED",       // redirections the client gave up following
	"ASK",
	"CROSSSLOT",  // keys on several slots
	"BUSY",       // a script or function is running too long
	"NOREPLICAS", // min-replicas-to-write not met
	"NOSCRIPT",   // the script cache was flushed between EVALSHA and EVAL
	"MISCONF",    // persistence failing with stop-writes-on-bgsave-error
	"max number of clients reached",
	"NOAUTH", "WRONGPASS", "NOPERM", // credentials rotated under a running otpd
}

func refused(err error) bool {
	for _, p := range notNow {
		if redis.HasErrorPrefix(err, p) {
			return true
		}
	}
	return false
}

// neverSent reports errors that happen before a command leaves the client:
// no connection could be made, the pool had none to give, or the client is
// closed.
func neverSent(err error) bool {
	var op *net.OpError
	return (errors.As(err, &op) && op.Op == "dial") ||
		errors.Is(err, redis.ErrPoolTimeout) || errors.Is(err, redis.ErrClosed)
}

// lost reports connection-level failures after which the command's fate
// is unknown: a timeout, a reset, a connection closed under the client.
func lost(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

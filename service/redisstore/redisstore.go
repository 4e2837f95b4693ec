// Package redisstore is the Redis implementation of service.Store: every
// check-and-update is one Lua script, and all keys of one recipient share a
// hash tag, so the store runs on a single node, Sentinel or Cluster alike.
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
	prefix string
	// split is set where a send's shared slots, on hash tags of their
	// own, cannot be in its script: on Redis Cluster, and behind a proxy
	// that shards keys (it answers CROSSSLOT, learnt on the first send).
	split atomic.Bool
}

var _ service.Store = (*Store)(nil)

// New returns a Store on rdb; every key starts with prefix (DefaultPrefix
// when empty). The caller owns rdb and closes it.
func New(rdb redis.UniversalClient, prefix string) *Store {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	s := &Store{rdb: rdb, prefix: prefix}
	_, cluster := rdb.(*redis.ClusterClient)
	s.split.Store(cluster)
	return s
}

// Key layout. {tag} is the Cluster hash tag: the recipient id, or the id of
// a shared limit subject.
func (s *Store) tag(id string) string { return s.prefix + "{" + id + "}" }

type recipientKeys struct{ code, cooldown, sends, verifies, idem string }

func (s *Store) recipientKeys(rid, usage, idem string) recipientKeys {
	t := s.tag("r:" + rid)
	return recipientKeys{
		code:     t + ":code:" + usage,
		cooldown: t + ":cooldown:" + usage,
		sends:    t + ":sends",
		verifies: t + ":verifies",
		idem:     t + ":idem:" + idem,
	}
}

// slotKey is a shared slot's window, on a hash tag of its own.
func (s *Store) slotKey(sl service.Slot) string { return s.tag(sl.Key) + ":window" }

func ms(d time.Duration) int64 { return d.Milliseconds() }

func fromMS(v int64) time.Duration { return time.Duration(v) * time.Millisecond }

// TakeSlots implements service.Store. Each slot is its own hash tag, so the
// slots are taken one script each, in one pipelined round trip; when any is
// full, those taken are given back.
func (s *Store) TakeSlots(ctx context.Context, now time.Time, member string, slots []service.Slot) (*service.SlotDenial, error) {
	calls := make([]scriptCall, len(slots))
	for i, sl := range slots {
		calls[i] = scriptCall{
			script: slotScript,
			keys:   []string{s.slotKey(sl)},
			args:   []any{now.UnixMilli(), ms(sl.Window.Window), sl.Window.Count, member},
		}
	}
	results, err := s.runAll(ctx, calls)
	var denial *service.SlotDenial
	var taken []service.Slot
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
			return nil, wrap("take slots", err)
		}
	}
	return denial, nil
}

// ReleaseSlots implements service.Store.
func (s *Store) ReleaseSlots(ctx context.Context, member string, slots []service.Slot) error {
	if len(slots) == 0 {
		return nil
	}
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, sl := range slots {
			p.ZRem(ctx, s.slotKey(sl), member)
		}
		return nil
	})
	return wrap("release slots", err)
}

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
		var rerr redis.Error
		if !errors.As(err, &rerr) || !strings.HasPrefix(rerr.Error(), "CROSSSLOT") {
			return res, err
		}
		// Refused before it ran, so nothing changed: from now on, and
		// for this send, the slots go first.
		s.split.Store(true)
	}
	denial, err := s.TakeSlots(ctx, p.Now, p.VerificationID, p.Slots)
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
	return res, err
}

// beginSend runs sendScript with the given slots in it.
func (s *Store) beginSend(ctx context.Context, p service.SendParams, slots []service.Slot) (service.SendResult, error) {
	k := s.recipientKeys(p.Recipient, p.Usage, p.IdempotencyKey)
	useIdem := "0"
	if p.IdempotencyKey != "" {
		useIdem = "1"
	}
	perCount, perWindow := p.PerRecipient.Count, ms(p.PerRecipient.Window)
	if !p.PerRecipient.Enabled() {
		perCount, perWindow = 0, 0
	}
	keys := make([]string, 4, 4+len(slots))
	keys[0], keys[1], keys[2], keys[3] = k.code, k.cooldown, k.sends, k.idem
	args := make([]any, 11, 11+2*len(slots))
	args[0], args[1], args[2], args[3], args[4], args[5] = p.Now.UnixMilli(), ms(p.TTL), p.MaxAttempts, ms(p.Cooldown), perCount, perWindow
	args[6], args[7], args[8], args[9], args[10] = p.VerificationID, p.CodeHash, useIdem, p.Fingerprint, ms(p.PendingTTL)
	for _, sl := range slots {
		keys = append(keys, s.slotKey(sl))
		args = append(args, ms(sl.Window.Window), sl.Window.Count)
	}
	val, err := sendScript.Run(ctx, s.rdb, keys, args...).Result()
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
	res := service.SendResult{Status: service.SendStatus(v[0]), RetryAfter: fromMS(v[1])}
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

// LookupSend implements service.Store.
func (s *Store) LookupSend(ctx context.Context, recipient, idempotencyKey, fingerprint string) (service.SendResult, error) {
	k := s.recipientKeys(recipient, "", idempotencyKey)
	rec, err := s.rdb.HMGet(ctx, k.idem, "fp", "resp").Result()
	if err != nil {
		return service.SendResult{}, wrap("look up send", err)
	}
	return idempotencyResult(rec[0], rec[1], fingerprint), nil
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
func (s *Store) CompleteSend(ctx context.Context, recipient, idempotencyKey string, answer []byte, ttl time.Duration) error {
	k := s.recipientKeys(recipient, "", idempotencyKey)
	return wrap("complete send", completeScript.Run(ctx, s.rdb, []string{k.idem}, answer, ms(ttl)).Err())
}

// AbortSend implements service.Store.
func (s *Store) AbortSend(ctx context.Context, p service.AbortParams) error {
	k := s.recipientKeys(p.Recipient, p.Usage, p.IdempotencyKey)
	useIdem := "0"
	if p.IdempotencyKey != "" {
		useIdem = "1"
	}
	return wrap("abort send", abortScript.Run(ctx, s.rdb, []string{k.code, k.cooldown, k.idem}, p.VerificationID, useIdem).Err())
}

// Verify implements service.Store.
func (s *Store) Verify(ctx context.Context, p service.VerifyParams) (service.VerifyResult, error) {
	k := s.recipientKeys(p.Recipient, p.Usage, "")
	perCount, perWindow := p.PerRecipient.Count, ms(p.PerRecipient.Window)
	if !p.PerRecipient.Enabled() {
		perCount, perWindow = 0, 0
	}
	val, err := verifyScript.Run(ctx, s.rdb, []string{k.code, k.verifies},
		p.Now.UnixMilli(), p.CodeHash, perCount, perWindow, p.AttemptID).Result()
	if err != nil {
		return service.VerifyResult{}, wrap("verify", err)
	}
	v, err := ints(val, 3)
	if err != nil {
		return service.VerifyResult{}, fmt.Errorf("verify: %w", err)
	}
	return service.VerifyResult{Status: service.VerifyStatus(v[0]), AttemptsRemaining: int(v[1]), RetryAfter: fromMS(v[2])}, nil
}

// Ping implements service.Store.
func (s *Store) Ping(ctx context.Context) error {
	return wrap("ping", s.rdb.Ping(ctx).Err())
}

type scriptCall struct {
	script *redis.Script
	keys   []string
	args   []any
}

type scriptResult struct {
	val any
	err error
}

// runAll runs independent scripts in one pipelined round trip by SHA, and
// any the server did not have cached (after a restart or a failover) again
// by body.
func (s *Store) runAll(ctx context.Context, calls []scriptCall) ([]scriptResult, error) {
	cmds := make([]*redis.Cmd, len(calls))
	_, _ = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, c := range calls {
			cmds[i] = c.script.EvalSha(ctx, p, c.keys, c.args...)
		}
		return nil
	})
	out := make([]scriptResult, len(calls))
	var errs []error
	for i, c := range calls {
		val, err := cmds[i].Result()
		if redis.HasErrorPrefix(err, "NOSCRIPT") {
			val, err = c.script.Eval(ctx, s.rdb, c.keys, c.args...).Result()
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

// wrap marks the errors worth retrying later as service.ErrStoreUnavailable:
// network failures and timeouts, and servers that are loading, failing over
// or read-only. Other errors (a script bug) are returned as they are.
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", op, err)
	}
	if unavailable(err) {
		return fmt.Errorf("%s: %w: %v", op, service.ErrStoreUnavailable, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

func unavailable(err error) bool {
	// Connection-level failures: dial, reset, timeout (net.Error), a
	// connection closed under the client (EOF), a closed or exhausted pool.
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, redis.ErrClosed) || errors.Is(err, redis.ErrPoolTimeout) {
		return true
	}
	// Server replies that mean "not now" rather than "wrong".
	msg := err.Error()
	for _, p := range []string{"LOADING", "READONLY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "MOVED", "ASK", "BUSY", "NOREPLICAS"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

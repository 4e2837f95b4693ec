// Package memstore is an in-memory service.Store for dev mode and tests. It
// follows the same rules as the Redis store (it passes the same conformance
// suite, service/storetest) but keeps everything in one process: state is
// lost on restart and not shared between replicas.
package memstore

import (
	"context"
	"crypto/subtle"
	"sort"
	"sync"
	"time"

	"github.com/otpd/otpd/service"
)

// Store is an in-memory service.Store. The zero value is not usable; call
// New.
type Store struct {
	mu        sync.Mutex
	windows   map[string]*window // slot windows, per-recipient send and verify windows
	codes     map[string]*code   // recipient/usage
	cooldowns map[string]expiring
	idem      map[string]*idemRecord
	lastSweep time.Time
	// latest is the latest time a caller passed in, for the calls that
	// carry none.
	latest time.Time
}

var _ service.Store = (*Store)(nil)

type window struct {
	events []event // sorted by time
	span   int64   // the window's length in ms, as last used
}

type event struct {
	at     int64 // ms
	member string
}

type code struct {
	hash    []byte
	id      string
	expires int64 // ms
	used    int
	max     int
}

type expiring struct {
	value   string
	expires int64 // ms
}

type idemRecord struct {
	fingerprint string
	answer      []byte
	expires     int64 // ms
}

// New returns an empty Store.
func New() *Store {
	return &Store{
		windows:   map[string]*window{},
		codes:     map[string]*code{},
		cooldowns: map[string]expiring{},
		idem:      map[string]*idemRecord{},
	}
}

// take adds member to the window unless it is full; it returns the time
// until the oldest event leaves a full window.
func (s *Store) take(key string, now int64, w service.Window, member string) (bool, time.Duration) {
	win, retry := s.full(key, now, w)
	if retry > 0 {
		return false, retry
	}
	i := sort.Search(len(win.events), func(i int) bool { return win.events[i].at > now })
	win.events = append(win.events, event{})
	copy(win.events[i+1:], win.events[i:])
	win.events[i] = event{at: now, member: member}
	return true, 0
}

// full drops events older than the window and, when the window is full,
// returns the time until its oldest event leaves it.
func (s *Store) full(key string, now int64, w service.Window) (*window, time.Duration) {
	win := s.prune(key, now, w.Window.Milliseconds())
	if len(win.events) >= w.Count {
		return win, time.Duration(win.events[0].at+w.Window.Milliseconds()-now) * time.Millisecond
	}
	return win, 0
}

func (s *Store) prune(key string, now, windowMS int64) *window {
	win := s.windows[key]
	if win == nil {
		win = &window{}
		s.windows[key] = win
	}
	i := sort.Search(len(win.events), func(i int) bool { return win.events[i].at > now-windowMS })
	win.events = win.events[i:]
	win.span = windowMS
	return win
}

func (s *Store) remove(key, member string) {
	win := s.windows[key]
	if win == nil {
		return
	}
	for i, e := range win.events {
		if e.member == member {
			win.events = append(win.events[:i], win.events[i+1:]...)
			return
		}
	}
}

// TakeSlots implements service.Store.
func (s *Store) TakeSlots(ctx context.Context, now time.Time, member string, slots []service.Slot) (*service.SlotDenial, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweep(now)
	return s.takeSlots(now.UnixMilli(), member, slots), nil
}

// takeSlots takes every slot or, denied one, none.
func (s *Store) takeSlots(ms int64, member string, slots []service.Slot) *service.SlotDenial {
	for i, sl := range slots {
		ok, retry := s.take("slot:"+sl.Key, ms, sl.Window, member)
		if !ok {
			for _, t := range slots[:i] {
				s.remove("slot:"+t.Key, member)
			}
			return &service.SlotDenial{Limit: sl.Limit, RetryAfter: retry}
		}
	}
	return nil
}

func (s *Store) releaseSlots(member string, slots []service.Slot) {
	for _, sl := range slots {
		s.remove("slot:"+sl.Key, member)
	}
}

// ReleaseSlots implements service.Store.
func (s *Store) ReleaseSlots(ctx context.Context, member string, slots []service.Slot) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.releaseSlots(member, slots)
	return nil
}

// codeKey keys both the codes and the cooldowns (separate maps) of a
// recipient and usage type.
func codeKey(rid, usage string) string { return rid + "/" + usage }
func idemKey(rid, key string) string   { return rid + "/" + key }
func sendsKey(rid string) string       { return "sends:" + rid }
func verifiesKey(rid string) string    { return "verifies:" + rid }

// BeginSend implements service.Store.
func (s *Store) BeginSend(ctx context.Context, p service.SendParams) (service.SendResult, error) {
	if err := ctx.Err(); err != nil {
		return service.SendResult{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := p.Now.UnixMilli()
	s.sweep(p.Now)
	ik := idemKey(p.Recipient, p.IdempotencyKey)
	if p.IdempotencyKey != "" {
		if res := s.lookup(ik, p.Fingerprint, now); res.Status != service.SendAccepted {
			return res, nil
		}
	}
	// The slots are taken first and given back when a later check refuses:
	// all under the lock, so nobody sees them in between.
	if d := s.takeSlots(now, p.VerificationID, p.Slots); d != nil {
		return service.SendResult{Status: service.SendSlotLimited, RetryAfter: d.RetryAfter, Limit: d.Limit}, nil
	}
	ck := codeKey(p.Recipient, p.Usage)
	if p.Cooldown > 0 {
		if cd, ok := s.cooldowns[ck]; ok && cd.expires > now {
			s.releaseSlots(p.VerificationID, p.Slots)
			return service.SendResult{Status: service.SendCooldown, RetryAfter: time.Duration(cd.expires-now) * time.Millisecond}, nil
		}
	}
	if p.PerRecipient.Enabled() {
		if ok, retry := s.take(sendsKey(p.Recipient), now, p.PerRecipient, p.VerificationID); !ok {
			s.releaseSlots(p.VerificationID, p.Slots)
			return service.SendResult{Status: service.SendRecipientLimited, RetryAfter: retry}, nil
		}
	}
	if p.Cooldown > 0 {
		s.cooldowns[ck] = expiring{value: p.VerificationID, expires: now + p.Cooldown.Milliseconds()}
	}
	s.codes[codeKey(p.Recipient, p.Usage)] = &code{
		hash:    append([]byte(nil), p.CodeHash...),
		id:      p.VerificationID,
		expires: now + p.TTL.Milliseconds(),
		max:     p.MaxAttempts,
	}
	if p.IdempotencyKey != "" {
		s.idem[ik] = &idemRecord{fingerprint: p.Fingerprint, expires: now + p.PendingTTL.Milliseconds()}
	}
	return service.SendResult{Status: service.SendAccepted}, nil
}

// LookupSend implements service.Store.
func (s *Store) LookupSend(ctx context.Context, recipient, idempotencyKey, fingerprint string) (service.SendResult, error) {
	if err := ctx.Err(); err != nil {
		return service.SendResult{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lookup(idemKey(recipient, idempotencyKey), fingerprint, s.latest.UnixMilli()), nil
}

func (s *Store) lookup(ik, fingerprint string, now int64) service.SendResult {
	rec := s.idem[ik]
	switch {
	case rec == nil || rec.expires <= now:
		return service.SendResult{Status: service.SendAccepted}
	case rec.fingerprint != fingerprint:
		return service.SendResult{Status: service.SendIdempotencyMismatch}
	case rec.answer != nil:
		return service.SendResult{Status: service.SendReplay, Replay: append([]byte(nil), rec.answer...)}
	}
	return service.SendResult{Status: service.SendInProgress}
}

// CompleteSend implements service.Store.
func (s *Store) CompleteSend(ctx context.Context, recipient, idempotencyKey string, answer []byte, ttl time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rec := s.idem[idemKey(recipient, idempotencyKey)]; rec != nil {
		rec.answer = append([]byte(nil), answer...)
		rec.expires = s.latest.Add(ttl).UnixMilli()
	}
	return nil
}

// AbortSend implements service.Store.
func (s *Store) AbortSend(ctx context.Context, p service.AbortParams) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.codes[codeKey(p.Recipient, p.Usage)]; c != nil && c.id == p.VerificationID {
		delete(s.codes, codeKey(p.Recipient, p.Usage))
	}
	if cd, ok := s.cooldowns[codeKey(p.Recipient, p.Usage)]; ok && cd.value == p.VerificationID {
		delete(s.cooldowns, codeKey(p.Recipient, p.Usage))
	}
	if p.IdempotencyKey != "" {
		ik := idemKey(p.Recipient, p.IdempotencyKey)
		if rec := s.idem[ik]; rec != nil && rec.answer == nil {
			delete(s.idem, ik)
		}
	}
	return nil
}

// Verify implements service.Store.
func (s *Store) Verify(ctx context.Context, p service.VerifyParams) (service.VerifyResult, error) {
	if err := ctx.Err(); err != nil {
		return service.VerifyResult{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := p.Now.UnixMilli()
	s.sweep(p.Now)
	vk := verifiesKey(p.Recipient)
	if p.PerRecipient.Enabled() {
		if _, retry := s.full(vk, now, p.PerRecipient); retry > 0 {
			return service.VerifyResult{Status: service.VerifyRateLimited, RetryAfter: retry}, nil
		}
	}
	ck := codeKey(p.Recipient, p.Usage)
	c := s.codes[ck]
	if c == nil || c.expires <= now {
		return service.VerifyResult{Status: service.VerifyExpired}, nil
	}
	if c.used >= c.max {
		return service.VerifyResult{Status: service.VerifyTooManyAttempts}, nil
	}
	if subtle.ConstantTimeCompare(c.hash, p.CodeHash) == 1 {
		delete(s.codes, ck)
		return service.VerifyResult{Status: service.VerifyOK}, nil
	}
	c.used++
	if p.PerRecipient.Enabled() {
		s.take(vk, now, p.PerRecipient, p.AttemptID)
	}
	return service.VerifyResult{Status: service.VerifyMismatch, AttemptsRemaining: c.max - c.used}, nil
}

// Ping implements service.Store.
func (s *Store) Ping(ctx context.Context) error { return ctx.Err() }

// sweep drops expired state about once a minute, so a long-running dev
// server does not grow without bound.
func (s *Store) sweep(now time.Time) {
	if now.After(s.latest) {
		s.latest = now
	}
	if now.Sub(s.lastSweep) < time.Minute {
		return
	}
	s.lastSweep = now
	ms := now.UnixMilli()
	for k, c := range s.codes {
		if c.expires <= ms {
			delete(s.codes, k)
		}
	}
	for k, cd := range s.cooldowns {
		if cd.expires <= ms {
			delete(s.cooldowns, k)
		}
	}
	for k, rec := range s.idem {
		if rec.expires <= ms {
			delete(s.idem, k)
		}
	}
	for k, w := range s.windows {
		if len(w.events) == 0 || w.events[len(w.events)-1].at+w.span <= ms {
			delete(s.windows, k)
		}
	}
}

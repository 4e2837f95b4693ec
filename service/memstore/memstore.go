// Package memstore is an in-memory service.Store for dev mode and tests. It
// follows the same rules as the Redis store (it passes the same conformance
// suite, service/storetest) but keeps everything in one process: state is
// lost on restart and not shared between replicas.
package memstore

import (
	"context"
	"crypto/subtle"
	"fmt"
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
	// undone holds the tombstones of undone sends and attempts, by
	// recipient/id, with their expiry in ms.
	undone map[string]int64
	// wrong holds the wrong attempts of each recipient, by recipient id and
	// attempt id, with their expiry in ms: on the recipient, not its code,
	// as the Redis store's V events, so that a re-run of one answers
	// MISMATCH after a resend too.
	wrong map[string]map[string]int64
	// verified holds the verified counts of conversion slots, by slot key.
	verified  map[string]*counts
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

// counts is a conversion slot's verified count, per part of its window.
type counts struct {
	by   map[int64]int // by the part's number: its start in ms / part
	part int64         // the part's length in ms, as last used
}

type code struct {
	hash    []byte
	id      string
	expires int64 // ms
	used    int
	max     int
	// okBy is the attempt that consumed the code, which is then kept until
	// keep (ms) for a re-run of that attempt or its undo.
	okBy string
	keep int64
	// credit is SendParams.Credit of the send that stored the code.
	credit string
	// kept are the earlier codes kept valid beside this one
	// (SendParams.KeepPrevious), newest first; they share used, max and
	// okBy.
	kept []keptCode
}

type keptCode struct {
	hash    []byte
	expires int64 // ms
}

// live reports whether the code can verify now.
func (c *code) live(now int64) bool {
	return c.okBy == "" && c.expires > now && c.used < c.max
}

// liveKept are the kept codes that have not expired.
func (c *code) liveKept(now int64) []keptCode {
	var out []keptCode
	for _, k := range c.kept {
		if k.expires > now {
			out = append(out, k)
		}
	}
	return out
}

// gone reports whether the code can no longer be verified or restored.
func (c *code) gone(now int64) bool {
	return c.expires <= now || (c.okBy != "" && c.keep <= now)
}

type expiring struct {
	value   string
	expires int64 // ms
}

type idemRecord struct {
	fingerprint string
	id          string // the verification id of the send that holds it
	answer      []byte
	expires     int64 // ms
}

// New returns an empty Store.
func New() *Store {
	return &Store{
		windows:   map[string]*window{},
		verified:  map[string]*counts{},
		codes:     map[string]*code{},
		cooldowns: map[string]expiring{},
		idem:      map[string]*idemRecord{},
		undone:    map[string]int64{},
		wrong:     map[string]map[string]int64{},
	}
}

// errUndone answers a late copy of a call whose undo already ran.
var errUndone = fmt.Errorf("%w (%w)", service.ErrUndone, service.ErrNotApplied)

func (s *Store) isUndone(rid, id string, now int64) bool {
	exp, ok := s.undone[rid+"/"+id]
	return ok && exp > now
}

func (s *Store) tombstone(rid, id string, now time.Time, ttl time.Duration) {
	if ttl > 0 {
		s.undone[rid+"/"+id] = now.Add(ttl).UnixMilli()
	}
}

// take adds member to the window unless it is full; it returns the time
// until the oldest event leaves a full window.
func (s *Store) take(key string, now int64, w service.Window, member string) (bool, time.Duration) {
	win, retry := s.full(key, now, w)
	if retry > 0 {
		return false, retry
	}
	s.insert(win, now, member)
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
	s.migrateSlots(slots)
	d, _ := s.takeSlots(now.UnixMilli(), member, slots)
	return d, nil
}

// has reports whether member is in the window at key.
func (s *Store) has(key, member string) bool {
	if win := s.windows[key]; win != nil {
		for _, e := range win.events {
			if e.member == member {
				return true
			}
		}
	}
	return false
}

// takeSlots takes every slot or, denied one, none. A slot that holds
// member already counts as taken. over names the first conversion slot in
// record mode that was over its threshold.
func (s *Store) takeSlots(ms int64, member string, slots []service.Slot) (d *service.SlotDenial, over string) {
	for i, sl := range slots {
		if s.has("slot:"+sl.Key, member) {
			continue
		}
		ok, retry := true, time.Duration(0)
		if c := sl.Conversion; c != nil {
			if retry = s.lowConversion(sl, ms); retry > 0 {
				if c.Record {
					retry = 0
					if over == "" {
						over = sl.Limit
					}
				} else {
					ok = false
				}
			}
			if ok {
				s.insert(s.windows["slot:"+sl.Key], ms, member)
			}
		} else {
			ok, retry = s.take("slot:"+sl.Key, ms, sl.Window, member)
		}
		if !ok {
			for _, t := range slots[:i] {
				s.remove("slot:"+t.Key, member)
			}
			return &service.SlotDenial{Limit: sl.Limit, RetryAfter: retry}, ""
		}
	}
	return nil, over
}

// lowConversion prunes a conversion slot's unverified sends and, when
// they reach the threshold, returns the time until the oldest leaves the
// window.
func (s *Store) lowConversion(sl service.Slot, now int64) time.Duration {
	window := sl.Window.Window.Milliseconds()
	win := s.prune("slot:"+sl.Key, now, window)
	n := len(win.events)
	if n < sl.Conversion.MinUnverified {
		return 0
	}
	if float64(n) < sl.Conversion.Ratio*float64(s.verifiedIn(sl, now)) {
		return 0
	}
	return time.Duration(win.events[0].at+window-now) * time.Millisecond
}

// part is the length of one part of a conversion slot's window, in ms.
func part(sl service.Slot) int64 {
	return max(1, sl.Window.Window.Milliseconds()/service.ConversionBuckets)
}

// verifiedIn is a conversion slot's verified count in its window, whose
// parts that have passed it drops.
func (s *Store) verifiedIn(sl service.Slot, now int64) int {
	c := s.verified["slot:"+sl.Key]
	if c == nil {
		return 0
	}
	p, n := part(sl), 0
	for b, k := range c.by {
		if (b+1)*p <= now-sl.Window.Window.Milliseconds() {
			delete(c.by, b)
			continue
		}
		n += k
	}
	return n
}

// insert adds member at now to win, which is sorted by time.
func (s *Store) insert(win *window, now int64, member string) {
	i := sort.Search(len(win.events), func(i int) bool { return win.events[i].at > now })
	win.events = append(win.events, event{})
	copy(win.events[i+1:], win.events[i:])
	win.events[i] = event{at: now, member: member}
}

// CreditSlots implements service.Store.
func (s *Store) CreditSlots(ctx context.Context, now time.Time, member string, slots []service.Slot) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweep(now)
	s.migrateSlots(slots)
	ms := now.UnixMilli()
	for _, sl := range slots {
		key := "slot:" + sl.Key
		if sl.Conversion == nil || !s.has(key, member) {
			continue
		}
		s.remove(key, member)
		c := s.verified[key]
		if c == nil {
			c = &counts{by: map[int64]int{}}
			s.verified[key] = c
		}
		c.part = part(sl)
		c.by[ms/c.part]++
	}
	return nil
}

func (s *Store) releaseSlots(member string, slots []service.Slot) {
	for _, sl := range slots {
		s.remove("slot:"+sl.Key, member)
		for _, p := range sl.Previous {
			s.remove("slot:"+p, member)
		}
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

// A rotated secret: what a recipient's (or a slot's) previous ids hold
// moves to its current id before a call decides, merged as the Redis store
// merges (see its migrateLua). Dev mode's secret is random per process, so
// this serves the conformance suite more than users.

// migrate moves r's state of one usage type (and of an idempotency key)
// from its previous ids to its current one.
func (s *Store) migrate(r service.Recipient, usage string, idem service.IdempotencyKey, now int64) {
	to := codeKey(r.ID, usage)
	for i, old := range r.Previous {
		from := codeKey(old, usage)
		if c := s.codes[from]; c != nil {
			if cur := s.codes[to]; !c.gone(now) && (cur == nil || cur.gone(now) || c.expires > cur.expires) {
				s.codes[to] = c
			}
			delete(s.codes, from)
		}
		if cd, ok := s.cooldowns[from]; ok {
			if cd.expires > now && cd.expires > s.cooldowns[to].expires {
				s.cooldowns[to] = cd
			}
			delete(s.cooldowns, from)
		}
		s.moveWindow(sendsKey(old), sendsKey(r.ID))
		s.moveWindow(verifiesKey(old), verifiesKey(r.ID))
		if marks := s.wrong[old]; marks != nil {
			delete(s.wrong, old)
			if s.wrong[r.ID] == nil {
				s.wrong[r.ID] = marks
			} else {
				for a, exp := range marks {
					s.wrong[r.ID][a] = max(exp, s.wrong[r.ID][a])
				}
			}
		}
		if idem.ID != "" && i < len(idem.Previous) {
			from, to := idemKey(old, idem.Previous[i]), idemKey(r.ID, idem.ID)
			if rec := s.idem[from]; rec != nil {
				if cur := s.idem[to]; rec.expires > now && (cur == nil || cur.expires <= now) {
					s.idem[to] = rec
				}
				delete(s.idem, from)
			}
		}
	}
}

func (s *Store) migrateSlots(slots []service.Slot) {
	for _, sl := range slots {
		for _, p := range sl.Previous {
			s.moveWindow("slot:"+p, "slot:"+sl.Key)
			if old := s.verified["slot:"+p]; old != nil {
				delete(s.verified, "slot:"+p)
				cur := s.verified["slot:"+sl.Key]
				if cur == nil {
					s.verified["slot:"+sl.Key] = old
					continue
				}
				for b, k := range old.by {
					cur.by[b] += k
				}
			}
		}
	}
}

// moveWindow merges the window at from into the one at to: every member
// once, at its later time.
func (s *Store) moveWindow(from, to string) {
	old := s.windows[from]
	if old == nil {
		return
	}
	delete(s.windows, from)
	cur := s.windows[to]
	if cur == nil {
		s.windows[to] = old
		return
	}
	at := map[string]int64{}
	for _, e := range append(cur.events, old.events...) {
		if t, ok := at[e.member]; !ok || e.at > t {
			at[e.member] = e.at
		}
	}
	cur.events = cur.events[:0]
	for m, t := range at {
		cur.events = append(cur.events, event{at: t, member: m})
	}
	sort.Slice(cur.events, func(i, j int) bool { return cur.events[i].at < cur.events[j].at })
	cur.span = max(cur.span, old.span)
}

// BeginSend implements service.Store.
func (s *Store) BeginSend(ctx context.Context, p service.SendParams) (service.SendResult, error) {
	if err := ctx.Err(); err != nil {
		return service.SendResult{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := p.Now.UnixMilli()
	s.sweep(p.Now)
	s.migrate(p.Recipient, p.Usage, p.IdempotencyKey, now)
	s.migrateSlots(p.Slots)
	rid := p.Recipient.ID
	if s.isUndone(rid, p.VerificationID, now) {
		return service.SendResult{}, errUndone
	}
	ck := codeKey(rid, p.Usage)
	if c := s.codes[ck]; c != nil && c.id == p.VerificationID {
		return service.SendResult{Status: service.SendAccepted}, nil // a re-run
	}
	ik := idemKey(rid, p.IdempotencyKey.ID)
	if p.NoCode && s.sendHolds(ck, ik, rid, p) {
		return service.SendResult{Status: service.SendAccepted}, nil // a re-run of a delivery
	}
	if p.IdempotencyKey.ID != "" {
		if res := s.lookup(ik, p.Fingerprint, now); res.Status != service.SendAccepted {
			return res, nil
		}
	}
	// The slots are taken first and given back when a later check refuses:
	// all under the lock, so nobody sees them in between.
	d, over := s.takeSlots(now, p.VerificationID, p.Slots)
	if d != nil {
		return service.SendResult{Status: service.SendSlotLimited, RetryAfter: d.RetryAfter, Limit: d.Limit}, nil
	}
	if p.Cooldown > 0 {
		if cd, ok := s.cooldowns[ck]; ok && cd.expires > now {
			s.releaseSlots(p.VerificationID, p.Slots)
			return service.SendResult{Status: service.SendCooldown, RetryAfter: time.Duration(cd.expires-now) * time.Millisecond}, nil
		}
	}
	if p.PerRecipient.Enabled() {
		if ok, retry := s.take(sendsKey(rid), now, p.PerRecipient, p.VerificationID); !ok {
			s.releaseSlots(p.VerificationID, p.Slots)
			return service.SendResult{Status: service.SendRecipientLimited, RetryAfter: retry}, nil
		}
	}
	if p.Cooldown > 0 {
		s.cooldowns[ck] = expiring{value: p.VerificationID, expires: now + p.Cooldown.Milliseconds()}
	}
	if !p.NoCode {
		c := &code{
			hash:    append([]byte(nil), p.CodeHash...),
			id:      p.VerificationID,
			expires: now + p.TTL.Milliseconds(),
			max:     p.MaxAttempts,
			credit:  p.Credit,
		}
		// A live code and the newest it kept stay valid, with the
		// attempts used so far; a dead one is replaced whole.
		if old := s.codes[ck]; p.KeepPrevious > 0 && old != nil && old.live(now) {
			c.used = old.used
			c.kept = append([]keptCode{{hash: old.hash, expires: old.expires}}, old.liveKept(now)...)
			c.kept = c.kept[:min(len(c.kept), p.KeepPrevious)]
		}
		s.codes[ck] = c
	}
	if p.IdempotencyKey.ID != "" {
		s.idem[ik] = &idemRecord{fingerprint: p.Fingerprint, id: p.VerificationID, expires: now + p.PendingTTL.Milliseconds()}
	}
	return service.SendResult{Status: service.SendAccepted, Over: over}, nil
}

// sendHolds reports whether the send p already holds its cooldown, its
// per-recipient count or its idempotency record: how a delivery, which
// stores no code, recognises a re-run of itself.
func (s *Store) sendHolds(ck, ik, rid string, p service.SendParams) bool {
	if cd, ok := s.cooldowns[ck]; ok && cd.value == p.VerificationID {
		return true
	}
	if rec := s.idem[ik]; p.IdempotencyKey.ID != "" && rec != nil && rec.id == p.VerificationID {
		return true
	}
	return s.has(sendsKey(rid), p.VerificationID)
}

// LookupSend implements service.Store.
func (s *Store) LookupSend(ctx context.Context, r service.Recipient, key service.IdempotencyKey, fingerprint string) (service.SendResult, error) {
	if err := ctx.Err(); err != nil {
		return service.SendResult{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.latest.UnixMilli()
	res := s.lookup(idemKey(r.ID, key.ID), fingerprint, now)
	for i, old := range r.Previous {
		if res.Status != service.SendAccepted || i >= len(key.Previous) {
			break
		}
		res = s.lookup(idemKey(old, key.Previous[i]), fingerprint, now)
	}
	return res, nil
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
func (s *Store) CompleteSend(ctx context.Context, r service.Recipient, key service.IdempotencyKey, answer []byte, ttl time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.migrate(r, "", key, s.latest.UnixMilli())
	if rec := s.idem[idemKey(r.ID, key.ID)]; rec != nil {
		rec.answer = append([]byte(nil), answer...)
		rec.expires = s.latest.Add(ttl).UnixMilli()
	}
	return nil
}

// AbortSend implements service.Store.
func (s *Store) AbortSend(ctx context.Context, p service.AbortParams) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweep(p.Now)
	s.migrate(p.Recipient, p.Usage, p.IdempotencyKey, p.Now.UnixMilli())
	ck := codeKey(p.Recipient.ID, p.Usage)
	now := p.Now.UnixMilli()
	if c := s.codes[ck]; c != nil && c.id == p.VerificationID {
		// The codes it kept stay: the newest is the latest again.
		if kept := c.liveKept(now); c.okBy == "" && len(kept) > 0 {
			c.hash, c.expires, c.id, c.credit, c.kept = kept[0].hash, kept[0].expires, "", "", kept[1:]
		} else {
			delete(s.codes, ck)
		}
	} else if c != nil && len(p.CodeHash) > 0 {
		// Its code, pushed among the kept ones by a newer send, goes.
		for i, k := range c.kept {
			if subtle.ConstantTimeCompare(k.hash, p.CodeHash) == 1 {
				c.kept = append(c.kept[:i:i], c.kept[i+1:]...)
				break
			}
		}
	}
	if cd, ok := s.cooldowns[ck]; ok && cd.value == p.VerificationID {
		delete(s.cooldowns, ck)
	}
	if p.IdempotencyKey.ID != "" {
		ik := idemKey(p.Recipient.ID, p.IdempotencyKey.ID)
		if rec := s.idem[ik]; rec != nil && rec.id == p.VerificationID && rec.answer == nil {
			delete(s.idem, ik)
		}
	}
	if p.Uncount {
		s.remove(sendsKey(p.Recipient.ID), p.VerificationID)
	}
	s.tombstone(p.Recipient.ID, p.VerificationID, p.Now, p.Tombstone)
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
	s.migrate(p.Recipient, p.Usage, service.IdempotencyKey{}, now)
	if p.PerIP != nil {
		s.migrateSlots([]service.Slot{*p.PerIP})
	}
	if s.isUndone(p.Recipient.ID, p.AttemptID, now) {
		return service.VerifyResult{}, errUndone
	}
	ck := codeKey(p.Recipient.ID, p.Usage)
	c := s.codes[ck]
	if c != nil && c.gone(now) {
		delete(s.codes, ck)
		c = nil
	}
	// A re-run of this attempt answers what the first run decided.
	switch {
	case c != nil && c.okBy == p.AttemptID:
		return service.VerifyResult{Status: service.VerifyOK, VerificationID: c.id, Credit: c.credit}, nil
	case s.wrong[p.Recipient.ID][p.AttemptID] > now:
		left := 0
		if c != nil {
			left = c.max - c.used
		}
		return service.VerifyResult{Status: service.VerifyMismatch, AttemptsRemaining: left}, nil
	}
	if p.PerIP != nil {
		if _, retry := s.full("slot:"+p.PerIP.Key, now, p.PerIP.Window); retry > 0 {
			return service.VerifyResult{Status: service.VerifyRateLimited, RetryAfter: retry, ByIP: true}, nil
		}
	}
	vk := verifiesKey(p.Recipient.ID)
	if p.PerRecipient.Enabled() {
		if _, retry := s.full(vk, now, p.PerRecipient); retry > 0 {
			return service.VerifyResult{Status: service.VerifyRateLimited, RetryAfter: retry}, nil
		}
	}
	if c == nil || c.okBy != "" {
		// Counted against the IP: probing who has a live code is not free.
		if p.PerIP != nil {
			s.take("slot:"+p.PerIP.Key, now, p.PerIP.Window, p.AttemptID)
		}
		return service.VerifyResult{Status: service.VerifyExpired}, nil
	}
	if c.used >= c.max {
		return service.VerifyResult{Status: service.VerifyTooManyAttempts}, nil
	}
	hashes := [][]byte{c.hash}
	for _, k := range c.liveKept(now) {
		hashes = append(hashes, k.hash)
	}
	right := 0
	for _, stored := range hashes {
		right |= subtle.ConstantTimeCompare(stored, p.CodeHash)
		for _, h := range p.PreviousCodeHashes {
			right |= subtle.ConstantTimeCompare(stored, h)
		}
	}
	if right == 1 {
		c.okBy, c.keep = p.AttemptID, min(now+p.Grace.Milliseconds(), c.expires)
		return service.VerifyResult{Status: service.VerifyOK, VerificationID: c.id, Credit: c.credit}, nil
	}
	c.used++
	// The attempt's mark lives as long as the verify window keeps its
	// event, or as long as a late copy can come.
	mark := service.LateCopyTTL
	if p.PerRecipient.Enabled() {
		mark = max(mark, p.PerRecipient.Window)
	}
	if s.wrong[p.Recipient.ID] == nil {
		s.wrong[p.Recipient.ID] = map[string]int64{}
	}
	s.wrong[p.Recipient.ID][p.AttemptID] = now + mark.Milliseconds()
	if p.PerRecipient.Enabled() {
		s.take(vk, now, p.PerRecipient, p.AttemptID)
	}
	if p.PerIP != nil {
		s.take("slot:"+p.PerIP.Key, now, p.PerIP.Window, p.AttemptID)
	}
	return service.VerifyResult{Status: service.VerifyMismatch, AttemptsRemaining: c.max - c.used}, nil
}

// UndoVerify implements service.Store.
func (s *Store) UndoVerify(ctx context.Context, p service.UndoVerifyParams) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweep(p.Now)
	now := p.Now.UnixMilli()
	s.migrate(p.Recipient, p.Usage, service.IdempotencyKey{}, now)
	ck := codeKey(p.Recipient.ID, p.Usage)
	if c := s.codes[ck]; c != nil && c.okBy == p.AttemptID && !c.gone(now) {
		c.okBy, c.keep = "", 0
	}
	s.tombstone(p.Recipient.ID, p.AttemptID, p.Now, p.Tombstone)
	return nil
}

// CancelCode implements service.Store.
func (s *Store) CancelCode(ctx context.Context, p service.CodeParams) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweep(p.Now)
	now, was := p.Now.UnixMilli(), false
	for _, id := range append([]string{p.Recipient.ID}, p.Recipient.Previous...) {
		ck := codeKey(id, p.Usage)
		if c := s.codes[ck]; c != nil {
			was = was || c.live(now)
			delete(s.codes, ck)
		}
	}
	return was, nil
}

// CodeStatus implements service.Store. It reads under every id, as the
// Redis store does, and moves nothing.
func (s *Store) CodeStatus(ctx context.Context, p service.CodeParams) (service.CodeStatus, error) {
	if err := ctx.Err(); err != nil {
		return service.CodeStatus{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := p.Now.UnixMilli()
	var best *code
	var st service.CodeStatus
	for _, id := range append([]string{p.Recipient.ID}, p.Recipient.Previous...) {
		ck := codeKey(id, p.Usage)
		if c := s.codes[ck]; c != nil && (best == nil || c.expires > best.expires) {
			best = c
		}
		if cd, ok := s.cooldowns[ck]; ok && cd.expires > now && time.UnixMilli(cd.expires).After(st.ResendAfter) {
			st.ResendAfter = time.UnixMilli(cd.expires)
		}
	}
	if best != nil && best.live(now) {
		st.Live, st.ExpiresAt = true, time.UnixMilli(best.expires)
		st.AttemptsRemaining, st.ValidCodes = best.max-best.used, 1+len(best.liveKept(now))
	}
	return st, nil
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
		if c.gone(ms) {
			delete(s.codes, k)
		}
	}
	for k, exp := range s.undone {
		if exp <= ms {
			delete(s.undone, k)
		}
	}
	for rid, marks := range s.wrong {
		for a, exp := range marks {
			if exp <= ms {
				delete(marks, a)
			}
		}
		if len(marks) == 0 {
			delete(s.wrong, rid)
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
	for k, c := range s.verified {
		latest := int64(-1)
		for b := range c.by {
			latest = max(latest, b)
		}
		// A part is counted for a window and a part after it starts.
		if latest < 0 || (latest+2+service.ConversionBuckets)*c.part <= ms {
			delete(s.verified, k)
		}
	}
}

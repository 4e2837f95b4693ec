// Package storetest is the conformance suite every service.Store passes:
// the Redis store against a real redis-server and the in-memory store alike.
package storetest

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otpd/otpd/service"
)

// Factory returns a new, empty store for one test.
type Factory func(tb testing.TB) service.Store

var t0 = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

var (
	right = bytes.Repeat([]byte{0xA5}, 32)
	wrong = bytes.Repeat([]byte{0x5A}, 32)
)

var uniq atomic.Int64

func id(prefix string) string { return fmt.Sprintf("%s-%d", prefix, uniq.Add(1)) }

// send returns SendParams for a fresh code with the default rules.
func send(rid, usage string, hash []byte, now time.Time) service.SendParams {
	return service.SendParams{
		Recipient: rid, Usage: usage, CodeHash: hash, VerificationID: id("v"), Now: now,
		TTL: 10 * time.Minute, MaxAttempts: 3, Cooldown: time.Minute,
		PerRecipient: service.Window{Count: 5, Window: 10 * time.Minute},
		Fingerprint:  "sms/sign_in", PendingTTL: 20 * time.Second,
	}
}

func verify(rid, usage string, hash []byte, now time.Time) service.VerifyParams {
	return service.VerifyParams{
		Recipient: rid, Usage: usage, CodeHash: hash, Now: now, AttemptID: id("a"),
		PerRecipient: service.Window{Count: 20, Window: time.Hour},
	}
}

// Run runs the suite against stores from newStore.
func Run(t *testing.T, newStore Factory) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, s service.Store)
	}{
		{"CodeVerifiesOnce", testCodeVerifiesOnce},
		{"AttemptsRunOut", testAttemptsRunOut},
		{"CodeExpires", testCodeExpires},
		{"ResendReplacesCode", testResendReplaces},
		{"UsageTypesAreSeparate", testUsageTypesSeparate},
		{"Cooldown", testCooldown},
		{"PerRecipientWindow", testPerRecipientWindow},
		{"SlotsAllOrNothing", testSlotsAllOrNothing},
		{"SendTakesSlotsAllOrNothing", testSendSlots},
		{"ConcurrentSendsExactSlotLimit", testConcurrentSendSlots},
		{"Idempotency", testIdempotency},
		{"AbortFreesOnlyItsOwnSend", testAbort},
		{"VerifyPerRecipientLimit", testVerifyPerRecipient},
		{"ConcurrentVerifyOneWinner", testConcurrentVerify},
		{"ConcurrentSendsExactLimit", testConcurrentSends},
		{"ConcurrentSlotsExactLimit", testConcurrentSlots},
		{"Ping", func(t *testing.T, s service.Store) {
			if err := s.Ping(context.Background()); err != nil {
				t.Fatalf("Ping: %v", err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore(t))
		})
	}
}

func mustBegin(tb testing.TB, s service.Store, p service.SendParams, want service.SendStatus) service.SendResult {
	tb.Helper()
	res, err := s.BeginSend(context.Background(), p)
	if err != nil {
		tb.Fatalf("BeginSend: %v", err)
	}
	if res.Status != want {
		tb.Fatalf("BeginSend status = %d, want %d (%+v)", res.Status, want, res)
	}
	return res
}

func mustVerify(tb testing.TB, s service.Store, p service.VerifyParams, want service.VerifyStatus) service.VerifyResult {
	tb.Helper()
	res, err := s.Verify(context.Background(), p)
	if err != nil {
		tb.Fatalf("Verify: %v", err)
	}
	if res.Status != want {
		tb.Fatalf("Verify status = %d, want %d (%+v)", res.Status, want, res)
	}
	return res
}

func testCodeVerifiesOnce(t *testing.T, s service.Store) {
	rid := id("r")
	mustBegin(t, s, send(rid, "sign_in", right, t0), service.SendAccepted)
	mustVerify(t, s, verify(rid, "sign_in", right, t0.Add(time.Second)), service.VerifyOK)
	mustVerify(t, s, verify(rid, "sign_in", right, t0.Add(2*time.Second)), service.VerifyExpired)
	mustVerify(t, s, verify(id("r"), "sign_in", right, t0), service.VerifyExpired)
}

func testAttemptsRunOut(t *testing.T, s service.Store) {
	rid := id("r")
	mustBegin(t, s, send(rid, "sign_in", right, t0), service.SendAccepted)
	for want := 2; want >= 0; want-- {
		res := mustVerify(t, s, verify(rid, "sign_in", wrong, t0), service.VerifyMismatch)
		if res.AttemptsRemaining != want {
			t.Fatalf("AttemptsRemaining = %d, want %d", res.AttemptsRemaining, want)
		}
	}
	mustVerify(t, s, verify(rid, "sign_in", right, t0), service.VerifyTooManyAttempts)
	mustVerify(t, s, verify(rid, "sign_in", wrong, t0), service.VerifyTooManyAttempts)
}

func testCodeExpires(t *testing.T, s service.Store) {
	rid := id("r")
	p := send(rid, "sign_in", right, t0)
	mustBegin(t, s, p, service.SendAccepted)
	mustVerify(t, s, verify(rid, "sign_in", wrong, t0.Add(p.TTL-time.Millisecond)), service.VerifyMismatch)
	mustVerify(t, s, verify(rid, "sign_in", right, t0.Add(p.TTL)), service.VerifyExpired)
}

func testResendReplaces(t *testing.T, s service.Store) {
	rid := id("r")
	p := send(rid, "sign_in", right, t0)
	p.Cooldown = 0
	mustBegin(t, s, p, service.SendAccepted)
	q := send(rid, "sign_in", wrong, t0.Add(time.Second))
	q.Cooldown = 0
	mustBegin(t, s, q, service.SendAccepted)
	res := mustVerify(t, s, verify(rid, "sign_in", right, t0.Add(2*time.Second)), service.VerifyMismatch)
	if res.AttemptsRemaining != q.MaxAttempts-1 {
		t.Fatalf("the new code should start with fresh attempts, got %d left", res.AttemptsRemaining)
	}
	mustVerify(t, s, verify(rid, "sign_in", wrong, t0.Add(3*time.Second)), service.VerifyOK)
}

func testUsageTypesSeparate(t *testing.T, s service.Store) {
	rid := id("r")
	mustBegin(t, s, send(rid, "sign_in", right, t0), service.SendAccepted)
	mustVerify(t, s, verify(rid, "forgot_password", right, t0), service.VerifyExpired)
	// A cooldown on one usage type does not hold back another.
	mustBegin(t, s, send(rid, "forgot_password", wrong, t0), service.SendAccepted)
	mustVerify(t, s, verify(rid, "sign_in", right, t0), service.VerifyOK)
	mustVerify(t, s, verify(rid, "forgot_password", wrong, t0), service.VerifyOK)
}

func testCooldown(t *testing.T, s service.Store) {
	rid := id("r")
	p := send(rid, "sign_in", right, t0)
	mustBegin(t, s, p, service.SendAccepted)
	res := mustBegin(t, s, send(rid, "sign_in", wrong, t0.Add(20*time.Second)), service.SendCooldown)
	if res.RetryAfter != 40*time.Second {
		t.Fatalf("RetryAfter = %v, want 40s", res.RetryAfter)
	}
	// Refused sends change nothing: the first code still verifies.
	mustVerify(t, s, verify(rid, "sign_in", wrong, t0.Add(21*time.Second)), service.VerifyMismatch)
	mustBegin(t, s, send(rid, "sign_in", wrong, t0.Add(p.Cooldown)), service.SendAccepted)
}

func testPerRecipientWindow(t *testing.T, s service.Store) {
	rid := id("r")
	at := func(d time.Duration) service.SendParams {
		p := send(rid, "sign_in", right, t0.Add(d))
		p.Cooldown = 0
		p.PerRecipient = service.Window{Count: 3, Window: time.Minute}
		return p
	}
	mustBegin(t, s, at(0), service.SendAccepted)
	mustBegin(t, s, at(10*time.Second), service.SendAccepted)
	mustBegin(t, s, at(20*time.Second), service.SendAccepted)
	res := mustBegin(t, s, at(30*time.Second), service.SendRecipientLimited)
	if res.RetryAfter != 30*time.Second {
		t.Fatalf("RetryAfter = %v, want 30s (until the oldest send leaves the window)", res.RetryAfter)
	}
	mustBegin(t, s, at(60*time.Second), service.SendAccepted)
	mustBegin(t, s, at(65*time.Second), service.SendRecipientLimited)
}

func testSlotsAllOrNothing(t *testing.T, s service.Store) {
	ctx := context.Background()
	ip := service.Slot{Limit: "per_ip", Key: id("ip"), Window: service.Window{Count: 5, Window: time.Hour}}
	cc := service.Slot{Limit: "per_country", Key: id("cc"), Window: service.Window{Count: 2, Window: time.Hour}}
	take := func(member string, at time.Duration, slots ...service.Slot) *service.SlotDenial {
		t.Helper()
		d, err := s.TakeSlots(ctx, t0.Add(at), member, slots)
		if err != nil {
			t.Fatalf("TakeSlots: %v", err)
		}
		return d
	}
	if d := take("m1", 0, ip, cc); d != nil {
		t.Fatalf("first take denied: %+v", d)
	}
	if d := take("m2", time.Minute, ip, cc); d != nil {
		t.Fatalf("second take denied: %+v", d)
	}
	d := take("m3", 2*time.Minute, ip, cc)
	if d == nil || d.Limit != "per_country" || d.RetryAfter != 58*time.Minute {
		t.Fatalf("third take = %+v, want per_country denial retrying in 58m", d)
	}
	// The denied take must not have kept its ip slot: 3 more fit in 5.
	for i := range 3 {
		if d := take(fmt.Sprintf("ip-only-%d", i), 3*time.Minute, ip); d != nil {
			t.Fatalf("ip slot %d denied: %+v (the denied take kept a slot)", i, d)
		}
	}
	if d := take("ip-full", 3*time.Minute, ip); d == nil || d.Limit != "per_ip" {
		t.Fatalf("sixth ip take = %+v, want per_ip denial", d)
	}
	if err := s.ReleaseSlots(ctx, "m1", []service.Slot{ip, cc}); err != nil {
		t.Fatalf("ReleaseSlots: %v", err)
	}
	if d := take("m4", 4*time.Minute, ip, cc); d != nil {
		t.Fatalf("take after release denied: %+v", d)
	}
}

// BeginSend with shared slots: they are taken with an accepted send only;
// a slot denial names the slot and changes nothing else; a send refused
// by its cooldown or its window keeps no slot.
func testSendSlots(t *testing.T, s service.Store) {
	ip := service.Slot{Limit: "per_ip", Key: id("ip"), Window: service.Window{Count: 3, Window: time.Hour}}
	cc := service.Slot{Limit: "per_country", Key: id("cc"), Window: service.Window{Count: 2, Window: time.Hour}}
	withSlots := func(rid string, hash []byte, at time.Duration, slots ...service.Slot) service.SendParams {
		p := send(rid, "sign_in", hash, t0.Add(at))
		p.Slots = slots
		return p
	}
	a, b, c := id("r"), id("r"), id("r")
	mustBegin(t, s, withSlots(a, right, 0, ip, cc), service.SendAccepted)
	// Refused by a's cooldown and, for b, by a per-recipient window of 0
	// left: neither keeps its slots.
	mustBegin(t, s, withSlots(a, wrong, time.Second, ip, cc), service.SendCooldown)
	pb := withSlots(b, right, time.Second, ip, cc)
	pb.PerRecipient = service.Window{Count: 1, Window: time.Hour}
	mustBegin(t, s, pb, service.SendAccepted)
	pb = withSlots(b, wrong, 2*time.Minute, ip)
	pb.PerRecipient = service.Window{Count: 1, Window: time.Hour}
	mustBegin(t, s, pb, service.SendRecipientLimited)
	// cc is full (a and b); ip has one left, which c's denied send must
	// not take.
	res := mustBegin(t, s, withSlots(c, wrong, 3*time.Minute, ip, cc), service.SendSlotLimited)
	if res.Limit != "per_country" || res.RetryAfter != 57*time.Minute {
		t.Fatalf("slot denial = %+v, want per_country retrying in 57m", res)
	}
	// Nothing of c's denied send was stored: no code, no cooldown, no
	// count in its window, no ip slot.
	mustVerify(t, s, verify(c, "sign_in", wrong, t0.Add(3*time.Minute)), service.VerifyExpired)
	pc := withSlots(c, right, 4*time.Minute, ip)
	pc.PerRecipient = service.Window{Count: 1, Window: time.Hour}
	mustBegin(t, s, pc, service.SendAccepted)
	mustVerify(t, s, verify(c, "sign_in", right, t0.Add(4*time.Minute)), service.VerifyOK)
	// That took ip's third slot: the next send is denied by it.
	res = mustBegin(t, s, withSlots(id("r"), right, 5*time.Minute, ip, cc), service.SendSlotLimited)
	if res.Limit != "per_ip" {
		t.Fatalf("slot denial = %+v, want per_ip (checked first)", res)
	}
	// A slot denial leaves the recipient's live code as it was.
	mustBegin(t, s, withSlots(a, wrong, 6*time.Minute, cc), service.SendSlotLimited)
	mustVerify(t, s, verify(a, "sign_in", right, t0.Add(6*time.Minute)), service.VerifyOK)
	// Slots leave their window like any event.
	mustBegin(t, s, withSlots(id("r"), right, time.Hour+time.Second, ip, cc), service.SendAccepted)
}

// Parallel sends to different recipients through one shared slot: exactly
// the slot's count is accepted.
func testConcurrentSendSlots(t *testing.T, s service.Store) {
	slot := service.Slot{Limit: "per_country", Key: id("cc"), Window: service.Window{Count: 10, Window: time.Hour}}
	const n = 60
	accepted, limited := parallelSends(t, s, n, service.SendSlotLimited, func(int) service.SendParams {
		p := send(id("r"), "sign_in", right, t0)
		p.Slots = []service.Slot{slot}
		return p
	})
	if accepted != 10 || limited != n-10 {
		t.Fatalf("%d parallel sends through a 10-slot window: %d accepted, %d slot-limited", n, accepted, limited)
	}
}

func testIdempotency(t *testing.T, s service.Store) {
	ctx := context.Background()
	rid, key := id("r"), id("k")
	p := send(rid, "sign_in", right, t0)
	p.IdempotencyKey, p.Cooldown = key, 0
	lookup := func(fp string, want service.SendStatus) service.SendResult {
		t.Helper()
		res, err := s.LookupSend(ctx, rid, key, fp)
		if err != nil {
			t.Fatalf("LookupSend: %v", err)
		}
		if res.Status != want {
			t.Fatalf("LookupSend status = %d, want %d", res.Status, want)
		}
		return res
	}
	lookup(p.Fingerprint, service.SendAccepted) // no record yet
	mustBegin(t, s, p, service.SendAccepted)
	retry := p
	retry.VerificationID = id("v")
	mustBegin(t, s, retry, service.SendInProgress)
	lookup(p.Fingerprint, service.SendInProgress)
	other := retry
	other.Fingerprint = "sms/register"
	mustBegin(t, s, other, service.SendIdempotencyMismatch)
	lookup(other.Fingerprint, service.SendIdempotencyMismatch)

	answer := []byte{0, 1, 2, 0xff, 'o', 'k'}
	if err := s.CompleteSend(ctx, rid, key, answer, time.Hour); err != nil {
		t.Fatalf("CompleteSend: %v", err)
	}
	res := mustBegin(t, s, retry, service.SendReplay)
	if !bytes.Equal(res.Replay, answer) {
		t.Fatalf("Replay = %x, want %x", res.Replay, answer)
	}
	if res := lookup(p.Fingerprint, service.SendReplay); !bytes.Equal(res.Replay, answer) {
		t.Fatalf("LookupSend Replay = %x, want %x", res.Replay, answer)
	}
	// The replay stored nothing: the first code is still the live one.
	mustVerify(t, s, verify(rid, "sign_in", right, t0), service.VerifyOK)

	// A key whose send failed may be used again.
	rid2 := id("r")
	q := send(rid2, "sign_in", right, t0)
	q.IdempotencyKey = key
	mustBegin(t, s, q, service.SendAccepted)
	if err := s.AbortSend(ctx, service.AbortParams{Recipient: rid2, Usage: "sign_in", VerificationID: q.VerificationID, IdempotencyKey: key}); err != nil {
		t.Fatalf("AbortSend: %v", err)
	}
	q.VerificationID = id("v")
	mustBegin(t, s, q, service.SendAccepted)
}

func testAbort(t *testing.T, s service.Store) {
	ctx := context.Background()
	rid := id("r")
	first := send(rid, "sign_in", right, t0)
	mustBegin(t, s, first, service.SendAccepted)
	if err := s.AbortSend(ctx, service.AbortParams{Recipient: rid, Usage: "sign_in", VerificationID: first.VerificationID}); err != nil {
		t.Fatalf("AbortSend: %v", err)
	}
	mustVerify(t, s, verify(rid, "sign_in", right, t0), service.VerifyExpired)
	// The cooldown is free again.
	second := send(rid, "sign_in", wrong, t0.Add(time.Second))
	mustBegin(t, s, second, service.SendAccepted)
	// Aborting the old send again must not touch the newer code or cooldown.
	if err := s.AbortSend(ctx, service.AbortParams{Recipient: rid, Usage: "sign_in", VerificationID: first.VerificationID}); err != nil {
		t.Fatalf("AbortSend: %v", err)
	}
	mustBegin(t, s, send(rid, "sign_in", right, t0.Add(2*time.Second)), service.SendCooldown)
	mustVerify(t, s, verify(rid, "sign_in", wrong, t0.Add(3*time.Second)), service.VerifyOK)
}

func testVerifyPerRecipient(t *testing.T, s service.Store) {
	rid := id("r")
	p := send(rid, "sign_in", right, t0)
	p.MaxAttempts = 10
	mustBegin(t, s, p, service.SendAccepted)
	lim := func(h []byte, at time.Duration) service.VerifyParams {
		v := verify(rid, "sign_in", h, t0.Add(at))
		v.PerRecipient = service.Window{Count: 2, Window: time.Minute}
		return v
	}
	mustVerify(t, s, lim(wrong, 0), service.VerifyMismatch)
	mustVerify(t, s, lim(wrong, 10*time.Second), service.VerifyMismatch)
	res := mustVerify(t, s, lim(right, 20*time.Second), service.VerifyRateLimited)
	if res.RetryAfter != 40*time.Second {
		t.Fatalf("RetryAfter = %v, want 40s", res.RetryAfter)
	}
	// The refused attempt changed nothing: once the window moves on, the
	// right code still verifies.
	mustVerify(t, s, lim(right, 61*time.Second), service.VerifyOK)
}

func testConcurrentVerify(t *testing.T, s service.Store) {
	rid := id("r")
	mustBegin(t, s, send(rid, "sign_in", right, t0), service.SendAccepted)
	const n = 200
	var ok, expired atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			res, err := s.Verify(context.Background(), verify(rid, "sign_in", right, t0))
			switch {
			case err != nil:
				errs <- err
			case res.Status == service.VerifyOK:
				ok.Add(1)
			case res.Status == service.VerifyExpired:
				expired.Add(1)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Verify: %v", err)
	}
	if ok.Load() != 1 || expired.Load() != n-1 {
		t.Fatalf("%d parallel verifies of the right code: %d OK, %d EXPIRED; want exactly 1 OK", n, ok.Load(), expired.Load())
	}
}

func testConcurrentSends(t *testing.T, s service.Store) {
	rid := id("r")
	const n = 50
	accepted, limited := parallelSends(t, s, n, service.SendRecipientLimited, func(i int) service.SendParams {
		p := send(rid, "sign_in", right, t0.Add(time.Duration(i)*time.Millisecond))
		p.Cooldown = 0
		return p
	})
	if accepted != 5 || limited != n-5 {
		t.Fatalf("%d parallel sends with a limit of 5: %d accepted, %d limited", n, accepted, limited)
	}
}

// parallelSends runs n BeginSends at once, the i-th with params(i), and
// counts those accepted and those refused with the status refused.
func parallelSends(t *testing.T, s service.Store, n int, refused service.SendStatus, params func(i int) service.SendParams) (accepted, limited int64) {
	t.Helper()
	var acc, lim atomic.Int64
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			res, err := s.BeginSend(context.Background(), params(i))
			if err != nil {
				t.Errorf("BeginSend: %v", err)
				return
			}
			switch res.Status {
			case service.SendAccepted:
				acc.Add(1)
			case refused:
				lim.Add(1)
			}
		})
	}
	wg.Wait()
	return acc.Load(), lim.Load()
}

func testConcurrentSlots(t *testing.T, s service.Store) {
	slot := service.Slot{Limit: "per_country", Key: id("cc"), Window: service.Window{Count: 10, Window: time.Hour}}
	const n = 60
	var taken atomic.Int64
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			d, err := s.TakeSlots(context.Background(), t0, id("m"), []service.Slot{slot})
			if err != nil {
				t.Errorf("TakeSlots: %v", err)
				return
			}
			if d == nil {
				taken.Add(1)
			}
		})
	}
	wg.Wait()
	if taken.Load() != 10 {
		t.Fatalf("%d parallel takes of a 10-slot window: %d taken", n, taken.Load())
	}
}

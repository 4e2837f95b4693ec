// Package storetest is the conformance suite every service.Store passes:
// the Redis store against a real redis-server and the in-memory store alike.
package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
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

// slack is how far a store's idea of a caller's time may be off: a store
// that keeps Redis's clock moves it by the caller's offset from its local
// clock when the call is made, so each call lands a little later than the
// time the test passed, by that call's latency. Times the suite compares
// are at least slack apart, and retry delays are compared within slack.
const slack = time.Second

// near fails unless got is want within slack.
func near(tb testing.TB, what string, got, want time.Duration) {
	tb.Helper()
	if got < want-slack || got > want+slack {
		tb.Fatalf("%s = %v, want %v (within %v)", what, got, want, slack)
	}
}

var (
	right = bytes.Repeat([]byte{0xA5}, 32)
	wrong = bytes.Repeat([]byte{0x5A}, 32)
)

var uniq atomic.Int64

func id(prefix string) string { return fmt.Sprintf("%s-%d", prefix, uniq.Add(1)) }

// rcpt is the recipient whose current id is rid, in a bucket of its own
// (as far as 4096 buckets go), as the service would make it.
func rcpt(rid string, previous ...string) service.Recipient {
	return service.Recipient{ID: rid, Bucket: bucketOf(rid), Previous: previous}
}

func bucketOf(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:2])[:3]
}

// idem is an idempotency key with its ids under previous secrets.
func idem(key string, previous ...string) service.IdempotencyKey {
	return service.IdempotencyKey{ID: key, Previous: previous}
}

// send returns SendParams for a fresh code with the default rules.
func send(rid, usage string, hash []byte, now time.Time) service.SendParams {
	return service.SendParams{
		Recipient: rcpt(rid), Usage: usage, CodeHash: hash, VerificationID: id("v"), Now: now,
		TTL: 10 * time.Minute, MaxAttempts: 3, Cooldown: time.Minute,
		PerRecipient: service.Window{Count: 5, Window: 10 * time.Minute},
		Fingerprint:  "sms/sign_in", PendingTTL: 20 * time.Second,
	}
}

func verify(rid, usage string, hash []byte, now time.Time) service.VerifyParams {
	return service.VerifyParams{
		Recipient: rcpt(rid), Usage: usage, CodeHash: hash, Now: now, AttemptID: id("a"),
		PerRecipient: service.Window{Count: 20, Window: time.Hour}, Grace: 2 * time.Minute,
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
		{"SendRerunIsIdempotent", testSendRerun},
		{"ConcurrentSendRerunsCountOnce", testConcurrentSendReruns},
		{"VerifyRerunIsIdempotent", testVerifyRerun},
		{"VerifyRerunAfterResend", testVerifyRerunAfterResend},
		{"TombstonesStopLateCopies", testTombstones},
		{"UndoVerifyRestoresItsCode", testUndoVerify},
		{"VerifyPerIP", testVerifyPerIP},
		{"ConcurrentVerifyPerIPExactLimit", testConcurrentVerifyPerIP},
		{"RotationCarriesCodes", testRotationCodes},
		{"RotationCarriesWindowsAndCooldowns", testRotationWindows},
		{"RotationMergesStateUnderBothSecrets", testRotationMerge},
		{"RotationCarriesIdempotency", testRotationIdempotency},
		{"RotationCarriesSlots", testRotationSlots},
		{"RotationReplicasEitherWay", testRotationEitherWay},
		{"RotationUndoFindsMovedState", testRotationUndo},
		{"ConcurrentVerifyDuringRotation", testConcurrentVerifyRotation},
		{"DeliveryStoresNoCode", testDeliveryStoresNoCode},
		{"DeliveryKeepsLiveCode", testDeliveryKeepsLiveCode},
		{"DeliveryRerunAndAbort", testDeliveryRerunAndAbort},
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
	for _, tc := range append(lifecycleTests, conversionTests...) {
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
	mustVerify(t, s, verify(rid, "sign_in", wrong, t0.Add(p.TTL-slack)), service.VerifyMismatch)
	mustVerify(t, s, verify(rid, "sign_in", right, t0.Add(p.TTL+slack)), service.VerifyExpired)
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
	near(t, "RetryAfter", res.RetryAfter, 40*time.Second)
	// Refused sends change nothing: the first code still verifies.
	mustVerify(t, s, verify(rid, "sign_in", wrong, t0.Add(21*time.Second)), service.VerifyMismatch)
	mustBegin(t, s, send(rid, "sign_in", wrong, t0.Add(p.Cooldown+slack)), service.SendAccepted)
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
	near(t, "RetryAfter (until the oldest send leaves the window)", res.RetryAfter, 30*time.Second)
	mustBegin(t, s, at(60*time.Second+slack), service.SendAccepted)
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
	if d == nil || d.Limit != "per_country" {
		t.Fatalf("third take = %+v, want per_country denial", d)
	}
	near(t, "RetryAfter", d.RetryAfter, 58*time.Minute)
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
	if res.Limit != "per_country" {
		t.Fatalf("slot denial = %+v, want per_country", res)
	}
	near(t, "RetryAfter", res.RetryAfter, 57*time.Minute)
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
	p.IdempotencyKey, p.Cooldown = idem(key), 0
	lookup := func(fp string, want service.SendStatus) service.SendResult {
		t.Helper()
		res, err := s.LookupSend(ctx, rcpt(rid), idem(key), fp)
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
	// Undoing another send (a refused retry) leaves the first send's
	// pending key alone.
	if err := s.AbortSend(ctx, service.AbortParams{Recipient: rcpt(rid), Usage: "sign_in", VerificationID: id("v"),
		IdempotencyKey: idem(key), Uncount: true, Tombstone: time.Minute, Now: t0}); err != nil {
		t.Fatalf("AbortSend: %v", err)
	}
	lookup(p.Fingerprint, service.SendInProgress)
	other := retry
	other.Fingerprint = "sms/register"
	mustBegin(t, s, other, service.SendIdempotencyMismatch)
	lookup(other.Fingerprint, service.SendIdempotencyMismatch)

	answer := []byte{0, 1, 2, 0xff, 'o', 'k'}
	if err := s.CompleteSend(ctx, rcpt(rid), idem(key), answer, time.Hour); err != nil {
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
	q.IdempotencyKey = idem(key)
	mustBegin(t, s, q, service.SendAccepted)
	if err := s.AbortSend(ctx, service.AbortParams{Recipient: rcpt(rid2), Usage: "sign_in", VerificationID: q.VerificationID, IdempotencyKey: idem(key)}); err != nil {
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
	if err := s.AbortSend(ctx, service.AbortParams{Recipient: rcpt(rid), Usage: "sign_in", VerificationID: first.VerificationID}); err != nil {
		t.Fatalf("AbortSend: %v", err)
	}
	mustVerify(t, s, verify(rid, "sign_in", right, t0), service.VerifyExpired)
	// The cooldown is free again.
	second := send(rid, "sign_in", wrong, t0.Add(time.Second))
	mustBegin(t, s, second, service.SendAccepted)
	// Aborting the old send again must not touch the newer code or cooldown.
	if err := s.AbortSend(ctx, service.AbortParams{Recipient: rcpt(rid), Usage: "sign_in", VerificationID: first.VerificationID}); err != nil {
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
	near(t, "RetryAfter", res.RetryAfter, 40*time.Second)
	if res.ByIP {
		t.Fatal("a full recipient window reported as the IP's")
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

// BeginSend run again with the same verification id, as after a lost
// answer, answers accepted and counts nothing twice: not in the
// per-recipient window, not in a shared slot, not against its own cooldown
// or pending idempotency key.
func testSendRerun(t *testing.T, s service.Store) {
	rid := id("r")
	slot := service.Slot{Limit: "per_ip", Key: id("ip"), Window: service.Window{Count: 1, Window: time.Hour}}
	p := send(rid, "sign_in", right, t0)
	p.PerRecipient = service.Window{Count: 2, Window: time.Hour}
	p.Slots = []service.Slot{slot}
	p.IdempotencyKey = idem(id("k"))
	for range 3 {
		mustBegin(t, s, p, service.SendAccepted)
	}
	// One send counted: one more fits the recipient's window of 2.
	q := send(rid, "forgot_password", wrong, t0.Add(time.Second))
	q.PerRecipient = p.PerRecipient
	mustBegin(t, s, q, service.SendAccepted)
	q = send(rid, "register", wrong, t0.Add(2*time.Second))
	q.PerRecipient = p.PerRecipient
	mustBegin(t, s, q, service.SendRecipientLimited)
	// The slot of 1 holds the send once: another recipient is refused by it.
	other := send(id("r"), "sign_in", right, t0.Add(3*time.Second))
	other.Slots = p.Slots
	mustBegin(t, s, other, service.SendSlotLimited)
	mustVerify(t, s, verify(rid, "sign_in", right, t0.Add(4*time.Second)), service.VerifyOK)
}

// Re-runs of one send racing each other count it once.
func testConcurrentSendReruns(t *testing.T, s service.Store) {
	rid := id("r")
	p := send(rid, "sign_in", right, t0)
	p.PerRecipient = service.Window{Count: 2, Window: time.Hour}
	p.Slots = []service.Slot{{Limit: "per_country", Key: id("cc"), Window: service.Window{Count: 2, Window: time.Hour}}}
	const n = 40
	accepted, _ := parallelSends(t, s, n, service.SendCooldown, func(int) service.SendParams { return p })
	if accepted != n {
		t.Fatalf("%d parallel re-runs of one send: %d accepted, want all", n, accepted)
	}
	q := send(rid, "forgot_password", wrong, t0)
	q.PerRecipient, q.Slots = p.PerRecipient, p.Slots
	mustBegin(t, s, q, service.SendAccepted)
	q = send(rid, "register", wrong, t0)
	q.PerRecipient = p.PerRecipient
	mustBegin(t, s, q, service.SendRecipientLimited)
	r := send(id("r"), "sign_in", wrong, t0)
	r.Slots = p.Slots
	mustBegin(t, s, r, service.SendSlotLimited)
}

// Verify run again with the same attempt id answers what it first
// decided: OK again for the attempt that consumed the code (and EXPIRED for
// any other), MISMATCH again for a wrong code, counted once, even when that
// count filled the window.
func testVerifyRerun(t *testing.T, s service.Store) {
	rid := id("r")
	mustBegin(t, s, send(rid, "sign_in", right, t0), service.SendAccepted)
	w := verify(rid, "sign_in", wrong, t0)
	w.PerRecipient = service.Window{Count: 1, Window: time.Hour}
	for range 3 {
		if res := mustVerify(t, s, w, service.VerifyMismatch); res.AttemptsRemaining != 2 {
			t.Fatalf("re-run of a wrong attempt: %d attempts left, want 2 (counted once)", res.AttemptsRemaining)
		}
	}
	other := verify(rid, "sign_in", right, t0)
	other.PerRecipient = w.PerRecipient
	mustVerify(t, s, other, service.VerifyRateLimited)

	rid = id("r")
	mustBegin(t, s, send(rid, "sign_in", right, t0), service.SendAccepted)
	ok := verify(rid, "sign_in", right, t0.Add(time.Second))
	mustVerify(t, s, ok, service.VerifyOK)
	mustVerify(t, s, ok, service.VerifyOK)
	mustVerify(t, s, verify(rid, "sign_in", right, t0.Add(2*time.Second)), service.VerifyExpired)
	// A consumed code, kept for its grace, does not stand in the way of
	// the next send.
	next := send(rid, "sign_in", wrong, t0.Add(3*time.Second))
	next.Cooldown = 0
	mustBegin(t, s, next, service.SendAccepted)
	mustVerify(t, s, verify(rid, "sign_in", wrong, t0.Add(4*time.Second)), service.VerifyOK)
}

// A wrong attempt is marked on the recipient, not on its code: run again
// after a resend replaced the code (its first answer was lost on the way),
// it answers MISMATCH and takes nothing from the new code, whether the
// verify window per recipient is on or off.
func testVerifyRerunAfterResend(t *testing.T, s service.Store) {
	for _, perRecipient := range []service.Window{{Count: 20, Window: time.Hour}, {}} {
		rid := id("r")
		mustBegin(t, s, send(rid, "sign_in", right, t0), service.SendAccepted)
		w := verify(rid, "sign_in", wrong, t0.Add(time.Second))
		w.PerRecipient = perRecipient
		if res := mustVerify(t, s, w, service.VerifyMismatch); res.AttemptsRemaining != 2 {
			t.Fatalf("wrong attempt: %d attempts left, want 2", res.AttemptsRemaining)
		}
		resend := send(rid, "sign_in", right, t0.Add(2*time.Second))
		resend.Cooldown = 0
		mustBegin(t, s, resend, service.SendAccepted)
		w.Now = t0.Add(3 * time.Second)
		if res := mustVerify(t, s, w, service.VerifyMismatch); res.AttemptsRemaining != 3 {
			t.Fatalf("window %v: the wrong attempt run again after a resend: %d attempts left, want the new code's 3", perRecipient, res.AttemptsRemaining)
		}
		next := verify(rid, "sign_in", wrong, t0.Add(4*time.Second))
		next.PerRecipient = perRecipient
		if res := mustVerify(t, s, next, service.VerifyMismatch); res.AttemptsRemaining != 2 {
			t.Fatalf("window %v: a new wrong attempt on the new code: %d attempts left, want 2", perRecipient, res.AttemptsRemaining)
		}
		ok := verify(rid, "sign_in", right, t0.Add(5*time.Second))
		ok.PerRecipient = perRecipient
		mustVerify(t, s, ok, service.VerifyOK)
	}
}

func wantUndone(tb testing.TB, what string, err error) {
	tb.Helper()
	if !errors.Is(err, service.ErrUndone) || !errors.Is(err, service.ErrNotApplied) {
		tb.Fatalf("%s after its undo: %v, want ErrUndone and ErrNotApplied", what, err)
	}
}

// An undo leaves a tombstone: a late copy of the undone send or attempt
// (one queued in a stalled store) changes nothing.
func testTombstones(t *testing.T, s service.Store) {
	ctx := context.Background()
	undoSend := func(p service.SendParams) {
		t.Helper()
		if err := s.AbortSend(ctx, service.AbortParams{Recipient: p.Recipient, Usage: p.Usage, VerificationID: p.VerificationID,
			IdempotencyKey: p.IdempotencyKey, Uncount: true, Tombstone: time.Minute, Now: p.Now}); err != nil {
			t.Fatalf("AbortSend: %v", err)
		}
	}
	// The abort lands before the send it undoes.
	rid := id("r")
	late := send(rid, "sign_in", right, t0)
	late.IdempotencyKey = idem(id("k"))
	undoSend(late)
	_, err := s.BeginSend(ctx, late)
	wantUndone(t, "BeginSend", err)
	mustVerify(t, s, verify(rid, "sign_in", right, t0), service.VerifyExpired)
	fresh := send(rid, "sign_in", wrong, t0.Add(time.Second))
	fresh.IdempotencyKey = late.IdempotencyKey
	mustBegin(t, s, fresh, service.SendAccepted)

	// The abort lands after the send: code, cooldown and its count in the
	// per-recipient window go.
	rid = id("r")
	a := send(rid, "sign_in", right, t0)
	a.PerRecipient = service.Window{Count: 1, Window: time.Hour}
	mustBegin(t, s, a, service.SendAccepted)
	undoSend(a)
	mustVerify(t, s, verify(rid, "sign_in", right, t0.Add(time.Second)), service.VerifyExpired)
	_, err = s.BeginSend(ctx, a)
	wantUndone(t, "BeginSend", err)
	b := send(rid, "sign_in", wrong, t0.Add(2*time.Second))
	b.PerRecipient = a.PerRecipient
	mustBegin(t, s, b, service.SendAccepted)
	mustVerify(t, s, verify(rid, "sign_in", wrong, t0.Add(3*time.Second)), service.VerifyOK)

	// An attempt undone before it ran does not run.
	rid = id("r")
	mustBegin(t, s, send(rid, "sign_in", right, t0), service.SendAccepted)
	v := verify(rid, "sign_in", right, t0)
	if err := s.UndoVerify(ctx, service.UndoVerifyParams{Recipient: rcpt(rid), Usage: "sign_in", AttemptID: v.AttemptID, Now: t0, Tombstone: time.Minute}); err != nil {
		t.Fatalf("UndoVerify: %v", err)
	}
	_, err = s.Verify(ctx, v)
	wantUndone(t, "Verify", err)
	mustVerify(t, s, verify(rid, "sign_in", right, t0.Add(time.Second)), service.VerifyOK)
}

// UndoVerify makes live again the code its attempt consumed, with the
// attempts already used, and nothing else.
func testUndoVerify(t *testing.T, s service.Store) {
	ctx := context.Background()
	undo := func(v service.VerifyParams, at time.Time) {
		t.Helper()
		if err := s.UndoVerify(ctx, service.UndoVerifyParams{Recipient: v.Recipient, Usage: v.Usage, AttemptID: v.AttemptID, Now: at, Tombstone: time.Minute}); err != nil {
			t.Fatalf("UndoVerify: %v", err)
		}
	}
	rid := id("r")
	mustBegin(t, s, send(rid, "sign_in", right, t0), service.SendAccepted)
	mustVerify(t, s, verify(rid, "sign_in", wrong, t0), service.VerifyMismatch)
	ok := verify(rid, "sign_in", right, t0.Add(time.Second))
	mustVerify(t, s, ok, service.VerifyOK)
	undo(ok, t0.Add(2*time.Second))
	undo(ok, t0.Add(2*time.Second)) // an undo may run twice
	if res := mustVerify(t, s, verify(rid, "sign_in", wrong, t0.Add(3*time.Second)), service.VerifyMismatch); res.AttemptsRemaining != 1 {
		t.Fatalf("restored code has %d attempts left, want 1 (its wrong attempts stay counted)", res.AttemptsRemaining)
	}
	mustVerify(t, s, verify(rid, "sign_in", right, t0.Add(4*time.Second)), service.VerifyOK)

	// Undoing an attempt that consumed nothing restores nobody's code.
	rid = id("r")
	mustBegin(t, s, send(rid, "sign_in", right, t0), service.SendAccepted)
	mustVerify(t, s, verify(rid, "sign_in", right, t0), service.VerifyOK)
	undo(verify(rid, "sign_in", right, t0), t0.Add(time.Second))
	mustVerify(t, s, verify(rid, "sign_in", right, t0.Add(2*time.Second)), service.VerifyExpired)

	// A code is not restored past its expiry.
	rid = id("r")
	p := send(rid, "sign_in", right, t0)
	mustBegin(t, s, p, service.SendAccepted)
	ok = verify(rid, "sign_in", right, t0.Add(p.TTL-2*slack))
	mustVerify(t, s, ok, service.VerifyOK)
	undo(ok, t0.Add(p.TTL+slack))
	mustVerify(t, s, verify(rid, "sign_in", right, t0.Add(p.TTL+slack)), service.VerifyExpired)
}

// The per-IP verify window: only wrong codes count, across recipients; a
// full window refuses before the code is looked at, even the right code,
// and changes nothing.
func testVerifyPerIP(t *testing.T, s service.Store) {
	// Wrong codes and verifies of no live code count; right codes do not.
	ip := &service.Slot{Limit: "verify_per_ip", Key: id("vip"), Window: service.Window{Count: 4, Window: time.Minute}}
	at := func(rid string, hash []byte, d time.Duration) service.VerifyParams {
		v := verify(rid, "sign_in", hash, t0.Add(d))
		v.PerIP = ip
		return v
	}
	r1, r2, r3 := id("r"), id("r"), id("r")
	for _, r := range []string{r1, r2, r3} {
		mustBegin(t, s, send(r, "sign_in", right, t0), service.SendAccepted)
	}
	mustVerify(t, s, at(r1, right, 0), service.VerifyOK)
	mustVerify(t, s, at(r1, right, 0), service.VerifyExpired)
	mustVerify(t, s, at(id("r"), wrong, 0), service.VerifyExpired)
	mustVerify(t, s, at(r2, wrong, time.Second), service.VerifyMismatch)
	mustVerify(t, s, at(r3, wrong, 2*time.Second), service.VerifyMismatch)
	for _, v := range []service.VerifyParams{at(r2, right, 3*time.Second), at(r3, wrong, 3*time.Second), at(id("r"), wrong, 3*time.Second)} {
		res := mustVerify(t, s, v, service.VerifyRateLimited)
		if !res.ByIP {
			t.Fatalf("refusal %+v does not name the IP's window", res)
		}
		near(t, "RetryAfter", res.RetryAfter, 57*time.Second)
	}
	// Other IPs, and calls without one, are not held back.
	mustVerify(t, s, verify(r3, "sign_in", right, t0.Add(4*time.Second)), service.VerifyOK)
	// The refusals changed nothing: once the window moves on, r2's code
	// verifies, with the attempts of its one wrong code used.
	if res := mustVerify(t, s, at(r2, wrong, 62*time.Second), service.VerifyMismatch); res.AttemptsRemaining != 1 {
		t.Fatalf("r2's code has %d attempts left, want 1", res.AttemptsRemaining)
	}
	mustVerify(t, s, at(r2, right, 63*time.Second), service.VerifyOK)
}

// Wrong codes from one IP across many recipients at once: exactly the
// window's count is answered, the rest refused by it.
func testConcurrentVerifyPerIP(t *testing.T, s service.Store) {
	ip := &service.Slot{Limit: "verify_per_ip", Key: id("vip"), Window: service.Window{Count: 10, Window: time.Hour}}
	const n = 60
	rids := make([]string, n)
	for i := range rids {
		rids[i] = id("r")
		mustBegin(t, s, send(rids[i], "sign_in", right, t0), service.SendAccepted)
	}
	var mismatch, limited atomic.Int64
	var wg sync.WaitGroup
	for _, rid := range rids {
		wg.Go(func() {
			v := verify(rid, "sign_in", wrong, t0)
			v.PerIP = ip
			res, err := s.Verify(context.Background(), v)
			switch {
			case err != nil:
				t.Errorf("Verify: %v", err)
			case res.Status == service.VerifyMismatch:
				mismatch.Add(1)
			case res.Status == service.VerifyRateLimited && res.ByIP:
				limited.Add(1)
			}
		})
	}
	wg.Wait()
	if mismatch.Load() != 10 || limited.Load() != n-10 {
		t.Fatalf("%d parallel wrong codes from one IP with a window of 10: %d answered, %d refused by it", n, mismatch.Load(), limited.Load())
	}
}

// A rotation as the store sees it: one recipient's ids under two secrets,
// a and b, in one bucket, and the code hashes under each. A replica that
// knows only a (the configuration before the rotation) passes no
// previous ids; one in the middle of it passes the other secret's id as
// previous (README "Rotating the secret": first a with b as previous, then
// b with a as previous).
type rotation struct{ a, b, bucket string }

func newRotation() rotation {
	base := id("r")
	return rotation{a: base + "/a", b: base + "/b", bucket: bucketOf(base)}
}

// onlyA is the recipient of a replica that knows secret a only.
func (r rotation) onlyA() service.Recipient { return service.Recipient{ID: r.a, Bucket: r.bucket} }

// aB is the recipient of a replica whose secret is a, b previous.
func (r rotation) aB() service.Recipient {
	return service.Recipient{ID: r.a, Bucket: r.bucket, Previous: []string{r.b}}
}

// bA is the recipient of a replica whose secret is b, a previous.
func (r rotation) bA() service.Recipient {
	return service.Recipient{ID: r.b, Bucket: r.bucket, Previous: []string{r.a}}
}

// A code's hash under secret a and under secret b.
var (
	rightA, rightB = bytes.Repeat([]byte{0xA1}, 32), bytes.Repeat([]byte{0xB1}, 32)
	wrongA, wrongB = bytes.Repeat([]byte{0xA0}, 32), bytes.Repeat([]byte{0xB0}, 32)
)

// verifyAs is a verification by a replica that knows rc, of the code
// whose hashes under a and b are ha and hb.
func verifyAs(rc service.Recipient, r rotation, ha, hb []byte, now time.Time) service.VerifyParams {
	v := verify("", "sign_in", nil, now)
	v.Recipient = rc
	switch {
	case rc.ID == r.a && len(rc.Previous) > 0:
		v.CodeHash, v.PreviousCodeHashes = ha, [][]byte{hb}
	case rc.ID == r.a:
		v.CodeHash = ha
	default:
		v.CodeHash, v.PreviousCodeHashes = hb, [][]byte{ha}
	}
	return v
}

// sendAs is a send by a replica that knows rc, of a code whose hash under
// its current secret is h.
func sendAs(rc service.Recipient, h []byte, now time.Time) service.SendParams {
	p := send("", "sign_in", h, now)
	p.Recipient = rc
	return p
}

// A code issued under the old secret verifies under the new one, with
// the attempts it has used; it is consumed once, whichever secret finds it.
func testRotationCodes(t *testing.T, s service.Store) {
	r := newRotation()
	mustBegin(t, s, sendAs(r.onlyA(), rightA, t0), service.SendAccepted)
	mustVerify(t, s, verifyAs(r.onlyA(), r, wrongA, wrongB, t0), service.VerifyMismatch)
	res := mustVerify(t, s, verifyAs(r.bA(), r, wrongA, wrongB, t0.Add(time.Second)), service.VerifyMismatch)
	if res.AttemptsRemaining != 1 {
		t.Fatalf("after one wrong code under each secret: %d attempts left, want 1", res.AttemptsRemaining)
	}
	mustVerify(t, s, verifyAs(r.bA(), r, rightA, rightB, t0.Add(2*time.Second)), service.VerifyOK)
	mustVerify(t, s, verifyAs(r.bA(), r, rightA, rightB, t0.Add(3*time.Second)), service.VerifyExpired)
	mustVerify(t, s, verifyAs(r.aB(), r, rightA, rightB, t0.Add(3*time.Second)), service.VerifyExpired)

	// A code issued under b verifies for a replica that still writes
	// under a but knows b (the first step of a rotation, mixed with the
	// second), and the other way round.
	r = newRotation()
	mustBegin(t, s, sendAs(r.bA(), rightB, t0), service.SendAccepted)
	mustVerify(t, s, verifyAs(r.aB(), r, rightA, rightB, t0.Add(time.Second)), service.VerifyOK)
	r = newRotation()
	mustBegin(t, s, sendAs(r.aB(), rightA, t0), service.SendAccepted)
	mustVerify(t, s, verifyAs(r.bA(), r, rightA, rightB, t0.Add(time.Second)), service.VerifyOK)
	// A code is checked against its hash under the secret it was issued
	// with: the right code's hash under the other secret does not match.
	r = newRotation()
	mustBegin(t, s, sendAs(r.onlyA(), rightA, t0), service.SendAccepted)
	mustVerify(t, s, verifyAs(r.bA(), r, wrongA, rightB, t0.Add(time.Second)), service.VerifyMismatch)
}

// Windows and cooldowns filled before the rotation keep counting after
// it: 15 wrong codes under the old secret and 5 under the new fill a
// window of 20.
func testRotationWindows(t *testing.T, s service.Store) {
	r := newRotation()
	p := sendAs(r.onlyA(), rightA, t0)
	p.MaxAttempts = 50
	mustBegin(t, s, p, service.SendAccepted)
	for i := range 20 {
		rc := r.onlyA()
		if i >= 15 {
			rc = r.bA()
		}
		mustVerify(t, s, verifyAs(rc, r, wrongA, wrongB, t0.Add(time.Duration(i)*time.Millisecond)), service.VerifyMismatch)
	}
	res := mustVerify(t, s, verifyAs(r.bA(), r, rightA, rightB, t0.Add(time.Second)), service.VerifyRateLimited)
	near(t, "RetryAfter", res.RetryAfter, time.Hour-time.Second)

	// The cooldown of a send under a holds a send under b; the send window
	// counts both.
	r = newRotation()
	first := sendAs(r.onlyA(), rightA, t0)
	first.PerRecipient = service.Window{Count: 3, Window: time.Hour}
	mustBegin(t, s, first, service.SendAccepted)
	res2 := mustBegin(t, s, sendAs(r.bA(), rightB, t0.Add(10*time.Second)), service.SendCooldown)
	near(t, "RetryAfter", res2.RetryAfter, 50*time.Second)
	at := func(rc service.Recipient, h []byte, d time.Duration) service.SendParams {
		p := sendAs(rc, h, t0.Add(d))
		p.Cooldown, p.PerRecipient = 0, first.PerRecipient
		return p
	}
	mustBegin(t, s, at(r.onlyA(), rightA, time.Minute+slack), service.SendAccepted)
	mustBegin(t, s, at(r.bA(), rightB, 2*time.Minute), service.SendAccepted)
	mustBegin(t, s, at(r.bA(), rightB, 3*time.Minute), service.SendRecipientLimited)
	// The last code sent, under b, is the live one.
	mustVerify(t, s, verifyAs(r.bA(), r, rightA, rightB, t0.Add(3*time.Minute)), service.VerifyOK)
}

// State under both secrets at once (a replica that knows only the old
// secret kept writing it after another moved the recipient's state to the
// new one) is merged: windows hold both, the later cooldown holds, the
// newer code is the live one, the current idempotency record wins.
func testRotationMerge(t *testing.T, s service.Store) {
	r := newRotation()
	onlyB := service.Recipient{ID: r.b, Bucket: r.bucket}
	win := service.Window{Count: 5, Window: time.Hour}
	at := func(rc service.Recipient, h []byte, d time.Duration) service.SendParams {
		p := sendAs(rc, h, t0.Add(d))
		p.Cooldown, p.PerRecipient = 0, win
		return p
	}
	mustBegin(t, s, at(r.onlyA(), rightA, 0), service.SendAccepted)
	mustBegin(t, s, at(onlyB, rightB, time.Second), service.SendAccepted)
	mustBegin(t, s, at(r.onlyA(), rightA, 2*time.Second), service.SendAccepted)
	mustBegin(t, s, at(onlyB, rightB, 3*time.Second), service.SendAccepted)
	// Four sends, two under each secret: one more fits the window of 5.
	mustBegin(t, s, at(r.bA(), rightB, 4*time.Second), service.SendAccepted)
	mustBegin(t, s, at(r.bA(), rightB, 5*time.Second), service.SendRecipientLimited)
	mustBegin(t, s, at(r.aB(), rightA, 5*time.Second), service.SendRecipientLimited)

	// Codes: the newer wins, wherever it is.
	r = newRotation()
	onlyB = service.Recipient{ID: r.b, Bucket: r.bucket}
	mustBegin(t, s, at(onlyB, rightB, 0), service.SendAccepted)
	mustBegin(t, s, at(r.onlyA(), rightA, time.Second), service.SendAccepted)
	mustVerify(t, s, verifyAs(r.bA(), r, wrongA, rightB, t0.Add(2*time.Second)), service.VerifyMismatch)
	mustVerify(t, s, verifyAs(r.bA(), r, rightA, wrongB, t0.Add(3*time.Second)), service.VerifyOK)

	// Cooldowns: the later end holds.
	r = newRotation()
	onlyB = service.Recipient{ID: r.b, Bucket: r.bucket}
	long := sendAs(r.onlyA(), rightA, t0)
	long.Cooldown = 10 * time.Minute
	mustBegin(t, s, long, service.SendAccepted)
	mustBegin(t, s, sendAs(onlyB, rightB, t0.Add(time.Second)), service.SendAccepted)
	res := mustBegin(t, s, sendAs(r.bA(), rightB, t0.Add(2*time.Minute)), service.SendCooldown)
	near(t, "RetryAfter (the later cooldown's)", res.RetryAfter, 8*time.Minute)

	// Idempotency records: the current secret's wins.
	r = newRotation()
	onlyB = service.Recipient{ID: r.b, Bucket: r.bucket}
	ctx := context.Background()
	ka, kb := id("ka"), id("kb")
	pa := sendAs(r.onlyA(), rightA, t0)
	pa.IdempotencyKey, pa.Cooldown = idem(ka), 0
	mustBegin(t, s, pa, service.SendAccepted)
	if err := s.CompleteSend(ctx, r.onlyA(), idem(ka), []byte("answer under a"), time.Hour); err != nil {
		t.Fatal(err)
	}
	pb := sendAs(onlyB, rightB, t0)
	pb.IdempotencyKey, pb.Cooldown = idem(kb), 0
	mustBegin(t, s, pb, service.SendAccepted)
	if err := s.CompleteSend(ctx, onlyB, idem(kb), []byte("answer under b"), time.Hour); err != nil {
		t.Fatal(err)
	}
	retry := sendAs(r.bA(), rightB, t0.Add(time.Second))
	retry.IdempotencyKey = idem(kb, ka)
	if res := mustBegin(t, s, retry, service.SendReplay); string(res.Replay) != "answer under b" {
		t.Fatalf("replayed %q, want the current secret's record", res.Replay)
	}
}

// An idempotency record written under the old secret answers a retry
// under the new one: while pending and once complete, in LookupSend and
// in BeginSend; and an answer stored by a replica that knows onlyB is
// found by either.
func testRotationIdempotency(t *testing.T, s service.Store) {
	ctx := context.Background()
	r := newRotation()
	ka, kb := id("ka"), id("kb")
	lookup := func(rc service.Recipient, key service.IdempotencyKey, want service.SendStatus) service.SendResult {
		t.Helper()
		res, err := s.LookupSend(ctx, rc, key, "sms/sign_in")
		if err != nil {
			t.Fatalf("LookupSend: %v", err)
		}
		if res.Status != want {
			t.Fatalf("LookupSend status = %d, want %d", res.Status, want)
		}
		return res
	}
	p := sendAs(r.onlyA(), rightA, t0)
	p.IdempotencyKey, p.Cooldown = idem(ka), 0
	mustBegin(t, s, p, service.SendAccepted)
	lookup(r.bA(), idem(kb, ka), service.SendInProgress)
	retry := sendAs(r.bA(), rightB, t0.Add(time.Second))
	retry.IdempotencyKey, retry.Cooldown = idem(kb, ka), 0
	mustBegin(t, s, retry, service.SendInProgress)
	// The first call, on a replica that knows a and b, completes after the
	// retry moved its record to b.
	if err := s.CompleteSend(ctx, r.aB(), idem(ka, kb), []byte("first answer"), time.Hour); err != nil {
		t.Fatalf("CompleteSend: %v", err)
	}
	for _, c := range []struct {
		rc  service.Recipient
		key service.IdempotencyKey
	}{{r.bA(), idem(kb, ka)}, {r.aB(), idem(ka, kb)}} {
		if res := lookup(c.rc, c.key, service.SendReplay); string(res.Replay) != "first answer" {
			t.Fatalf("LookupSend replayed %q", res.Replay)
		}
		again := sendAs(c.rc, rightB, t0.Add(2*time.Second))
		again.IdempotencyKey, again.Cooldown = c.key, 0
		if res := mustBegin(t, s, again, service.SendReplay); string(res.Replay) != "first answer" {
			t.Fatalf("BeginSend replayed %q", res.Replay)
		}
	}
	// The replay sent nothing: the first code is the live one.
	mustVerify(t, s, verifyAs(r.bA(), r, rightA, rightB, t0.Add(3*time.Second)), service.VerifyOK)
}

// Shared windows keyed by a secret (per IP) carry over: taken as slots,
// with a send, and as a verification's per-IP window; and a slot taken by
// one replica is released by it after another moved the window.
func testRotationSlots(t *testing.T, s service.Store) {
	ctx := context.Background()
	base := id("ip")
	w := service.Window{Count: 4, Window: time.Hour}
	onlyA := service.Slot{Limit: "per_ip", Key: "ip:" + base + "/a", Bucket: bucketOf(base), Window: w}
	aB, bA := onlyA, onlyA
	aB.Previous = []string{"ip:" + base + "/b"}
	bA.Key, bA.Previous = "ip:"+base+"/b", []string{onlyA.Key}
	take := func(sl service.Slot, member string) *service.SlotDenial {
		t.Helper()
		d, err := s.TakeSlots(ctx, t0, member, []service.Slot{sl})
		if err != nil {
			t.Fatalf("TakeSlots: %v", err)
		}
		return d
	}
	if take(onlyA, "m1") != nil || take(aB, "m2") != nil {
		t.Fatal("slot denied")
	}
	// bA moves m1 and m2 to b.
	if take(bA, "m3") != nil {
		t.Fatal("slot denied")
	}
	// aB releases m2, which is now under b.
	if err := s.ReleaseSlots(ctx, "m2", []service.Slot{aB}); err != nil {
		t.Fatalf("ReleaseSlots: %v", err)
	}
	// m1, m3 and a send by aB (which moves the window back to a) leave
	// one of 4 for a replica that knows only a; then bA finds it full.
	p := sendAs(rcpt(id("r")), right, t0)
	p.Slots = []service.Slot{aB}
	mustBegin(t, s, p, service.SendAccepted)
	if d := take(onlyA, "m4"); d != nil {
		t.Fatalf("the fourth slot denied: %+v (the released m2 still counts)", d)
	}
	p = sendAs(rcpt(id("r")), right, t0)
	p.Slots = []service.Slot{bA}
	mustBegin(t, s, p, service.SendSlotLimited)
	if d := take(aB, "m5"); d == nil {
		t.Fatal("a fifth slot taken in a window of 4")
	}

	// The per-IP verify window, filled under a, refuses under b.
	vbase := id("vip")
	vw := service.Window{Count: 2, Window: time.Hour}
	vA := &service.Slot{Limit: "verify_per_ip", Key: "vip:" + vbase + "/a", Bucket: bucketOf(vbase), Window: vw}
	vB := &service.Slot{Limit: "verify_per_ip", Key: "vip:" + vbase + "/b", Bucket: vA.Bucket, Previous: []string{vA.Key}, Window: vw}
	for i, slot := range []*service.Slot{vA, vB, vB} {
		r := newRotation()
		mustBegin(t, s, sendAs(r.onlyA(), rightA, t0), service.SendAccepted)
		rc := r.onlyA()
		if slot == vB {
			rc = r.bA()
		}
		v := verifyAs(rc, r, wrongA, wrongB, t0.Add(time.Duration(i)*time.Second))
		v.PerIP = slot
		want := service.VerifyMismatch
		if i == 2 {
			want = service.VerifyRateLimited
		}
		if res := mustVerify(t, s, v, want); want == service.VerifyRateLimited && !res.ByIP {
			t.Fatalf("refusal %+v does not name the IP's window", res)
		}
	}
}

// Two replicas in the middle of a rotation, each with the other's secret
// as previous, moving a recipient's state back and forth: every window
// counts exactly, a code sent by one verifies on the other, once.
func testRotationEitherWay(t *testing.T, s service.Store) {
	r := newRotation()
	replicas := []service.Recipient{r.aB(), r.bA()}
	hashes := func(rc service.Recipient) []byte {
		if rc.ID == r.a {
			return rightA
		}
		return rightB
	}
	p := sendAs(r.aB(), rightA, t0)
	p.MaxAttempts = 50
	mustBegin(t, s, p, service.SendAccepted)
	for i := range 20 {
		mustVerify(t, s, verifyAs(replicas[i%2], r, wrongA, wrongB, t0.Add(time.Duration(i)*time.Millisecond)), service.VerifyMismatch)
	}
	for _, rc := range replicas {
		mustVerify(t, s, verifyAs(rc, r, rightA, rightB, t0.Add(time.Second)), service.VerifyRateLimited)
	}

	r = newRotation()
	replicas = []service.Recipient{r.aB(), r.bA()}
	accepted := 0
	for i := range 10 {
		rc := replicas[i%2]
		q := sendAs(rc, hashes(rc), t0.Add(time.Duration(i)*time.Second))
		q.Cooldown, q.PerRecipient = 0, service.Window{Count: 4, Window: time.Hour}
		res, err := s.BeginSend(context.Background(), q)
		if err != nil {
			t.Fatalf("BeginSend: %v", err)
		}
		if res.Status == service.SendAccepted {
			accepted++
		}
	}
	if accepted != 4 {
		t.Fatalf("10 sends alternating between the replicas with a window of 4: %d accepted", accepted)
	}
	// The last accepted send was bA's (the 4th, i = 3): it verifies on aB,
	// once.
	mustVerify(t, s, verifyAs(r.aB(), r, rightA, rightB, t0.Add(11*time.Second)), service.VerifyOK)
	mustVerify(t, s, verifyAs(r.bA(), r, rightA, rightB, t0.Add(11*time.Second)), service.VerifyExpired)
}

// An undo by one replica finds what it undoes after another replica moved
// it under its own secret: the aborted send's code and cooldown go, and a
// code consumed by an attempt whose answer was lost is live again.
func testRotationUndo(t *testing.T, s service.Store) {
	ctx := context.Background()
	r := newRotation()
	p := sendAs(r.aB(), rightA, t0)
	p.PerRecipient = service.Window{Count: 1, Window: time.Hour}
	mustBegin(t, s, p, service.SendAccepted)
	// bA moves the recipient's state to b (a wrong code).
	mustVerify(t, s, verifyAs(r.bA(), r, wrongA, wrongB, t0), service.VerifyMismatch)
	if err := s.AbortSend(ctx, service.AbortParams{Recipient: r.aB(), Usage: "sign_in", VerificationID: p.VerificationID,
		Uncount: true, Tombstone: time.Minute, Now: t0}); err != nil {
		t.Fatalf("AbortSend: %v", err)
	}
	mustVerify(t, s, verifyAs(r.bA(), r, rightA, rightB, t0.Add(time.Second)), service.VerifyExpired)
	q := sendAs(r.bA(), rightB, t0.Add(2*time.Second))
	q.PerRecipient = p.PerRecipient
	mustBegin(t, s, q, service.SendAccepted) // neither the cooldown nor the count held it

	ok := verifyAs(r.aB(), r, rightA, rightB, t0.Add(3*time.Second))
	mustVerify(t, s, ok, service.VerifyOK)
	// bA moves the consumed code to b.
	mustVerify(t, s, verifyAs(r.bA(), r, rightA, rightB, t0.Add(4*time.Second)), service.VerifyExpired)
	if err := s.UndoVerify(ctx, service.UndoVerifyParams{Recipient: r.aB(), Usage: "sign_in", AttemptID: ok.AttemptID,
		Now: t0.Add(5 * time.Second), Tombstone: time.Minute}); err != nil {
		t.Fatalf("UndoVerify: %v", err)
	}
	mustVerify(t, s, verifyAs(r.bA(), r, rightA, rightB, t0.Add(6*time.Second)), service.VerifyOK)
}

// 200 verifications of the right code at once, from replicas before and
// in the middle of a rotation, of a code issued under the old secret:
// exactly one is OK.
func testConcurrentVerifyRotation(t *testing.T, s service.Store) {
	r := newRotation()
	mustBegin(t, s, sendAs(r.onlyA(), rightA, t0), service.SendAccepted)
	replicas := []service.Recipient{r.onlyA(), r.aB(), r.bA()}
	const n = 200
	var ok, expired atomic.Int64
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			res, err := s.Verify(context.Background(), verifyAs(replicas[i%3], r, rightA, rightB, t0))
			switch {
			case err != nil:
				t.Errorf("Verify: %v", err)
			case res.Status == service.VerifyOK:
				ok.Add(1)
			case res.Status == service.VerifyExpired:
				expired.Add(1)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 1 || expired.Load() != n-1 {
		t.Fatalf("%d parallel verifies of the right code during a rotation: %d OK, %d EXPIRED; want exactly 1 OK", n, ok.Load(), expired.Load())
	}
}

// deliver returns SendParams for a delivery of the caller's code
// (SendParams.NoCode): no code hash.
func deliver(rid, usage string, now time.Time) service.SendParams {
	p := send(rid, usage, nil, now)
	p.NoCode = true
	return p
}

// A delivery takes the cooldown, the per-recipient count, the slots and the
// idempotency record like any send, and stores nothing that verifies.
func testDeliveryStoresNoCode(t *testing.T, s service.Store) {
	rid := id("r")
	p := deliver(rid, "sign_in", t0)
	p.IdempotencyKey = idem(id("k"))
	p.Slots = []service.Slot{{Limit: "per_ip", Key: id("ip"), Window: service.Window{Count: 1, Window: time.Hour}}}
	mustBegin(t, s, p, service.SendAccepted)
	mustVerify(t, s, verify(rid, "sign_in", right, t0.Add(time.Second)), service.VerifyExpired)
	mustVerify(t, s, verify(rid, "sign_in", nil, t0.Add(time.Second)), service.VerifyExpired)
	// Its limits are taken: the cooldown, the slot and the idempotency
	// record, which is pending until the answer is stored.
	mustBegin(t, s, send(rid, "sign_in", right, t0.Add(2*time.Second)), service.SendCooldown)
	other := send(id("r"), "sign_in", right, t0.Add(2*time.Second))
	other.Slots = p.Slots
	mustBegin(t, s, other, service.SendSlotLimited)
	res, err := s.LookupSend(context.Background(), rcpt(rid), p.IdempotencyKey, p.Fingerprint)
	if err != nil || res.Status != service.SendInProgress {
		t.Fatalf("LookupSend after a delivery = %+v, %v; want in progress", res, err)
	}
}

// A delivery leaves a live code of the recipient and usage type alone: the
// code an earlier send stored still verifies.
func testDeliveryKeepsLiveCode(t *testing.T, s service.Store) {
	rid := id("r")
	mustBegin(t, s, send(rid, "sign_in", right, t0), service.SendAccepted)
	mustBegin(t, s, deliver(rid, "sign_in", t0.Add(2*time.Minute)), service.SendAccepted)
	mustVerify(t, s, verify(rid, "sign_in", right, t0.Add(2*time.Minute+time.Second)), service.VerifyOK)
}

// A delivery run again after its answer was lost counts once, although no
// code of its id is stored; its abort frees its cooldown.
func testDeliveryRerunAndAbort(t *testing.T, s service.Store) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		set  func(*service.SendParams)
	}{
		{"cooldown and window", func(*service.SendParams) {}},
		{"window only", func(p *service.SendParams) { p.Cooldown = 0 }},
		{"idempotency record only", func(p *service.SendParams) {
			p.Cooldown, p.PerRecipient = 0, service.Window{}
			p.IdempotencyKey = idem(id("k"))
		}},
	} {
		rid := id("r")
		p := deliver(rid, "sign_in", t0)
		p.PerRecipient = service.Window{Count: 2, Window: time.Hour}
		tc.set(&p)
		for range 3 {
			mustBegin(t, s, p, service.SendAccepted)
		}
		if p.PerRecipient.Enabled() {
			// Counted once: one more fits the window of 2.
			q := send(rid, "forgot_password", wrong, t0.Add(time.Second))
			q.PerRecipient = p.PerRecipient
			mustBegin(t, s, q, service.SendAccepted)
			q = send(rid, "register", wrong, t0.Add(2*time.Second))
			q.PerRecipient = p.PerRecipient
			mustBegin(t, s, q, service.SendRecipientLimited)
		}
		if err := s.AbortSend(ctx, service.AbortParams{
			Recipient: rcpt(rid), Usage: "sign_in", VerificationID: p.VerificationID, IdempotencyKey: p.IdempotencyKey, Now: t0,
		}); err != nil {
			t.Fatalf("%s: AbortSend: %v", tc.name, err)
		}
		// The cooldown is free again, and nothing verifies.
		q := send(rid, "sign_in", right, t0.Add(3*time.Second))
		mustBegin(t, s, q, service.SendAccepted)
		mustVerify(t, s, verify(rid, "sign_in", right, t0.Add(4*time.Second)), service.VerifyOK)
	}
}

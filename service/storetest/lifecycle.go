package storetest

import (
	"bytes"
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otpd/otpd/service"
)

// The hashes of further codes, for code.keep_previous.
var (
	codeA = bytes.Repeat([]byte{0x11}, 32)
	codeB = bytes.Repeat([]byte{0x22}, 32)
	codeC = bytes.Repeat([]byte{0x33}, 32)
	codeD = bytes.Repeat([]byte{0x44}, 32)
)

// lifecycleTests are the cases of code.keep_previous, CancelCode and
// CodeStatus.
var lifecycleTests = []struct {
	name string
	fn   func(t *testing.T, s service.Store)
}{
	{"KeepPreviousCodesVerify", testKeepPrevious},
	{"KeepPreviousSharesAttempts", testKeepPreviousAttempts},
	{"KeepPreviousOwnExpiry", testKeepPreviousExpiry},
	{"KeepPreviousAbortRestoresEarlierCodes", testKeepPreviousAbort},
	{"KeepPreviousSendRerun", testKeepPreviousRerun},
	{"KeepPreviousUndoVerify", testKeepPreviousUndoVerify},
	{"ConcurrentVerifyKeptCodesOneWinner", testConcurrentVerifyKept},
	{"CancelKillsEveryCode", testCancel},
	{"CancelAfterConsumeStopsUndo", testCancelConsumed},
	{"ConcurrentCancelAndVerifyOneWinner", testConcurrentCancelVerify},
	{"ConcurrentCancelsAndSends", testConcurrentCancelsSends},
	{"StatusReadsAndCountsNothing", testStatus},
	{"StatusAndCancelAcrossRotation", testStatusCancelRotation},
}

// keepSend is a send of hash at now that keeps n earlier codes, without a
// cooldown.
func keepSend(rid string, hash []byte, now time.Time, n int) service.SendParams {
	p := send(rid, "sign_in", hash, now)
	p.Cooldown, p.KeepPrevious = 0, n
	return p
}

func mustStatus(tb testing.TB, s service.Store, rc service.Recipient, now time.Time) service.CodeStatus {
	tb.Helper()
	st, err := s.CodeStatus(context.Background(), service.CodeParams{Recipient: rc, Usage: "sign_in", Now: now})
	if err != nil {
		tb.Fatalf("CodeStatus: %v", err)
	}
	return st
}

func mustCancel(tb testing.TB, s service.Store, rc service.Recipient, now time.Time, want bool) {
	tb.Helper()
	got, err := s.CancelCode(context.Background(), service.CodeParams{Recipient: rc, Usage: "sign_in", Now: now})
	if err != nil {
		tb.Fatalf("CancelCode: %v", err)
	}
	if got != want {
		tb.Fatalf("CancelCode = %v, want %v", got, want)
	}
}

// wantStatus checks the live flag, the valid codes and the attempts left.
func wantStatus(tb testing.TB, st service.CodeStatus, live bool, valid, attempts int) {
	tb.Helper()
	if st.Live != live || st.ValidCodes != valid || st.AttemptsRemaining != attempts {
		tb.Fatalf("status = live %v, %d valid codes, %d attempts left; want %v, %d, %d (%+v)",
			st.Live, st.ValidCodes, st.AttemptsRemaining, live, valid, attempts, st)
	}
}

// With keep_previous N, the last N codes verify beside the newest, once:
// the first right one consumes them all; older ones do not verify.
func testKeepPrevious(t *testing.T, s service.Store) {
	for _, tc := range []struct {
		name   string
		verify []byte
	}{{"newest", codeC}, {"previous", codeB}, {"oldest kept", codeA}} {
		rid := id("r")
		for i, h := range [][]byte{codeA, codeB, codeC} {
			mustBegin(t, s, keepSend(rid, h, t0.Add(time.Duration(i)*time.Second), 2), service.SendAccepted)
		}
		wantStatus(t, mustStatus(t, s, rcpt(rid), t0.Add(3*time.Second)), true, 3, 3)
		mustVerify(t, s, verify(rid, "sign_in", tc.verify, t0.Add(4*time.Second)), service.VerifyOK)
		for _, h := range [][]byte{codeA, codeB, codeC} {
			mustVerify(t, s, verify(rid, "sign_in", h, t0.Add(5*time.Second)), service.VerifyExpired)
		}
	}
	// keep_previous 1: the third send pushes the first code out.
	rid := id("r")
	for i, h := range [][]byte{codeA, codeB, codeC} {
		mustBegin(t, s, keepSend(rid, h, t0.Add(time.Duration(i)*time.Second), 1), service.SendAccepted)
	}
	wantStatus(t, mustStatus(t, s, rcpt(rid), t0.Add(3*time.Second)), true, 2, 3)
	mustVerify(t, s, verify(rid, "sign_in", codeA, t0.Add(4*time.Second)), service.VerifyMismatch)
	mustVerify(t, s, verify(rid, "sign_in", codeB, t0.Add(5*time.Second)), service.VerifyOK)
	// keep_previous 0 replaces, as before.
	rid = id("r")
	mustBegin(t, s, keepSend(rid, codeA, t0, 0), service.SendAccepted)
	mustBegin(t, s, keepSend(rid, codeB, t0.Add(time.Second), 0), service.SendAccepted)
	mustVerify(t, s, verify(rid, "sign_in", codeA, t0.Add(2*time.Second)), service.VerifyMismatch)
	mustVerify(t, s, verify(rid, "sign_in", codeB, t0.Add(3*time.Second)), service.VerifyOK)
}

// Kept codes share one attempt counter, which a resend does not reset while
// they are live: guesses before and after a resend add up. Once the
// attempts are used up every kept code is dead, and the next send starts
// afresh with every attempt, so that the user's resend works.
func testKeepPreviousAttempts(t *testing.T, s service.Store) {
	rid := id("r")
	mustBegin(t, s, keepSend(rid, codeA, t0, 2), service.SendAccepted) // 3 attempts
	mustVerify(t, s, verify(rid, "sign_in", wrong, t0.Add(time.Second)), service.VerifyMismatch)
	mustVerify(t, s, verify(rid, "sign_in", wrong, t0.Add(2*time.Second)), service.VerifyMismatch)
	mustBegin(t, s, keepSend(rid, codeB, t0.Add(3*time.Second), 2), service.SendAccepted)
	wantStatus(t, mustStatus(t, s, rcpt(rid), t0.Add(4*time.Second)), true, 2, 1)
	res := mustVerify(t, s, verify(rid, "sign_in", wrong, t0.Add(5*time.Second)), service.VerifyMismatch)
	if res.AttemptsRemaining != 0 {
		t.Fatalf("third wrong code across a resend: %d attempts left, want 0", res.AttemptsRemaining)
	}
	mustVerify(t, s, verify(rid, "sign_in", codeA, t0.Add(6*time.Second)), service.VerifyTooManyAttempts)
	mustVerify(t, s, verify(rid, "sign_in", codeB, t0.Add(6*time.Second)), service.VerifyTooManyAttempts)
	wantStatus(t, mustStatus(t, s, rcpt(rid), t0.Add(6*time.Second)), false, 0, 0)
	// The resend after the attempts ran out: a fresh code, alone.
	mustBegin(t, s, keepSend(rid, codeC, t0.Add(7*time.Second), 2), service.SendAccepted)
	wantStatus(t, mustStatus(t, s, rcpt(rid), t0.Add(8*time.Second)), true, 1, 3)
	mustVerify(t, s, verify(rid, "sign_in", codeB, t0.Add(9*time.Second)), service.VerifyMismatch)
	mustVerify(t, s, verify(rid, "sign_in", codeC, t0.Add(10*time.Second)), service.VerifyOK)

	// A consumed code is not kept either.
	rid = id("r")
	mustBegin(t, s, keepSend(rid, codeA, t0, 2), service.SendAccepted)
	mustVerify(t, s, verify(rid, "sign_in", codeA, t0.Add(time.Second)), service.VerifyOK)
	mustBegin(t, s, keepSend(rid, codeB, t0.Add(2*time.Second), 2), service.SendAccepted)
	wantStatus(t, mustStatus(t, s, rcpt(rid), t0.Add(3*time.Second)), true, 1, 3)
	mustVerify(t, s, verify(rid, "sign_in", codeA, t0.Add(4*time.Second)), service.VerifyMismatch)
}

// A kept code keeps its own expiry: it does not get the newer code's.
func testKeepPreviousExpiry(t *testing.T, s service.Store) {
	rid := id("r")
	a := keepSend(rid, codeA, t0, 1)
	mustBegin(t, s, a, service.SendAccepted)
	mustBegin(t, s, keepSend(rid, codeB, t0.Add(5*time.Minute), 1), service.SendAccepted)
	wantStatus(t, mustStatus(t, s, rcpt(rid), t0.Add(a.TTL-2*slack)), true, 2, 3)
	after := t0.Add(a.TTL + 2*slack)
	st := mustStatus(t, s, rcpt(rid), after)
	wantStatus(t, st, true, 1, 3)
	near(t, "ExpiresAt (the newest code's)", st.ExpiresAt.Sub(t0), 5*time.Minute+a.TTL)
	mustVerify(t, s, verify(rid, "sign_in", codeA, after), service.VerifyMismatch)
	mustVerify(t, s, verify(rid, "sign_in", codeB, after.Add(time.Second)), service.VerifyOK)
}

// An aborted send gives back the codes it kept: the newest of them is the
// latest again, with the attempts used so far. A send whose code a newer
// send pushed among the kept ones takes only its own code with it.
func testKeepPreviousAbort(t *testing.T, s service.Store) {
	ctx := context.Background()
	abort := func(p service.SendParams, at time.Time) {
		t.Helper()
		if err := s.AbortSend(ctx, service.AbortParams{Recipient: p.Recipient, Usage: p.Usage, VerificationID: p.VerificationID,
			CodeHash: p.CodeHash, Uncount: true, Tombstone: time.Minute, Now: at}); err != nil {
			t.Fatalf("AbortSend: %v", err)
		}
	}
	rid := id("r")
	mustBegin(t, s, keepSend(rid, codeA, t0, 2), service.SendAccepted)
	mustVerify(t, s, verify(rid, "sign_in", wrong, t0.Add(time.Second)), service.VerifyMismatch)
	mustBegin(t, s, keepSend(rid, codeB, t0.Add(2*time.Second), 2), service.SendAccepted)
	c := keepSend(rid, codeC, t0.Add(3*time.Second), 2)
	mustBegin(t, s, c, service.SendAccepted)
	abort(c, t0.Add(4*time.Second))
	abort(c, t0.Add(4*time.Second)) // an abort may run twice
	st := mustStatus(t, s, rcpt(rid), t0.Add(5*time.Second))
	wantStatus(t, st, true, 2, 2)
	near(t, "ExpiresAt (B's, the latest again)", st.ExpiresAt.Sub(t0), 2*time.Second+c.TTL)
	mustVerify(t, s, verify(rid, "sign_in", codeC, t0.Add(6*time.Second)), service.VerifyMismatch)
	mustVerify(t, s, verify(rid, "sign_in", codeA, t0.Add(7*time.Second)), service.VerifyOK)

	// B's delivery fails after C was sent: B goes, A and C stay.
	rid = id("r")
	mustBegin(t, s, keepSend(rid, codeA, t0, 2), service.SendAccepted)
	b := keepSend(rid, codeB, t0.Add(time.Second), 2)
	mustBegin(t, s, b, service.SendAccepted)
	mustBegin(t, s, keepSend(rid, codeC, t0.Add(2*time.Second), 2), service.SendAccepted)
	abort(b, t0.Add(3*time.Second))
	wantStatus(t, mustStatus(t, s, rcpt(rid), t0.Add(4*time.Second)), true, 2, 3)
	mustVerify(t, s, verify(rid, "sign_in", codeB, t0.Add(5*time.Second)), service.VerifyMismatch)
	mustVerify(t, s, verify(rid, "sign_in", codeA, t0.Add(6*time.Second)), service.VerifyOK)

	// The abort of the only code leaves nothing.
	rid = id("r")
	a := keepSend(rid, codeA, t0, 2)
	mustBegin(t, s, a, service.SendAccepted)
	abort(a, t0.Add(time.Second))
	wantStatus(t, mustStatus(t, s, rcpt(rid), t0.Add(2*time.Second)), false, 0, 0)
	mustVerify(t, s, verify(rid, "sign_in", codeA, t0.Add(3*time.Second)), service.VerifyExpired)
}

// A send run again after its answer was lost keeps nothing twice.
func testKeepPreviousRerun(t *testing.T, s service.Store) {
	rid := id("r")
	mustBegin(t, s, keepSend(rid, codeA, t0, 3), service.SendAccepted)
	b := keepSend(rid, codeB, t0.Add(time.Second), 3)
	for range 3 {
		mustBegin(t, s, b, service.SendAccepted)
	}
	wantStatus(t, mustStatus(t, s, rcpt(rid), t0.Add(2*time.Second)), true, 2, 3)
}

// An undone verification gives back every kept code it consumed.
func testKeepPreviousUndoVerify(t *testing.T, s service.Store) {
	rid := id("r")
	mustBegin(t, s, keepSend(rid, codeA, t0, 2), service.SendAccepted)
	mustBegin(t, s, keepSend(rid, codeB, t0.Add(time.Second), 2), service.SendAccepted)
	ok := verify(rid, "sign_in", codeA, t0.Add(2*time.Second))
	mustVerify(t, s, ok, service.VerifyOK)
	if err := s.UndoVerify(context.Background(), service.UndoVerifyParams{Recipient: ok.Recipient, Usage: ok.Usage,
		AttemptID: ok.AttemptID, Now: t0.Add(3 * time.Second), Tombstone: time.Minute}); err != nil {
		t.Fatalf("UndoVerify: %v", err)
	}
	wantStatus(t, mustStatus(t, s, rcpt(rid), t0.Add(4*time.Second)), true, 2, 3)
	mustVerify(t, s, verify(rid, "sign_in", codeB, t0.Add(5*time.Second)), service.VerifyOK)
}

// 200 verifications at once, each of one of four valid codes (the newest
// and three kept): exactly one is OK, the rest find no live code.
func testConcurrentVerifyKept(t *testing.T, s service.Store) {
	rid := id("r")
	codes := [][]byte{codeA, codeB, codeC, codeD}
	for i, h := range codes {
		mustBegin(t, s, keepSend(rid, h, t0.Add(time.Duration(i)*time.Second), 3), service.SendAccepted)
	}
	const n = 200
	var ok, expired atomic.Int64
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			res, err := s.Verify(context.Background(), verify(rid, "sign_in", codes[i%len(codes)], t0.Add(5*time.Second)))
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
		t.Fatalf("%d parallel verifies of 4 valid codes: %d OK, %d EXPIRED; want exactly 1 OK", n, ok.Load(), expired.Load())
	}
}

// CancelCode kills the code and every kept one, leaves the cooldown and
// the windows, and is idempotent.
func testCancel(t *testing.T, s service.Store) {
	rid := id("r")
	p := send(rid, "sign_in", codeA, t0)
	p.KeepPrevious = 2
	p.PerRecipient = service.Window{Count: 3, Window: time.Hour}
	mustBegin(t, s, p, service.SendAccepted)
	q := keepSend(rid, codeB, t0.Add(time.Second), 2)
	q.PerRecipient = p.PerRecipient
	mustBegin(t, s, q, service.SendAccepted)
	other := send(rid, "register", right, t0)
	other.PerRecipient = service.Window{}
	mustBegin(t, s, other, service.SendAccepted)
	mustCancel(t, s, rcpt(rid), t0.Add(2*time.Second), true)
	mustCancel(t, s, rcpt(rid), t0.Add(3*time.Second), false)
	mustVerify(t, s, verify(rid, "sign_in", codeA, t0.Add(4*time.Second)), service.VerifyExpired)
	mustVerify(t, s, verify(rid, "sign_in", codeB, t0.Add(4*time.Second)), service.VerifyExpired)
	st := mustStatus(t, s, rcpt(rid), t0.Add(4*time.Second))
	wantStatus(t, st, false, 0, 0)
	// The cooldown of the first send still runs, and its window counts.
	near(t, "ResendAfter after a cancel", st.ResendAfter.Sub(t0), p.Cooldown)
	res := mustBegin(t, s, send(rid, "sign_in", codeC, t0.Add(5*time.Second)), service.SendCooldown)
	near(t, "RetryAfter", res.RetryAfter, p.Cooldown-5*time.Second)
	r := keepSend(rid, codeC, t0.Add(6*time.Second), 2)
	r.PerRecipient = p.PerRecipient
	mustBegin(t, s, r, service.SendAccepted)
	r = keepSend(rid, codeD, t0.Add(7*time.Second), 2)
	r.PerRecipient = p.PerRecipient
	mustBegin(t, s, r, service.SendRecipientLimited)
	// The other usage type's code is untouched.
	mustVerify(t, s, verify(rid, "register", right, t0.Add(8*time.Second)), service.VerifyOK)
	// Nothing to cancel for a recipient without a code.
	mustCancel(t, s, rcpt(id("r")), t0, false)
}

// A code consumed by a verification whose answer was lost is cancelled
// too: the undo of that verification no longer brings it back.
func testCancelConsumed(t *testing.T, s service.Store) {
	rid := id("r")
	mustBegin(t, s, send(rid, "sign_in", right, t0), service.SendAccepted)
	ok := verify(rid, "sign_in", right, t0.Add(time.Second))
	mustVerify(t, s, ok, service.VerifyOK)
	mustCancel(t, s, rcpt(rid), t0.Add(2*time.Second), false)
	if err := s.UndoVerify(context.Background(), service.UndoVerifyParams{Recipient: ok.Recipient, Usage: ok.Usage,
		AttemptID: ok.AttemptID, Now: t0.Add(3 * time.Second), Tombstone: time.Minute}); err != nil {
		t.Fatalf("UndoVerify: %v", err)
	}
	mustVerify(t, s, verify(rid, "sign_in", right, t0.Add(4*time.Second)), service.VerifyExpired)
	// A dead code (attempts used up) is not reported as cancelled.
	rid = id("r")
	mustBegin(t, s, send(rid, "sign_in", right, t0), service.SendAccepted)
	for range 3 {
		mustVerify(t, s, verify(rid, "sign_in", wrong, t0), service.VerifyMismatch)
	}
	mustCancel(t, s, rcpt(rid), t0.Add(time.Second), false)
}

// Cancels and verifications of the right code race: exactly one wins,
// either a verification (OK) or a cancel (cancelled true).
func testConcurrentCancelVerify(t *testing.T, s service.Store) {
	for range 5 {
		rid := id("r")
		mustBegin(t, s, keepSend(rid, codeA, t0, 1), service.SendAccepted)
		mustBegin(t, s, keepSend(rid, codeB, t0.Add(time.Second), 1), service.SendAccepted)
		const n = 100
		var wins atomic.Int64
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				at := t0.Add(2 * time.Second)
				if i%2 == 0 {
					got, err := s.CancelCode(context.Background(), service.CodeParams{Recipient: rcpt(rid), Usage: "sign_in", Now: at})
					if err != nil {
						t.Errorf("CancelCode: %v", err)
					} else if got {
						wins.Add(1)
					}
					return
				}
				h := codeA
				if i%4 == 1 {
					h = codeB
				}
				res, err := s.Verify(context.Background(), verify(rid, "sign_in", h, at))
				if err != nil {
					t.Errorf("Verify: %v", err)
				} else if res.Status == service.VerifyOK {
					wins.Add(1)
				}
			})
		}
		wg.Wait()
		if wins.Load() != 1 {
			t.Fatalf("%d parallel cancels and right codes: %d won, want exactly 1", n, wins.Load())
		}
	}
}

// Sends and cancels race: whatever the order, the store ends consistent:
// at most 1 + keep_previous codes, and the one OK afterwards consumes all.
func testConcurrentCancelsSends(t *testing.T, s service.Store) {
	rid := id("r")
	const n = 60
	hashes := make([][]byte, n)
	var wg sync.WaitGroup
	for i := range n {
		hashes[i] = bytes.Repeat([]byte{byte(i + 1)}, 32)
		wg.Go(func() {
			at := t0.Add(time.Duration(i) * time.Millisecond)
			if i%3 == 0 {
				if _, err := s.CancelCode(context.Background(), service.CodeParams{Recipient: rcpt(rid), Usage: "sign_in", Now: at}); err != nil {
					t.Errorf("CancelCode: %v", err)
				}
				return
			}
			p := keepSend(rid, hashes[i], at, 2)
			p.PerRecipient = service.Window{}
			if _, err := s.BeginSend(context.Background(), p); err != nil {
				t.Errorf("BeginSend: %v", err)
			}
		})
	}
	wg.Wait()
	at := t0.Add(time.Second)
	st := mustStatus(t, s, rcpt(rid), at)
	if st.ValidCodes > 3 || (st.Live != (st.ValidCodes > 0)) {
		t.Fatalf("after racing sends and cancels: %+v; want at most 3 valid codes", st)
	}
	// Another send settles it: then exactly one code of the set verifies.
	mustBegin(t, s, keepSend(rid, codeA, at, 2), service.SendAccepted)
	mustVerify(t, s, verify(rid, "sign_in", codeA, at.Add(time.Second)), service.VerifyOK)
	for _, h := range hashes {
		mustVerify(t, s, verify(rid, "sign_in", h, at.Add(2*time.Second)), service.VerifyExpired)
	}
}

// CodeStatus tells what VerifyCode and SendCode would find, and counts
// nothing: asked many times, the attempts and windows stay as they are.
func testStatus(t *testing.T, s service.Store) {
	rid := id("r")
	st := mustStatus(t, s, rcpt(rid), t0)
	wantStatus(t, st, false, 0, 0)
	if !st.ExpiresAt.IsZero() || !st.ResendAfter.IsZero() {
		t.Fatalf("status of a recipient without a code = %+v, want zero times", st)
	}
	p := send(rid, "sign_in", right, t0)
	mustBegin(t, s, p, service.SendAccepted)
	for range 30 {
		st = mustStatus(t, s, rcpt(rid), t0.Add(time.Second))
	}
	wantStatus(t, st, true, 1, 3)
	near(t, "ExpiresAt", st.ExpiresAt.Sub(t0), p.TTL)
	near(t, "ResendAfter", st.ResendAfter.Sub(t0), p.Cooldown)
	mustVerify(t, s, verify(rid, "sign_in", wrong, t0.Add(2*time.Second)), service.VerifyMismatch)
	wantStatus(t, mustStatus(t, s, rcpt(rid), t0.Add(3*time.Second)), true, 1, 2)
	// Past the cooldown: no resend_after; the code is still live.
	st = mustStatus(t, s, rcpt(rid), t0.Add(p.Cooldown+slack))
	wantStatus(t, st, true, 1, 2)
	if !st.ResendAfter.IsZero() {
		t.Fatalf("ResendAfter after the cooldown = %v, want zero", st.ResendAfter)
	}
	// Consumed: not live.
	mustVerify(t, s, verify(rid, "sign_in", right, t0.Add(p.Cooldown+2*slack)), service.VerifyOK)
	wantStatus(t, mustStatus(t, s, rcpt(rid), t0.Add(p.Cooldown+3*slack)), false, 0, 0)
	// Expired: not live. The cooldown shows without a live code.
	rid = id("r")
	q := send(rid, "sign_in", right, t0)
	q.TTL = 30 * time.Second
	mustBegin(t, s, q, service.SendAccepted)
	st = mustStatus(t, s, rcpt(rid), t0.Add(q.TTL+slack))
	wantStatus(t, st, false, 0, 0)
	near(t, "ResendAfter without a live code", st.ResendAfter.Sub(t0), q.Cooldown)
}

// CancelCode and CodeStatus find a code issued under a previous secret,
// whichever replica asks.
func testStatusCancelRotation(t *testing.T, s service.Store) {
	r := newRotation()
	p := sendAs(r.onlyA(), rightA, t0)
	mustBegin(t, s, p, service.SendAccepted)
	st := mustStatus(t, s, r.bA(), t0.Add(time.Second))
	wantStatus(t, st, true, 1, 3)
	near(t, "ResendAfter", st.ResendAfter.Sub(t0), p.Cooldown)
	mustCancel(t, s, r.bA(), t0.Add(2*time.Second), true)
	mustVerify(t, s, verifyAs(r.aB(), r, rightA, rightB, t0.Add(3*time.Second)), service.VerifyExpired)
	mustVerify(t, s, verifyAs(r.onlyA(), r, rightA, rightB, t0.Add(3*time.Second)), service.VerifyExpired)
}

package service

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"
)

// A store call whose answer is lost (a timeout, a reset connection, a
// stalled Redis) may or may not have been applied. Every store call is
// idempotent per id (the verification id of a send, the attempt id of a
// verification), so the service asks again with the same ids, with short
// pauses, until the call's deadline: a stall shorter than the deadline
// costs latency and nothing else. When it gives up, the call answers
// UNAVAILABLE and an undo runs in the background, retried until the store
// answers: a send's code, cooldown and per-recipient count go and a
// verification's consumed code comes back (nobody was told OK), each
// leaving a tombstone that turns a late copy of the call (one still queued
// in a stalled Redis) into a no-op. So an unknown outcome blocks nobody.
const (
	// retryPause is the first pause between two attempts of a call; it
	// doubles up to retryPauseMax.
	retryPause    = 20 * time.Millisecond
	retryPauseMax = 250 * time.Millisecond
	// verifyTimeout bounds a VerifyCode whose caller's deadline is later
	// or absent: long enough to ride out a failover or a fork stall of a
	// few seconds, short enough for a user at a sign-in form.
	verifyTimeout = 5 * time.Second
	// undoLifetime bounds how long an undo keeps retrying. A store that
	// stays away longer has usually lost its data (a restart) or lets the
	// cooldown expire (60s) before the undo would matter.
	undoLifetime = time.Minute
	// consumedGrace is how long a consumed code stays in the store, marked,
	// for a re-run of its attempt and for an undo: longer than an undo
	// lives.
	consumedGrace = undoLifetime + time.Minute
	// tombstoneTTL is how long the store refuses a late copy of an undone
	// call: as long as a copy can arrive.
	tombstoneTTL = LateCopyTTL
	// maxUndos bounds the undos in flight; beyond it an undo is dropped
	// and logged.
	maxUndos = 1024
)

// retryStore runs call until it succeeds, fails for good or ctx ends. A
// failure whose outcome is unknown (ErrStoreUnavailable without
// ErrNotApplied: the store's answer was lost) is retried with the same ids
// after a short pause. unknown reports whether any failed attempt may have
// been applied: after an error the caller undoes the call; after a success
// a late copy of an earlier attempt may still arrive.
func retryStore(ctx context.Context, call func(context.Context) error) (unknown bool, err error) {
	pause := retryPause
	for {
		err = call(ctx)
		if err == nil {
			return unknown, nil
		}
		applied := !errors.Is(err, ErrNotApplied)
		unknown = unknown || applied
		if !applied || !errors.Is(err, ErrStoreUnavailable) || ctx.Err() != nil {
			return unknown, err
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return unknown, err
		case <-t.C:
		}
		pause = min(2*pause, retryPauseMax)
	}
}

// undoer runs undos in the background: bounded in number and in lifetime,
// retried until the store answers, stopped by Close.
type undoer struct {
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	n      int           // undos in flight
	idle   chan struct{} // closed while n is 0
	closed bool
}

func newUndoer() *undoer {
	ctx, cancel := context.WithCancel(context.Background())
	idle := make(chan struct{})
	close(idle)
	return &undoer{ctx: ctx, cancel: cancel, idle: idle}
}

// start runs undo in the background until it succeeds or its lifetime
// ends; what names it in logs.
func (u *undoer) start(log callLog, what string, undo func(context.Context) error) {
	u.mu.Lock()
	if u.closed || u.n >= maxUndos {
		closed := u.closed
		u.mu.Unlock()
		reason := "too many undos in flight"
		if closed {
			reason = "shutting down"
		}
		log.ErrorContext(u.ctx, what+" dropped ("+reason+"): what the call left stays until it expires")
		return
	}
	if u.n == 0 {
		u.idle = make(chan struct{})
	}
	u.n++
	u.mu.Unlock()
	go func() {
		defer u.done()
		ctx, cancel := context.WithTimeout(u.ctx, undoLifetime)
		defer cancel()
		pause := 2 * retryPause
		for attempt := 1; ; attempt++ {
			err := undo(ctx)
			if err == nil {
				log.InfoContext(ctx, what+" done", slog.Int("attempts", attempt))
				return
			}
			if ctx.Err() != nil {
				log.ErrorContext(u.ctx, what+" gave up: what the call left stays until it expires", slog.Int("attempts", attempt), slog.Any("error", err))
				return
			}
			t := time.NewTimer(pause)
			select {
			case <-ctx.Done():
				t.Stop()
			case <-t.C:
			}
			pause = min(2*pause, time.Second)
		}
	}()
}

func (u *undoer) done() {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.n--; u.n == 0 {
		close(u.idle)
	}
}

// wait blocks until no undo is in flight or ctx ends.
func (u *undoer) wait(ctx context.Context) error {
	u.mu.Lock()
	idle := u.idle
	u.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// close starts no more undos, waits for those in flight until ctx ends,
// then cancels them and waits for them to return.
func (u *undoer) close(ctx context.Context) error {
	u.mu.Lock()
	u.closed = true
	u.mu.Unlock()
	err := u.wait(ctx)
	u.cancel()
	_ = u.wait(context.Background())
	return err
}

// Wait blocks until the undos in flight (clean-up after store calls whose
// answer was lost) are done, or ctx ends.
func (s *Service) Wait(ctx context.Context) error { return s.undo.wait(ctx) }

// Close stops the service's background work: it starts no more undos,
// lets those in flight finish until ctx ends, then cancels them. Call it
// once the gRPC server has stopped, before closing the store. What an
// undo could not do stays in the store until it expires (a cooldown, an
// undelivered code).
func (s *Service) Close(ctx context.Context) error { return s.undo.close(ctx) }

// undoSend undoes a send whose BeginSend failed. When an attempt may have
// been applied, the send's code and cooldown go, its per-recipient count
// too, and a tombstone stops a late copy; its shared slots are given back
// in every case (on Redis Cluster they are taken before the script).
func (s *Service) undoSend(ctx context.Context, log callLog, p SendParams, unknown bool) {
	abort := AbortParams{
		Recipient: p.Recipient, Usage: p.Usage, VerificationID: p.VerificationID, CodeHash: p.CodeHash,
		IdempotencyKey: p.IdempotencyKey, Uncount: true, Tombstone: tombstoneTTL, Now: p.Now,
	}
	release := func(ctx context.Context) error { return s.store.ReleaseSlots(ctx, p.VerificationID, p.Slots) }
	if !unknown {
		if len(p.Slots) == 0 {
			return
		}
		// Nothing else to undo, and the store refused the call rather
		// than lost it: giving the slots back now usually works.
		dctx, cancel := detached(ctx)
		err := release(dctx)
		cancel()
		if err == nil {
			return
		}
		s.undo.start(log, "release send slots", release)
		return
	}
	s.undo.start(log, "undo send", func(ctx context.Context) error {
		// The abort first: on a single node a late copy of the send takes
		// its slots only when no tombstone stops it.
		if err := s.store.AbortSend(ctx, abort); err != nil {
			return err
		}
		return release(ctx)
	})
}

// undoVerify undoes a verification whose outcome is unknown: a code its
// attempt consumed is live again, so that the user's retry verifies.
func (s *Service) undoVerify(log callLog, p VerifyParams) {
	s.undo.start(log, "undo verify", func(ctx context.Context) error {
		return s.store.UndoVerify(ctx, UndoVerifyParams{
			Recipient: p.Recipient, Usage: p.Usage, AttemptID: p.AttemptID,
			Now: s.now(), Tombstone: tombstoneTTL,
		})
	})
}

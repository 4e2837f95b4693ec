package redisstore

import (
	"context"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// batcher sends the scripts of concurrent calls to Redis together, as one
// pipeline: the calls that queue while earlier pipelines are out leave in
// the next one, with one write and one read on the client and on the
// server for all of them instead of a round trip each. Under load that is
// most of the Redis client's cost per call (a write and a read system
// call, a goroutine woken per reply) and a part of Redis's own (its event
// loop's reads and writes); a lone call leaves at once, alone, as
// before.
//
// Nothing runs in the background: the call that finds fewer than
// maxFlying pipelines out sends the queue, its own call included, and
// when its pipeline is answered hands what queued meanwhile to a new
// goroutine. A call whose context ends before its pipeline leaves is not
// sent; one that ends while it is out returns the context's error, its
// outcome unknown, as a call that timed out always was.
type batcher struct {
	rdb    redis.UniversalClient
	mu     sync.Mutex
	queue  []*pending
	flying int // pipelines out, or being sent
}

// pending is a queued call: cmd is written by the flush only, and read by
// the caller only after done is closed.
type pending struct {
	ctx  context.Context
	cmd  *redis.Cmd
	done chan struct{}
}

const (
	// maxFlying pipelines may be out at once: with one, a call that
	// queues just after a pipeline left waits for it to come back; with
	// two, it leaves as soon as the first is answered or a second may go.
	maxFlying = 2
	// maxBatch calls at most in one pipeline (a send's script is about a
	// kilobyte): a longer queue leaves in several.
	maxBatch = 128
)

// process runs cmd, alone or in a pipeline with other calls', and returns
// its result.
func (b *batcher) process(ctx context.Context, cmd *redis.Cmd) (any, error) {
	if err := b.processAll(ctx, cmd); err != nil {
		return nil, err
	}
	return cmd.Result()
}

// processAll runs cmds, independent of one another, alone or in
// pipelines with other calls', and returns once each has its result; or
// with ctx's error when ctx ends first, the commands sent or about to be,
// their outcome unknown.
func (b *batcher) processAll(ctx context.Context, cmds ...*redis.Cmd) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	ps := make([]*pending, len(cmds))
	for i, cmd := range cmds {
		ps[i] = &pending{ctx: ctx, cmd: cmd, done: make(chan struct{})}
	}
	b.mu.Lock()
	b.queue = append(b.queue, ps...)
	if b.flying < maxFlying {
		b.flying++
		batch := b.take()
		b.mu.Unlock()
		b.flush(batch)
	} else {
		b.mu.Unlock()
	}
	for _, p := range ps {
		select {
		case <-p.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// take removes up to maxBatch calls from the queue; b.mu is held.
func (b *batcher) take() []*pending {
	n := min(len(b.queue), maxBatch)
	batch := make([]*pending, n)
	copy(batch, b.queue)
	rest := copy(b.queue, b.queue[n:])
	clear(b.queue[rest:])
	b.queue = b.queue[:rest]
	return batch
}

// flush sends batch, then hands the calls queued meanwhile to another
// goroutine, so that the caller's own call returns.
func (b *batcher) flush(batch []*pending) {
	b.send(batch)
	b.mu.Lock()
	if len(b.queue) == 0 {
		b.flying--
		b.mu.Unlock()
		return
	}
	next := b.take()
	b.mu.Unlock()
	go b.flush(next)
}

// send runs the calls of batch whose context has not ended, one alone as a
// plain command, more in one pipeline, and marks every call done.
func (b *batcher) send(batch []*pending) {
	live := batch[:0] // filtered in place: batch is not read again
	for _, p := range batch {
		if err := p.ctx.Err(); err != nil {
			p.cmd.SetErr(err)
			close(p.done)
			continue
		}
		live = append(live, p)
	}
	switch len(live) {
	case 0:
	case 1:
		_ = b.rdb.Process(live[0].ctx, noRetry{live[0].cmd})
	default:
		ctx, cancel := batchContext(live)
		_, _ = b.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
			for _, p := range live {
				_ = pipe.Process(ctx, noRetry{p.cmd})
			}
			return nil
		})
		cancel()
	}
	for _, p := range live {
		close(p.done)
	}
}

// batchContext is the context of a pipeline: none of its callers' can be
// cancelled under the others, so it ends at the latest of their deadlines,
// or, when one has none, with the client's own timeouts.
func batchContext(batch []*pending) (context.Context, context.CancelFunc) {
	var latest time.Time
	for _, p := range batch {
		d, ok := p.ctx.Deadline()
		if !ok {
			return context.WithCancel(context.Background())
		}
		if d.After(latest) {
			latest = d
		}
	}
	return context.WithDeadline(context.Background(), latest)
}

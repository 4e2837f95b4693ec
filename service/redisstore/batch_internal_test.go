package redisstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/otpd/otpd/internal/redistest"
	"github.com/otpd/otpd/service"
)

// pipelineSizes counts the scripts the batcher sends (EVALSHA; the
// connections' own set-up aside): alone, and the size of each pipeline.
type pipelineSizes struct {
	mu     sync.Mutex
	alone  int
	sizes  []int
	before func() // runs before each pipeline is sent, when set
}

func (h *pipelineSizes) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *pipelineSizes) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == "evalsha" {
			h.mu.Lock()
			h.alone++
			h.mu.Unlock()
		}
		return next(ctx, cmd)
	}
}
func (h *pipelineSizes) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		n := 0
		for _, cmd := range cmds {
			if cmd.Name() == "evalsha" {
				n++
			}
		}
		if n == 0 {
			return next(ctx, cmds)
		}
		h.mu.Lock()
		h.sizes = append(h.sizes, n)
		before := h.before
		h.mu.Unlock()
		if before != nil {
			before()
		}
		return next(ctx, cmds)
	}
}

// echo is a script that answers its argument, after INCR of its key.
var echo = newScript(guarded + `redis.call('INCR', KEYS[1]); return ARGV[1]`)

// loadEcho caches echo on the server, so that every call runs by SHA.
func loadEcho(t *testing.T, rdb *redis.Client) {
	t.Helper()
	if err := rdb.ScriptLoad(context.Background(), echo.src).Err(); err != nil {
		t.Fatal(err)
	}
}

// countedStore is a store on a redis-server of its own whose scripts are
// counted (pipelineSizes, before) and echo cached.
func countedStore(t *testing.T, before func()) (*Store, *redis.Client, *pipelineSizes) {
	t.Helper()
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	loadEcho(t, rdb)
	sizes := &pipelineSizes{before: before}
	rdb.AddHook(sizes)
	return New(rdb, ""), rdb, sizes
}

// Many calls at once: each gets its own answer, none is lost or run twice,
// and they leave in pipelines of several calls, never more than maxBatch.
func TestBatcherConcurrentCalls(t *testing.T) {
	t.Parallel()
	// Slow every pipeline a little, so that calls queue behind it.
	s, rdb, sizes := countedStore(t, func() { time.Sleep(2 * time.Millisecond) })
	const n = 400
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			want := fmt.Sprint("answer-", i)
			val, err := s.run(context.Background(), echo, []string{fmt.Sprint("k", i%7)}, want)
			if err != nil || val != want {
				errs <- fmt.Errorf("call %d: %v, %v; want %s", i, val, err, want)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	total := 0
	for i := range 7 {
		v, err := rdb.Get(context.Background(), fmt.Sprint("k", i)).Int()
		if err != nil {
			t.Fatal(err)
		}
		total += v
	}
	if total != n {
		t.Errorf("the scripts ran %d times, want %d", total, n)
	}
	sizes.mu.Lock()
	defer sizes.mu.Unlock()
	sent, most := sizes.alone, 0
	for _, k := range sizes.sizes {
		sent += k
		most = max(most, k)
	}
	if sent != n {
		t.Errorf("%d calls sent (%d alone, pipelines %v), want %d", sent, sizes.alone, sizes.sizes, n)
	}
	if most < 2 || most > maxBatch {
		t.Errorf("largest pipeline %d calls, want 2 to %d: pipelines %v", most, maxBatch, sizes.sizes)
	}
}

// A lone call leaves alone, as a plain command.
func TestBatcherLoneCall(t *testing.T) {
	t.Parallel()
	s, _, sizes := countedStore(t, nil)
	for i := range 3 {
		if val, err := s.run(context.Background(), echo, []string{"k"}, "x"); err != nil || val != "x" {
			t.Fatalf("call %d: %v, %v", i, val, err)
		}
	}
	if sizes.alone != 3 || len(sizes.sizes) != 0 {
		t.Errorf("%d calls alone, pipelines %v; want 3 alone", sizes.alone, sizes.sizes)
	}
}

// A call whose context ends while Redis stalls returns at once with the
// context's error; one whose context ended before it left is never sent;
// the others of its pipeline are answered when Redis is back.
func TestBatcherContextEnds(t *testing.T) {
	t.Parallel()
	srv := redistest.StartWithDebug(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, ReadTimeout: 5 * time.Second})
	defer rdb.Close()
	s := New(rdb, "")
	ctx := context.Background()
	// Two stalls fill both pipelines that may be out.
	var stalls sync.WaitGroup
	for range maxFlying {
		stalls.Go(func() { _, _ = s.batch.process(ctx, redis.NewCmd(ctx, "debug", "sleep", "0.5")) })
	}
	waitFlying(t, s, maxFlying)
	// Queued behind them: a call that gives up before they are
	// answered, and one that waits.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	var late atomic.Value
	var wg sync.WaitGroup
	wg.Go(func() {
		_, err := s.run(short, echo, []string{"short"}, "x")
		late.Store(fmt.Sprint(err))
	})
	never, stop := context.WithCancel(ctx)
	stop()
	if _, err := s.run(never, echo, []string{"never"}, "x"); !errors.Is(err, context.Canceled) {
		t.Errorf("a call whose context had ended: %v, want context.Canceled", err)
	}
	val, err := s.run(ctx, echo, []string{"waits"}, "y")
	if err != nil || val != "y" {
		t.Errorf("the call that waited: %v, %v; want y", val, err)
	}
	wg.Wait()
	stalls.Wait()
	if got := late.Load(); got != context.DeadlineExceeded.Error() {
		t.Errorf("the call that gave up: %v, want %v", got, context.DeadlineExceeded)
	}
	if n, _ := rdb.Exists(ctx, "never", "short").Result(); n != 0 {
		t.Error("a call whose context ended before it left was sent")
	}
}

func waitFlying(t *testing.T, s *Store, n int) {
	t.Helper()
	for range 500 {
		s.batch.mu.Lock()
		f := s.batch.flying
		s.batch.mu.Unlock()
		if f >= n {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("never %d pipelines out", n)
}

// Calls in flight when the connection is cut each return, none hangs, and
// every error is one the service retries (Redis unavailable) or its own
// deadline; once the network heals, calls go through again.
func TestBatcherConnectionCut(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	proxy := redistest.StartProxy(t, srv.Addr())
	rdb := redis.NewClient(&redis.Options{Addr: proxy.Addr(), MaxRetries: -1, ReadTimeout: 2 * time.Second,
		DialTimeout: time.Second, ContextTimeoutEnabled: true})
	defer rdb.Close()
	loadEcho(t, srv.Client())
	s := New(rdb, "")
	proxy.Delay(5 * time.Millisecond) // calls queue behind each pipeline
	var (
		wg         sync.WaitGroup
		ok, failed atomic.Int64
		stop       = make(chan struct{})
		errs       = make(chan error, 1000)
	)
	for g := range 40 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				want := fmt.Sprint(g, "-", i)
				val, err := s.run(ctx, echo, []string{"k"}, want)
				cancel()
				switch {
				case err == nil && val == want:
					ok.Add(1)
				case err == nil:
					errs <- fmt.Errorf("answer %v, want %s", val, want)
				default:
					failed.Add(1)
					if werr := wrap("echo", err); !errors.Is(werr, service.ErrStoreUnavailable) && !errors.Is(err, context.DeadlineExceeded) {
						select {
						case errs <- fmt.Errorf("error not marked unavailable: %v", err):
						default:
						}
					}
				}
			}
		})
	}
	waitFor(t, func() bool { return ok.Load() > 200 })
	proxy.Cut()
	waitFor(t, func() bool { return failed.Load() > 40 })
	proxy.Heal()
	proxy.Delay(0)
	before := ok.Load()
	waitFor(t, func() bool { return ok.Load() > before+200 })
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for range 1000 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("condition never met")
}

package service

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// countingCache is a phoneCache whose parses are counted.
func countingCache(size int) (*phoneCache, *atomic.Int64) {
	c := newPhoneCache(size)
	var calls atomic.Int64
	c.parsePhone = func(raw string, v *violations) (recipient, bool) {
		calls.Add(1)
		return parsePhone(raw, v)
	}
	return c, &calls
}

func TestPhoneCacheParsesOnce(t *testing.T) {
	t.Parallel()
	c, calls := countingCache(1024)
	for range 3 {
		for _, raw := range []string{"+14155550123", "+1 (415) 555-0123", "+1415", "+999123456789"} {
			var v violations
			c.parse(raw, &v)
		}
	}
	if got := calls.Load(); got != 4 {
		t.Errorf("4 inputs looked up 3 times each were parsed %d times, want 4 (valid and refused alike remembered)", got)
	}
}

func TestPhoneCacheBounded(t *testing.T) {
	t.Parallel()
	const size = 64
	c, calls := countingCache(size)
	// A number in use, looked up between every new one.
	const kept = "+8613800138000"
	var v violations
	c.parse(kept, &v)
	for i := range 50 * size {
		c.parse(fmt.Sprintf("+1415%07d", 2000000+i), &v)
		if r, ok := c.parse(kept, &v); !ok || r.addr != kept {
			t.Fatalf("lookup %d of %s = %+v, %v", i, kept, r, ok)
		}
	}
	if len(v.list) != 0 {
		t.Fatalf("valid numbers refused: %v", v.list[0])
	}
	if n := c.len(); n > 2*size+2*phoneCacheShards {
		t.Errorf("cache holds %d entries after %d numbers, want at most about %d", n, 50*size, 2*size)
	}
	// Each new number parsed once; the number in use only once in all.
	if got, want := calls.Load(), int64(50*size+1); got != want {
		t.Errorf("parsed %d times, want %d: the number in use was dropped", got, want)
	}
}

func TestPhoneCacheSkipsLongInputs(t *testing.T) {
	t.Parallel()
	c, calls := countingCache(1024)
	long := "+1 (415) 555 - 0123 " + strings.Repeat("-", maxCachedPhoneLen)
	for range 2 {
		var got, want violations
		r, ok := c.parse(long, &got)
		if wr, wok := parsePhone(long, &want); r != wr || ok != wok || fmt.Sprint(got.list) != fmt.Sprint(want.list) {
			t.Fatalf("parse(%q) = %+v %v %v, want %+v %v %v", long, r, ok, got.list, wr, wok, want.list)
		}
	}
	if calls.Load() != 2 || c.len() != 0 {
		t.Errorf("an input over %d bytes: %d parses, %d entries; want 2 and 0", maxCachedPhoneLen, calls.Load(), c.len())
	}
}

func TestPhoneCacheOff(t *testing.T) {
	t.Parallel()
	c, calls := countingCache(0)
	for range 3 {
		var v violations
		if r, ok := c.parse("+14155550123", &v); !ok || r.addr != "+14155550123" {
			t.Fatalf("parse = %+v, %v (%v)", r, ok, v.list)
		}
	}
	if calls.Load() != 3 || c.len() != 0 {
		t.Errorf("size 0: %d parses, %d entries; want 3 and 0", calls.Load(), c.len())
	}
}

// Many goroutines on a small cache (constant turnover) always get
// parsePhone's answer; run with -race.
func TestPhoneCacheConcurrent(t *testing.T) {
	t.Parallel()
	c := newPhoneCache(32)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 400 {
				raw := fmt.Sprintf("+1415%07d", 2000000+(g*7+i)%100)
				if i%5 == 0 {
					raw = "+1415" // refused
				}
				var got, want violations
				r, ok := c.parse(raw, &got)
				wr, wok := parsePhone(raw, &want)
				if r != wr || ok != wok || fmt.Sprint(got.list) != fmt.Sprint(want.list) {
					t.Errorf("parse(%q) = %+v %v %v, want %+v %v %v", raw, r, ok, got.list, wr, wok, want.list)
					return
				}
			}
		})
	}
	wg.Wait()
}

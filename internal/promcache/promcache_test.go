package promcache_test

import (
	"strconv"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/otpd/otpd/internal/promcache"
	"github.com/otpd/otpd/internal/promtest"
)

type labels struct {
	method string
	code   int
}

// The cached series are the vector's own, and the counts of many
// goroutines at once all land in them.
func TestCounters(t *testing.T) {
	t.Parallel()
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "calls_total", Help: "Calls."}, []string{"method", "code"})
	c := promcache.New(vec, func(l labels) []string { return []string{l.method, strconv.Itoa(l.code)} })
	keys := []labels{{"send", 0}, {"send", 3}, {"verify", 0}}
	const workers, rounds = 8, 100
	promtest.Concurrently(workers, rounds, func() {
		for _, k := range keys {
			c.Get(k).Inc()
		}
	})
	if n := testutil.CollectAndCount(vec); n != len(keys) {
		t.Errorf("%d series, want %d", n, len(keys))
	}
	for _, k := range keys {
		want := vec.WithLabelValues(k.method, strconv.Itoa(k.code))
		if got := c.Get(k); got != want || testutil.ToFloat64(want) != workers*rounds {
			t.Errorf("%v: %v at %v, want the vector's series at %d", k, got, testutil.ToFloat64(want), workers*rounds)
		}
	}
}

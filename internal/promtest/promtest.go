// Package promtest reads metrics back from a Prometheus registry in tests.
package promtest

import (
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// Sum returns the sum, over the series of metric name whose labels include
// labels, of each counter's and gauge's value and each histogram's sample
// count; 0 when no series matches.
func Sum(tb testing.TB, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	tb.Helper()
	mfs, err := g.Gather()
	if err != nil {
		tb.Fatalf("gather metrics: %v", err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			have := make(map[string]string, len(m.GetLabel()))
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue series
				}
			}
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue() + float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum
}

// Concurrently runs round workers times over, in each of workers
// goroutines at once, and returns when all are done: what a test of a
// cache of series runs before it checks that every increment landed
// (workers × rounds in each series).
func Concurrently(workers, rounds int, round func()) {
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range rounds {
				round()
			}
		})
	}
	wg.Wait()
}

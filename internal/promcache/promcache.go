// Package promcache keeps the series of a Prometheus counter vector by
// their label values: a vector hashes the values on every lookup, while a
// hot path that counts in a few series over and over finds each here,
// looked up in the vector once. Only for label values that are bounded,
// as the vector's own series must be.
package promcache

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Counters are the series of vec by K, the label values as a comparable
// value; labels turns a K into vec's label values, in order.
type Counters[K comparable] struct {
	vec    *prometheus.CounterVec
	labels func(K) []string
	m      sync.Map // K → prometheus.Counter
}

// New returns the cache of vec's series.
func New[K comparable](vec *prometheus.CounterVec, labels func(K) []string) *Counters[K] {
	return &Counters[K]{vec: vec, labels: labels}
}

// Get is vec's series of k's label values, vec.WithLabelValues(labels(k)...).
func (c *Counters[K]) Get(k K) prometheus.Counter {
	if v, ok := c.m.Load(k); ok {
		return v.(prometheus.Counter)
	}
	ctr := c.vec.WithLabelValues(c.labels(k)...)
	c.m.Store(k, ctr)
	return ctr
}

package service

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/otpd/otpd/internal/promtest"
)

// TestMetricSeriesCache: the cached series of sends and verifications are
// the vectors' own, and counts from many goroutines at once all land.
func TestMetricSeriesCache(t *testing.T) {
	t.Parallel()
	m := newMetrics(prometheus.NewRegistry())
	sent := [][5]string{
		{"sms", "twilio", "sign_in", "ok", "grpc"},
		{"sms", "", "sign_in", "rate_limited", "grpc"},
		{"email", "mailgun", "register", "ok", "logto"},
		{"sms", "twilio", "sign_in", "ok", "connect"},
	}
	verified := [][3]string{
		{"sign_in", "ok", "1"},
		{"sign_in", "mismatch", "1"},
		{"sign_in", "mismatch", "86"},
		{"register", "ok", ""},
	}
	countries := []string{"1", "86", "44"}
	const workers, rounds = 8, 50
	promtest.Concurrently(workers, rounds, func() {
		for _, l := range sent {
			m.sentCounter(l[0], l[1], l[2], l[3], l[4]).Inc()
		}
		for _, l := range verified {
			m.verifiedCounter(l[0], l[1], l[2]).Inc()
		}
		for _, c := range countries {
			m.smsCountryCounter(c).Inc()
		}
	})
	for _, l := range sent {
		if c := m.sent.WithLabelValues(l[:]...); m.sentCounter(l[0], l[1], l[2], l[3], l[4]) != c || testutil.ToFloat64(c) != workers*rounds {
			t.Errorf("sent %v: %v, want the vector's series at %d", l, testutil.ToFloat64(c), workers*rounds)
		}
	}
	for _, l := range verified {
		if c := m.verified.WithLabelValues(l[:]...); m.verifiedCounter(l[0], l[1], l[2]) != c || testutil.ToFloat64(c) != workers*rounds {
			t.Errorf("verified %v: %v, want the vector's series at %d", l, testutil.ToFloat64(c), workers*rounds)
		}
	}
	for _, cc := range countries {
		if c := m.smsCountry.WithLabelValues(cc); m.smsCountryCounter(cc) != c || testutil.ToFloat64(c) != workers*rounds {
			t.Errorf("sms country %s: %v, want the vector's series at %d", cc, testutil.ToFloat64(c), workers*rounds)
		}
	}
	if n := testutil.CollectAndCount(m.sent); n != len(sent) {
		t.Errorf("%d sent series, want %d", n, len(sent))
	}
	if n := testutil.CollectAndCount(m.verified); n != len(verified) {
		t.Errorf("%d verified series, want %d", n, len(verified))
	}
}

package service

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// metrics are the service's Prometheus metrics, registered on an injected
// registry.
type metrics struct {
	sent        *prometheus.CounterVec
	verified    *prometheus.CounterVec
	rateLimited *prometheus.CounterVec
	smsCountry  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	f := promauto.With(reg)
	m := &metrics{
		sent: f.NewCounterVec(prometheus.CounterOpts{
			Name: "otpd_codes_sent_total",
			Help: "SendCode and DeliverCode outcomes. result: ok, replayed, rate_limited, transient_error (every provider failed), permanent_error (a provider rejected the message, or none serves the recipient), store_error, canceled. entry: how the call came in (grpc, connect, grpc_web, logto, supabase).",
		}, []string{"channel", "provider", "usage_type", "result", "entry"}),
		verified: f.NewCounterVec(prometheus.CounterOpts{
			Name: "otpd_verifications_total",
			Help: "VerifyCode outcomes. result: ok, mismatch, expired, too_many_attempts, rate_limited, store_error, canceled (the caller canceled the call while the store was asked).",
		}, []string{"usage_type", "result"}),
		rateLimited: f.NewCounterVec(prometheus.CounterOpts{
			Name: "otpd_rate_limited_total",
			Help: "Calls refused by a rate limit, by limit: resend_interval, per_recipient, per_ip, per_country, verify_per_recipient, verify_per_ip.",
		}, []string{"limit"}),
		smsCountry: f.NewCounterVec(prometheus.CounterOpts{
			Name: "otpd_sms_sent_by_country_total",
			Help: "SMS codes a provider accepted, by the recipient's country calling code (\"86\", \"1\"): a sudden rise for one country is the sign of SMS pumping.",
		}, []string{"country_code"}),
	}
	for _, l := range []string{limitResend, limitPerRecipient, limitPerIP, limitPerCountry, limitVerifyPerRecipient, limitVerifyPerIP} {
		m.rateLimited.WithLabelValues(l)
	}
	return m
}

package service

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/otpd/otpd/internal/promcache"
)

// metrics are the service's Prometheus metrics, registered on an injected
// registry.
type metrics struct {
	sent        *prometheus.CounterVec
	verified    *prometheus.CounterVec
	rateLimited *prometheus.CounterVec
	smsCountry  *prometheus.CounterVec
	cancelled   *prometheus.CounterVec
	fraud       *prometheus.CounterVec

	// The series every send and verification counts in, each looked up
	// in its vector once (promcache). Their label values are bounded as
	// the vectors' own are.
	sentSeries       *promcache.Counters[sentLabels]
	verifiedSeries   *promcache.Counters[verifiedLabels]
	smsCountrySeries *promcache.Counters[string]
}

type sentLabels struct{ channel, provider, usage, result, entry string }

type verifiedLabels struct{ usage, result, country string }

// sentCounter is sent.WithLabelValues(channel, provider, usage, result, entry).
func (m *metrics) sentCounter(channel, provider, usage, result, entry string) prometheus.Counter {
	return m.sentSeries.Get(sentLabels{channel, provider, usage, result, entry})
}

// verifiedCounter is verified.WithLabelValues(usage, result, country).
func (m *metrics) verifiedCounter(usage, result, country string) prometheus.Counter {
	return m.verifiedSeries.Get(verifiedLabels{usage, result, country})
}

// smsCountryCounter is smsCountry.WithLabelValues(country).
func (m *metrics) smsCountryCounter(country string) prometheus.Counter {
	return m.smsCountrySeries.Get(country)
}

func newMetrics(reg prometheus.Registerer) *metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	f := promauto.With(reg)
	m := &metrics{
		sent: f.NewCounterVec(prometheus.CounterOpts{
			Name: "otpd_codes_sent_total",
			Help: "SendCode and DeliverCode outcomes. result: ok, replayed, rate_limited, blocked (a fraud rule refused the send), transient_error (every provider failed), permanent_error (a provider rejected the message, or none serves the recipient), store_error, canceled. entry: how the call came in (grpc, connect, grpc_web, logto, supabase).",
		}, []string{"channel", "provider", "usage_type", "result", "entry"}),
		verified: f.NewCounterVec(prometheus.CounterOpts{
			Name: "otpd_verifications_total",
			Help: "VerifyCode outcomes. result: ok, mismatch, expired, too_many_attempts, rate_limited, store_error, canceled (the caller canceled the call while the store was asked). country_code: the SMS recipient's country calling code (\"86\"), empty for email; beside otpd_sms_sent_by_country_total it gives the conversion per country.",
		}, []string{"usage_type", "result", "country_code"}),
		rateLimited: f.NewCounterVec(prometheus.CounterOpts{
			Name: "otpd_rate_limited_total",
			Help: "Calls refused by a rate limit, by limit: resend_interval, per_recipient, per_ip, per_country, verify_per_recipient, verify_per_ip.",
		}, []string{"limit"}),
		smsCountry: f.NewCounterVec(prometheus.CounterOpts{
			Name: "otpd_sms_sent_by_country_total",
			Help: "SMS codes a provider accepted, by the recipient's country calling code (\"86\", \"1\"): a sudden rise for one country is the sign of SMS pumping.",
		}, []string{"country_code"}),
		cancelled: f.NewCounterVec(prometheus.CounterOpts{
			Name: "otpd_codes_cancelled_total",
			Help: "Live codes killed by CancelCode (a call that found none is not counted).",
		}, []string{"usage_type"}),
		fraud: f.NewCounterVec(prometheus.CounterOpts{
			Name: "otpd_fraud_decisions_total",
			Help: "Sends a fraud rule refuses, by rule (sms_countries, sms_number_types: the destination; conversion: too few of the SMS codes sent to the country or from the client IP are verified) and action: refused (fraud.mode enforce), recorded (fraud.mode record_only: sent anyway), allowed (fraud.always_allow names the recipient or the client IP: sent anyway).",
		}, []string{"rule", "action"}),
	}
	m.sentSeries = promcache.New(m.sent, func(l sentLabels) []string {
		return []string{l.channel, l.provider, l.usage, l.result, l.entry}
	})
	m.verifiedSeries = promcache.New(m.verified, func(l verifiedLabels) []string { return []string{l.usage, l.result, l.country} })
	m.smsCountrySeries = promcache.New(m.smsCountry, func(country string) []string { return []string{country} })
	for _, l := range []string{limitResend, limitPerRecipient, limitPerIP, limitPerCountry, limitVerifyPerRecipient, limitVerifyPerIP} {
		m.rateLimited.WithLabelValues(l)
	}
	for _, r := range []string{ruleCountries, ruleNumberTypes, ruleConversion} {
		for _, a := range []string{actionRefused, actionRecorded, actionAllowed} {
			m.fraud.WithLabelValues(r, a)
		}
	}
	return m
}

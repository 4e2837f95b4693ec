package server

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/otpd/otpd/providers/fake"
)

// When delivery fails, each hook answers as its identity server expects:
// Logto a short sentence with the HTTP status (503 with Retry-After for a
// provider outage, 422 for a refusal for good), Supabase 200 with that
// status in its error; a provider slower than hooks.supabase.timeout is
// answered in time, not after Supabase gave up.
func TestHooksDeliveryFaults(t *testing.T) {
	t.Parallel()
	var h Hooks
	h.Supabase.Secrets = []string{supabaseSecret}
	h.Supabase.Timeout = 300 * time.Millisecond
	s := startHooks(t, h)

	logto := func(to string) hookResult {
		return s.post(t, logtoSMSPath, logtoAuth, `{"to":"`+to+`","type":"SignIn","payload":{"code":"483920"}}`)
	}
	supa := func(to string) supabaseResult {
		return postWebhook(t, s.url, supabaseSMSPath, signed(smsHook(to, "483920", "confirmation", "")))
	}

	s.sms.SetMode(fake.ModeTransient) // every attempt fails, for now
	r := logto("14155550201")
	secs, err := strconv.Atoi(r.header.Get("Retry-After"))
	if r.status != http.StatusServiceUnavailable || err != nil || secs < 1 || !strings.HasPrefix(r.body["message"], "The message service is unavailable.") {
		t.Errorf("Logto, providers down: %d Retry-After %q %s, want 503 with Retry-After and the unavailable sentence", r.status, r.header.Get("Retry-After"), r.raw)
	}
	if sr := supa("14155550202"); sr.status != http.StatusOK || sr.err.HTTPCode != http.StatusServiceUnavailable || !strings.HasPrefix(sr.err.Message, "The message service is unavailable.") {
		t.Errorf("Supabase, providers down: %d %s, want 200 with error 503", sr.status, sr.raw)
	}

	s.sms.SetMode(fake.ModePermanent) // the provider refuses the number for good
	if r := logto("14155550203"); r.status != http.StatusUnprocessableEntity || r.body["message"] != "This message cannot be delivered to this recipient." {
		t.Errorf("Logto, refused for good: %d %s, want 422", r.status, r.raw)
	}
	if sr := supa("14155550204"); sr.status != http.StatusOK || sr.err.HTTPCode != http.StatusUnprocessableEntity {
		t.Errorf("Supabase, refused for good: %d %s, want 200 with error 422", sr.status, sr.raw)
	}

	s.sms.SetMode(fake.ModeOK)
	// Slower than hooks.supabase.timeout: without the bound, the SMS would
	// go out after 5 s and the answer be 200 {}.
	s.sms.SetDelay(5 * time.Second)
	if sr := supa("14155550205"); sr.status != http.StatusOK || sr.err.HTTPCode != http.StatusServiceUnavailable || sr.err.Message == "" {
		t.Errorf("Supabase, provider slower than the hook's timeout: %d %s, want 200 with error 503", sr.status, sr.raw)
	}
	if n := len(s.sms.Sent()); n != 0 {
		t.Errorf("%d SMS delivered, want none", n)
	}
	if logs := s.logs.String(); strings.Contains(logs, "483920") {
		t.Error("logs carry the code")
	}
}

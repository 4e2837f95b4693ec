package server

import (
	"net/http"
	"strings"
	"testing"
)

// premiumGB is the numbering plan's example premium-rate number of GB,
// which the fraud guard's default sms_number_types refuse.
const premiumGB = "449012345678"

// TestLogtoDestinationBlocked: a destination the fraud guard refuses is a
// 403 whose message Logto can show its user as it is.
func TestLogtoDestinationBlocked(t *testing.T) {
	t.Parallel()
	s := startLogto(t)
	r := s.post(t, logtoSMSPath, logtoAuth, `{"to":"`+premiumGB+`","type":"SignIn","payload":{"code":"483920"}}`)
	if r.status != http.StatusForbidden || r.body["message"] != "Codes cannot be sent to this number." {
		t.Errorf("blocked destination: %d %s, want 403 \"Codes cannot be sent to this number.\"", r.status, r.raw)
	}
	if strings.Contains(r.raw, "483920") || strings.Contains(r.raw, premiumGB) || strings.Contains(r.raw, "fraud") {
		t.Errorf("answer %s tells more than the user needs", r.raw)
	}
	if n := len(s.sms.Sent()); n != 0 {
		t.Errorf("%d messages delivered, want none", n)
	}
}

// TestSupabaseDestinationBlocked: the same refusal, in the shape Supabase
// Auth shows its user.
func TestSupabaseDestinationBlocked(t *testing.T) {
	t.Parallel()
	s := startSupabase(t, supabaseSecret)
	r := postWebhook(t, s.url, supabaseSMSPath, signed(smsHook(premiumGB, "483920", "confirmation", "")))
	if r.status != http.StatusOK || r.err.HTTPCode != http.StatusForbidden || r.err.Message != "Codes cannot be sent to this number." {
		t.Errorf("blocked destination: %d %s, want 200 with error 403 \"Codes cannot be sent to this number.\"", r.status, r.raw)
	}
	if n := len(s.sms.Sent()); n != 0 {
		t.Errorf("%d messages delivered, want none", n)
	}
}

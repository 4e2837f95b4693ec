package app_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"reflect"
	"strings"
	"testing"

	"github.com/otpd/otpd/internal/app"
	"github.com/otpd/otpd/internal/config/configtest"
)

const fraudYAML = `
fraud:
  mode: record_only
  sms_countries: {allow: [gb, IE], deny: [GG]}
  sms_number_types: [mobile]
  conversion: {window: 12h, min_unverified: 30, ratio: 0.5}
  always_allow: {recipients: ["+4477009", "qa@example.com", "@example.org"], client_ips: ["203.0.113.0/24"]}
test_recipients:
  - {recipient: "+15555550100", code: "864209"}
  - {recipient: "app-review@example.com", code: "975310"}
`

// TestCheckFraud: otpd -check prints the fraud policy in force and the
// test recipients, masked, and never their codes.
func TestCheckFraud(t *testing.T) {
	t.Parallel()
	c := parseForCheck(t, configtest.MinimalYAML+fraudYAML, configtest.KeyEnv())
	var out bytes.Buffer
	if err := app.Check(c, &out); err != nil {
		t.Fatalf("Check: %v\n%s", err, out.String())
	}
	s := out.String()
	_, sec, ok := strings.Cut(s, "\nfraud guard (mode record_only):\n")
	if !ok {
		t.Fatalf("no fraud guard section:\n%s", s)
	}
	sec, _, _ = strings.Cut(sec, "\n\n")
	for _, want := range []string{
		"sms countries:    only GB, IE, never GG",
		"sms number types: mobile",
		"conversion:       window 12h0m0s, min_unverified 30, ratio 0.5 (SMS SendCode, per country calling code and per client_ip; DeliverCode exempt)",
		"always_allow:     3 recipients, 1 client network",
		"test recipients:  2, never delivered to, fixed codes: +15******100, a***@example.com",
	} {
		if !strings.Contains(sec, want) {
			t.Errorf("fraud section lacks %q:\n%s", want, sec)
		}
	}
	wantNoSecrets(t, s, "864209", "975310", "5555550100", "app-review")

	// The defaults.
	out.Reset()
	if err := app.Check(parseForCheck(t, configtest.MinimalYAML, configtest.KeyEnv()), &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"fraud guard (mode enforce):", "sms countries:    every country", "sms number types: mobile, fixed_line_or_mobile",
		"window 24h0m0s, min_unverified 20, ratio 0.2", "0 recipients, 0 client networks", "test recipients:  none",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("default check output lacks %q:\n%s", want, out.String())
		}
	}
}

// TestCheckJSONFraud: otpd -check -json carries the same policy, and the
// effective configuration masks the test recipients and their codes.
func TestCheckJSONFraud(t *testing.T) {
	t.Parallel()
	c := parseForCheck(t, configtest.MinimalYAML+fraudYAML, configtest.KeyEnv())
	var out bytes.Buffer
	if err := app.CheckJSON(c, &out); err != nil {
		t.Fatalf("CheckJSON: %v", err)
	}
	wantNoSecrets(t, out.String(), "864209", "975310", "5555550100", "app-review")
	var r struct {
		Fraud  app.FraudReport `json:"fraud"`
		Config struct {
			TestRecipients []map[string]string `json:"test_recipients"`
			Fraud          map[string]any      `json:"fraud"`
		} `json:"config"`
	}
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatal(err)
	}
	want := app.FraudReport{
		Mode: "record_only", Allow: []string{"GB", "IE"}, Deny: []string{"GG"}, NumberTypes: []string{"mobile"},
		Conversion:     app.ConversionReport{Window: "12h0m0s", MinUnverified: 30, Ratio: 0.5, Enforced: true},
		AlwaysAllow:    app.AlwaysAllowReport{Recipients: 3, ClientIPs: 1},
		TestRecipients: []string{"+15******100", "a***@example.com"},
	}
	if !reflect.DeepEqual(r.Fraud, want) {
		t.Errorf("fraud = %+v, want %+v", r.Fraud, want)
	}
	if tr := r.Config.TestRecipients; len(tr) != 2 || tr[0]["recipient"] != "+15******100" || tr[0]["code"] != "<redacted>" {
		t.Errorf("config.test_recipients = %v, want masked", tr)
	}
	if r.Config.Fraud["mode"] != "record_only" {
		t.Errorf("config.fraud = %v", r.Config.Fraud)
	}
}

// TestWarnFraud: at start, test recipients (masked) and a guard that
// refuses nothing are warned about.
func TestWarnFraud(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	app.WarnFraud(parseForCheck(t, configtest.MinimalYAML+fraudYAML, configtest.KeyEnv()), slog.New(slog.NewJSONHandler(&logs, nil)))
	s := logs.String()
	for _, want := range []string{`"level":"WARN","msg":"fraud.mode is record_only`, `"level":"WARN","msg":"test_recipients:`, `"test_recipients":["+15******100","a***@example.com"]`} {
		if !strings.Contains(s, want) {
			t.Errorf("logs lack %s:\n%s", want, s)
		}
	}
	wantNoSecrets(t, s, "864209", "975310", "5555550100", "app-review")

	logs.Reset()
	app.WarnFraud(parseForCheck(t, configtest.MinimalYAML, configtest.KeyEnv()), slog.New(slog.NewJSONHandler(&logs, nil)))
	if logs.Len() != 0 {
		t.Errorf("default configuration warned:\n%s", logs.String())
	}
}

package config_test

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/otpd/otpd/internal/config"
	"github.com/otpd/otpd/internal/config/configtest"
	"github.com/otpd/otpd/service"
)

// DESIGN.md's fraud and test_recipients blocks, verbatim.
const designFraudYAML = `
fraud:
  mode: enforce                  # enforce | record_only: decide and count, refuse nothing
  sms_countries: {allow: [], deny: []}   # ISO 3166-1 alpha-2; a non-empty allow list means only those
  sms_number_types: [mobile, fixed_line_or_mobile]   # the default; premium rate, shared cost, UAN,
                                 # VoIP, pager, personal, toll free, voicemail, unknown are refused
  conversion: {window: 24h, min_unverified: 20, ratio: 0.2}   # per country and per client_ip
  always_allow: {recipients: [], client_ips: []}   # E.164 prefixes or emails; CIDRs
test_recipients:                 # fixed codes for app-store review and e2e tests; at most 20;
  - {recipient: "+15555550100", code: "123456"}   # never delivered, exempt from limits, warned at start;
                                 # fictional numbers are fine (E.164 digits, no numbering-plan check)
`

func TestFraudBlock(t *testing.T) {
	t.Parallel()
	c := mustParse(t, configtest.MinimalYAML+designFraudYAML, configtest.KeyEnv())
	want := service.DefaultFraud()
	want.SMSCountries = service.CountryLists{Allow: []string{}, Deny: []string{}}
	want.AlwaysAllow = service.AlwaysAllow{Recipients: []string{}, ClientIPs: []string{}}
	if !reflect.DeepEqual(c.Service.Fraud, want) {
		t.Errorf("fraud = %+v, want %+v", c.Service.Fraud, want)
	}
	if tr := c.Service.TestRecipients; len(tr) != 1 || tr[0].Recipient != "+15555550100" || tr[0].Code.Reveal() != "123456" {
		t.Errorf("test_recipients = %+v", tr)
	}

	// A list replaces the default, never adds to it.
	c = mustParse(t, configtest.MinimalYAML+`
fraud:
  mode: record_only
  sms_countries: {allow: [gb, IE]}
  sms_number_types: [mobile]
  conversion: {window: 1h}
  always_allow: {recipients: ["+4477009", "@example.com"], client_ips: ["203.0.113.0/24"]}
`, configtest.KeyEnv())
	f := c.Service.Fraud
	if f.Mode != service.FraudRecordOnly || !reflect.DeepEqual(f.SMSCountries.Allow, []string{"gb", "IE"}) ||
		!reflect.DeepEqual(f.SMSNumberTypes, []string{"mobile"}) || f.Conversion != (service.Conversion{Window: time.Hour, MinUnverified: 20, Ratio: 0.2}) ||
		len(f.AlwaysAllow.Recipients) != 2 || len(f.AlwaysAllow.ClientIPs) != 1 {
		t.Errorf("fraud = %+v", f)
	}
}

func TestFraudBlockErrorsNameKeys(t *testing.T) {
	t.Parallel()
	var many strings.Builder
	many.WriteString("test_recipients:\n")
	for i := range service.MaxTestRecipients + 1 {
		fmt.Fprintf(&many, "  - {recipient: \"+1555555%04d\", code: \"123456\"}\n", i)
	}
	for _, tc := range []struct {
		name, yaml, key, fragment string
	}{
		{"unknown key", "fraud: {sms_countries: {alow: [GB]}}\n", "fraud.sms_countries.alow", "unknown key"},
		{"mode", "fraud: {mode: audit}\n", "fraud.mode", "enforce or record_only"},
		{"country", "fraud: {sms_countries: {deny: [XX]}}\n", "fraud.sms_countries.deny[0]", "ISO 3166-1 alpha-2"},
		{"number type", "fraud: {sms_number_types: [mobile, premium]}\n", "fraud.sms_number_types[1]", "premium_rate"},
		{"window", "fraud: {conversion: {window: soon}}\n", "fraud.conversion.window", "not a duration"},
		{"cidr", "fraud: {always_allow: {client_ips: [\"10.0.0.300/8\"]}}\n", "fraud.always_allow.client_ips[0]", "CIDR"},
		{"more than 20 test recipients", many.String(), "test_recipients", "at most 20"},
		{"test code", "test_recipients: [{recipient: \"qa@example.com\", code: \"12ab56\"}]\n", "test_recipients[0].code", "6 digits"},
		{"test recipient key", "test_recipients: [{to: \"qa@example.com\", code: \"123456\"}]\n", "test_recipients[0].to", "unknown key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := config.Parse([]byte(configtest.MinimalYAML+tc.yaml), configtest.KeyEnv())
			wantKeyErrors(t, err, []string{tc.key}, tc.fragment)
		})
	}
}

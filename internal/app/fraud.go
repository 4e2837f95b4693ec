package app

import (
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"

	"github.com/otpd/otpd/internal/config"
	"github.com/otpd/otpd/service"
)

// FraudReport is the fraud policy in force, as otpd -check shows it.
type FraudReport struct {
	// Mode is enforce or record_only.
	Mode string `json:"mode"`
	// Allow and Deny are fraud.sms_countries, upper-cased.
	Allow []string `json:"sms_countries_allow"`
	Deny  []string `json:"sms_countries_deny"`
	// NumberTypes are the number types SMS may go to.
	NumberTypes []string          `json:"sms_number_types"`
	Conversion  ConversionReport  `json:"conversion"`
	AlwaysAllow AlwaysAllowReport `json:"always_allow"`
	// TestRecipients are test_recipients, masked.
	TestRecipients []string `json:"test_recipients"`
}

// ConversionReport is fraud.conversion.
type ConversionReport struct {
	Window        string  `json:"window"`
	MinUnverified int     `json:"min_unverified"`
	Ratio         float64 `json:"ratio"`
	// Enforced is whether the low-conversion rule runs (window not 0);
	// in mode record_only it counts and refuses nothing.
	Enforced bool `json:"enforced"`
}

// AlwaysAllowReport counts fraud.always_allow's entries.
type AlwaysAllowReport struct {
	Recipients int `json:"recipients"`
	ClientIPs  int `json:"client_ips"`
}

// fraudReport describes cfg's fraud policy and test recipients.
func fraudReport(cfg *config.Config) FraudReport {
	f := cfg.Service.Fraud
	upper := func(list []string) []string {
		out := make([]string, len(list))
		for i, c := range list {
			out[i] = strings.ToUpper(c)
		}
		return out
	}
	r := FraudReport{
		Mode:        f.Mode,
		Allow:       upper(f.SMSCountries.Allow),
		Deny:        upper(f.SMSCountries.Deny),
		NumberTypes: append([]string{}, f.SMSNumberTypes...),
		Conversion: ConversionReport{
			Window: f.Conversion.Window.String(), MinUnverified: f.Conversion.MinUnverified, Ratio: f.Conversion.Ratio,
			Enforced: f.Conversion.Window > 0,
		},
		AlwaysAllow:    AlwaysAllowReport{Recipients: len(f.AlwaysAllow.Recipients), ClientIPs: len(f.AlwaysAllow.ClientIPs)},
		TestRecipients: maskedTestRecipients(cfg),
	}
	if f.Conversion.Window == 0 {
		r.Conversion.Window = "0 (off)"
	}
	return r
}

func maskedTestRecipients(cfg *config.Config) []string {
	out := []string{}
	for _, t := range cfg.Service.TestRecipients {
		out = append(out, t.Recipient.String())
	}
	return out
}

// writeFraud prints the fraud section of Check's report.
func writeFraud(w io.Writer, r FraudReport) {
	countries := "every country"
	switch {
	case len(r.Allow) > 0 && len(r.Deny) > 0:
		countries = "only " + strings.Join(r.Allow, ", ") + ", never " + strings.Join(r.Deny, ", ")
	case len(r.Allow) > 0:
		countries = "only " + strings.Join(r.Allow, ", ")
	case len(r.Deny) > 0:
		countries = "all but " + strings.Join(r.Deny, ", ")
	}
	fmt.Fprintf(w, "\nfraud guard (mode %s):\n", r.Mode)
	fmt.Fprintf(w, "  sms countries:    %s\n", countries)
	fmt.Fprintf(w, "  sms number types: %s\n", strings.Join(r.NumberTypes, ", "))
	if r.Conversion.Enforced {
		fmt.Fprintf(w, "  conversion:       window %s, min_unverified %d, ratio %s (SMS SendCode, per country calling code and per client_ip; DeliverCode exempt)\n",
			r.Conversion.Window, r.Conversion.MinUnverified, strconv.FormatFloat(r.Conversion.Ratio, 'g', -1, 64))
	} else {
		fmt.Fprint(w, "  conversion:       off (window 0)\n")
	}
	fmt.Fprintf(w, "  always_allow:     %s, %s (bypass the fraud rules, not the rate limits)\n",
		count(r.AlwaysAllow.Recipients, "recipient"), count(r.AlwaysAllow.ClientIPs, "client network"))
	if n := len(r.TestRecipients); n > 0 {
		fmt.Fprintf(w, "  test recipients:  %d, never delivered to, fixed codes: %s\n", n, strings.Join(r.TestRecipients, ", "))
	} else {
		fmt.Fprint(w, "  test recipients:  none\n")
	}
}

// warnFraud logs, at start, what of the fraud configuration an operator
// must not forget: a guard that refuses nothing, and test recipients.
func warnFraud(cfg *config.Config, log *slog.Logger) {
	if cfg.Service.Fraud.Mode == service.FraudRecordOnly {
		log.Warn("fraud.mode is record_only: the fraud rules refuse nothing; watch otpd_fraud_decisions_total{action=\"recorded\"}, then set fraud.mode: enforce")
	}
	if t := maskedTestRecipients(cfg); len(t) > 0 {
		log.Warn("test_recipients: these recipients are never delivered to and accept a fixed code, with no send limit and no fraud rule; remove them when review or testing is over",
			"test_recipients", t)
	}
}

// count is n and the noun, in the plural unless n is 1.
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

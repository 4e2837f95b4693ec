package service_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nyaruka/phonenumbers"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"

	otpv1 "github.com/otpd/otpd/proto/otp/v1"
	"github.com/otpd/otpd/service"
)

// example is the numbering plan's example number of a type in a region,
// in E.164, or "" when the region has none.
func example(region string, t phonenumbers.PhoneNumberType) string {
	n := phonenumbers.GetExampleNumberForType(region, t)
	if n == nil {
		return ""
	}
	return phonenumbers.Format(n, phonenumbers.E164)
}

// examplesOf returns up to limit example numbers of type t, from as many
// regions, that the library classifies as t (some regions' examples fit
// an earlier type too).
func examplesOf(t phonenumbers.PhoneNumberType, limit int) []string {
	var out []string
	for _, region := range []string{"GB", "DE", "FR", "IT", "ES", "AT", "NL", "BE", "US", "AU", "JP", "CH", "SE", "PL", "BR", "IN", "CN", "ZA", "RU", "MX"} {
		e := example(region, t)
		if e == "" {
			continue
		}
		n, err := phonenumbers.Parse(e, "")
		if err != nil || phonenumbers.GetNumberType(n) != t || !phonenumbers.IsValidNumber(n) {
			continue
		}
		out = append(out, e)
		if len(out) == limit {
			break
		}
	}
	return out
}

// wantBlocked checks that err is the fraud guard's refusal by rule.
func wantBlocked(tb testing.TB, err error, rule string) {
	tb.Helper()
	info := detail[*errdetails.ErrorInfo](tb, wantStatus(tb, err, codes.PermissionDenied))
	if info.GetReason() != "DESTINATION_BLOCKED" || info.GetDomain() != "otpd" || info.GetMetadata()["rule"] != rule {
		tb.Fatalf("ErrorInfo = %v, want DESTINATION_BLOCKED with rule %s", info, rule)
	}
}

// fraudCount is otpd_fraud_decisions_total{rule, action}.
func (h *harness) fraudCount(tb testing.TB, rule, action string) float64 {
	tb.Helper()
	return counter(tb, h.reg, "otpd_fraud_decisions_total", map[string]string{"rule": rule, "action": action})
}

// TestFraudNumberTypes sends to real example numbers of every type the
// default sms_number_types refuses (premium rate, shared cost, UAN, VoIP,
// pager, personal, toll free, voicemail) and of the non-geographic
// networks: each is refused before Redis is asked and before any provider
// is, while mobile numbers go out.
func TestFraudNumberTypes(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	ctx := context.Background()
	refused := 0
	for _, typ := range []phonenumbers.PhoneNumberType{
		phonenumbers.PREMIUM_RATE, phonenumbers.SHARED_COST, phonenumbers.UAN, phonenumbers.VOIP,
		phonenumbers.PAGER, phonenumbers.PERSONAL_NUMBER, phonenumbers.TOLL_FREE, phonenumbers.VOICEMAIL,
		phonenumbers.FIXED_LINE,
	} {
		numbers := examplesOf(typ, 3)
		if len(numbers) == 0 {
			t.Errorf("no example number of type %v", typ)
		}
		for _, to := range numbers {
			_, err := h.client.SendCode(ctx, &otpv1.SendCodeRequest{Recipient: to, UsageType: signIn, ClientIp: "198.51.100.7"})
			wantBlocked(t, err, "sms_number_types")
			refused++
		}
	}
	// Non-geographic numbers: +800 is toll free, +883 VoIP; +882's
	// example is mobile, which the country rule can refuse (below).
	for cc, want := range map[int]bool{800: true, 883: true, 882: false} {
		n := phonenumbers.GetExampleNumberForNonGeoEntity(cc)
		if n == nil {
			t.Fatalf("no example number for +%d", cc)
		}
		to := phonenumbers.Format(n, phonenumbers.E164)
		_, err := h.client.SendCode(ctx, &otpv1.SendCodeRequest{Recipient: to, UsageType: signIn})
		if want {
			wantBlocked(t, err, "sms_number_types")
			refused++
		} else if err != nil {
			t.Errorf("SendCode(%s, %v): %v", to, phonenumbers.GetNumberType(n), err)
		}
	}
	t.Logf("%d sends refused", refused)
	if got := h.fraudCount(t, "sms_number_types", "refused"); got != float64(refused) {
		t.Errorf("otpd_fraud_decisions_total{sms_number_types,refused} = %v, want %d", got, refused)
	}
	if got := counter(t, h.reg, "otpd_codes_sent_total", map[string]string{"channel": "sms", "provider": "", "usage_type": "sign_in", "result": "blocked", "entry": "grpc"}); got != float64(refused) {
		t.Errorf("otpd_codes_sent_total{result=blocked} = %v, want %d", got, refused)
	}
	if n := len(h.primary.Sent()); n != 1 {
		t.Errorf("providers got %d messages, want the +882 one only", n)
	}
	// Only the +882 send reached Redis; the refused ones took no limit,
	// no cooldown and no key.
	if n := h.rdb.DBSize(ctx).Val(); n == 0 {
		t.Error("the +882 send left nothing in Redis")
	}
	before := h.rdb.DBSize(ctx).Val()
	_, err := h.client.SendCode(ctx, &otpv1.SendCodeRequest{Recipient: examplesOf(phonenumbers.PREMIUM_RATE, 1)[0], UsageType: signIn, ClientIp: "198.51.100.8"})
	wantBlocked(t, err, "sms_number_types")
	if after := h.rdb.DBSize(ctx).Val(); after != before {
		t.Errorf("a refused send changed Redis: %d keys, then %d", before, after)
	}
	for _, to := range examplesOf(phonenumbers.MOBILE, 5) {
		h.send(t, to, signIn)
	}
}

// TestFraudCountries checks sms_countries on numbers of the regions that
// share +1, told apart by the numbering plan, and that email is not an
// SMS destination.
func TestFraudCountries(t *testing.T) {
	t.Parallel()
	us, ca, bs := example("US", phonenumbers.FIXED_LINE_OR_MOBILE), example("CA", phonenumbers.FIXED_LINE_OR_MOBILE), example("BS", phonenumbers.MOBILE)
	if us == "" {
		us = phone
	}
	if ca == "" || bs == "" {
		t.Fatalf("no example numbers: CA %q, BS %q", ca, bs)
	}
	gb := example("GB", phonenumbers.MOBILE)
	ctx := context.Background()
	send := func(h *harness, to string) error {
		_, err := h.client.SendCode(ctx, &otpv1.SendCodeRequest{Recipient: to, UsageType: signIn})
		return err
	}

	t.Run("allow", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, func(c *service.Config) { c.Fraud.SMSCountries.Allow = []string{"ca", "GB"} })
		for _, to := range []string{ca, gb, email} {
			h.send(t, to, signIn)
		}
		for _, to := range []string{us, bs, "+8613800138000"} {
			wantBlocked(t, send(h, to), "sms_countries")
		}
		if got := h.fraudCount(t, "sms_countries", "refused"); got != 3 {
			t.Errorf("otpd_fraud_decisions_total{sms_countries,refused} = %v, want 3", got)
		}
	})
	t.Run("deny", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, func(c *service.Config) { c.Fraud.SMSCountries.Deny = []string{"BS", "001"} })
		for _, to := range []string{us, ca, gb} {
			h.send(t, to, signIn)
		}
		wantBlocked(t, send(h, bs), "sms_countries")
		// Non-geographic: the mobile +882 example, satellite +881.
		for _, cc := range []int{882, 881} {
			wantBlocked(t, send(h, phonenumbers.Format(phonenumbers.GetExampleNumberForNonGeoEntity(cc), phonenumbers.E164)), "sms_countries")
		}
	})
}

// TestFraudRecordOnly: with fraud.mode record_only nothing is refused and
// every decision is counted as recorded.
func TestFraudRecordOnly(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *service.Config) {
		c.Fraud.Mode = service.FraudRecordOnly
		c.Fraud.SMSCountries.Deny = []string{"CN"}
	})
	premium := examplesOf(phonenumbers.PREMIUM_RATE, 3)
	for _, to := range append([]string{"+8613800138000", phone}, premium...) {
		h.send(t, to, signIn)
	}
	for rule, want := range map[string]float64{"sms_countries": 1, "sms_number_types": float64(len(premium))} {
		if got := h.fraudCount(t, rule, "recorded"); got != want {
			t.Errorf("otpd_fraud_decisions_total{%s,recorded} = %v, want %v", rule, got, want)
		}
		if got := h.fraudCount(t, rule, "refused"); got != 0 {
			t.Errorf("otpd_fraud_decisions_total{%s,refused} = %v, want 0", rule, got)
		}
	}
}

// TestFraudAlwaysAllow: always_allow lets recipients and client networks
// past the fraud rules, counted as allowed, and past nothing else.
func TestFraudAlwaysAllow(t *testing.T) {
	t.Parallel()
	premium := examplesOf(phonenumbers.PREMIUM_RATE, 2)
	if len(premium) < 2 {
		t.Fatal("too few premium-rate examples")
	}
	h := newHarness(t, func(c *service.Config) {
		c.Fraud.SMSCountries.Deny = []string{"US"}
		c.Fraud.AlwaysAllow = service.AlwaysAllow{
			Recipients: []string{"+1415555", premium[0][:5]},
			ClientIPs:  []string{"203.0.113.0/24", "2001:db8:aa::1"},
		}
	})
	ctx := context.Background()
	h.send(t, phone, signIn)      // +1415555...: by recipient
	h.send(t, premium[0], signIn) // by recipient prefix, past the number type
	h.sendReq(t, &otpv1.SendCodeRequest{Recipient: "+12125550100", UsageType: signIn, ClientIp: "203.0.113.77"})
	h.sendReq(t, &otpv1.SendCodeRequest{Recipient: premium[1], UsageType: signIn, ClientIp: "2001:db8:aa::1"})
	for _, ip := range []string{"198.51.100.1", "2001:db8:aa::2", ""} {
		_, err := h.client.SendCode(ctx, &otpv1.SendCodeRequest{Recipient: "+12125550101", UsageType: signIn, ClientIp: ip})
		wantBlocked(t, err, "sms_countries")
	}
	if got := h.fraudCount(t, "sms_countries", "allowed"); got != 2 {
		t.Errorf("otpd_fraud_decisions_total{sms_countries,allowed} = %v, want 2", got)
	}
	if got := h.fraudCount(t, "sms_number_types", "allowed"); got != 2 {
		t.Errorf("otpd_fraud_decisions_total{sms_number_types,allowed} = %v, want 2", got)
	}
	// The rate limits still apply: the resend interval.
	_, err := h.client.SendCode(ctx, &otpv1.SendCodeRequest{Recipient: phone, UsageType: signIn})
	wantQuota(t, err, "resend_interval")
}

// TestFraudDeliverCode: DeliverCode, which the Logto and Supabase hooks
// use, is guarded as SendCode is.
func TestFraudDeliverCode(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *service.Config) { c.Fraud.SMSCountries.Allow = []string{"US"} })
	ctx := context.Background()
	_, err := h.client.DeliverCode(ctx, &otpv1.DeliverCodeRequest{Recipient: "+8613800138000", UsageType: mfa, Code: "123456"})
	wantBlocked(t, err, "sms_countries")
	_, err = h.client.DeliverCode(ctx, &otpv1.DeliverCodeRequest{Recipient: examplesOf(phonenumbers.PREMIUM_RATE, 1)[0], UsageType: mfa, Code: "123456"})
	wantBlocked(t, err, "sms_countries") // GB: the country rule comes first
	_, err = h.client.DeliverCode(ctx, &otpv1.DeliverCodeRequest{Recipient: example("US", phonenumbers.TOLL_FREE), UsageType: mfa, Code: "123456"})
	wantBlocked(t, err, "sms_number_types")
	h.deliver(t, &otpv1.DeliverCodeRequest{Recipient: phone, UsageType: mfa, Code: "123456"})
	if n := len(h.primary.Sent()) + len(h.secondary.Sent()); n != 1 {
		t.Errorf("providers got %d messages, want 1", n)
	}
}

// TestTestRecipients: a test recipient is never delivered to, its fixed
// code verifies, and it is exempt from the send limits and the fraud
// rules but not from the verify limits.
func TestTestRecipients(t *testing.T) {
	t.Parallel()
	const fictional, reviewer, fixed = "+15555550100", "Reviewer@Example.com", "246810"
	h := newHarness(t, func(c *service.Config) {
		c.Fraud.SMSCountries.Allow = []string{"GB"} // the fraud rules would refuse +1
		c.Limits.PerRecipient = service.Window{Count: 2, Window: time.Hour}
		c.TestRecipients = []service.TestRecipient{{Recipient: fictional, Code: fixed}, {Recipient: "reviewer@example.com", Code: "135790"}}
	})
	ctx := context.Background()
	for i := range 5 { // more than the cooldown and the per-recipient window allow
		resp, err := h.client.SendCode(ctx, &otpv1.SendCodeRequest{Recipient: fictional, UsageType: signIn, ClientIp: "198.51.100.9"})
		if err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		if resp.GetProvider() != service.TestRecipientProvider || resp.GetExpiresAt() == nil {
			t.Fatalf("SendCode = %v, want provider %s and an expiry", resp, service.TestRecipientProvider)
		}
	}
	h.wantVerify(t, fictional, signIn, fixed, otpv1.VerifyResult_VERIFY_RESULT_OK, "the fixed code")
	h.wantVerify(t, "+1 555 555 0100", signIn, fixed, otpv1.VerifyResult_VERIFY_RESULT_EXPIRED, "the fixed code again, consumed")

	// Verify limits still hold: wrong codes kill the code.
	if _, err := h.client.SendCode(ctx, &otpv1.SendCodeRequest{Recipient: "reviewer@example.com", UsageType: signIn}); err != nil {
		t.Fatal(err)
	}
	for range service.DefaultConfig().Code.MaxAttempts {
		h.wantVerify(t, reviewer, signIn, "000000", otpv1.VerifyResult_VERIFY_RESULT_MISMATCH, "a wrong code")
	}
	h.wantVerify(t, reviewer, signIn, "135790", otpv1.VerifyResult_VERIFY_RESULT_TOO_MANY_ATTEMPTS, "the fixed code after max_attempts wrong ones")

	// DeliverCode: accepted, not delivered.
	resp, err := h.client.DeliverCode(ctx, &otpv1.DeliverCodeRequest{Recipient: fictional, UsageType: mfa, Code: "998877"})
	if err != nil || resp.GetProvider() != service.TestRecipientProvider {
		t.Fatalf("DeliverCode = %v, %v", resp, err)
	}
	if n := len(h.primary.Sent()) + len(h.secondary.Sent()); n != 0 {
		t.Fatalf("providers got %d messages for test recipients, want none", n)
	}
	if got := h.fraudCount(t, "sms_countries", "refused"); got != 0 {
		t.Errorf("a test recipient counted as a fraud decision: %v", got)
	}
	// Any other recipient is still limited and guarded.
	_, err = h.client.SendCode(ctx, &otpv1.SendCodeRequest{Recipient: "+15555550101", UsageType: signIn})
	wantStatus(t, err, codes.InvalidArgument) // fictional, and no test recipient
	_, err = h.client.SendCode(ctx, &otpv1.SendCodeRequest{Recipient: phone, UsageType: signIn})
	wantBlocked(t, err, "sms_countries")
}

func TestFraudConfigValidate(t *testing.T) {
	t.Parallel()
	many := make([]service.TestRecipient, service.MaxTestRecipients+1)
	for i := range many {
		many[i] = service.TestRecipient{Recipient: service.MaskedRecipient(fmt.Sprintf("+1555555%04d", i)), Code: "123456"}
	}
	for _, tc := range []struct {
		name   string
		mutate func(*service.Config)
		want   string // "" when valid
	}{
		{"defaults", func(*service.Config) {}, ""},
		{"record only", func(c *service.Config) { c.Fraud.Mode = "record_only" }, ""},
		{"mode", func(c *service.Config) { c.Fraud.Mode = "log" }, `fraud.mode: "log" is not enforce or record_only`},
		{"country", func(c *service.Config) { c.Fraud.SMSCountries.Deny = []string{"GB", "UK"} }, `fraud.sms_countries.deny[1]: "UK" is not the ISO 3166-1 alpha-2 code`},
		{"both lists", func(c *service.Config) {
			c.Fraud.SMSCountries.Allow, c.Fraud.SMSCountries.Deny = []string{"gb"}, []string{"GB"}
		}, `fraud.sms_countries.deny[0]: "GB" is in sms_countries.allow too`},
		{"type", func(c *service.Config) { c.Fraud.SMSNumberTypes = []string{"mobile", "landline"} }, `fraud.sms_number_types[1]: "landline" is not one of`},
		{"no types", func(c *service.Config) { c.Fraud.SMSNumberTypes = []string{} }, "fraud.sms_number_types: must list at least one type"},
		{"window", func(c *service.Config) { c.Fraud.Conversion.Window = time.Second }, "fraud.conversion.window: must be at least 1m"},
		{"conversion off", func(c *service.Config) { c.Fraud.Conversion = service.Conversion{} }, ""},
		{"min unverified", func(c *service.Config) { c.Fraud.Conversion.MinUnverified = 0 }, "fraud.conversion.min_unverified: must be at least 1"},
		{"ratio", func(c *service.Config) { c.Fraud.Conversion.Ratio = -0.5 }, "fraud.conversion.ratio: must be between 0 and 100"},
		{"allowed recipient", func(c *service.Config) {
			c.Fraud.AlwaysAllow.Recipients = []string{"+44", "@example.com", "qa@example.com", "44"}
		}, `fraud.always_allow.recipients[3]: "44" is not an E.164 prefix`},
		{"allowed ip", func(c *service.Config) { c.Fraud.AlwaysAllow.ClientIPs = []string{"10.0.0.0/8", "::1", "10.0.0.0/33"} }, `fraud.always_allow.client_ips[2]: "10.0.0.0/33" is not a CIDR`},
		{"allowed ip, v4-mapped prefix", func(c *service.Config) { c.Fraud.AlwaysAllow.ClientIPs = []string{"::ffff:10.0.0.0/104"} }, `fraud.always_allow.client_ips[0]: "::ffff:10.0.0.0/104" is not a CIDR such as 203.0.113.0/24 or an IP address: an IPv4-mapped prefix never matches`},
		{"test recipients", func(c *service.Config) {
			c.TestRecipients = []service.TestRecipient{{Recipient: "+15555550100", Code: "123456"}, {Recipient: "a@example.com", Code: "654321"}}
		}, ""},
		{"too many test recipients", func(c *service.Config) { c.TestRecipients = many }, "test_recipients: 21 entries, at most 20"},
		{"test code length", func(c *service.Config) {
			c.TestRecipients = []service.TestRecipient{{Recipient: "+15555550100", Code: "12345"}}
		}, "test_recipients[0].code: must be 6 digits, as code.length"},
		{"test recipient", func(c *service.Config) {
			c.TestRecipients = []service.TestRecipient{{Recipient: "15555550100", Code: "123456"}}
		}, "test_recipients[0].recipient: "},
		{"duplicate test recipient", func(c *service.Config) {
			c.TestRecipients = []service.TestRecipient{{Recipient: "QA@example.com", Code: "123456"}, {Recipient: "qa@EXAMPLE.com", Code: "123456"}}
		}, "test_recipients[1].recipient: is test_recipients[0] too"},
		{"test recipients unbounded", func(c *service.Config) {
			c.TestRecipients = []service.TestRecipient{{Recipient: "+15555550100", Code: "123456"}}
			c.Limits.VerifyPerRecipient.Count = 0
		}, "test_recipients: need limits.verify_per_recipient"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := service.DefaultConfig()
			c.Secret = "0123456789abcdef0123456789abcdef-test"
			tc.mutate(&c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Validate = %v, want %q", err, tc.want)
			}
		})
	}
}

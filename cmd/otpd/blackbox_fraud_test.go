package main_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/otpd/otpd/internal/redistest"
	otpv1 "github.com/otpd/otpd/proto/otp/v1"
)

// TestBlackBoxFraudGuard runs the binary with a fraud policy and test
// recipients: it warns about them at start, masked; a premium-rate number
// is refused with DESTINATION_BLOCKED and never printed by the console
// provider; a test recipient's fixed code verifies and nothing is
// delivered to it; the decision is on /metrics.
func TestBlackBoxFraudGuard(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "otpd.yaml")
	cfg := fmt.Sprintf(`
listen: {grpc: "%s", http: "%s"}
redis: {url: "%s"}
secret: "0123456789abcdef0123456789abcdef-fraud"
health: {interval: 200ms}
fraud:
  sms_countries: {deny: [CN]}
test_recipients:
  - {recipient: "+15555550100", code: "246813"}
providers:
  - {name: console, type: console, channel: sms}
`, anyPort, anyPort, rs.URL())
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startOtpd(t, []string{"-config", cfgPath})
	addr, httpAddr := p.addrs(t)
	conn := dial(t, addr)
	waitHealth(t, conn, healthpb.HealthCheckResponse_SERVING)
	client := otpv1.NewOtpServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	out := p.Output()
	if !strings.Contains(out, `"level":"WARN","msg":"test_recipients:`) || !strings.Contains(out, `"+15******100"`) {
		t.Errorf("no start-up warning listing the test recipient masked:\n%s", out)
	}
	if strings.Contains(out, "246813") || strings.Contains(out, "5555550100") {
		t.Errorf("the log shows a test recipient or its code:\n%s", out)
	}

	for to, rule := range map[string]string{"+449012345678": "sms_number_types", "+8613800138000": "sms_countries"} {
		_, err := client.SendCode(ctx, &otpv1.SendCodeRequest{Recipient: to, UsageType: otpv1.UsageType_USAGE_TYPE_SIGN_IN})
		st := status.Convert(err)
		var info *errdetails.ErrorInfo
		for _, d := range st.Details() {
			if i, ok := d.(*errdetails.ErrorInfo); ok {
				info = i
			}
		}
		if st.Code() != codes.PermissionDenied || info.GetReason() != "DESTINATION_BLOCKED" || info.GetMetadata()["rule"] != rule {
			t.Errorf("SendCode(%s) = %v (%v), want PERMISSION_DENIED DESTINATION_BLOCKED rule %s", to, err, info, rule)
		}
	}

	resp, err := client.SendCode(ctx, &otpv1.SendCodeRequest{Recipient: "+15555550100", UsageType: otpv1.UsageType_USAGE_TYPE_SIGN_IN})
	if err != nil || resp.GetProvider() != "test_recipient" {
		t.Fatalf("SendCode(test recipient) = %v, %v", resp, err)
	}
	v, err := client.VerifyCode(ctx, &otpv1.VerifyCodeRequest{Recipient: "+15555550100", UsageType: otpv1.UsageType_USAGE_TYPE_SIGN_IN, Code: "246813"})
	if err != nil || v.GetResult() != otpv1.VerifyResult_VERIFY_RESULT_OK {
		t.Fatalf("VerifyCode(test recipient, fixed code) = %v, %v", v, err)
	}
	select {
	case code := <-p.codes:
		t.Errorf("the console provider printed a code (%s): something was delivered", code)
	default:
	}
	_, metrics := httpGet(t, "http://"+httpAddr+"/metrics")
	for _, want := range []string{
		`otpd_fraud_decisions_total{action="refused",rule="sms_number_types"} 1`,
		`otpd_fraud_decisions_total{action="refused",rule="sms_countries"} 1`,
		`otpd_verifications_total{country_code="1",result="ok",usage_type="sign_in"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestBlackBoxTooManyTestRecipients: more than 20 test recipients refuse
// the start (exit 2), with an error naming the key.
func TestBlackBoxTooManyTestRecipients(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString("redis: {url: \"redis://127.0.0.1:1\"}\nsecret: \"0123456789abcdef0123456789abcdef-fraud\"\nproviders: [{name: console, type: console}]\ntest_recipients:\n")
	for i := range 21 {
		fmt.Fprintf(&b, "  - {recipient: \"+1555555%04d\", code: \"123456\"}\n", i)
	}
	path := filepath.Join(t.TempDir(), "otpd.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"-config", path}, {"-config", path, "-check"}} {
		out, err := exec.Command(otpdBinary(t), args...).CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Fatalf("otpd %v: %v, want exit 2\n%s", args, err, out)
		}
		if !strings.Contains(string(out), "test_recipients: 21 entries, at most 20") {
			t.Errorf("otpd %v output does not name test_recipients:\n%s", args, out)
		}
	}
}

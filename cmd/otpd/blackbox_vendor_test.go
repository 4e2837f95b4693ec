package main_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/otpd/otpd/internal/redistest"
	"github.com/otpd/otpd/internal/testpki"
	otpv1 "github.com/otpd/otpd/proto/otp/v1"
	"github.com/otpd/otpd/providers/providertest"
)

// TestBlackBoxVendorOverMTLS runs the built binary as production would:
// mTLS and a bearer token on gRPC, and a Twilio provider configured with
// Logto's JSON, whose API is a fake in this test. A code goes out through
// the SDK, is read off the fake's wire, and verifies.
func TestBlackBoxVendorOverMTLS(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	dir := t.TempDir()
	twilio := providertest.NewServer(t, func(providertest.Request) providertest.Response {
		return providertest.Response{Status: 201, Body: `{"sid": "SM0123456789abcdef0123456789abcdef", "status": "accepted"}`}
	})
	serverCA, clientCA := testpki.NewCA(t, "server CA"), testpki.NewCA(t, "client CA")
	certPEM, keyPEM := serverCA.Issue(t, "otpd", x509.ExtKeyUsageServerAuth)
	const token = "s3cret-token-of-the-auth-server"
	sum := sha256.Sum256([]byte(token))
	cfgPath := filepath.Join(dir, "otpd.yaml")
	cfg := fmt.Sprintf(`
listen: {grpc: %q, http: ""}
redis: {url: "${REDIS_URL}"}
secret: "${OTPD_HMAC_KEY}"
tls: {cert_file: %q, key_file: %q, client_ca_file: %q}
auth:
  tokens: [{name: auth-server, sha256: %q}]
providers:
  - name: twilio
    type: twilio
    config: {"accountSID": "AC0123456789abcdef0123456789abcdef", "authToken": "${TWILIO_AUTH_TOKEN}",
             "fromMessagingServiceSID": "MG0123456789abcdef0123456789abcdef", "endpoint": %q,
             "templates": [{"usageType": "SignIn", "content": "Your Acme sign-in code is {{code}}"},
                           {"usageType": "Generic", "content": "Your Acme code is {{code}}"}]}
`, anyPort, testpki.WriteFile(t, dir, "tls.crt", certPEM), testpki.WriteFile(t, dir, "tls.key", keyPEM),
		testpki.WriteFile(t, dir, "ca.crt", clientCA.PEM), hex.EncodeToString(sum[:]), twilio.URL)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	const authToken = "f0e1d2c3b4a5968778695a4b3c2d1e0f"
	p := startOtpd(t, []string{"-config", cfgPath},
		"REDIS_URL="+rs.URL(), "OTPD_HMAC_KEY=0123456789abcdef0123456789abcdef-vendor", "TWILIO_AUTH_TOKEN="+authToken)
	grpcAddr, _ := p.addrs(t)

	roots := x509.NewCertPool()
	roots.AddCert(serverCA.Cert)
	clientCert, clientKey := clientCA.Issue(t, "auth-server.internal", x509.ExtKeyUsageClientAuth)
	pair, err := tls.X509KeyPair(clientCert, clientKey)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("passthrough:///"+grpcAddr, grpc.WithTransportCredentials(credentials.NewTLS(
		&tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	waitHealth(t, conn, healthpb.HealthCheckResponse_SERVING) // health is open
	client := otpv1.NewOtpServiceClient(conn)

	_, err = client.SendCode(context.Background(), &otpv1.SendCodeRequest{Recipient: "+14155550123", UsageType: otpv1.UsageType_USAGE_TYPE_SIGN_IN})
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("SendCode without a token: %v, want UNAUTHENTICATED", err)
	}

	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token), 20*time.Second)
	defer cancel()
	resp, err := client.SendCode(ctx, &otpv1.SendCodeRequest{Recipient: "+1 415-555-0123", UsageType: otpv1.UsageType_USAGE_TYPE_SIGN_IN})
	if err != nil || resp.GetProvider() != "twilio" {
		t.Fatalf("SendCode: %v, %v; want twilio to deliver", resp, err)
	}
	req := twilio.Last(t)
	if req.Path != "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json" || req.Form.Get("To") != "+14155550123" {
		t.Fatalf("the fake Twilio API got %s with To %q", req.Path, req.Form.Get("To"))
	}
	code := regexp.MustCompile(`sign-in code is (\d{6})$`).FindStringSubmatch(req.Form.Get("Body"))
	if code == nil {
		t.Fatalf("body %q does not carry a sign-in code", req.Form.Get("Body"))
	}
	v, err := client.VerifyCode(ctx, &otpv1.VerifyCodeRequest{Recipient: "+14155550123", UsageType: otpv1.UsageType_USAGE_TYPE_SIGN_IN, Code: code[1]})
	if err != nil || v.GetResult() != otpv1.VerifyResult_VERIFY_RESULT_OK {
		t.Fatalf("VerifyCode: %v, %v", v, err)
	}

	logs := p.Output()
	for _, want := range []string{`"message_id":"SM0123456789abcdef0123456789abcdef"`, `"caller":"auth-server"`, "call refused: unauthenticated"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %s:\n%s", want, logs)
		}
	}
	for _, leak := range []string{token, authToken, code[1], "4155550123"} {
		if strings.Contains(logs, leak) {
			t.Errorf("logs hold %q", leak)
		}
	}
}

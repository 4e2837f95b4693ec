package server

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	otpv1 "github.com/otpd/otpd/proto/otp/v1"
)

// CancelCode and GetCodeStatus over the Connect protocol (JSON): caller
// auth applies to them as to every RPC, and what they answer.
func TestLifecycleConnectJSON(t *testing.T) {
	t.Parallel()
	s := startAPI(t)
	const who = `{"recipient": "+14155550123", "usageType": "USAGE_TYPE_SIGN_IN"}`

	// Without a token, or with a wrong one, neither tells anything.
	for _, method := range []string{"GetCodeStatus", "CancelCode"} {
		for _, tok := range []string{"", "not-the-token"} {
			code, _, body := s.post(t, method, "application/json", tok, []byte(who))
			if e := decodeConnectError(t, body); code != http.StatusUnauthorized || e.Code != "unauthenticated" {
				t.Errorf("%s with token %q: %d %s, want 401 unauthenticated", method, tok, code, body)
			}
			if strings.Contains(string(body), "live") || strings.Contains(string(body), "cancelled") {
				t.Errorf("%s with token %q answered %s", method, tok, body)
			}
		}
	}

	if code, _, body := s.post(t, "SendCode", "application/json", apiTestToken, []byte(who)); code != http.StatusOK {
		t.Fatalf("SendCode = %d %s", code, body)
	}
	var st struct {
		Live              bool   `json:"live"`
		ExpiresAt         string `json:"expiresAt"`
		AttemptsRemaining int    `json:"attemptsRemaining"`
		ResendAfter       string `json:"resendAfter"`
		ValidCodes        int    `json:"validCodes"`
	}
	code, _, body := s.post(t, "GetCodeStatus", "application/json", apiTestToken, []byte(who))
	if err := json.Unmarshal(body, &st); code != http.StatusOK || err != nil {
		t.Fatalf("GetCodeStatus = %d %s (%v)", code, body, err)
	}
	if !st.Live || st.ExpiresAt == "" || st.AttemptsRemaining != 5 || st.ResendAfter == "" || st.ValidCodes != 1 {
		t.Fatalf("GetCodeStatus = %s, want live, expiresAt, 5 attempts, resendAfter, 1 valid code", body)
	}

	code, _, body = s.post(t, "CancelCode", "application/json", apiTestToken, []byte(who))
	if code != http.StatusOK || strings.TrimSpace(string(body)) != `{"cancelled":true}` {
		t.Fatalf("CancelCode = %d %s, want 200 {\"cancelled\":true}", code, body)
	}
	code, _, body = s.post(t, "CancelCode", "application/json", apiTestToken, []byte(who))
	if code != http.StatusOK || strings.TrimSpace(string(body)) != `{"cancelled":false}` {
		t.Fatalf("second CancelCode = %d %s, want 200 {\"cancelled\":false}", code, body)
	}
	st.Live, st.ResendAfter, st.ExpiresAt = true, "", ""
	code, _, body = s.post(t, "GetCodeStatus", "application/json", apiTestToken, []byte(who))
	if err := json.Unmarshal(body, &st); code != http.StatusOK || err != nil || st.Live || st.ResendAfter == "" || st.ExpiresAt != "" {
		t.Fatalf("GetCodeStatus after a cancel = %d %s, want not live, the cooldown's resendAfter, no expiresAt", code, body)
	}
	code, _, body = s.post(t, "VerifyCode", "application/json", apiTestToken,
		[]byte(`{"recipient": "+14155550123", "usageType": "USAGE_TYPE_SIGN_IN", "code": "`+s.provider.Sent()[0].Code+`"}`))
	if code != http.StatusOK || !strings.Contains(string(body), "VERIFY_RESULT_EXPIRED") {
		t.Fatalf("VerifyCode of a cancelled code = %d %s, want VERIFY_RESULT_EXPIRED", code, body)
	}

	// Bad input: 400 invalid_argument, as VerifyCode.
	code, _, body = s.post(t, "GetCodeStatus", "application/json", apiTestToken, []byte(`{"recipient": "+1"}`))
	if e := decodeConnectError(t, body); code != http.StatusBadRequest || e.Code != "invalid_argument" {
		t.Errorf("GetCodeStatus of a bad recipient = %d %s, want 400 invalid_argument", code, body)
	}

	for _, c := range []struct {
		method string
		code   string
		want   float64
	}{
		{"GetCodeStatus", "OK", 2}, {"CancelCode", "OK", 2}, {"GetCodeStatus", "InvalidArgument", 1},
	} {
		labels := map[string]string{"method": "/otp.v1.OtpService/" + c.method, "code": c.code, "entry": "connect", "caller": "auth-server"}
		if got := s.metric(t, "otpd_rpc_calls_total", labels); got != c.want {
			t.Errorf("otpd_rpc_calls_total%v = %v, want %v", labels, got, c.want)
		}
	}
	if got := s.metric(t, "otpd_auth_failures_total", nil); got != 4 {
		t.Errorf("otpd_auth_failures_total = %v, want 4", got)
	}
}

// CancelCode and GetCodeStatus over gRPC on the gRPC listener: refused
// without the token, answered with it.
func TestLifecycleGRPCAuth(t *testing.T) {
	t.Parallel()
	s := startAPI(t)
	addr := logAttr(s.logs.String(), "otpd serving", "grpc")
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := otpv1.NewOtpServiceClient(conn)
	status1 := &otpv1.GetCodeStatusRequest{Recipient: "jane@example.com", UsageType: otpv1.UsageType_USAGE_TYPE_SIGN_IN}
	cancel1 := &otpv1.CancelCodeRequest{Recipient: "jane@example.com", UsageType: otpv1.UsageType_USAGE_TYPE_SIGN_IN}

	for _, tok := range []string{"", "not-the-token"} {
		ctx := t.Context()
		if tok != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
		}
		if resp, err := c.GetCodeStatus(ctx, status1); status.Code(err) != codes.Unauthenticated || resp != nil {
			t.Errorf("GetCodeStatus with token %q = %v, %v; want UNAUTHENTICATED", tok, resp, err)
		}
		if resp, err := c.CancelCode(ctx, cancel1); status.Code(err) != codes.Unauthenticated || resp != nil {
			t.Errorf("CancelCode with token %q = %v, %v; want UNAUTHENTICATED", tok, resp, err)
		}
	}
	ctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+apiTestToken)
	if _, err := c.SendCode(ctx, &otpv1.SendCodeRequest{Recipient: "jane@example.com", UsageType: otpv1.UsageType_USAGE_TYPE_SIGN_IN}); err != nil {
		t.Fatalf("SendCode: %v", err)
	}
	st, err := c.GetCodeStatus(ctx, status1)
	if err != nil || !st.GetLive() || st.GetValidCodes() != 1 || st.GetAttemptsRemaining() != 5 {
		t.Fatalf("GetCodeStatus = %v, %v; want live, 1 code, 5 attempts", st, err)
	}
	if resp, err := c.CancelCode(ctx, cancel1); err != nil || !resp.GetCancelled() {
		t.Fatalf("CancelCode = %v, %v; want cancelled", resp, err)
	}
	if st, err = c.GetCodeStatus(ctx, status1); err != nil || st.GetLive() {
		t.Fatalf("GetCodeStatus after the cancel = %v, %v; want not live", st, err)
	}
}

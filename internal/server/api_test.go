package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/otpd/otpd/internal/grpcauth"
	otpv1 "github.com/otpd/otpd/proto/otp/v1"
	"github.com/otpd/otpd/providers/fake"
	"github.com/otpd/otpd/service/servicetest"
)

const apiTestToken = "api-test-token-8d1e4a"

// apiServerUnderTest is otpd's real service on the in-memory store behind
// NewGRPC with token auth, run by Run with listen.api on loopback.
type apiServerUnderTest struct {
	*testServer
	url      string
	provider *fake.Provider
}

func startAPI(t *testing.T) *apiServerUnderTest {
	t.Helper()
	svc, p := servicetest.New(t, nil)
	ts := &testServer{reg: prometheus.NewRegistry(), logs: &lockedBuffer{}}
	log := slogJSON(ts.logs)
	sum := sha256.Sum256([]byte(apiTestToken))
	ac := grpcauth.DefaultConfig() // open_health
	ac.Tokens = []grpcauth.Token{{Name: "auth-server", SHA256: hex.EncodeToString(sum[:])}}
	auth := grpcauth.New(ac, nil, ts.reg, log)
	g := NewGRPC(DefaultConfig().Listen, svc, auth, nil, ts.reg, log)

	cfg := DefaultConfig()
	cfg.Listen = Listen{GRPC: "127.0.0.1:0", API: "127.0.0.1:0"}
	cfg.Shutdown.Timeout = 5 * time.Second
	addr := runAPI(t, ts, cfg, g, log)
	return &apiServerUnderTest{testServer: ts, url: "http://" + addr, provider: p}
}

// runAPI runs g with cfg (whose listen.api is on) until the test ends and
// returns the api listener's address, read from the "otpd serving" line.
func runAPI(t *testing.T, ts *testServer, cfg Config, g GRPC, log *slog.Logger) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, g, ts.reg, func(context.Context) error { return nil }, log) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run = %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	var addr string
	waitFor(t, "the api address in the log", func() bool {
		addr = logAttr(ts.logs.String(), "otpd serving", "api")
		return addr != ""
	})
	return addr
}

// post sends body to method with contentType (and the token unless
// token is ""), and returns the status, headers and body of the answer.
func (s *apiServerUnderTest) post(t *testing.T, method, contentType, token string, body []byte) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, s.url+"/otp.v1.OtpService/"+method, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return roundTrip(t, req)
}

// roundTrip sends req and returns the answer's status, header and body.
func roundTrip(t *testing.T, req *http.Request) (int, http.Header, []byte) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

// connectError is the Connect protocol's JSON error body.
type connectError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Details []struct {
		Type  string          `json:"type"`
		Value string          `json:"value"`
		Debug json.RawMessage `json:"debug"`
	} `json:"details"`
}

func decodeConnectError(t *testing.T, b []byte) connectError {
	t.Helper()
	var e connectError
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("not a Connect error: %q: %v", b, err)
	}
	return e
}

func TestAPIConnectJSON(t *testing.T) {
	t.Parallel()
	s := startAPI(t)
	const send = `{"recipient": "+14155550123", "usageType": "USAGE_TYPE_SIGN_IN"}`

	code, _, body := s.post(t, "SendCode", "application/json", apiTestToken, []byte(send))
	if code != http.StatusOK {
		t.Fatalf("SendCode = %d %s, want 200", code, body)
	}
	var resp struct {
		VerificationID string `json:"verificationId"`
		Channel        string `json:"channel"`
		Provider       string `json:"provider"`
	}
	if err := json.Unmarshal(body, &resp); err != nil || resp.VerificationID == "" || resp.Channel != "CHANNEL_SMS" || resp.Provider != "fake" {
		t.Fatalf("SendCode answer %s (%v), want a verification id, CHANNEL_SMS, fake", body, err)
	}
	sent := s.provider.Sent()
	if len(sent) != 1 {
		t.Fatalf("%d messages delivered, want 1", len(sent))
	}

	// Verify with the code delivered.
	code, _, body = s.post(t, "VerifyCode", "application/json", apiTestToken,
		[]byte(`{"recipient": "+14155550123", "usageType": "USAGE_TYPE_SIGN_IN", "code": "`+sent[0].Code+`"}`))
	if code != http.StatusOK || !strings.Contains(string(body), "VERIFY_RESULT_OK") {
		t.Fatalf("VerifyCode = %d %s, want 200 VERIFY_RESULT_OK", code, body)
	}

	// A second send at once hits the resend limit: 429, resource_exhausted,
	// with the gRPC call's details.
	code, _, body = s.post(t, "SendCode", "application/json", apiTestToken, []byte(send))
	if code != http.StatusTooManyRequests {
		t.Fatalf("second SendCode = %d %s, want 429", code, body)
	}
	e := decodeConnectError(t, body)
	if e.Code != "resource_exhausted" || len(e.Details) == 0 {
		t.Fatalf("second SendCode error %s, want resource_exhausted with details", body)
	}
	var types []string
	for _, d := range e.Details {
		types = append(types, d.Type)
	}
	if !strings.Contains(strings.Join(types, " "), "google.rpc.RetryInfo") {
		t.Errorf("rate limit details %v lack google.rpc.RetryInfo", types)
	}

	// No token, a wrong token: 401 unauthenticated.
	for _, tok := range []string{"", "not-the-token"} {
		code, _, body = s.post(t, "SendCode", "application/json", tok, []byte(send))
		if e := decodeConnectError(t, body); code != http.StatusUnauthorized || e.Code != "unauthenticated" {
			t.Errorf("token %q: %d %s, want 401 unauthenticated", tok, code, body)
		}
	}

	// Malformed JSON: 400 invalid_argument, answered by otpd's interceptors
	// after caller auth, so counted and logged as a malformed call.
	code, _, body = s.post(t, "SendCode", "application/json", apiTestToken, []byte(`{"recipient": 14155550123`))
	e = decodeConnectError(t, body)
	if code != http.StatusBadRequest || e.Code != "invalid_argument" || !strings.Contains(e.Message, "not valid JSON for otp.v1.SendCodeRequest") {
		t.Errorf("malformed JSON: %d %s, want 400 invalid_argument", code, body)
	}
	if strings.Contains(e.Message, "14155550123") {
		t.Errorf("malformed JSON: the error quotes the caller's value: %s", e.Message)
	}
	code, _, body = s.post(t, "SendCode", "application/json", "", []byte(`{`))
	if e := decodeConnectError(t, body); code != http.StatusUnauthorized || e.Code != "unauthenticated" {
		t.Errorf("malformed JSON without a token: %d %s, want 401 unauthenticated", code, body)
	}
	// A request over the transport limit, refused by the transcoder, is
	// counted and logged all the same.
	big := `{"recipient": "` + strings.Repeat("1", maxTransportBytes) + `"}`
	code, _, body = s.post(t, "SendCode", "application/json", apiTestToken, []byte(big))
	if e := decodeConnectError(t, body); code != http.StatusTooManyRequests || e.Code != "resource_exhausted" {
		t.Errorf("oversize JSON: %d %s, want 429 resource_exhausted", code, body)
	}

	for _, c := range []struct {
		labels map[string]string
		want   float64
	}{
		{map[string]string{"method": "/otp.v1.OtpService/SendCode", "code": "OK", "entry": "connect", "caller": "auth-server"}, 1},
		{map[string]string{"method": "/otp.v1.OtpService/VerifyCode", "code": "OK", "entry": "connect"}, 1},
		{map[string]string{"method": "/otp.v1.OtpService/SendCode", "code": "ResourceExhausted", "entry": "connect"}, 2},
		// Refused by caller auth before the call log, as on gRPC: counted
		// in otpd_auth_failures_total instead.
		{map[string]string{"code": "Unauthenticated"}, 0},
		{map[string]string{"method": "/otp.v1.OtpService/SendCode", "code": "InvalidArgument", "entry": "connect"}, 1},
		{map[string]string{"entry": "grpc"}, 0},
	} {
		if got := s.metric(t, "otpd_rpc_calls_total", c.labels); got != c.want {
			t.Errorf("otpd_rpc_calls_total%v = %v, want %v", c.labels, got, c.want)
		}
	}
	if got := s.metric(t, "grpc_server_handled_total", map[string]string{"grpc_method": "SendCode"}); got != 7 {
		t.Errorf("grpc_server_handled_total{grpc_method=SendCode} = %v, want 7", got)
	}
	if got := s.metric(t, "otpd_auth_failures_total", nil); got != 3 {
		t.Errorf("otpd_auth_failures_total = %v, want 3", got)
	}
	var malformed []string
	for _, l := range s.callLogs() {
		if m, ok := l["malformed"].(string); ok {
			malformed = append(malformed, m)
		}
		if l["entry"] != "connect" {
			t.Errorf("call log %v: entry is not connect", l)
		}
	}
	if strings.Join(malformed, ",") != "invalid_json,too_large" {
		t.Errorf("malformed calls logged %v, want invalid_json, too_large", malformed)
	}
	if strings.Contains(s.logs.String(), sent[0].Code) {
		t.Error("the log holds the code")
	}
}

func TestAPIConnectBinaryAndGRPCWeb(t *testing.T) {
	t.Parallel()
	s := startAPI(t)
	req, err := proto.Marshal(&otpv1.SendCodeRequest{Recipient: "+14155550123", UsageType: otpv1.UsageType_USAGE_TYPE_SIGN_IN})
	if err != nil {
		t.Fatal(err)
	}
	code, _, body := s.post(t, "SendCode", "application/proto", apiTestToken, req)
	var resp otpv1.SendCodeResponse
	if code != http.StatusOK || proto.Unmarshal(body, &resp) != nil || resp.GetVerificationId() == "" {
		t.Fatalf("Connect binary SendCode = %d %q, want 200 and a response", code, body)
	}
	// Malformed protobuf: invalid_argument from otpd's codec.
	code, _, body = s.post(t, "SendCode", "application/proto", apiTestToken, []byte{0x0a, 0x20, 'x'})
	if code != http.StatusBadRequest || !strings.Contains(string(body), "invalid_argument") {
		t.Errorf("Connect binary, malformed = %d %q, want 400 invalid_argument", code, body)
	}

	// An empty body is the empty message, in JSON as in binary: the
	// service's own validation answers.
	for _, ct := range []string{"application/json", "application/proto"} {
		code, _, body = s.post(t, "SendCode", ct, apiTestToken, nil)
		if code != http.StatusBadRequest || !strings.Contains(string(body), "recipient must be set") {
			t.Errorf("%s, empty body = %d %q, want 400 from the service's validation", ct, code, body)
		}
	}
	// Over the transport limit: refused unread, with MESSAGE_TOO_LARGE.
	code, _, body = s.post(t, "SendCode", "application/proto", apiTestToken, bytes.Repeat([]byte{0x0a}, maxTransportBytes+100))
	if e := decodeConnectError(t, body); code != http.StatusTooManyRequests || e.Code != "resource_exhausted" ||
		len(e.Details) != 1 || e.Details[0].Type != "google.rpc.ErrorInfo" || !strings.Contains(string(e.Details[0].Debug), "MESSAGE_TOO_LARGE") {
		t.Errorf("Connect binary over 256 KiB = %d %s, want 429 resource_exhausted with ErrorInfo MESSAGE_TOO_LARGE", code, body)
	}

	// gRPC-Web, binary framing.
	req2, _ := proto.Marshal(&otpv1.SendCodeRequest{Recipient: "+14155550124", UsageType: otpv1.UsageType_USAGE_TYPE_SIGN_IN})
	frame := binary.BigEndian.AppendUint32([]byte{0}, uint32(len(req2)))
	code, hdr, body := s.post(t, "SendCode", "application/grpc-web+proto", apiTestToken, append(frame, req2...))
	msgs, trailer := grpcWebFrames(t, body)
	if code != http.StatusOK || len(msgs) != 1 || !strings.Contains(trailer, "grpc-status: 0") && !strings.Contains(trailer, "grpc-status:0") {
		t.Fatalf("gRPC-Web SendCode = %d %v %q, trailer %q; want 200, one message, status 0", code, hdr, body, trailer)
	}
	if err := proto.Unmarshal(msgs[0], &resp); err != nil || resp.GetVerificationId() == "" {
		t.Fatalf("gRPC-Web response %q: %v", msgs[0], err)
	}
	// gRPC-Web without a token.
	_, hdr, body = s.post(t, "SendCode", "application/grpc-web+proto", "", append(frame, req2...))
	if _, trailer := grpcWebFrames(t, body); hdr.Get("Grpc-Status") != "16" && !strings.Contains(trailer, "grpc-status: 16") && !strings.Contains(trailer, "grpc-status:16") {
		t.Errorf("gRPC-Web without token: headers %v, trailer %q; want grpc-status 16", hdr, trailer)
	}

	// Native gRPC over h2c on the same port, with connect-go's client.
	h2c := &http.Client{Transport: &http.Transport{Protocols: new(http.Protocols)}}
	h2c.Transport.(*http.Transport).Protocols.SetUnencryptedHTTP2(true)
	client := connect.NewClient[otpv1.SendCodeRequest, otpv1.SendCodeResponse](h2c, s.url+"/otp.v1.OtpService/SendCode", connect.WithGRPC())
	creq := connect.NewRequest(&otpv1.SendCodeRequest{Recipient: "+14155550125", UsageType: otpv1.UsageType_USAGE_TYPE_SIGN_IN})
	creq.Header().Set("Authorization", "Bearer "+apiTestToken)
	if _, err := client.CallUnary(t.Context(), creq); err != nil {
		t.Fatalf("gRPC over h2c: %v", err)
	}
	// And the Connect protocol over h2c.
	cclient := connect.NewClient[otpv1.SendCodeRequest, otpv1.SendCodeResponse](h2c, s.url+"/otp.v1.OtpService/SendCode", connect.WithProtoJSON())
	creq = connect.NewRequest(&otpv1.SendCodeRequest{Recipient: "+14155550125", UsageType: otpv1.UsageType_USAGE_TYPE_SIGN_IN})
	creq.Header().Set("Authorization", "Bearer "+apiTestToken)
	if _, err := cclient.CallUnary(t.Context(), creq); connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Fatalf("Connect over h2c, second send: %v, want resource_exhausted", err)
	}

	for _, c := range []struct {
		entry, code string
		want        float64
	}{
		{"connect", "OK", 1}, {"connect", "InvalidArgument", 3}, {"connect", "ResourceExhausted", 2},
		{"grpc_web", "OK", 1},
		{"grpc", "OK", 1},
	} {
		labels := map[string]string{"entry": c.entry, "code": c.code, "method": "/otp.v1.OtpService/SendCode"}
		if got := s.metric(t, "otpd_rpc_calls_total", labels); got != c.want {
			t.Errorf("otpd_rpc_calls_total%v = %v, want %v", labels, got, c.want)
		}
	}
}

// grpcWebFrames splits a gRPC-Web response body into its messages and
// its trailer block.
func grpcWebFrames(t *testing.T, b []byte) (msgs [][]byte, trailer string) {
	t.Helper()
	for len(b) > 0 {
		if len(b) < 5 {
			t.Fatalf("truncated gRPC-Web frame %q", b)
		}
		n := int(binary.BigEndian.Uint32(b[1:5]))
		if len(b) < 5+n {
			t.Fatalf("truncated gRPC-Web frame %q", b)
		}
		if b[0]&0x80 != 0 {
			trailer += strings.ToLower(string(b[5 : 5+n]))
		} else {
			msgs = append(msgs, b[5:5+n])
		}
		b = b[5+n:]
	}
	return msgs, trailer
}

// The API listener goes down with the others when Run returns.
func TestAPIStopsWithRun(t *testing.T) {
	t.Parallel()
	var logs lockedBuffer
	log := slogJSON(&logs)
	reg := prometheus.NewRegistry()
	g := NewGRPC(DefaultConfig().Listen, otpv1.UnimplementedOtpServiceServer{}, nil, nil, reg, log)
	cfg := DefaultConfig()
	cfg.Listen = Listen{GRPC: "127.0.0.1:0", API: "127.0.0.1:0"}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, g, reg, func(context.Context) error { return nil }, log) }()
	var addr string
	waitFor(t, "the api address", func() bool { addr = logAttr(logs.String(), "otpd serving", "api"); return addr != "" })
	// No REST mapping: a GET is no call.
	if code, _ := get(t, "http://"+addr+"/otp.v1.OtpService/SendCode"); code != http.StatusNotFound {
		t.Errorf("GET a method = %d, want 404", code)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Error("the api listener still accepts connections after Run returned")
	}
}

// grpc.health.v1 is served on listen.api too, open as on gRPC.
func TestAPIHealthCheck(t *testing.T) {
	t.Parallel()
	s := startAPI(t)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, s.url+"/grpc.health.v1.Health/Check", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"status"`) {
		t.Errorf("Health/Check = %d %s, want 200 with a status", resp.StatusCode, b)
	}
}

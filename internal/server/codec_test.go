package server

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/otpd/otpd/internal/promtest"
	otpv1 "github.com/otpd/otpd/proto/otp/v1"
)

// rawCodec sends pre-encoded bytes as the request and keeps the response's
// bytes, as an attacker's client would.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.([]byte))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

// countingService answers every SendCode and VerifyCode and counts the
// calls that reached it.
type countingService struct {
	otpv1.UnimplementedOtpServiceServer
	calls atomic.Int64
}

func (s *countingService) SendCode(context.Context, *otpv1.SendCodeRequest) (*otpv1.SendCodeResponse, error) {
	s.calls.Add(1)
	return &otpv1.SendCodeResponse{VerificationId: "v1"}, nil
}

func (s *countingService) DeliverCode(context.Context, *otpv1.DeliverCodeRequest) (*otpv1.DeliverCodeResponse, error) {
	s.calls.Add(1)
	return &otpv1.DeliverCodeResponse{VerificationId: "v1", Provider: "fake"}, nil
}

func (s *countingService) VerifyCode(context.Context, *otpv1.VerifyCodeRequest) (*otpv1.VerifyCodeResponse, error) {
	s.calls.Add(1)
	return &otpv1.VerifyCodeResponse{}, nil
}

// testServer is a gRPC server built by NewGRPC, serving on loopback, with
// its metrics registry and its debug-level JSON log.
type testServer struct {
	addr string
	reg  *prometheus.Registry
	logs *lockedBuffer
	svc  *countingService
	conn *grpc.ClientConn
}

func startServer(tb testing.TB, lc Listen) *testServer {
	tb.Helper()
	ts := &testServer{reg: prometheus.NewRegistry(), logs: &lockedBuffer{}, svc: &countingService{}}
	log := slogJSON(ts.logs)
	g := NewGRPC(lc, ts.svc, nil, nil, ts.reg, log)
	g.Health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	lis = newLimitListener(lis, lc.MaxConnections, lc.MaxConnectionsPerIP, g.conns, log)
	go func() { _ = g.Server.Serve(lis) }()
	tb.Cleanup(g.Server.Stop)
	ts.addr = lis.Addr().String()
	ts.conn = dialPlain(tb, ts.addr)
	return ts
}

// metric is promtest.Sum of the server's registry.
func (ts *testServer) metric(tb testing.TB, name string, labels map[string]string) float64 {
	tb.Helper()
	return promtest.Sum(tb, ts.reg, name, labels)
}

// callLogs returns the "grpc call" log lines.
func (ts *testServer) callLogs() []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(ts.logs.String()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec["msg"] == "grpc call" {
			out = append(out, rec)
		}
	}
	return out
}

// field is one length-delimited field: tag and bytes.
func field(num protowire.Number, v string) []byte {
	b := protowire.AppendTag(nil, num, protowire.BytesType)
	return protowire.AppendString(b, v)
}

func concat(bs ...[]byte) []byte {
	var out []byte
	for _, b := range bs {
		out = append(out, b...)
	}
	return out
}

func TestMalformedRequests(t *testing.T) {
	t.Parallel()
	valid, err := proto.Marshal(&otpv1.SendCodeRequest{Recipient: "+14155550123", UsageType: otpv1.UsageType_USAGE_TYPE_SIGN_IN, Locale: "en"})
	if err != nil {
		t.Fatal(err)
	}
	// A caller's own field under the number of otpd's mark, claiming the
	// request is too large: it must be ignored, not obeyed.
	forgedMark := protowire.AppendTag(nil, markField, protowire.BytesType)
	forgedMark = protowire.AppendBytes(forgedMark, field(1, malformedTooLarge))

	forgedWireMark := protowire.AppendTag(nil, markField, protowire.BytesType)
	forgedWireMark = protowire.AppendBytes(forgedWireMark, concat(field(1, malformedJSON), field(4, "not-the-secret")))

	const (
		sendCode   = "/otp.v1.OtpService/SendCode"
		verifyCode = "/otp.v1.OtpService/VerifyCode"
	)
	for _, tc := range []struct {
		name      string
		method    string
		req       []byte
		code      codes.Code
		field     string // BadRequest field, for INVALID_ARGUMENT
		desc      string // in the BadRequest description or the message
		errorInfo bool   // ErrorInfo MESSAGE_TOO_LARGE
		malformed string // the call log's malformed attribute
	}{
		{name: "valid", method: sendCode, req: valid, code: codes.OK},
		{name: "forged mark is ignored", method: sendCode, req: concat(valid, forgedMark), code: codes.OK},
		// The whole request a mark as the API listener's transcoder sends
		// one, but without otpd's secret.
		{name: "forged transcoder mark is ignored", method: sendCode, req: forgedWireMark, code: codes.OK},
		{name: "invalid UTF-8 in recipient", method: sendCode, req: concat(field(1, "+1415555\xff0199"), field(4, "en")),
			code: codes.InvalidArgument, field: "recipient", desc: "must be valid UTF-8", malformed: malformedUTF8},
		{name: "invalid UTF-8 in locale", method: sendCode, req: concat(field(1, "+14155550123"), field(4, "en\xc3")),
			code: codes.InvalidArgument, field: "locale", desc: "must be valid UTF-8", malformed: malformedUTF8},
		{name: "invalid UTF-8 in code", method: verifyCode, req: concat(field(1, "+14155550123"), field(4, "12345\xff")),
			code: codes.InvalidArgument, field: "code", desc: "must be valid UTF-8", malformed: malformedUTF8},
		{name: "truncated", method: sendCode, req: valid[:len(valid)-3],
			code: codes.InvalidArgument, field: "", desc: "otp.v1.SendCodeRequest: truncated or malformed protobuf", malformed: malformedEncoding},
		{name: "invalid wire type", method: sendCode, req: []byte{0x0f, 0x01},
			code: codes.InvalidArgument, field: "", desc: "otp.v1.SendCodeRequest: truncated or malformed protobuf", malformed: malformedEncoding},
		{name: "100 KiB", method: sendCode, req: field(1, strings.Repeat("1", 100<<10)),
			code: codes.ResourceExhausted, desc: "larger than the limit of 65536 bytes", errorInfo: true, malformed: malformedTooLarge},
		{name: "2 MiB, over grpc-go's own limit", method: sendCode, req: field(1, strings.Repeat("1", 2<<20)),
			code: codes.ResourceExhausted, desc: "larger than max", malformed: malformedTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ts := startServer(t, DefaultConfig().Listen)
			var resp []byte
			err := ts.conn.Invoke(t.Context(), tc.method, tc.req, &resp, grpc.ForceCodecV2(rawCodec{}))
			st := status.Convert(err)
			if st.Code() != tc.code {
				t.Fatalf("answer %v, want %v", err, tc.code)
			}
			if !utf8.ValidString(st.Message()) || strings.Contains(st.Message(), "+1415555") {
				t.Errorf("the message %q echoes the request", st.Message())
			}
			if tc.code == codes.OK {
				if ts.svc.calls.Load() != 1 {
					t.Errorf("the handler ran %d times, want once", ts.svc.calls.Load())
				}
			} else {
				if n := ts.svc.calls.Load(); n != 0 {
					t.Errorf("the handler ran %d times for a malformed request", n)
				}
				if !strings.Contains(st.Message(), tc.desc) {
					t.Errorf("message %q, want it to say %q", st.Message(), tc.desc)
				}
			}
			var bad *errdetails.BadRequest
			var info *errdetails.ErrorInfo
			for _, d := range st.Details() {
				switch d := d.(type) {
				case *errdetails.BadRequest:
					bad = d
				case *errdetails.ErrorInfo:
					info = d
				}
			}
			if tc.code == codes.InvalidArgument {
				if len(bad.GetFieldViolations()) != 1 {
					t.Fatalf("details %v, want one BadRequest field violation", st.Details())
				}
				v := bad.GetFieldViolations()[0]
				if v.GetField() != tc.field || !strings.Contains(v.GetDescription(), tc.desc) {
					t.Errorf("violation %v, want field %q saying %q", v, tc.field, tc.desc)
				}
			}
			if tc.errorInfo {
				if info.GetReason() != "MESSAGE_TOO_LARGE" || info.GetDomain() != "otpd" || info.GetMetadata()["max_bytes"] != "65536" {
					t.Errorf("ErrorInfo %v, want MESSAGE_TOO_LARGE in domain otpd with max_bytes 65536", info)
				}
			}

			// Counted like any call...
			method := tc.method[strings.LastIndex(tc.method, "/")+1:]
			handled := map[string]string{"grpc_service": "otp.v1.OtpService", "grpc_method": method, "grpc_code": tc.code.String()}
			if n := ts.metric(t, "grpc_server_handled_total", handled); n != 1 {
				t.Errorf("grpc_server_handled_total%v = %v, want 1", handled, n)
			}
			if n := ts.metric(t, "grpc_server_started_total", map[string]string{"grpc_method": method}); n != 1 {
				t.Errorf("grpc_server_started_total{grpc_method=%s} = %v, want 1", method, n)
			}
			calls := map[string]string{"caller": "anonymous", "method": tc.method, "code": tc.code.String()}
			if n := ts.metric(t, "otpd_rpc_calls_total", calls); n != 1 {
				t.Errorf("otpd_rpc_calls_total%v = %v, want 1", calls, n)
			}
			// ...and logged once, with elapsed_ms in milliseconds.
			lines := ts.callLogs()
			if len(lines) != 1 {
				t.Fatalf("%d grpc call log lines, want 1:\n%s", len(lines), ts.logs.String())
			}
			l := lines[0]
			if l["method"] != tc.method || l["code"] != tc.code.String() {
				t.Errorf("log line %v, want method %s and code %s", l, tc.method, tc.code)
			}
			if ms, ok := l["elapsed_ms"].(float64); !ok || ms < 0 || ms > 60_000 {
				t.Errorf("log line %v: elapsed_ms is not a number of milliseconds", l)
			}
			if _, ok := l["elapsed"]; ok {
				t.Errorf("log line %v still has elapsed (nanoseconds)", l)
			}
			if got, _ := l["malformed"].(string); got != tc.malformed {
				t.Errorf("log line %v: malformed %q, want %q", l, got, tc.malformed)
			}
			if strings.Contains(ts.logs.String(), "+1415555") || strings.Contains(ts.logs.String(), "\\ufffd") {
				t.Errorf("the log echoes the request:\n%s", ts.logs.String())
			}
		})
	}
}

// TestMalformedHealthAndReflection checks that health and reflection, which
// decode other message types (and, for Watch and reflection, on streams),
// still answer, and refuse a malformed message with INVALID_ARGUMENT too.
func TestMalformedHealthAndReflection(t *testing.T) {
	t.Parallel()
	ts := startServer(t, DefaultConfig().Listen)
	health := healthpb.NewHealthClient(ts.conn)
	if resp, err := health.Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health check = %v, %v; want SERVING", resp, err)
	}
	bad := field(1, "otp\xff")
	var resp []byte
	err := ts.conn.Invoke(t.Context(), "/grpc.health.v1.Health/Check", bad, &resp, grpc.ForceCodecV2(rawCodec{}))
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "service must be valid UTF-8") {
		t.Errorf("malformed health check answered %v, want INVALID_ARGUMENT naming service", err)
	}

	stream, err := ts.conn.NewStream(t.Context(), &grpc.StreamDesc{ServerStreams: true}, "/grpc.health.v1.Health/Watch", grpc.ForceCodecV2(rawCodec{}))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.SendMsg(bad); err != nil {
		t.Fatal(err)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	err = stream.RecvMsg(&resp)
	if st := status.Convert(err); st.Code() != codes.InvalidArgument {
		t.Errorf("malformed health watch answered %v, want INVALID_ARGUMENT", err)
	}
	handled := map[string]string{"grpc_method": "Watch", "grpc_code": "InvalidArgument"}
	if n := ts.metric(t, "grpc_server_handled_total", handled); n != 1 {
		t.Errorf("grpc_server_handled_total%v = %v, want 1", handled, n)
	}

	// Reflection (a bidirectional stream) still lists the services.
	if names := listServices(t, ts.conn); !strings.Contains(names, "otp.v1.OtpService") {
		t.Errorf("reflection lists %q, want otp.v1.OtpService", names)
	}
}

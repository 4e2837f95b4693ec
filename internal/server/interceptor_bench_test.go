package server

import (
	"context"
	"io"
	"log/slog"
	"reflect"
	"testing"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"

	"github.com/otpd/otpd/internal/grpcauth"
	otpv1 "github.com/otpd/otpd/proto/otp/v1"
)

// BenchmarkUnaryInterceptors is the work NewGRPC's unary interceptors do
// for one VerifyCode, without the transport and the service: the server's
// own interceptor (grpc-go keeps it unexported; read here for the
// benchmark only) called as grpc-go calls it, on a context tagged by
// callStats, with a handler that answers at once. Caller auth is off and
// the log at info, as in the ghz load test.
func BenchmarkUnaryInterceptors(b *testing.B) {
	reg := prometheus.NewRegistry()
	log := slog.New(grpcauth.LogHandler(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo})))
	svc := &countingService{}
	g := NewGRPC(DefaultConfig().Listen, svc, grpcauth.New(grpcauth.DefaultConfig(), nil, reg, log), nil, reg, log)
	field := reflect.ValueOf(g.Server).Elem().FieldByName("opts").FieldByName("unaryInt")
	intercept := *(*grpc.UnaryServerInterceptor)(unsafe.Pointer(field.UnsafeAddr()))
	const method = "/otp.v1.OtpService/VerifyCode"
	info := &grpc.UnaryServerInfo{Server: svc, FullMethod: method}
	req := &otpv1.VerifyCodeRequest{Recipient: "+14155550123", UsageType: otpv1.UsageType_USAGE_TYPE_SIGN_IN, Code: "000000"}
	resp := &otpv1.VerifyCodeResponse{}
	handler := func(context.Context, any) (any, error) { return resp, nil }
	tag := &stats.RPCTagInfo{FullMethodName: method}
	b.ReportAllocs()
	for b.Loop() {
		ctx := g.calls.TagRPC(context.Background(), tag)
		if _, err := intercept(ctx, req, info, handler); err != nil {
			b.Fatal(err)
		}
	}
}

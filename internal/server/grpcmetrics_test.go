package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"

	"github.com/otpd/otpd/internal/promtest"
	otpv1 "github.com/otpd/otpd/proto/otp/v1"
)

// TestGRPCMetricsMatchLibrary: otpd's grpc_server_* metrics are
// go-grpc-middleware's, series for series: the same calls, unary and
// streaming, ending every way a call can end, some on methods the server
// does not serve, counted by both from many goroutines at once, give the
// same metric families (handling times aside, which differ from call to
// call: only their count and buckets' bounds are compared).
func TestGRPCMetricsMatchLibrary(t *testing.T) {
	t.Parallel()
	gs := grpc.NewServer()
	otpv1.RegisterOtpServiceServer(gs, &countingService{})
	healthpb.RegisterHealthServer(gs, health.NewServer())
	reflection.Register(gs)

	libReg, ownReg := prometheus.NewRegistry(), prometheus.NewRegistry()
	lib := grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram())
	libReg.MustRegister(lib)
	lib.InitializeMetrics(gs)
	own := newGRPCMetrics()
	own.register(ownReg)
	own.initialize(gs)
	if a, b := exposition(t, libReg), exposition(t, ownReg); a != b {
		t.Fatalf("initialized metrics differ:\nlibrary:\n%s\notpd:\n%s", a, b)
	}

	ends := []error{
		nil,
		status.Error(codes.InvalidArgument, "bad"),
		status.Error(codes.ResourceExhausted, "slow down"),
		status.Error(codes.Unauthenticated, "who"),
		status.Error(codes.Internal, "internal error"),
		status.Error(codes.Code(42), "not a gRPC code"),
		fmt.Errorf("wrapped: %w", status.Error(codes.NotFound, "gone")),
		context.Canceled,
		context.DeadlineExceeded,
		fmt.Errorf("store: %w", context.Canceled),
		errors.New("plain"),
	}
	methods := []string{
		"/otp.v1.OtpService/SendCode",
		"/otp.v1.OtpService/VerifyCode",
		"/grpc.health.v1.Health/Check",
		"/not.Served/Method", // no interceptor sees one; counted alike anyway
		"no-slash",
	}
	libUnary := lib.UnaryServerInterceptor()
	libStream := lib.StreamServerInterceptor()
	streams := []grpc.StreamServerInfo{
		{FullMethod: "/grpc.health.v1.Health/Watch", IsServerStream: true},
		{FullMethod: "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", IsClientStream: true, IsServerStream: true},
		{FullMethod: "/not.Served/Upload", IsClientStream: true},
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for _, m := range methods {
				info := &grpc.UnaryServerInfo{FullMethod: m}
				for _, end := range ends {
					h := func(context.Context, any) (any, error) {
						if end != nil {
							return nil, end
						}
						return "answer", nil
					}
					_, _ = libUnary(context.Background(), "request", info, h)
					_, _ = own.unaryInterceptor(context.Background(), "request", info, h)
				}
			}
			for i := range streams {
				for _, end := range ends {
					h := func(_ any, ss grpc.ServerStream) error {
						for _, fail := range []bool{false, true, false} {
							_ = ss.RecvMsg(fail)
							_ = ss.SendMsg(fail)
						}
						return end
					}
					_ = libStream(nil, fakeStream{}, &streams[i], h)
					_ = own.streamInterceptor(nil, fakeStream{}, &streams[i], h)
				}
			}
		})
	}
	wg.Wait()
	if a, b := exposition(t, libReg), exposition(t, ownReg); a != b {
		t.Errorf("metrics differ:\nlibrary:\n%s\notpd:\n%s", a, b)
	}
}

// fakeStream is a server stream whose RecvMsg and SendMsg fail when given
// true.
type fakeStream struct{ grpc.ServerStream }

func (fakeStream) Context() context.Context { return context.Background() }

func (fakeStream) RecvMsg(m any) error { return fail(m) }

func (fakeStream) SendMsg(m any) error { return fail(m) }

func fail(m any) error {
	if m.(bool) {
		return errors.New("stream broken")
	}
	return nil
}

// exposition is reg's metrics as text, each histogram's sum zeroed and its
// buckets' counts set to its count.
func exposition(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if h := m.GetHistogram(); h != nil {
				h.SampleSum = new(float64)
				for _, b := range h.GetBucket() {
					b.CumulativeCount = h.SampleCount
				}
				h.CreatedTimestamp = nil
			}
			if c := m.GetCounter(); c != nil {
				c.CreatedTimestamp = nil
			}
		}
		buf.WriteString(prototext.Format(mf))
	}
	return buf.String()
}

// TestCallCountersMatchVector: the cached otpd_rpc_calls_total series
// count what the vector's own lookups would, from many goroutines at once.
func TestCallCountersMatchVector(t *testing.T) {
	t.Parallel()
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "calls_total", Help: "Calls, as otpd_rpc_calls_total."}, []string{"caller", "method", "code", "entry"})
	c := newCallCounters(vec)
	calls := []callLabels{
		{"anonymous", "/otp.v1.OtpService/SendCode", codes.OK, "grpc"},
		{"anonymous", "/otp.v1.OtpService/SendCode", codes.InvalidArgument, "grpc"},
		{"logto", "/otp.v1.OtpService/DeliverCode", codes.OK, "logto"},
		{"anonymous", "/otp.v1.OtpService/VerifyCode", codes.OK, "connect"},
		{"anonymous", "/otp.v1.OtpService/VerifyCode", codes.Code(42), "grpc"},
	}
	const workers, rounds = 8, 100
	promtest.Concurrently(workers, rounds, func() {
		for _, k := range calls {
			c.Get(k).Inc()
		}
	})
	if n := testutil.CollectAndCount(vec); n != len(calls) {
		t.Errorf("%d series, want %d", n, len(calls))
	}
	for _, k := range calls {
		if got := testutil.ToFloat64(vec.WithLabelValues(k.caller, k.method, k.code.String(), k.entry)); got != workers*rounds {
			t.Errorf("%v: %v, want %d", k, got, workers*rounds)
		}
	}
}

package server

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/otpd/otpd/internal/benchcpu"
	"github.com/otpd/otpd/internal/grpcauth"
	otpv1 "github.com/otpd/otpd/proto/otp/v1"
	"github.com/otpd/otpd/service"
	"github.com/otpd/otpd/service/servicetest"
)

// BenchmarkGRPCService is SendCode and VerifyCode over gRPC on loopback,
// served by NewGRPC with otpd's interceptors and the real service, as in
// the ghz load test (deploy/ghz/otpd-load.yaml): every limit and fraud rule
// on but out of reach (except the windows every send shares, see benchService), the JSON log at info, a provider that does no I/O,
// a 20s deadline per call (ghz's default), 50 calls in flight, a new
// number and client IP per send. The in-memory store stands in for Redis, whose round trip would
// hide the rest. Client and server share the process: the difference
// between two versions of the server is what it measures.
func BenchmarkGRPCService(b *testing.B) {
	c := benchService(b)
	var n atomic.Int64
	b.Run("SendCode", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(25) // 50 calls in flight on 2 cores, as in the ghz load test
		defer benchcpu.Report(b)()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				i := int(n.Add(1))
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				_, err := c.SendCode(ctx, &otpv1.SendCodeRequest{
					Recipient: "+1415" + strconv.Itoa(2000000+i), UsageType: otpv1.UsageType_USAGE_TYPE_SIGN_IN, ClientIp: benchIP(i),
				})
				cancel()
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	// The codes VerifyCode checks, sent once: b.Run runs its function
	// again for each b.N.
	const recipients = 20000
	numbers := make([]string, recipients)
	for i := range numbers {
		numbers[i] = "+1416" + strconv.Itoa(2000000+i)
		if _, err := c.SendCode(context.Background(), &otpv1.SendCodeRequest{Recipient: numbers[i], UsageType: otpv1.UsageType_USAGE_TYPE_SIGN_IN}); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("VerifyCode", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(25)
		defer benchcpu.Report(b)()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				i := int(n.Add(1)) % recipients
				// A wrong code: the full check, attempt counted, code kept.
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				_, err := c.VerifyCode(ctx, &otpv1.VerifyCodeRequest{
					Recipient: numbers[i], UsageType: otpv1.UsageType_USAGE_TYPE_SIGN_IN, Code: "000000", ClientIp: benchIP(i),
				})
				cancel()
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// benchService serves the real service as otpd-load.yaml configures it and
// returns a client of it.
func benchService(b *testing.B) otpv1.OtpServiceClient {
	b.Helper()
	reg := prometheus.NewRegistry()
	log := slog.New(grpcauth.LogHandler(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo})))
	svc, _ := servicetest.New(b, func(cfg *service.Config) {
		cfg.Code.MaxAttempts = 100
		// The in-memory store scans a window's entries on each send: the
		// windows every send shares (per country, the conversion rule's
		// per country) would make the store all a send costs. Off.
		cfg.Limits.PerCountry = service.Window{}
		cfg.Fraud.Conversion.Window = 0
		cfg.Limits.PerIP.Count = 1 << 30
		cfg.Limits.VerifyPerRecipient.Count = 1 << 30
		cfg.Limits.VerifyPerIP.Count = 1 << 30
		cfg.Fraud.SMSCountries.Deny = []string{"001"}
	}, service.WithRegisterer(reg), service.WithLogger(log))
	// No tokens and no client CA: caller auth off, as in the load test.
	g := NewGRPC(DefaultConfig().Listen, svc, grpcauth.New(grpcauth.DefaultConfig(), nil, reg, log), nil, reg, log)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = g.Server.Serve(lis) }()
	b.Cleanup(g.Server.Stop)
	return otpv1.NewOtpServiceClient(dialPlain(b, lis.Addr().String()))
}

// benchIP is the i-th of 2^24 client addresses.
func benchIP(i int) string {
	return "10." + strconv.Itoa(i>>16&255) + "." + strconv.Itoa(i>>8&255) + "." + strconv.Itoa(i&255)
}

package service_test

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/otpd/otpd/internal/benchcpu"
	"github.com/otpd/otpd/internal/redistest"
	otpv1 "github.com/otpd/otpd/proto/otp/v1"
	"github.com/otpd/otpd/service"
	"github.com/otpd/otpd/service/memstore"
)

// The benchmarks call the service directly on a real redis-server, with a
// provider that does no I/O: they measure otpd's own work per call (input
// checks, hashing, rendering, the Lua round trips), not gRPC or a vendor.

func benchHarness(b *testing.B) *harness {
	return benchHarnessOn(b, nil)
}

// benchHarnessOn is benchHarness with the store wrap gives (nil: Redis).
func benchHarnessOn(b *testing.B, wrap func(service.Store) service.Store) *harness {
	h := newHarnessOn(b, wrap, func(c *service.Config) {
		c.Limits.PerCountry = service.Window{} // every call is a +1 number
		c.Limits.PerIP.Count = 1 << 30         // counted, never reached
		c.Code.MaxAttempts = 100
		c.Limits.VerifyPerRecipient = service.Window{}
		c.Limits.VerifyPerIP.Count = 1 << 30 // counted, never reached
	})
	h.logs.discard = true
	return h
}

func BenchmarkSendCode(b *testing.B) {
	h := benchHarness(b)
	var n atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(25) // 50 calls in flight on 2 cores, as in the ghz load test
	b.ResetTimer()
	defer benchcpu.Report(b)()
	defer redistest.ReportCPU(b, h.rdb)()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			// A fresh valid US number per call: exchanges 200 and up.
			to := fmt.Sprintf("+1415%07d", 2000000+n.Add(1))
			if _, err := h.svc.SendCode(ctx, &otpv1.SendCodeRequest{Recipient: to, UsageType: signIn, ClientIp: "203.0.113.9"}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkVerifyCode(b *testing.B) {
	h := benchHarness(b)
	const recipients = 1000
	ctx := context.Background()
	for i := range recipients {
		if _, err := h.svc.SendCode(ctx, &otpv1.SendCodeRequest{Recipient: fmt.Sprintf("+1415%07d", 2000000+i), UsageType: signIn}); err != nil {
			b.Fatal(err)
		}
	}
	var n atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(25) // 50 calls in flight on 2 cores, as in the ghz load test
	b.ResetTimer()
	defer benchcpu.Report(b)()
	defer redistest.ReportCPU(b, h.rdb)()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			// A wrong code: the full check, attempt counted, code kept.
			_, err := h.svc.VerifyCode(ctx, &otpv1.VerifyCodeRequest{
				Recipient: fmt.Sprintf("+1415%07d", 2000000+i%recipients), UsageType: signIn, Code: "0000000"[:6],
			})
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkGoSide is SendCode and VerifyCode as above, one call at a time,
// on the in-memory store: the service's own CPU per call (input checks,
// phone parsing, hashing, fraud rules, rendering, metrics, the log line)
// without the Redis round trip, whose cost and noise would hide it.
func BenchmarkGoSide(b *testing.B) {
	mem := func(service.Store) service.Store { return memstore.New() }
	ctx := context.Background()
	b.Run("SendCode", func(b *testing.B) {
		h := benchHarnessOn(b, mem)
		b.ReportAllocs()
		defer benchcpu.Report(b)()
		for i := 0; b.Loop(); i++ {
			// A new number and client IP per call, as in the ghz load.
			to := "+1415" + strconv.Itoa(2000000+i)
			if _, err := h.svc.SendCode(ctx, &otpv1.SendCodeRequest{Recipient: to, UsageType: signIn, ClientIp: clientIP(i)}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("VerifyCode", func(b *testing.B) {
		h := benchHarnessOn(b, mem)
		const recipients = 20000
		numbers := make([]string, recipients)
		for i := range numbers {
			numbers[i] = "+1415" + strconv.Itoa(2000000+i)
			if _, err := h.svc.SendCode(ctx, &otpv1.SendCodeRequest{Recipient: numbers[i], UsageType: signIn}); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportAllocs()
		defer benchcpu.Report(b)()
		for i := 0; b.Loop(); i++ {
			// A wrong code, as in BenchmarkVerifyCode.
			if _, err := h.svc.VerifyCode(ctx, &otpv1.VerifyCodeRequest{
				Recipient: numbers[i%recipients], UsageType: signIn, Code: "000000", ClientIp: clientIP(i % recipients),
			}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// clientIP is the i-th of 2^24 client addresses.
func clientIP(i int) string {
	return "10." + strconv.Itoa(i>>16&255) + "." + strconv.Itoa(i>>8&255) + "." + strconv.Itoa(i&255)
}

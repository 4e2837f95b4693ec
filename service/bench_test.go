package service_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	otpv1 "github.com/otpd/otpd/proto/otp/v1"
	"github.com/otpd/otpd/service"
)

// The benchmarks call the service directly on a real redis-server, with a
// provider that does no I/O: they measure otpd's own work per call (input
// checks, hashing, rendering, the Lua round trips), not gRPC or a vendor.

func benchHarness(b *testing.B) *harness {
	h := newHarness(b, func(c *service.Config) {
		c.Limits.PerCountry = service.Window{} // every call is a +1 number
		c.Limits.PerIP.Count = 1 << 30         // counted, never reached
		c.Code.MaxAttempts = 100
		c.Limits.VerifyPerRecipient = service.Window{}
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

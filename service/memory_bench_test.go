package service_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/otpd/otpd/internal/redistest"
	otpv1 "github.com/otpd/otpd/proto/otp/v1"
	"github.com/otpd/otpd/service"
)

// BenchmarkLiveCodeMemory sends 100,000 codes (OTPD_MEM_CODES), each to a
// recipient of its own, through the service with the default limits, and
// reports what Redis holds per live code while every cooldown is still
// live (INFO memory's used_memory, summed over a Cluster's masters, after
// minus before): B/code. Run once per case (make bench-memory):
//
//	go test -run '^$' -bench LiveCodeMemory -benchtime 1x ./service/
//
// The cases: a send as most callers make it (no client_ip); with a
// client_ip of its own per code (each IP's send window and conversion
// count, as under a botnet or a carrier-grade NAT-free mobile network);
// with an idempotency key (its record lives 24 h).
func BenchmarkLiveCodeMemory(b *testing.B) {
	n := 100_000
	if v, err := strconv.Atoi(os.Getenv("OTPD_MEM_CODES")); err == nil && v > 0 {
		n = v
	}
	cases := []struct {
		name string
		req  func(i int) *otpv1.SendCodeRequest
	}{
		{"plain", func(i int) *otpv1.SendCodeRequest {
			return &otpv1.SendCodeRequest{Recipient: fmt.Sprintf("user%d@example.com", i), UsageType: signIn}
		}},
		{"client_ip", func(i int) *otpv1.SendCodeRequest {
			return &otpv1.SendCodeRequest{Recipient: fmt.Sprintf("user%d@example.com", i), UsageType: signIn, ClientIp: fmt.Sprintf("11.%d.%d.%d", i>>16&255, i>>8&255, i&255)}
		}},
		{"idempotency_key", func(i int) *otpv1.SendCodeRequest {
			return &otpv1.SendCodeRequest{Recipient: fmt.Sprintf("user%d@example.com", i), UsageType: signIn,
				IdempotencyKey: fmt.Sprintf("send-%d", i)}
		}},
	}
	for _, topo := range []string{"single node", "cluster"} {
		for _, c := range cases {
			b.Run(topo+"/"+c.name, func(b *testing.B) {
				for range b.N {
					perCode := liveCodeMemory(b, topo == "cluster", n, c.req)
					b.ReportMetric(perCode, "B/code")
				}
			})
		}
	}
}

// liveCodeMemory sends n codes, as req makes them, on a fresh Redis (a
// single node or a 3-master Cluster) and returns used_memory's growth per
// code.
func liveCodeMemory(b *testing.B, cluster bool, n int, req func(i int) *otpv1.SendCodeRequest) float64 {
	b.StopTimer()
	o := harnessOptions{mutate: func(c *service.Config) {
		c.Limits.PerIP.Count = 1 << 30 // one code per IP here; counted, never reached
	}}
	var nodes []string
	if cluster {
		cl := redistest.StartCluster(b, 3)
		o.cluster, nodes = cl, cl.Addrs()
	} else {
		srv := redistest.Start(b)
		o.redis, nodes = srv, []string{srv.Addr()}
	}
	h := newHarnessWith(b, o)
	h.logs.discard = true
	used := func() int64 {
		var sum int64
		for _, addr := range nodes {
			c := redis.NewClient(&redis.Options{Addr: addr})
			info, err := c.Info(context.Background(), "memory").Result()
			_ = c.Close()
			if err != nil {
				b.Fatal(err)
			}
			sum += infoInt(b, info, "used_memory")
		}
		return sum
	}
	// One code first, so that every script is loaded and the clients'
	// connections are open before the baseline is read.
	h.sendReq(b, req(n))
	before := used()
	b.StartTimer()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if _, err := h.svc.SendCode(context.Background(), req(i)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	perCode := float64(used()-before) / float64(n)
	b.StartTimer()
	return perCode
}

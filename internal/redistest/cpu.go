package redistest

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// usedCPU is the CPU time the redis-server behind rdb has used, user and
// system (INFO cpu).
func usedCPU(tb testing.TB, rdb redis.Cmdable) time.Duration {
	tb.Helper()
	info, err := rdb.Info(context.Background(), "cpu").Result()
	if err != nil {
		tb.Fatal(err)
	}
	var total time.Duration
	for _, line := range strings.Split(info, "\n") {
		name, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || (name != "used_cpu_user" && name != "used_cpu_sys") {
			continue
		}
		s, err := strconv.ParseFloat(v, 64)
		if err != nil {
			tb.Fatal(err)
		}
		total += time.Duration(s * float64(time.Second))
	}
	return total
}

// ReportCPU reports the CPU time the redis-server behind rdb uses per op
// (redis-us/op) from now until the returned func is called: defer it.
func ReportCPU(b *testing.B, rdb redis.Cmdable) func() {
	b.Helper()
	start := usedCPU(b, rdb)
	return func() {
		b.ReportMetric(float64(usedCPU(b, rdb)-start)/float64(time.Microsecond)/float64(b.N), "redis-us/op")
	}
}

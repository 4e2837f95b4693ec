package main_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/otpd/otpd/internal/redistest"
	otpv1 "github.com/otpd/otpd/proto/otp/v1"
)

// startOtpdOn runs the binary with the given redis: block and a console
// SMS provider on a TCP port, and returns a send-then-verify round.
func startOtpdOn(t *testing.T, redisBlock string) (*process, func(to string)) {
	t.Helper()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "otpd.yaml")
	cfg := fmt.Sprintf(`
listen: {grpc: "%s", http: "%s"}
redis:
%s
secret: "0123456789abcdef0123456789abcdef-topology"
health: {interval: 200ms}
providers:
  - {name: console, type: console, channel: sms}
`, anyPort, anyPort, redisBlock)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startOtpd(t, []string{"-config", cfgPath})
	addr, _ := p.addrs(t)
	conn := dial(t, addr)
	waitHealth(t, conn, healthpb.HealthCheckResponse_SERVING)
	client := otpv1.NewOtpServiceClient(conn)
	round := func(to string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// A client IP and an SMS number: the per-IP and per-country
		// windows are hash tags of their own, next to the recipient's.
		if _, err := client.SendCode(ctx, &otpv1.SendCodeRequest{Recipient: to, UsageType: otpv1.UsageType_USAGE_TYPE_SIGN_IN, ClientIp: "203.0.113.7"}); err != nil {
			t.Fatalf("SendCode(%s): %v", to, err)
		}
		var code string
		select {
		case code = <-p.codes:
		case <-ctx.Done():
			t.Fatal("the console provider printed no code")
		}
		for _, want := range []otpv1.VerifyResult{otpv1.VerifyResult_VERIFY_RESULT_OK, otpv1.VerifyResult_VERIFY_RESULT_EXPIRED} {
			v, err := client.VerifyCode(ctx, &otpv1.VerifyCodeRequest{Recipient: to, UsageType: otpv1.UsageType_USAGE_TYPE_SIGN_IN, Code: code})
			if err != nil || v.GetResult() != want {
				t.Fatalf("VerifyCode(%s): %v, %v; want %v", to, v.GetResult(), err, want)
			}
		}
	}
	return p, round
}

// The binary on a real 3-node Redis Cluster (redis.addrs + redis.cluster).
func TestBlackBoxRedisCluster(t *testing.T) {
	t.Parallel()
	cluster := redistest.StartCluster(t, 3)
	_, round := startOtpdOn(t, fmt.Sprintf("  addrs: [%s]\n  cluster: true", strings.Join(cluster.Addrs(), ", ")))
	for i := range 6 {
		round("+1415555" + strconv.Itoa(1000+i))
	}
	round("+8613800138000")
}

// The binary through Sentinel (redis.addrs + redis.master_name), across a
// failover: otpd sees the store go while there is no master and come back
// once Sentinel promoted the replica, and the same process sends and
// verifies on the new master.
func TestBlackBoxRedisSentinelFailover(t *testing.T) {
	t.Parallel()
	master := redistest.Start(t)
	redistest.StartReplica(t, master)
	sentinel := redistest.StartSentinel(t, master, "otpd")
	p, round := startOtpdOn(t, fmt.Sprintf("  addrs: [%s]\n  master_name: otpd\n  timeout: 500ms", sentinel.Addr()))
	round("+14155551000")

	master.Stop()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(p.Output(), "store available again") {
		if time.Now().After(deadline) {
			t.Fatal("otpd never reported the store available again after the failover")
		}
		time.Sleep(100 * time.Millisecond)
	}
	round("+14155551001")
}

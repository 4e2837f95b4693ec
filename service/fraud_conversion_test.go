package service_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"

	"github.com/otpd/otpd/internal/redistest"
	otpv1 "github.com/otpd/otpd/proto/otp/v1"
	"github.com/otpd/otpd/providers/fake"
	"github.com/otpd/otpd/service"
)

// withConversion turns the conversion rule on with the documented window
// and ratio and min_unverified min, and lifts per_ip so that the rule is
// what stops a client IP.
func withConversion(minUnverified int, more func(*service.Config)) func(*service.Config) {
	return func(c *service.Config) {
		c.Fraud.Conversion = service.Conversion{Window: 24 * time.Hour, MinUnverified: minUnverified, Ratio: 0.2}
		c.Limits.PerIP = service.Window{Count: 10000, Window: time.Hour}
		if more != nil {
			more(c)
		}
	}
}

// wantLowConversion checks that err is the conversion rule's refusal for
// subject, with a RetryInfo.
func wantLowConversion(tb testing.TB, err error, subject string) {
	tb.Helper()
	details := wantStatus(tb, err, codes.ResourceExhausted)
	info := detail[*errdetails.ErrorInfo](tb, details)
	if info.GetReason() != "LOW_CONVERSION" || info.GetMetadata()["rule"] != "conversion" || info.GetMetadata()["subject"] != subject {
		tb.Fatalf("ErrorInfo = %v, want LOW_CONVERSION for %s", info, subject)
	}
	// The harness's clock stands still while Redis's runs: a little slack.
	if d := detail[*errdetails.RetryInfo](tb, details).GetRetryDelay().AsDuration(); d <= 0 || d > 24*time.Hour+time.Minute {
		tb.Fatalf("RetryInfo = %v, want within the window", d)
	}
}

// TestConversionAttack simulates SMS pumping against the default
// conversion rule (24h, min_unverified 20, ratio 0.2): a country whose
// users verify their codes keeps sending while a burst of unverified
// sends to another country (from many IPs), and one from a single IP to
// the healthy country, are each stopped after min_unverified messages.
// Single node (the rule decided in the send's script) and Cluster (taken
// first with the shared windows) alike.
func TestConversionAttack(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 3)
	for _, tc := range []struct {
		name string
		o    harnessOptions
	}{
		{"single_node", harnessOptions{}},
		{"cluster", harnessOptions{cluster: cl}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			const minUnverified = 20
			tc.o.mutate = withConversion(minUnverified, nil)
			h := newHarnessWith(t, tc.o)
			ctx := context.Background()
			legit, legitRefused, abandoned := 0, 0, 0
			// A user of the healthy country (+1): one in ten never enters
			// the code.
			user := func() {
				legit++
				to, ip := fmt.Sprintf("+1415555%04d", legit), testIP(legit)
				resp, err := h.client.SendCode(ctx, &otpv1.SendCodeRequest{Recipient: to, UsageType: signIn, ClientIp: ip})
				if err != nil {
					legitRefused++
					t.Logf("legitimate send %d refused: %v", legit, err)
					return
				}
				if legit%10 == 0 {
					abandoned++
					return
				}
				code := ""
				for _, m := range h.primary.Sent() {
					if m.VerificationID == resp.GetVerificationId() {
						code = m.Code
					}
				}
				if r, err := h.client.VerifyCode(ctx, &otpv1.VerifyCodeRequest{Recipient: to, UsageType: signIn, Code: code, ClientIp: ip}); err != nil || r.GetResult() != otpv1.VerifyResult_VERIFY_RESULT_OK {
					t.Fatalf("legitimate verify %d: %v, %v", legit, r, err)
				}
			}
			// A morning's traffic before the attack.
			for range 300 {
				user()
			}
			var toCountry, fromIP, sent int
			attack := func(to, ip string, delivered *int, subject string) {
				sent++
				_, err := h.client.SendCode(ctx, &otpv1.SendCodeRequest{Recipient: to, UsageType: signIn, ClientIp: ip})
				if err == nil {
					*delivered++
					return
				}
				wantLowConversion(t, err, subject)
			}
			for i := range 200 {
				// Premium-revenue numbers of one country (+86), each
				// request from another address of a botnet.
				attack(fmt.Sprintf("+86138%08d", i), fmt.Sprintf("198.18.%d.%d", i/250, i%250+1), &toCountry, "country_code")
				// One address asking for codes to numbers of the
				// healthy country.
				attack(fmt.Sprintf("+1650555%04d", i), "203.0.113.66", &fromIP, "client_ip")
				if i%2 == 0 {
					user()
				}
			}
			refused := h.fraudCount(t, "conversion", "refused")
			t.Logf("%s: attack on +86 from 200 IPs: %d of 200 messages delivered before the block; attack from one IP: %d of 200; "+
				"legitimate sends: %d, %d refused (%d abandoned, the rest verified); conversion refusals counted: %.0f",
				tc.name, toCountry, fromIP, legit, legitRefused, abandoned, refused)
			if legitRefused != 0 {
				t.Errorf("%d legitimate sends refused, want 0", legitRefused)
			}
			if toCountry > minUnverified || fromIP > minUnverified {
				t.Errorf("attack messages delivered: %d to +86, %d from one IP; want at most %d each", toCountry, fromIP, minUnverified)
			}
			if toCountry != minUnverified || fromIP != minUnverified {
				t.Errorf("attack messages delivered: %d to +86, %d from one IP; want exactly min_unverified %d (nothing verified them)", toCountry, fromIP, minUnverified)
			}
			if want := float64(sent - toCountry - fromIP); refused != want {
				t.Errorf("otpd_fraud_decisions_total{rule=conversion,action=refused} = %v, want %v", refused, want)
			}
			if n := counter(t, h.reg, "otpd_verifications_total", map[string]string{"usage_type": "sign_in", "result": "ok", "country_code": "1"}); n != float64(legit-abandoned) {
				t.Errorf("verified +1 codes counted: %v, want %d", n, legit-abandoned)
			}
		})
	}
}

// fraud.mode record_only decides and counts, and refuses nothing; a
// sender always_allow names is counted as allowed and never refused.
func TestConversionRecordOnlyAndAlwaysAllow(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, action, ip string
		mutate           func(*service.Config)
	}{
		{"record_only", "recorded", "198.51.100.9", func(c *service.Config) { c.Fraud.Mode = service.FraudRecordOnly }},
		{"always_allow", "allowed", "198.51.100.9", func(c *service.Config) { c.Fraud.AlwaysAllow.ClientIPs = []string{"198.51.100.0/24"} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, withConversion(3, tc.mutate))
			for i := range 10 {
				if _, err := h.client.SendCode(context.Background(), &otpv1.SendCodeRequest{
					Recipient: fmt.Sprintf("+86139%08d", i), UsageType: signIn, ClientIp: tc.ip,
				}); err != nil {
					t.Fatalf("send %d refused: %v", i, err)
				}
			}
			if n := len(h.primary.Sent()); n != 10 {
				t.Fatalf("%d messages delivered, want 10", n)
			}
			// Sends 4 to 10 were over min_unverified 3, each counted once
			// (the country and the IP both over it are one decision).
			if got := h.fraudCount(t, "conversion", tc.action); got != 7 {
				t.Fatalf("otpd_fraud_decisions_total{rule=conversion,action=%s} = %v, want 7", tc.action, got)
			}
			if got := h.fraudCount(t, "conversion", "refused"); got != 0 {
				t.Fatalf("refused decisions = %v, want 0", got)
			}
		})
	}
	// Enforced, the same sends stop after 3; an always_allow client
	// still goes through.
	h := newHarness(t, withConversion(3, func(c *service.Config) { c.Fraud.AlwaysAllow.ClientIPs = []string{"198.51.100.0/24"} }))
	for i := range 4 {
		_, err := h.client.SendCode(context.Background(), &otpv1.SendCodeRequest{Recipient: fmt.Sprintf("+86139%08d", i), UsageType: signIn, ClientIp: "192.0.2.1"})
		if i < 3 && err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		if i == 3 {
			wantLowConversion(t, err, "country_code")
		}
	}
	if _, err := h.client.SendCode(context.Background(), &otpv1.SendCodeRequest{Recipient: "+8613900000099", UsageType: signIn, ClientIp: "198.51.100.20"}); err != nil {
		t.Fatalf("always_allow client refused: %v", err)
	}
}

// DeliverCode is not subject to the conversion rule (the identity server
// verifies its own codes: otpd never sees them verified) and does not
// count in it; a send delivered nowhere does not count either; a
// verified code credits its country and its send's client IP.
func TestConversionCountsOnlyUnverifiedSendCodes(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withConversion(2, nil))
	ctx := context.Background()
	for i := range 5 {
		if _, err := h.client.DeliverCode(ctx, &otpv1.DeliverCodeRequest{
			Recipient: fmt.Sprintf("+86137%08d", i), UsageType: signIn, Code: "123456", ClientIp: "192.0.2.7",
		}); err != nil {
			t.Fatalf("DeliverCode %d: %v", i, err)
		}
	}
	// Every provider down: the sends fail and are not unverified ones.
	h.primary.SetMode(fake.ModeTransient)
	h.secondary.SetMode(fake.ModeTransient)
	for i := range 3 {
		if _, err := h.client.SendCode(ctx, &otpv1.SendCodeRequest{Recipient: fmt.Sprintf("+86136%08d", i), UsageType: signIn, ClientIp: "192.0.2.7"}); err == nil {
			t.Fatal("send delivered with every provider down")
		}
	}
	h.primary.SetMode(fake.ModeOK)
	h.secondary.SetMode(fake.ModeOK)
	to := []string{"+8613500000001", "+8613500000002"}
	var codes []string
	for _, r := range to {
		_, code := h.sendReq(t, &otpv1.SendCodeRequest{Recipient: r, UsageType: signIn, ClientIp: "192.0.2.7"})
		codes = append(codes, code)
	}
	_, err := h.client.SendCode(ctx, &otpv1.SendCodeRequest{Recipient: "+8613500000003", UsageType: signIn, ClientIp: "192.0.2.8"})
	wantLowConversion(t, err, "country_code")
	// From another IP the country refuses; with the country credited
	// (2 verified: max(2, 0.4) = 2 unverified allowed again), the IP of
	// the two sends is credited too.
	for i, r := range to {
		if res := h.verify(t, r, signIn, codes[i]); res.GetResult() != otpv1.VerifyResult_VERIFY_RESULT_OK {
			t.Fatalf("verify %s: %v", r, res.GetResult())
		}
	}
	for i := range 2 {
		h.sendReq(t, &otpv1.SendCodeRequest{Recipient: fmt.Sprintf("+8613500000%03d", 10+i), UsageType: signIn, ClientIp: "192.0.2.7"})
	}
	_, err = h.client.SendCode(ctx, &otpv1.SendCodeRequest{Recipient: "+8613500000020", UsageType: signIn, ClientIp: "192.0.2.9"})
	wantLowConversion(t, err, "country_code")
}

// TestConversionRedisCost measures what the conversion rule adds to a
// send in Redis: commands (INFO commandstats) and the scripts' own time
// (usec of EVALSHA, per send), with the rule off and on, on a single node
// (the rule inside the send's script: no round trip added) and on a
// Cluster (a script per conversion slot, pipelined with the shared
// windows' in one round trip); and the memory of a live code, which
// stores its send's client-IP subject with the rule on. The times are
// logged, not asserted (DESIGN "Testing rules"); the round trips and the
// memory bound (350 B per live code) are.
func TestConversionRedisCost(t *testing.T) {
	t.Parallel()
	const sends = 1000
	// Many verified (ratio 3: 400 verified tolerate 1200 unverified):
	// the rule's full check (above min_unverified) runs on every send
	// and refuses none.
	on := func(c *service.Config) {
		c.Fraud.Conversion = service.Conversion{Window: 24 * time.Hour, MinUnverified: 5, Ratio: 3}
		c.Limits.PerIP.Count, c.Limits.PerCountry = 1<<30, service.Window{}
	}
	off := func(c *service.Config) {
		c.Limits.PerIP.Count, c.Limits.PerCountry = 1<<30, service.Window{}
	}
	for _, env := range rotationEnvs(t) {
		t.Run(env.name, func(t *testing.T) {
			t.Parallel()
			evalsha := map[string]float64{}
			for i, mode := range []struct {
				name   string
				mutate func(*service.Config)
			}{{"off", off}, {"on", on}} {
				h := env.replica(t, rotationConfig{secret: "0123456789abcdef0123456789abcdef-cost"}, mode.mutate)
				base := 2000000 + 100000*(i+1) // valid US numbers: exchanges 200 and up
				ctx := context.Background()
				// 400 users who verify, then the script cache warm.
				for n := range 400 {
					to := fmt.Sprintf("+1415%07d", base+n)
					_, code := h.sendReq(t, &otpv1.SendCodeRequest{Recipient: to, UsageType: signIn, ClientIp: testIP(n)})
					h.verify(t, to, signIn, code)
				}
				var usec, calls int64
				cmds := commandsDuring(t, env.addrs, func() {
					for n := range sends {
						if _, err := h.client.SendCode(ctx, &otpv1.SendCodeRequest{Recipient: fmt.Sprintf("+1415%07d", base+50000+n),
							UsageType: signIn, ClientIp: testIP(n)}); err != nil {
							t.Fatalf("send %d: %v", n, err)
						}
					}
					usec, calls = evalshaStats(t, env.addrs)
				})
				evalsha[mode.name] = float64(usec) / sends
				t.Logf("%s, rule %s: %.1f µs of scripts per send (%d EVALSHA, %.1f µs each); commands per send: %s",
					env.name, mode.name, evalsha[mode.name], calls, float64(usec)/float64(calls), perSend(cmds, sends))
				wantCalls := int64(sends) // one script per send
				if env.name == "cluster" {
					wantCalls = 2 * sends // the per-IP window first
					if mode.name == "on" {
						wantCalls = 4 * sends // and each conversion slot, in the same pipeline
					}
				}
				if calls != wantCalls {
					t.Errorf("rule %s: %d EVALSHA for %d sends, want %d", mode.name, calls, sends, wantCalls)
				}
				if env.name == "single node" {
					t.Logf("rule %s: a live code with client_ip takes %d bytes", mode.name, codeMemory(t, h, env.addrs[0], base+90000))
				}
			}
			t.Logf("%s: the conversion rule adds %.1f µs of Redis time per send (%.1f → %.1f)", env.name,
				evalsha["on"]-evalsha["off"], evalsha["off"], evalsha["on"])
		})
	}
}

// evalshaStats reads the EVALSHA calls and their usec from every node.
func evalshaStats(tb testing.TB, addrs []string) (usec, calls int64) {
	tb.Helper()
	for _, a := range addrs {
		c := redis.NewClient(&redis.Options{Addr: a})
		info, err := c.Info(context.Background(), "commandstats").Result()
		_ = c.Close()
		if err != nil {
			tb.Fatal(err)
		}
		for _, line := range strings.Split(info, "\n") {
			rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_evalsha:")
			if !ok {
				continue
			}
			for _, kv := range strings.Split(rest, ",") {
				k, v, _ := strings.Cut(kv, "=")
				n, _ := strconv.ParseInt(v, 10, 64)
				switch k {
				case "calls":
					calls += n
				case "usec":
					usec += n
				}
			}
		}
	}
	return usec, calls
}

func perSend(cmds map[string]int64, sends int64) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(cmds)) {
		fmt.Fprintf(&b, "%s=%.2f ", k, float64(cmds[k])/float64(sends))
	}
	return strings.TrimSpace(b.String())
}

// codeMemory sends the n-th code with a client IP and returns what
// MEMORY USAGE says its recipient's record (code, cooldown, windows)
// takes.
func codeMemory(tb testing.TB, h *harness, addr string, n int) int64 {
	tb.Helper()
	ctx := context.Background()
	h.primary.Reset() // it keeps a bounded list of what it sent
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	before, err := c.Keys(ctx, "*:r").Result()
	if err != nil {
		tb.Fatal(err)
	}
	h.sendReq(tb, &otpv1.SendCodeRequest{Recipient: fmt.Sprintf("+1415%07d", n), UsageType: signIn, ClientIp: "192.0.2.44"})
	after, err := c.Keys(ctx, "*:r").Result()
	if err != nil {
		tb.Fatal(err)
	}
	for _, k := range after {
		if !slices.Contains(before, k) {
			b, err := c.MemoryUsage(ctx, k).Result()
			if err != nil {
				tb.Fatal(err)
			}
			if b > 350 {
				tb.Errorf("a live code takes %d bytes, want at most 350", b)
			}
			return b
		}
	}
	tb.Fatal("no new recipient record")
	return 0
}

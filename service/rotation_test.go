package service_test

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"

	"github.com/otpd/otpd/internal/redact"
	"github.com/otpd/otpd/internal/redistest"
	otpv1 "github.com/otpd/otpd/proto/otp/v1"
	"github.com/otpd/otpd/service"
)

// The secrets of a rotation: s1 is the harness's default secret, s2 the
// new one.
const (
	s1 = "0123456789abcdef0123456789abcdef-test"
	s2 = "fedcba9876543210fedcba9876543210-next"
)

// The configurations of README "Rotating the secret": before it; step 1,
// s2 read but not written; step 2, s2 written and s1 read; after it.
var (
	before = rotationConfig{secret: s1}
	step1  = rotationConfig{secret: s1, previous: []string{s2}}
	step2  = rotationConfig{secret: s2, previous: []string{s1}}
	after  = rotationConfig{secret: s2}
)

type rotationConfig struct {
	secret   string
	previous []string
}

// rotationEnv is one Redis (a single node or a Cluster) that replicas of
// otpd with different secrets share.
type rotationEnv struct {
	name  string
	opts  harnessOptions
	addrs []string
}

// rotationEnvs starts a single node and a 3-node Cluster.
func rotationEnvs(t *testing.T) []rotationEnv {
	t.Helper()
	srv := redistest.Start(t)
	cl := redistest.StartCluster(t, 3)
	return []rotationEnv{
		{"single node", harnessOptions{redis: srv}, []string{srv.Addr()}},
		{"cluster", harnessOptions{cluster: cl}, cl.Addrs()},
	}
}

// replica is an otpd with configuration rc (and mutate) on e's Redis.
func (e rotationEnv) replica(tb testing.TB, rc rotationConfig, mutate func(*service.Config)) *harness {
	tb.Helper()
	o := e.opts
	o.mutate = func(c *service.Config) {
		c.Secret = redact.Secret(rc.secret)
		c.PreviousSecrets = nil
		for _, p := range rc.previous {
			c.PreviousSecrets = append(c.PreviousSecrets, redact.Secret(p))
		}
		if mutate != nil {
			mutate(c)
		}
	}
	return newHarnessWith(tb, o)
}

// wantLimit fails unless err is RESOURCE_EXHAUSTED naming limit.
func wantLimit(tb testing.TB, err error, limit string) {
	tb.Helper()
	if err == nil {
		tb.Fatalf("call answered, want refused by %s", limit)
	}
	info := detail[*errdetails.ErrorInfo](tb, wantStatus(tb, err, codes.ResourceExhausted))
	if got := info.GetMetadata()["limit"]; got != limit {
		tb.Fatalf("refused by %q, want %q: %v", got, limit, err)
	}
}

// wrongVerify verifies a wrong code and returns the call's error (nil for
// an answer, which must then be MISMATCH).
func (h *harness) wrongVerify(tb testing.TB, to, ip string) error {
	tb.Helper()
	resp, err := h.client.VerifyCode(context.Background(), &otpv1.VerifyCodeRequest{Recipient: to, UsageType: signIn, Code: "000000", ClientIp: ip})
	if err == nil && resp.GetResult() != otpv1.VerifyResult_VERIFY_RESULT_MISMATCH {
		tb.Fatalf("wrong code: %v, want MISMATCH", resp)
	}
	return err
}

// sendErr sends and returns the call's error.
func (h *harness) sendErr(to, ip string) error {
	_, err := h.client.SendCode(context.Background(), &otpv1.SendCodeRequest{Recipient: to, UsageType: signIn, ClientIp: ip})
	return err
}

// Secret rotation keeps live codes and limits (DESIGN "Failure model"), on
// a single node and on Redis Cluster: state written under the old secret
// counts for a replica configured with the new one and the old one as
// previous.
func TestSecretRotation(t *testing.T) {
	t.Parallel()
	for _, env := range rotationEnvs(t) {
		t.Run(env.name, func(t *testing.T) {
			t.Parallel()
			t.Run("CodeIssuedBeforeVerifiesAfter", func(t *testing.T) {
				t.Parallel()
				old, mid, cur := env.replica(t, before, nil), env.replica(t, step1, nil), env.replica(t, step2, nil)
				const to = "+14155550201"
				_, code := old.send(t, to, signIn)
				if r := mid.verify(t, to, signIn, wrongCode(code)); r.GetResult() != otpv1.VerifyResult_VERIFY_RESULT_MISMATCH || r.GetAttemptsRemaining() != 4 {
					t.Fatalf("wrong code during step 1: %v, want MISMATCH with 4 left", r)
				}
				if r := cur.verify(t, to, signIn, wrongCode(code)); r.GetAttemptsRemaining() != 3 {
					t.Fatalf("wrong code after step 2: %v, want 3 left (the attempts carry over)", r)
				}
				cur.wantVerify(t, to, signIn, code, otpv1.VerifyResult_VERIFY_RESULT_OK, "code issued under the old secret, after the rotation")
				cur.wantVerify(t, to, signIn, code, otpv1.VerifyResult_VERIFY_RESULT_EXPIRED, "the same code again")
				// And a code issued under the new secret verifies on a
				// replica still at step 1.
				const other = "jane.rotation@example.com"
				_, code = cur.send(t, other, signIn)
				mid.wantVerify(t, other, signIn, code, otpv1.VerifyResult_VERIFY_RESULT_OK, "code issued under the new secret, on a replica at step 1")
			})
			t.Run("VerifyWindowKeepsCounting", func(t *testing.T) {
				t.Parallel()
				attempts := func(c *service.Config) { c.Code.MaxAttempts = 100 }
				old, cur := env.replica(t, before, attempts), env.replica(t, step2, attempts)
				const to = "+14155550202"
				old.send(t, to, signIn)
				for i := range 20 {
					h := old
					if i >= 15 {
						h = cur
					}
					if err := h.wrongVerify(t, to, ""); err != nil {
						t.Fatalf("wrong code %d: %v", i+1, err)
					}
				}
				// 15 under s1 and 5 under s2 fill the window of 20.
				wantLimit(t, cur.wrongVerify(t, to, ""), "verify_per_recipient")
			})
			t.Run("CooldownAndSendWindowHold", func(t *testing.T) {
				t.Parallel()
				old, cur := env.replica(t, before, nil), env.replica(t, step2, nil)
				const to = "+14155550203"
				old.send(t, to, signIn)
				err := cur.sendErr(to, "")
				wantLimit(t, err, "resend_interval")
				retry := detail[*errdetails.RetryInfo](t, wantStatus(t, err, codes.ResourceExhausted)).GetRetryDelay().AsDuration()
				if retry < 55*time.Second || retry > 61*time.Second {
					t.Fatalf("retry after %v, want the cooldown set before the rotation (about 60s)", retry)
				}
				noCooldown := func(c *service.Config) { c.Limits.ResendInterval = 0 }
				old, cur = env.replica(t, before, noCooldown), env.replica(t, step2, noCooldown)
				const other = "+14155550204"
				for i := range 5 {
					h := old
					if i >= 3 {
						h = cur
					}
					h.send(t, other, signIn)
				}
				wantLimit(t, cur.sendErr(other, ""), "per_recipient")
			})
			t.Run("IdempotentRetryReplays", func(t *testing.T) {
				t.Parallel()
				old, cur := env.replica(t, before, nil), env.replica(t, step2, nil)
				req := &otpv1.SendCodeRequest{Recipient: "+14155550205", UsageType: signIn, IdempotencyKey: "rotation-retry"}
				first, _ := old.sendReq(t, req)
				again, err := cur.client.SendCode(context.Background(), req)
				if err != nil {
					t.Fatalf("retry after the rotation: %v", err)
				}
				if again.GetVerificationId() != first.GetVerificationId() {
					t.Fatalf("retry answered verification id %s, want the first answer's %s", again.GetVerificationId(), first.GetVerificationId())
				}
				if n := len(cur.primary.Sent()) + len(cur.secondary.Sent()); n != 0 {
					t.Fatalf("the retry delivered %d messages, want none", n)
				}
			})
			t.Run("PerIPWindowsKeepCounting", func(t *testing.T) {
				t.Parallel()
				limits := func(c *service.Config) {
					c.Limits.PerIP = service.Window{Count: 3, Window: time.Hour}
					c.Limits.VerifyPerIP = service.Window{Count: 3, Window: time.Hour}
				}
				old, cur := env.replica(t, before, limits), env.replica(t, step2, limits)
				const ip = "2001:db8:77::1"
				for i, h := range []*harness{old, old, cur} {
					if err := h.sendErr(fmt.Sprintf("+1415555030%d", i), ip); err != nil {
						t.Fatalf("send %d: %v", i+1, err)
					}
				}
				wantLimit(t, cur.sendErr("+14155550309", "2001:db8:77::2"), "per_ip") // the same /64
				for i, h := range []*harness{old, old, cur} {
					if err := h.wrongVerify(t, fmt.Sprintf("+1415555030%d", i), ip); err != nil {
						t.Fatalf("wrong code %d: %v", i+1, err)
					}
				}
				wantLimit(t, cur.wrongVerify(t, "+14155550300", ip), "verify_per_ip")
			})
			t.Run("ConcurrentVerifyExactlyOneOK", func(t *testing.T) {
				t.Parallel()
				replicas := []*harness{env.replica(t, before, nil), env.replica(t, step1, nil), env.replica(t, step2, nil)}
				const to = "+14155550206"
				_, code := replicas[0].send(t, to, signIn)
				const n = 200
				var ok, expired atomic.Int64
				var wg sync.WaitGroup
				for i := range n {
					wg.Go(func() {
						r, err := replicas[i%3].client.VerifyCode(context.Background(), &otpv1.VerifyCodeRequest{Recipient: to, UsageType: signIn, Code: code})
						switch {
						case err != nil:
							t.Errorf("VerifyCode: %v", err)
						case r.GetResult() == otpv1.VerifyResult_VERIFY_RESULT_OK:
							ok.Add(1)
						case r.GetResult() == otpv1.VerifyResult_VERIFY_RESULT_EXPIRED:
							expired.Add(1)
						}
					})
				}
				wg.Wait()
				if ok.Load() != 1 || expired.Load() != n-1 {
					t.Fatalf("%d parallel verifies of a code issued under the old secret, on replicas before and during the rotation: %d OK, %d EXPIRED; want exactly 1 OK", n, ok.Load(), expired.Load())
				}
			})
		})
	}
}

// A rolling update through the procedure of README "Rotating the secret":
// at every step two configurations serve at once, interleaved on one
// Redis, and every window counts every call, whichever replica answered
// it. A one-step rollout (the old configuration next to step 2's) is also
// run, to show why the procedure has two steps: the new replicas count
// everything, but the old ones cannot see what the new ones moved away
// from the old secret.
func TestSecretRotationRollingUpdate(t *testing.T) {
	t.Parallel()
	limits := func(c *service.Config) {
		c.Code.MaxAttempts = 100
		c.Limits.ResendInterval = 0
		c.Limits.PerRecipient = service.Window{Count: 9, Window: time.Hour}
		c.Limits.VerifyPerRecipient = service.Window{Count: 12, Window: time.Hour}
		c.Limits.VerifyPerIP = service.Window{Count: 30, Window: time.Hour}
	}
	for _, env := range rotationEnvs(t) {
		t.Run(env.name, func(t *testing.T) {
			t.Parallel()
			t.Run("TwoSteps", func(t *testing.T) {
				t.Parallel()
				phases := [][]*harness{
					{env.replica(t, before, limits), env.replica(t, step1, limits)},
					{env.replica(t, step1, limits), env.replica(t, step2, limits)},
					{env.replica(t, step2, limits), env.replica(t, after, limits)},
				}
				const to, ip = "+14155550210", "198.51.100.10"
				// Three sends and four wrong codes per phase, alternating
				// between its two replicas; then, after the last phase, each
				// window is full on every replica of it.
				sends, wrongs := 0, 0
				for _, ph := range phases {
					for i := range 3 {
						ph[i%2].send(t, to, signIn)
						sends++
					}
					for i := range 4 {
						if err := ph[i%2].wrongVerify(t, to, ip); err != nil {
							t.Fatalf("wrong code %d: %v", wrongs+1, err)
						}
						wrongs++
					}
				}
				for _, h := range phases[2] {
					wantLimit(t, h.sendErr(to, ""), "per_recipient")
					wantLimit(t, h.wrongVerify(t, to, ""), "verify_per_recipient")
				}
				// The per-IP verify window counted all 12 too: 18 more, at
				// other recipients, fill it.
				for i := range 10 {
					phases[2][i%2].send(t, fmt.Sprintf("+1415555031%d", i), signIn)
				}
				for i := range 18 {
					if err := phases[2][i%2].wrongVerify(t, fmt.Sprintf("+1415555031%d", i%10), ip); err != nil {
						t.Fatalf("wrong code from the IP, %d: %v", wrongs+i+1, err)
					}
				}
				wantLimit(t, phases[2][1].wrongVerify(t, "+14155550319", ip), "verify_per_ip")
				if sends != 9 {
					t.Fatalf("%d sends", sends)
				}
				// A code sent by a step-1 replica in the middle of step 2's
				// rollout verifies on a step-2 replica, and then on none.
				_, code := phases[1][0].send(t, "+14155550211", signIn)
				phases[1][1].wantVerify(t, "+14155550211", signIn, code, otpv1.VerifyResult_VERIFY_RESULT_OK, "code sent by a step-1 replica, on a step-2 one")
				phases[1][0].wantVerify(t, "+14155550211", signIn, code, otpv1.VerifyResult_VERIFY_RESULT_EXPIRED, "the same code on the step-1 replica")
				// What no call moved to s2 stays under s1, where the last
				// configuration no longer looks: hence the wait before it
				// (README "Rotating the secret"). Here every key the test
				// looks at was moved by then.
				_, code = phases[0][0].send(t, "+14155550212", signIn)
				phases[2][1].wantVerify(t, "+14155550212", signIn, code, otpv1.VerifyResult_VERIFY_RESULT_EXPIRED, "a code left under s1, once s1 is dropped")
			})
			t.Run("OneStep", func(t *testing.T) {
				t.Parallel()
				old, cur := env.replica(t, before, limits), env.replica(t, step2, limits)
				// Sends alternating between the old and the new replica,
				// with a window of 9: the new replica counts every send
				// and refuses once the window is full (its 5th call: 4 of
				// its own and 5 of the old one's). The old replica cannot
				// read s2, so it sees only the sends written under s1
				// since the new one last moved them: it never refuses.
				const to = "+14155550220"
				var byOld, byNew int
				for i := range 30 {
					h := old
					if i%2 == 1 {
						h = cur
					}
					switch err := h.sendErr(to, ""); {
					case err == nil && h == old:
						byOld++
					case err == nil:
						byNew++
					case h == cur:
						wantLimit(t, err, "per_recipient")
					default:
						t.Fatalf("old replica: %v", err)
					}
				}
				if byNew != 4 || byOld != 15 {
					t.Fatalf("one-step rollout, 30 alternating sends, window of 9: %d accepted by the old replica, %d by the new; want 15 and 4", byOld, byNew)
				}
				// And a code the new replica sent is not found by the old
				// one: a user sent there would be told EXPIRED.
				_, code := cur.send(t, "+14155550221", signIn)
				old.wantVerify(t, "+14155550221", signIn, code, otpv1.VerifyResult_VERIFY_RESULT_EXPIRED, "one-step rollout: a new replica's code on an old replica")
			})
		})
	}
}

// commandsDuring returns the commands the Redis servers at addrs ran
// while call ran, by name, those run by scripts included (INFO
// commandstats), without the INFO and CONFIG commands that measure them.
func commandsDuring(tb testing.TB, addrs []string, call func()) map[string]int64 {
	tb.Helper()
	ctx := context.Background()
	var nodes []*redis.Client
	for _, a := range addrs {
		c := redis.NewClient(&redis.Options{Addr: a})
		defer c.Close()
		if err := c.ConfigResetStat(ctx).Err(); err != nil {
			tb.Fatal(err)
		}
		nodes = append(nodes, c)
	}
	call()
	out := map[string]int64{}
	for _, c := range nodes {
		info, err := c.Info(ctx, "commandstats").Result()
		if err != nil {
			tb.Fatal(err)
		}
		for _, line := range strings.Split(info, "\n") {
			name, rest, ok := strings.Cut(strings.TrimSpace(line), ":calls=")
			name, isCmd := strings.CutPrefix(name, "cmdstat_")
			if !ok || !isCmd || name == "info" || name == "config|resetstat" || name == "config" {
				continue
			}
			n, _ := strconv.ParseInt(rest[:strings.IndexByte(rest, ',')], 10, 64)
			out[name] += n
		}
	}
	return out
}

func fmtCommands(m map[string]int64) string {
	var names []string
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, k := range names {
		fmt.Fprintf(&b, "%s=%d ", k, m[k])
	}
	return strings.TrimSpace(b.String())
}

// testIP is the n-th of distinct client IPs.
func testIP(n int) string { return fmt.Sprintf("203.0.%d.%d", n/250, n%250+1) }

// callScenarios are the calls whose Redis cost is measured, each for the
// n-th of fresh recipients.
var callScenarios = []struct {
	name string
	call func(tb testing.TB, h *harness, n int)
}{
	{"send", func(tb testing.TB, h *harness, n int) { h.send(tb, fmt.Sprintf("+1415555%04d", n), signIn) }},
	{"send with client_ip and idempotency_key", func(tb testing.TB, h *harness, n int) {
		h.sendReq(tb, &otpv1.SendCodeRequest{Recipient: fmt.Sprintf("jane%d@example.com", n), UsageType: signIn,
			ClientIp: testIP(n), IdempotencyKey: "k1"})
	}},
	{"idempotent retry", func(tb testing.TB, h *harness, n int) {
		if _, err := h.client.SendCode(context.Background(), &otpv1.SendCodeRequest{Recipient: fmt.Sprintf("jane%d@example.com", n),
			UsageType: signIn, ClientIp: testIP(n), IdempotencyKey: "k1"}); err != nil {
			tb.Fatal(err)
		}
	}},
	{"wrong verify with client_ip", func(tb testing.TB, h *harness, n int) {
		if _, err := h.client.VerifyCode(context.Background(), &otpv1.VerifyCodeRequest{Recipient: fmt.Sprintf("+1415555%04d", n),
			UsageType: signIn, Code: "000000", ClientIp: testIP(n)}); err != nil {
			tb.Fatal(err)
		}
	}},
	{"verify without a live code", func(tb testing.TB, h *harness, n int) {
		h.verify(tb, fmt.Sprintf("+1415556%04d", n), signIn, "000000")
	}},
}

// A call's cost in Redis commands, those run inside scripts included
// (INFO commandstats), once every script is cached on every node. With a
// previous secret and nothing left to move, every script that has keys to
// move runs one EXISTS more, and looking up an idempotency key reads one
// more record in the same round trip; the round trips (EVALSHA, the
// pipelines) are the same.
//
// Before the recipient's record (2026-11-30: code, cooldown, both
// windows and tombstones in one hash, read by one HMGET of the fields a
// call needs) a plain send ran 14 commands on a single node
// (del=1 evalsha=1 exists=1 get=1 hget=1 hset=1 pexpire=3 set=1 time=1
// zadd=2 zcard=2), now 8; a wrong verification with a client IP 11, now
// 8; one without a live code 5, now 4.
func TestRedisCommandsPerCall(t *testing.T) {
	t.Parallel()
	want := map[string]map[string][2]string{ // topology → scenario → {no previous secret, one}
		"single node": {
			"send": {"evalsha=1 hlen=1 hmget=1 hset=1 pexpire=2 time=1 zadd=1 zcard=1",
				"evalsha=1 exists=1 hlen=1 hmget=1 hset=1 pexpire=2 time=1 zadd=1 zcard=1"},
			"send with client_ip and idempotency_key": {"evalsha=2 exists=1 hlen=1 hmget=3 hset=3 pexpire=4 time=1 zadd=1 zcard=1",
				"evalsha=2 exists=3 hlen=1 hmget=4 hset=3 pexpire=4 time=1 zadd=1 zcard=1"},
			"idempotent retry": {"hmget=1", "hmget=2"},
			"wrong verify with client_ip": {"evalsha=1 hlen=1 hmget=1 hset=1 pexpire=2 time=1 zadd=1 zcard=1",
				"evalsha=1 exists=1 hlen=1 hmget=1 hset=1 pexpire=2 time=1 zadd=1 zcard=1"},
			"verify without a live code": {"evalsha=1 hlen=1 hmget=1 time=1", "evalsha=1 exists=1 hlen=1 hmget=1 time=1"},
		},
		"cluster": {
			"send": {"evalsha=2 hlen=1 hmget=1 hset=1 pexpire=2 time=2 zadd=1 zcard=1 zscore=1",
				"evalsha=2 exists=1 hlen=1 hmget=1 hset=1 pexpire=2 time=2 zadd=1 zcard=1 zscore=1"},
			"send with client_ip and idempotency_key": {"evalsha=3 exists=1 hlen=1 hmget=3 hset=3 pexpire=4 time=2 zadd=1 zcard=1 zscore=1",
				"evalsha=3 exists=4 hlen=1 hmget=4 hset=3 pexpire=4 time=2 zadd=1 zcard=1 zscore=1"},
			"idempotent retry": {"hmget=1", "hmget=2"},
			"wrong verify with client_ip": {"evalsha=2 hlen=1 hmget=1 hset=1 pexpire=2 time=2 zadd=1 zcard=1 zscore=1",
				"evalsha=2 exists=2 hlen=1 hmget=1 hset=1 pexpire=2 time=2 zadd=1 zcard=1 zscore=1"},
			"verify without a live code": {"evalsha=1 hlen=1 hmget=1 time=1", "evalsha=1 exists=1 hlen=1 hmget=1 time=1"},
		},
	}
	for _, env := range rotationEnvs(t) {
		t.Run(env.name, func(t *testing.T) {
			t.Parallel()
			for i, rc := range []rotationConfig{before, step2} {
				h := env.replica(t, rc, nil)
				base := 1000 * i // recipients and IPs of their own
				// Warm up: every script cached on every node, connections
				// open.
				for n := range 30 {
					for _, sc := range callScenarios {
						sc.call(t, h, base+n)
					}
				}
				for _, sc := range callScenarios {
					got := fmtCommands(commandsDuring(t, env.addrs, func() { sc.call(t, h, base+100) }))
					if w := want[env.name][sc.name][i]; got != w {
						t.Errorf("%s with %d previous secrets:\n got %s\nwant %s", sc.name, len(rc.previous), got, w)
					}
				}
			}
		})
	}
}

package service_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	otpv1 "github.com/otpd/otpd/proto/otp/v1"
	"github.com/otpd/otpd/service"
)

// Faults production Redis shows, against real redis-server processes:
// memory full, stalls longer than redis.timeout, replicas whose clocks
// differ. What the user notices is asserted: every refusal is UNAVAILABLE
// with RetryInfo, no guess is free, and the retry RetryInfo advises works.

// wantStoreUnavailable fails unless err is UNAVAILABLE STORE_UNAVAILABLE
// with a RetryInfo.
func wantStoreUnavailable(tb testing.TB, what string, err error) {
	tb.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.Unavailable {
		tb.Fatalf("%s: %v, want UNAVAILABLE", what, err)
	}
	var info *errdetails.ErrorInfo
	var retry *errdetails.RetryInfo
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			info = d
		case *errdetails.RetryInfo:
			retry = d
		}
	}
	if info.GetReason() != "STORE_UNAVAILABLE" || retry.GetRetryDelay().AsDuration() <= 0 {
		tb.Fatalf("%s: details %v, want STORE_UNAVAILABLE and a RetryInfo", what, st.Details())
	}
}

// fill pushes Redis over maxmemory under noeviction: maxmemory just above
// what it uses, then keys past it.
func fill(tb testing.TB, admin *redis.Client) {
	tb.Helper()
	ctx := context.Background()
	info, err := admin.Info(ctx, "memory").Result()
	if err != nil {
		tb.Fatal(err)
	}
	used := infoInt(tb, info, "used_memory")
	if err := admin.ConfigSet(ctx, "maxmemory", strconv.FormatInt(used+1<<20, 10)).Err(); err != nil {
		tb.Fatal(err)
	}
	if err := admin.Do(ctx, "DEBUG", "POPULATE", 100000, "otpd-test-junk", 64).Err(); err != nil {
		tb.Fatal(err)
	}
	if err := admin.Set(ctx, "probe", "x", 0).Err(); !redis.IsOOMError(err) {
		tb.Fatalf("Redis is not full: SET answered %v", err)
	}
}

func infoInt(tb testing.TB, info, field string) int64 {
	tb.Helper()
	for _, l := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				tb.Fatal(err)
			}
			return n
		}
	}
	tb.Fatalf("no %s in INFO", field)
	return 0
}

// Redis full (maxmemory, noeviction): a wrong guess is refused whole
// (UNAVAILABLE) or counted, never answered and forgotten; the right code
// verifies once Redis has room again. Sends are refused the same way.
func TestOOMNoGuessIsFree(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, harnessOptions{redisArgs: []string{"--enable-debug-command", "yes", "--maxmemory-policy", "noeviction"}})
	admin := h.redis.Client()
	ctx := context.Background()
	_, code := h.send(t, phone, signIn)
	fill(t, admin)

	const guesses = 300
	var refused, answered int
	for i := range guesses {
		guess := fmt.Sprintf("%06d", i)
		if guess == code {
			guess = wrongCode(code)
		}
		_, err := h.client.VerifyCode(ctx, &otpv1.VerifyCodeRequest{Recipient: phone, UsageType: signIn, Code: guess})
		if err != nil {
			wantStoreUnavailable(t, "wrong guess under OOM", err)
			refused++
			continue
		}
		answered++
	}
	_, err := h.client.SendCode(ctx, &otpv1.SendCodeRequest{Recipient: "+14155550124", UsageType: signIn})
	wantStoreUnavailable(t, "send under OOM", err)
	t.Logf("under OOM: %d wrong guesses refused (UNAVAILABLE), %d answered", refused, answered)
	if answered != 0 {
		t.Fatalf("%d wrong guesses answered under OOM, want all refused", answered)
	}
	if got := counter(t, h.reg, "otpd_verifications_total", map[string]string{"usage_type": "sign_in", "result": "store_error", "country_code": "1"}); got != guesses {
		t.Errorf("otpd_verifications_total{store_error} = %v, want %d", got, guesses)
	}
	if h.primary.Calls() != 1 {
		t.Fatalf("provider called %d times; nothing may be sent while Redis is full", h.primary.Calls())
	}

	// Room again: nothing was counted, and the right code verifies.
	if err := admin.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	if r := h.verify(t, phone, signIn, wrongCode(code)); r.GetResult() != otpv1.VerifyResult_VERIFY_RESULT_MISMATCH || r.GetAttemptsRemaining() != 4 {
		t.Fatalf("first wrong guess with room: %v, want MISMATCH with 4 attempts left (none counted under OOM)", r)
	}
	h.wantVerify(t, phone, signIn, code, otpv1.VerifyResult_VERIFY_RESULT_OK, "right code once Redis has room")
}

// Redis going in and out of OOM between guesses: whatever the sequence,
// no more than max_attempts wrong codes get an answer before the code
// dies, and each one answered was counted.
func TestOOMFlappingLetsNoExtraGuess(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, harnessOptions{redisArgs: []string{"--maxmemory-policy", "noeviction"}})
	admin := h.redis.Client()
	ctx := context.Background()
	_, code := h.send(t, phone, signIn)
	var answered, refused int
	for i := range 60 {
		limit := "0"
		if i%3 != 0 {
			limit = "1" // any data is over 1 byte: full
		}
		if err := admin.ConfigSet(ctx, "maxmemory", limit).Err(); err != nil {
			t.Fatal(err)
		}
		r, err := h.client.VerifyCode(ctx, &otpv1.VerifyCodeRequest{Recipient: phone, UsageType: signIn, Code: wrongCode(code)})
		switch {
		case err != nil:
			wantStoreUnavailable(t, "wrong guess under OOM", err)
			refused++
		case r.GetResult() == otpv1.VerifyResult_VERIFY_RESULT_MISMATCH:
			answered++
			if int(r.GetAttemptsRemaining()) != 5-answered {
				t.Fatalf("wrong guess %d answered with %d attempts left, want %d (every answered guess counted)", answered, r.GetAttemptsRemaining(), 5-answered)
			}
		case r.GetResult() != otpv1.VerifyResult_VERIFY_RESULT_TOO_MANY_ATTEMPTS:
			t.Fatalf("wrong guess: %v", r)
		}
	}
	if err := admin.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	t.Logf("60 wrong guesses with Redis flapping in and out of OOM: %d answered MISMATCH, %d refused", answered, refused)
	if answered != 5 || refused == 0 {
		t.Fatalf("%d wrong guesses answered, %d refused; want exactly max_attempts (5) answered, and some refused", answered, refused)
	}
	h.wantVerify(t, phone, signIn, code, otpv1.VerifyResult_VERIFY_RESULT_TOO_MANY_ATTEMPTS, "right code after max_attempts wrong ones")
}

// A stall of Redis longer than redis.timeout while users send and verify.
type stallKind struct {
	name string
	// start begins a stall of about 3s on admin.
	start func(tb testing.TB, admin *redis.Client)
}

var stalls = []stallKind{
	{"DEBUG SLEEP 3", func(tb testing.TB, admin *redis.Client) {
		go func() { _ = admin.Do(context.Background(), "DEBUG", "SLEEP", "3").Err() }()
	}},
	{"CLIENT PAUSE 3000 WRITE", func(tb testing.TB, admin *redis.Client) {
		if err := admin.Do(context.Background(), "CLIENT", "PAUSE", "3000", "WRITE").Err(); err != nil {
			tb.Fatal(err)
		}
	}},
	{"CLIENT PAUSE 3000 ALL", func(tb testing.TB, admin *redis.Client) {
		if err := admin.Do(context.Background(), "CLIENT", "PAUSE", "3000", "ALL").Err(); err != nil {
			tb.Fatal(err)
		}
	}},
}

// writeProbe reports whether Redis takes a write within a short time.
func writeProbe(addr string) bool {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond,
		ReadTimeout: 100 * time.Millisecond, WriteTimeout: 100 * time.Millisecond, PoolSize: 1})
	defer c.Close()
	return c.Set(context.Background(), "otpd-test-probe", "x", time.Minute).Err() == nil
}

// waitUntil polls cond until it holds, for at most limit.
func waitUntil(tb testing.TB, what string, limit time.Duration, cond func() bool) {
	tb.Helper()
	for deadline := time.Now().Add(limit); !cond(); {
		if time.Now().After(deadline) {
			tb.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// keysOf lists the keys matching pattern.
func keysOf(tb testing.TB, rdb *redis.Client, pattern string) []string {
	tb.Helper()
	keys, err := rdb.Keys(context.Background(), pattern).Result()
	if err != nil {
		tb.Fatal(err)
	}
	return keys
}

// countFields counts the fields of the hash at key whose name starts
// with the byte first: in a recipient's record, S for its send window's
// events, V for its verify window's.
func countFields(tb testing.TB, rdb *redis.Client, key string, first byte) int {
	tb.Helper()
	fields, err := rdb.HKeys(context.Background(), key).Result()
	if err != nil {
		tb.Fatal(err)
	}
	n := 0
	for _, f := range fields {
		if f != "" && f[0] == first {
			n++
		}
	}
	return n
}

// scriptCalls counts the scripts Redis ran, from INFO commandstats.
func scriptCalls(info string) int {
	n := 0
	for _, l := range strings.Split(info, "\r\n") {
		if rest, ok := strings.CutPrefix(l, "cmdstat_evalsha:calls="); ok {
			c, _ := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
			n += c
		}
		if rest, ok := strings.CutPrefix(l, "cmdstat_eval:calls="); ok {
			c, _ := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
			n += c
		}
	}
	return n
}

// During a 3s stall, with redis.timeout 300ms, five users send and one
// verifies the right code.
//
// With a deadline shorter than the stall every call fails, UNAVAILABLE
// with RetryInfo; once Redis answers, no failed send left a code or a
// cooldown (a wrong-code probe answers EXPIRED, and the send goes through
// at once and is delivered), and the right code still verifies.
//
// With a deadline longer than the stall every call succeeds after it, each
// send delivered and counted once (the service's retries re-ran scripts
// that recognised their own earlier run).
func TestStallUnknownOutcome(t *testing.T) {
	t.Parallel()
	users := []string{"+14155550510", "+14155550511", "+14155550512", "+14155550513", "+14155550514"}
	const verifier = "+14155550500"
	for _, sk := range stalls {
		for _, long := range []bool{false, true} {
			name := sk.name + "/deadline shorter than the stall"
			deadline := time.Second
			if long {
				name, deadline = sk.name+"/deadline longer than the stall", 10*time.Second
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				h := newHarnessWith(t, harnessOptions{
					redisArgs:    []string{"--enable-debug-command", "yes"},
					redisTimeout: 300 * time.Millisecond,
					mutate:       func(c *service.Config) { c.SendTimeout = deadline },
				})
				admin := redis.NewClient(&redis.Options{Addr: h.redis.Addr(), MaxRetries: -1, ReadTimeout: 10 * time.Second})
				defer admin.Close()
				ctx := context.Background()
				_, code := h.send(t, verifier, signIn)
				delivered := len(h.primary.Sent())
				if err := admin.ConfigResetStat(ctx).Err(); err != nil {
					t.Fatal(err)
				}

				sk.start(t, admin)
				waitUntil(t, "Redis stalls", 5*time.Second, func() bool { return !writeProbe(h.redis.Addr()) })
				sendErrs := make([]error, len(users))
				var verifyResp *otpv1.VerifyCodeResponse
				var verifyErr error
				var wg sync.WaitGroup
				for i, to := range users {
					wg.Go(func() {
						_, sendErrs[i] = h.client.SendCode(ctx, &otpv1.SendCodeRequest{Recipient: to, UsageType: signIn})
					})
				}
				wg.Go(func() {
					// Straight to the service, so that the answer is the
					// service's rather than the client's own deadline.
					vctx, cancel := context.WithTimeout(ctx, deadline)
					defer cancel()
					verifyResp, verifyErr = h.svc.VerifyCode(vctx, &otpv1.VerifyCodeRequest{Recipient: verifier, UsageType: signIn, Code: code})
				})
				wg.Wait()
				waitUntil(t, "Redis answers again", 10*time.Second, func() bool { return writeProbe(h.redis.Addr()) })
				wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				defer cancel()
				if err := h.svc.Wait(wctx); err != nil {
					t.Fatalf("undos still running: %v", err)
				}

				info, err := admin.Info(ctx, "commandstats").Result()
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("%s: Redis ran %d scripts for the %d calls", name, scriptCalls(info), len(users)+1)
				if long {
					for i, err := range sendErrs {
						if err != nil {
							t.Errorf("send to %s through the stall: %v, want OK", users[i], err)
						}
					}
					if verifyErr != nil || verifyResp.GetResult() != otpv1.VerifyResult_VERIFY_RESULT_OK {
						t.Fatalf("right code through the stall: %v, %v; want OK", verifyResp, verifyErr)
					}
					// Each send delivered once and counted once, though its
					// script may have run more than once.
					if n := len(h.primary.Sent()) - delivered; n != len(users) {
						t.Fatalf("%d messages delivered for %d sends", n, len(users))
					}
					for _, k := range keysOf(t, h.rdb, "*:r") {
						if n := countFields(t, h.rdb, k, 'S'); n != 1 {
							t.Errorf("%s counts %d sends, want 1", k, n)
						}
					}
					for _, m := range h.primary.Sent()[delivered:] {
						h.wantVerify(t, m.To, signIn, m.Code, otpv1.VerifyResult_VERIFY_RESULT_OK, "code delivered through the stall")
					}
					return
				}

				for i, err := range sendErrs {
					wantStoreUnavailable(t, "send to "+users[i]+" during the stall", err)
				}
				wantStoreUnavailable(t, "verify during the stall", status.Convert(verifyErr).Err())
				if n := len(h.primary.Sent()) - delivered; n != 0 {
					t.Fatalf("%d messages delivered for sends that failed", n)
				}
				// Nothing of the failed sends is left: no code, no cooldown,
				// no count (the verifier's own send is the one left).
				// Their records hold only their tombstones (T events).
				var holding []string
				for _, k := range keysOf(t, h.rdb, "*:r") {
					fields, err := h.rdb.HKeys(ctx, k).Result()
					if err != nil {
						t.Fatal(err)
					}
					if slices.ContainsFunc(fields, func(f string) bool { return f[0] != 'T' }) {
						holding = append(holding, k)
					}
				}
				if len(holding) != 1 {
					t.Errorf("records holding more than tombstones after the stall: %v, want only the verifier's", holding)
				}
				stranded := 0
				for _, to := range users {
					if r := h.verify(t, to, signIn, "000000"); r.GetResult() != otpv1.VerifyResult_VERIFY_RESULT_EXPIRED {
						t.Errorf("wrong-code probe for %s after its failed send: %v, want EXPIRED (no undelivered code)", to, r)
						stranded++
						continue
					}
					resp, err := h.client.SendCode(ctx, &otpv1.SendCodeRequest{Recipient: to, UsageType: signIn})
					if err != nil {
						t.Errorf("retry of the failed send to %s: %v, want it to go through at once", to, err)
						stranded++
						continue
					}
					var code string
					for _, m := range h.primary.Sent() {
						if m.VerificationID == resp.GetVerificationId() {
							code = m.Code
						}
					}
					h.wantVerify(t, to, signIn, code, otpv1.VerifyResult_VERIFY_RESULT_OK, "code of the retried send")
				}
				t.Logf("%s: %d of %d failed sends stranded after the stall", sk.name, stranded, len(users))
				// Nobody was told OK: the right code verifies now.
				h.wantVerify(t, verifier, signIn, code, otpv1.VerifyResult_VERIFY_RESULT_OK, "right code whose verify answered UNAVAILABLE")
				if got := counter(t, h.reg, "otpd_codes_sent_total", map[string]string{"entry": "grpc", "channel": "sms", "provider": "", "usage_type": "sign_in", "result": "store_error"}); got != float64(len(users)) {
					t.Errorf("otpd_codes_sent_total{store_error} = %v, want %d", got, len(users))
				}
			})
		}
	}
}

// Two replicas of otpd share one Redis; one of them runs on a machine
// whose clock is an hour ahead (its service clock and its store's local
// clock alike). Redis's clock decides: the skewed replica resets no window
// and no cooldown, and honours those the other set, and the other way
// round.
func TestReplicasWithSkewedClocksShareLimits(t *testing.T) {
	t.Parallel()
	limits := func(c *service.Config) { c.Limits.VerifyPerRecipient = service.Window{Count: 3, Window: time.Hour} }
	a := newHarnessWith(t, harnessOptions{mutate: limits})
	b := newHarnessWith(t, harnessOptions{mutate: limits, redis: a.redis, skew: time.Hour})
	ctx := context.Background()

	wantLimited := func(h *harness, what string, err error, limit string, retry time.Duration) {
		t.Helper()
		details := wantStatus(t, err, codes.ResourceExhausted)
		if q := detail[*errdetails.QuotaFailure](t, details); q.GetViolations()[0].GetSubject() != limit {
			t.Fatalf("%s: QuotaFailure %v, want %s", what, q, limit)
		}
		if d := detail[*errdetails.RetryInfo](t, details).GetRetryDelay().AsDuration(); d < retry-time.Minute || d > retry+time.Second {
			t.Fatalf("%s: RetryInfo %v, want about %v", what, d, retry)
		}
	}

	// A blocks a recipient's verify window; B, an hour ahead, still sees
	// it blocked for an hour.
	_, code := a.send(t, phone, signIn)
	for range 3 {
		a.verify(t, phone, signIn, wrongCode(code))
	}
	_, err := b.client.VerifyCode(ctx, &otpv1.VerifyCodeRequest{Recipient: phone, UsageType: signIn, Code: code})
	wantLimited(b, "right code through the skewed replica", err, "verify_per_recipient", time.Hour)
	_, err = a.client.VerifyCode(ctx, &otpv1.VerifyCodeRequest{Recipient: phone, UsageType: signIn, Code: code})
	wantLimited(a, "right code through the other replica", err, "verify_per_recipient", time.Hour)

	// A cooldown B set holds on A, and one A set holds on B.
	b.send(t, email, signIn)
	_, err = a.client.SendCode(ctx, &otpv1.SendCodeRequest{Recipient: email, UsageType: signIn})
	wantLimited(a, "send within the cooldown the skewed replica set", err, "resend_interval", time.Minute)
	a.send(t, "+14155550125", signIn)
	_, err = b.client.SendCode(ctx, &otpv1.SendCodeRequest{Recipient: "+14155550125", UsageType: signIn})
	wantLimited(b, "send through the skewed replica within the other's cooldown", err, "resend_interval", time.Minute)
	// A code sent through one verifies through the other.
	_, code = b.send(t, "+14155550126", signIn)
	a.wantVerify(t, "+14155550126", signIn, code, otpv1.VerifyResult_VERIFY_RESULT_OK, "code sent through the skewed replica")
}

// verify_per_ip: wrong codes from one client IP across recipients, IPv6
// per /64; a full window refuses even the right code, naming the limit.
func TestVerifyPerIPLimit(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *service.Config) { c.Limits.VerifyPerIP = service.Window{Count: 4, Window: time.Hour} })
	ctx := context.Background()
	sent := map[string]string{}
	for _, to := range []string{"a@example.com", "b@example.com", "c@example.com", "d@example.com"} {
		_, sent[to] = h.send(t, to, signIn)
	}
	verify := func(to, code, ip string) (*otpv1.VerifyCodeResponse, error) {
		return h.client.VerifyCode(ctx, &otpv1.VerifyCodeRequest{Recipient: to, UsageType: signIn, Code: code, ClientIp: ip})
	}
	// A right code costs nothing; asking about a recipient without a live
	// code costs one (finding out who is signing in is not free).
	if r, err := verify("a@example.com", sent["a@example.com"], "2001:db8::1"); err != nil || r.GetResult() != otpv1.VerifyResult_VERIFY_RESULT_OK {
		t.Fatalf("right code: %v, %v", r, err)
	}
	if r, err := verify("nobody@example.com", "123456", "2001:db8::1"); err != nil || r.GetResult() != otpv1.VerifyResult_VERIFY_RESULT_EXPIRED {
		t.Fatalf("no code: %v, %v", r, err)
	}
	// Then three wrong codes from addresses of one /64, across recipients.
	for i, to := range []string{"b@example.com", "c@example.com", "d@example.com"} {
		if r, err := verify(to, wrongCode(sent[to]), fmt.Sprintf("2001:db8::%x", i+2)); err != nil || r.GetResult() != otpv1.VerifyResult_VERIFY_RESULT_MISMATCH {
			t.Fatalf("wrong code %d: %v, %v", i, r, err)
		}
	}
	_, err := verify("b@example.com", sent["b@example.com"], "2001:db8::ffff")
	details := wantStatus(t, err, codes.ResourceExhausted)
	if q := detail[*errdetails.QuotaFailure](t, details); q.GetViolations()[0].GetSubject() != "verify_per_ip" {
		t.Fatalf("QuotaFailure = %v, want verify_per_ip", q)
	}
	if d := detail[*errdetails.RetryInfo](t, details).GetRetryDelay().AsDuration(); d <= 0 || d > time.Hour+time.Second {
		t.Fatalf("RetryInfo = %v, want within the hour", d)
	}
	if got := counter(t, h.reg, "otpd_rate_limited_total", map[string]string{"limit": "verify_per_ip"}); got != 1 {
		t.Fatalf("otpd_rate_limited_total{verify_per_ip} = %v, want 1", got)
	}
	// Another /64, or no client_ip, is not held back; the refused right
	// code was not consumed.
	if r, err := verify("b@example.com", sent["b@example.com"], "2001:db8:0:1::1"); err != nil || r.GetResult() != otpv1.VerifyResult_VERIFY_RESULT_OK {
		t.Fatalf("right code from another /64: %v, %v", r, err)
	}
	h.wantVerify(t, "c@example.com", signIn, sent["c@example.com"], otpv1.VerifyResult_VERIFY_RESULT_OK, "right code without client_ip")
}

// A store error of any kind on a send or verify path is UNAVAILABLE with
// RetryInfo, never INTERNAL.
func TestEveryStoreErrorIsUnavailable(t *testing.T) {
	t.Parallel()
	for _, storeErr := range []error{
		errors.New("ERR user_script:1: Script attempted to access nonexistent global variable"),
		fmt.Errorf("verify: %w", context.DeadlineExceeded),
		fmt.Errorf("begin send: %w (%w): READONLY You can't write against a read only replica", service.ErrStoreUnavailable, service.ErrNotApplied),
	} {
		t.Run(storeErr.Error(), func(t *testing.T) {
			t.Parallel()
			h := newHarnessOn(t, func(s service.Store) service.Store { return failing{s, storeErr} }, nil)
			_, err := h.client.SendCode(context.Background(), &otpv1.SendCodeRequest{Recipient: phone, UsageType: signIn})
			wantStoreUnavailable(t, "send", err)
			_, err = h.client.VerifyCode(context.Background(), &otpv1.VerifyCodeRequest{Recipient: phone, UsageType: signIn, Code: "123456"})
			wantStoreUnavailable(t, "verify", err)
		})
	}
}

// failing answers BeginSend and Verify with err.
type failing struct {
	service.Store
	err error
}

func (f failing) BeginSend(context.Context, service.SendParams) (service.SendResult, error) {
	return service.SendResult{}, f.err
}

func (f failing) Verify(context.Context, service.VerifyParams) (service.VerifyResult, error) {
	return service.VerifyResult{}, f.err
}

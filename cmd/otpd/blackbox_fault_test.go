package main_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/otpd/otpd/internal/redistest"
	otpv1 "github.com/otpd/otpd/proto/otp/v1"
)

// The binary against Redis faults of the network and the topology, each
// asserted as a caller sees it: while Redis cannot take writes every call
// answers UNAVAILABLE STORE_UNAVAILABLE with RetryInfo (never INTERNAL,
// never OK without effect), grpc.health.v1 is NOT_SERVING and /readyz
// 503; once Redis can, both turn back by themselves, full service
// returns, and a send that answered UNAVAILABLE blocks neither its retry
// nor the code it verifies. Recovery times are logged, not asserted.

const signIn = otpv1.UsageType_USAGE_TYPE_SIGN_IN

// faultOtpd is otpd on a redis: block, quick to notice (health every
// 100ms, redis.timeout 250ms, send_timeout 2s), with a console SMS
// provider whose codes the test reads from its output.
type faultOtpd struct {
	p      *process
	conn   *grpc.ClientConn
	client otpv1.OtpServiceClient
	http   string
}

// faultConfig writes otpd.yaml with redisBlock (indented keys of redis:,
// without timeout) and more top-level YAML.
func faultConfig(t *testing.T, redisBlock, more string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "otpd.yaml")
	cfg := fmt.Sprintf(`
listen: {grpc: "%s", http: "%s"}
redis:
%s
  timeout: 250ms
secret: "0123456789abcdef0123456789abcdef-faults"
send_timeout: 2s
health: {interval: 100ms}
limits:
  per_country: {count: 0}
fraud:
  conversion: {window: 0s}   # the load sends codes nobody verifies
providers:
  - {name: console, type: console, channel: sms}
%s`, anyPort, anyPort, redisBlock, more)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func startFaultOtpd(t *testing.T, redisBlock string) *faultOtpd {
	t.Helper()
	p := startOtpd(t, []string{"-config", faultConfig(t, redisBlock, "")})
	drainCodes(p)
	grpcAddr, httpAddr := p.addrs(t)
	conn := dial(t, grpcAddr)
	waitHealth(t, conn, healthpb.HealthCheckResponse_SERVING)
	return &faultOtpd{p: p, conn: conn, client: otpv1.NewOtpServiceClient(conn), http: httpAddr}
}

// drainCodes empties p.codes, which this suite does not use, so that the
// output reader never blocks on it.
func drainCodes(p *process) {
	go func() {
		for {
			select {
			case <-p.codes:
			case <-p.done:
				return
			}
		}
	}()
}

// callCtx bounds a call well beyond otpd's own deadlines (send_timeout 2s,
// 5s for a verify), so that every answer is otpd's.
func callCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 15*time.Second)
}

func (f *faultOtpd) send(to string) (string, error) {
	ctx, cancel := callCtx()
	defer cancel()
	resp, err := f.client.SendCode(ctx, &otpv1.SendCodeRequest{Recipient: to, UsageType: signIn})
	return resp.GetVerificationId(), err
}

func (f *faultOtpd) verify(to, code string) (otpv1.VerifyResult, error) {
	ctx, cancel := callCtx()
	defer cancel()
	resp, err := f.client.VerifyCode(ctx, &otpv1.VerifyCodeRequest{Recipient: to, UsageType: signIn, Code: code})
	return resp.GetResult(), err
}

// prepare sends a code to verifier, whose code it returns for a right
// verification during the fault, and one to guessed, for wrong ones.
func (f *faultOtpd) prepare(t *testing.T, verifier, guessed string) string {
	t.Helper()
	vid, err := f.send(verifier)
	if err != nil {
		t.Fatal(err)
	}
	code := f.codeOf(t, vid)
	if _, err := f.send(guessed); err != nil {
		t.Fatal(err)
	}
	return code
}

// codeOf reads the code of a verification from the console provider's
// block: "===== otpd console: ... id <vid>) =====" then "code: <code>".
func (f *faultOtpd) codeOf(t *testing.T, vid string) string {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		out := f.p.Output()
		i := strings.Index(out, "id "+vid+") =====\ncode: ")
		if i < 0 {
			continue
		}
		rest := out[i+len("id "+vid+") =====\ncode: "):]
		if j := strings.IndexByte(rest, '\n'); j > 0 {
			return rest[:j]
		}
	}
	t.Fatalf("the console provider printed no code for %s", vid)
	return ""
}

// deliveries counts the messages the console provider printed.
func (f *faultOtpd) deliveries() int { return strings.Count(f.p.Output(), "===== otpd console:") }

// round sends to `to` and verifies the code: full service.
func (f *faultOtpd) round(t *testing.T, to string) {
	t.Helper()
	vid, err := f.send(to)
	if err != nil {
		t.Fatalf("SendCode(%s): %v", to, err)
	}
	if r, err := f.verify(to, f.codeOf(t, vid)); err != nil || r != otpv1.VerifyResult_VERIFY_RESULT_OK {
		t.Fatalf("VerifyCode(%s): %v, %v; want OK", to, r, err)
	}
}

// waitReady polls /readyz until it answers want.
func (f *faultOtpd) waitReady(t *testing.T, want int) {
	t.Helper()
	var got int
	for range 300 {
		if got, _ = httpGet(t, "http://"+f.http+"/readyz"); got == want {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("/readyz never answered %d (last %d)", want, got)
}

// waitDown waits until health is NOT_SERVING and /readyz 503.
func (f *faultOtpd) waitDown(t *testing.T) {
	t.Helper()
	waitHealth(t, f.conn, healthpb.HealthCheckResponse_NOT_SERVING)
	f.waitReady(t, 503)
}

// waitUp waits until health is SERVING and /readyz 200.
func (f *faultOtpd) waitUp(t *testing.T) {
	t.Helper()
	waitHealth(t, f.conn, healthpb.HealthCheckResponse_SERVING)
	f.waitReady(t, 200)
}

// storeUnavailable reports whether err is UNAVAILABLE STORE_UNAVAILABLE
// with a RetryInfo.
func storeUnavailable(err error) bool {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.Unavailable {
		return false
	}
	var reason string
	var retry time.Duration
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			reason = d.GetReason()
		case *errdetails.RetryInfo:
			retry = d.GetRetryDelay().AsDuration()
		}
	}
	return reason == "STORE_UNAVAILABLE" && retry > 0
}

// rateLimited reports whether err is RESOURCE_EXHAUSTED for limit.
func rateLimited(err error, limit string) bool {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.ResourceExhausted {
		return false
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.GetMetadata()["limit"] == limit
		}
	}
	return false
}

// retrySend sends to `to` again after its send answered UNAVAILABLE, and
// verifies the code it delivers. The send's undo runs in the background
// once Redis answers, so the retry may briefly meet its cooldown or a
// store still reconnecting; within a bounded poll, far shorter than the
// 60s cooldown, it must go through.
func (f *faultOtpd) retrySend(t *testing.T, to string) {
	t.Helper()
	var err, lastErr error
	for attempt, deadline := 1, time.Now().Add(15*time.Second); time.Now().Before(deadline); attempt++ {
		var vid string
		vid, err = f.send(to)
		switch {
		case err == nil:
			if r, err := f.verify(to, f.codeOf(t, vid)); err != nil || r != otpv1.VerifyResult_VERIFY_RESULT_OK {
				t.Fatalf("code of the retried send to %s: %v, %v; want OK", to, r, err)
			}
			if attempt > 1 {
				t.Logf("retry of the failed send to %s went through at attempt %d (last refusal: %v)", to, attempt, status.Convert(lastErr).Message())
			}
			return
		case storeUnavailable(err) || rateLimited(err, "resend_interval"):
			lastErr = err
		default:
			t.Fatalf("retry of the failed send to %s: %v", to, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("retry of the failed send to %s still refused after 15s (stranded by its cooldown): %v", to, err)
}

// wantVerifiesAgain verifies a right code whose verification answered
// UNAVAILABLE: nobody was told OK, so it verifies once its undo ran
// (until then it may answer EXPIRED: consumed by the lost attempt).
func (f *faultOtpd) wantVerifiesAgain(t *testing.T, to, code string) {
	t.Helper()
	var r otpv1.VerifyResult
	var err error
	for attempt, deadline := 1, time.Now().Add(15*time.Second); time.Now().Before(deadline); attempt++ {
		r, err = f.verify(to, code)
		switch {
		case err == nil && r == otpv1.VerifyResult_VERIFY_RESULT_OK:
			if attempt > 1 {
				t.Logf("right code verified at attempt %d", attempt)
			}
			return
		case storeUnavailable(err) || (err == nil && r == otpv1.VerifyResult_VERIFY_RESULT_EXPIRED):
		default:
			t.Fatalf("right code whose verify answered UNAVAILABLE: %v, %v; want OK", r, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("right code whose verify answered UNAVAILABLE: still %v, %v after 15s; want OK (the lost attempt consumed it)", r, err)
}

// duringFault makes the calls of users while Redis cannot take writes,
// all at once: a send to each of fresh, the right code of verifier, a
// wrong code for guessed. Each must answer UNAVAILABLE STORE_UNAVAILABLE,
// and nothing may be delivered.
func (f *faultOtpd) duringFault(t *testing.T, fresh []string, verifier, code, guessed string) {
	t.Helper()
	before := f.deliveries()
	errs := make([]error, len(fresh)+2)
	var wg sync.WaitGroup
	for i, to := range fresh {
		wg.Go(func() { _, errs[i] = f.send(to) })
	}
	wg.Go(func() {
		r, err := f.verify(verifier, code)
		if err == nil {
			err = fmt.Errorf("answered %v", r)
		}
		errs[len(fresh)] = err
	})
	wg.Go(func() {
		r, err := f.verify(guessed, "000000")
		if err == nil {
			err = fmt.Errorf("answered %v", r)
		}
		errs[len(fresh)+1] = err
	})
	wg.Wait()
	for i, err := range errs {
		what := "the right code's verify"
		switch {
		case i < len(fresh):
			what = "send to " + fresh[i]
		case i == len(fresh)+1:
			what = "a wrong code's verify"
		}
		if !storeUnavailable(err) {
			t.Errorf("%s while Redis cannot take writes: %v, want UNAVAILABLE STORE_UNAVAILABLE with RetryInfo", what, err)
		}
	}
	if n := f.deliveries() - before; n != 0 {
		t.Errorf("%d messages delivered for sends that answered UNAVAILABLE", n)
	}
	if t.Failed() {
		t.FailNow()
	}
}

// A fault of the network between otpd and Redis: every connection cut,
// every connection reset, every byte held longer than redis.timeout.
func TestBlackBoxNetworkFaults(t *testing.T) {
	t.Parallel()
	for _, fault := range []struct {
		name  string
		apply func(*redistest.Proxy)
	}{
		{"cut", (*redistest.Proxy).Cut},
		{"reset", (*redistest.Proxy).Reset},
		{"delay beyond redis.timeout", func(p *redistest.Proxy) { p.Delay(1500 * time.Millisecond) }},
	} {
		t.Run(fault.name, func(t *testing.T) {
			t.Parallel()
			srv := redistest.Start(t)
			px := redistest.StartProxy(t, srv.Addr())
			f := startFaultOtpd(t, fmt.Sprintf("  url: %q", px.URL()))
			f.round(t, "+14155552000")
			const verifier, guessed = "+14155552001", "+14155552002"
			code := f.prepare(t, verifier, guessed)

			fault.apply(px)
			f.waitDown(t)
			fresh := []string{"+14155552010", "+14155552011", "+14155552012", "+14155552013"}
			f.duringFault(t, fresh, verifier, code, guessed)

			healed := time.Now()
			px.Heal()
			f.waitUp(t)
			t.Logf("%s: serving again %v after the network healed", fault.name, time.Since(healed).Round(time.Millisecond))
			for _, to := range fresh {
				f.retrySend(t, to)
			}
			f.wantVerifiesAgain(t, verifier, code)
			f.round(t, "+14155552020")
		})
	}
}

// load runs workers that each send to fresh recipients and verify a wrong
// code, until stopped, and keeps what they were answered.
type load struct {
	mu   sync.Mutex
	ok   int      // calls answered OK (a send) or with a result (a verify)
	down int      // calls answered UNAVAILABLE STORE_UNAVAILABLE
	bad  []string // any other answer
	at   []time.Time

	stop chan struct{}
	wg   sync.WaitGroup
}

// startLoad starts n workers; worker w sends to +1 <area w> 555 xxxx.
func (f *faultOtpd) startLoad(n int) *load {
	l := &load{stop: make(chan struct{})}
	areas := []string{"415", "650", "212", "310", "617", "206", "312", "303"}
	for w := range n {
		l.wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				to := fmt.Sprintf("+1%s555%04d", areas[w%len(areas)], i%10000)
				_, err := f.send(to)
				l.note("send", err)
				_, err = f.verify(to, "000000")
				l.note("verify", err)
				if err != nil {
					time.Sleep(20 * time.Millisecond) // no busy loop while Redis is away
				}
			}
		})
	}
	return l
}

func (l *load) note(what string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case err == nil:
		l.ok++
		l.at = append(l.at, time.Now())
	case storeUnavailable(err):
		l.down++
	default:
		l.bad = append(l.bad, what+": "+err.Error())
	}
}

// okSince counts the calls answered OK since t.
func (l *load) okSince(t time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, at := range l.at {
		if !at.Before(t) {
			n++
		}
	}
	return n
}

// firstOKSince is when the first call after t was answered OK.
func (l *load) firstOKSince(t time.Time) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, at := range l.at {
		if !at.Before(t) {
			return at
		}
	}
	return time.Time{}
}

func (l *load) downs() int { l.mu.Lock(); defer l.mu.Unlock(); return l.down }

// waitFor polls cond until it holds, for at most limit.
func waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(limit); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, limit)
		}
	}
}

// end stops the workers and fails the test on any answer other than a
// result or UNAVAILABLE STORE_UNAVAILABLE.
func (l *load) end(t *testing.T) {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	t.Logf("load: %d calls answered, %d UNAVAILABLE STORE_UNAVAILABLE", l.ok, l.down)
	if len(l.bad) > 0 {
		t.Fatalf("%d calls answered neither a result nor UNAVAILABLE STORE_UNAVAILABLE, first: %s", len(l.bad), l.bad[0])
	}
}

// redis-server killed (SIGKILL) under load from six workers, then
// started again, empty: only UNAVAILABLE in between, full service after.
func TestBlackBoxRedisKillUnderLoad(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	f := startFaultOtpd(t, fmt.Sprintf("  url: %q", srv.URL()))
	f.round(t, "+14155553000")
	l := f.startLoad(6)
	start := time.Now()
	waitFor(t, "calls answered before the kill", 20*time.Second, func() bool { return l.okSince(start) >= 30 })

	srv.Stop()
	f.waitDown(t)
	waitFor(t, "calls refused while Redis is down", 10*time.Second, func() bool { return l.downs() >= 60 })
	restarted := time.Now()
	srv.Restart()
	f.waitUp(t)
	waitFor(t, "calls answered after the restart", 20*time.Second, func() bool { return l.okSince(restarted) >= 30 })
	t.Logf("serving %v and first call answered %v after redis-server started again",
		time.Since(restarted).Round(time.Millisecond), l.firstOKSince(restarted).Sub(restarted).Round(time.Millisecond))
	l.end(t)
	f.round(t, "+14155553001")
}

// The master otpd uses is made a replica of another server, as a failover
// does to an old master: it answers READONLY to every write. UNAVAILABLE
// and NOT_SERVING until it is a master again; then full service.
func TestBlackBoxReadOnlyReplica(t *testing.T) {
	t.Parallel()
	// b serves a new replica at once rather than after the default 5s
	// wait for more replicas to share one transfer.
	a, b := redistest.Start(t), redistest.StartWith(t, "--repl-diskless-sync-delay", "0")
	f := startFaultOtpd(t, fmt.Sprintf("  url: %q", a.URL()))
	f.round(t, "+14155554000")
	const verifier, guessed = "+14155554001", "+14155554002"
	code := f.prepare(t, verifier, guessed)

	admin := a.Client()
	ctx := context.Background()
	port := b.Addr()[strings.LastIndexByte(b.Addr(), ':')+1:]
	if err := admin.Do(ctx, "REPLICAOF", "127.0.0.1", port).Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the demoted master syncs", 10*time.Second, func() bool {
		return strings.Contains(admin.Info(ctx, "replication").Val(), "master_link_status:up")
	})
	if err := admin.Set(ctx, "x", "1", 0).Err(); !strings.HasPrefix(fmt.Sprint(err), "READONLY") {
		t.Fatalf("write to the demoted master: %v, want READONLY", err)
	}
	f.waitDown(t)
	// Its data went with the sync: the verifier's code is gone, so its
	// verify would answer EXPIRED if the call got through.
	f.duringFault(t, []string{"+14155554010", "+14155554011"}, verifier, code, guessed)

	promoted := time.Now()
	if err := admin.Do(ctx, "REPLICAOF", "NO", "ONE").Err(); err != nil {
		t.Fatal(err)
	}
	f.waitUp(t)
	t.Logf("serving again %v after REPLICAOF NO ONE", time.Since(promoted).Round(time.Millisecond))
	f.retrySend(t, "+14155554010")
	f.round(t, "+14155554020")
}

// Redis full under noeviction: PING still answers, but otpd is not ready
// and refuses calls UNAVAILABLE until Redis has room again.
func TestBlackBoxOOMReadiness(t *testing.T) {
	t.Parallel()
	srv := redistest.StartWith(t, "--maxmemory-policy", "noeviction")
	f := startFaultOtpd(t, fmt.Sprintf("  url: %q", srv.URL()))
	f.round(t, "+14155555000")
	const verifier, guessed = "+14155555001", "+14155555002"
	code := f.prepare(t, verifier, guessed)

	admin := srv.Client()
	ctx := context.Background()
	if err := admin.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil { // any data is over 1 byte
		t.Fatal(err)
	}
	if err := admin.Set(ctx, "x", "1", 0).Err(); !redis.IsOOMError(err) {
		t.Fatalf("write to a full Redis: %v, want OOM", err)
	}
	f.waitDown(t)
	if _, m := httpGet(t, "http://"+f.http+"/metrics"); !strings.Contains(m, "\notpd_store_up 0\n") {
		t.Error("/metrics with Redis full lacks otpd_store_up 0")
	}
	f.duringFault(t, []string{"+14155555010", "+14155555011"}, verifier, code, guessed)

	if err := admin.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	f.waitUp(t)
	f.retrySend(t, "+14155555010")
	if r, err := f.verify(verifier, code); err != nil || r != otpv1.VerifyResult_VERIFY_RESULT_OK {
		t.Fatalf("right code refused under OOM, once Redis has room: %v, %v; want OK", r, err)
	}
}

// Redis Cluster of three masters, each with a replica: a master is
// killed, its replica elected. Only UNAVAILABLE in between, under load;
// full service after, on every slot, without restarting otpd.
func TestBlackBoxClusterFailover(t *testing.T) {
	t.Parallel()
	rc := redistest.StartReplicatedCluster(t, 3)
	addrs := rc.Addrs()
	for _, r := range rc.Replicas {
		addrs = append(addrs, r.Addr())
	}
	f := startFaultOtpd(t, fmt.Sprintf("  addrs: [%s]\n  cluster: true", strings.Join(addrs, ", ")))
	f.round(t, "+14155556000")
	l := f.startLoad(6)
	start := time.Now()
	waitFor(t, "calls answered before the kill", 20*time.Second, func() bool { return l.okSince(start) >= 30 })

	killed := time.Now()
	rc.Nodes[0].Stop()
	f.waitDown(t)
	rc.WaitFailover(t, 0)
	elected := time.Since(killed)
	f.waitUp(t)
	serving := time.Since(killed)
	waitFor(t, "calls answered after the failover", 20*time.Second, func() bool { return l.okSince(killed.Add(serving)) >= 30 })
	t.Logf("replica elected %v after the kill; otpd serving again %v after it", elected.Round(time.Millisecond), serving.Round(time.Millisecond))
	l.end(t)
	for i := range 8 { // recipients on every master's slots
		f.round(t, fmt.Sprintf("+1415555610%d", i))
	}
}

// otpd refuses to start on a Redis whose maxmemory-policy evicts, naming
// the policy and the override, also where CONFIG is disabled (managed
// Redis: the policy is read from INFO); with redis.allow_eviction it
// starts and warns.
func TestBlackBoxEvictionPolicy(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		args      []string
		allow     bool
		refused   bool
		wantInLog []string
	}{
		{"allkeys-lru refused", []string{"--maxmemory-policy", "allkeys-lru"}, false, true,
			[]string{"maxmemory-policy is allkeys-lru", "redis.allow_eviction: true"}},
		{"CONFIG disabled: volatile-lru read from INFO, refused", []string{"--maxmemory-policy", "volatile-lru", "--rename-command", "CONFIG", ""}, false, true,
			[]string{"maxmemory-policy is volatile-lru", "redis.allow_eviction: true"}},
		{"allkeys-lru allowed: starts, warns", []string{"--maxmemory-policy", "allkeys-lru"}, true, false,
			[]string{`"level":"WARN","msg":"redis maxmemory-policy is allkeys-lru on 127.0.0.1:`}},
		{"CONFIG disabled: noeviction read from INFO, starts quietly", []string{"--rename-command", "CONFIG", ""}, false, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := redistest.StartWith(t, tc.args...)
			block := fmt.Sprintf("  url: %q", srv.URL())
			if tc.allow {
				block += "\n  allow_eviction: true"
			}
			p := startOtpd(t, []string{"-config", faultConfig(t, block, "")})
			drainCodes(p)
			if tc.refused {
				select {
				case <-p.done:
				case <-time.After(30 * time.Second):
					t.Fatal("otpd still running on an evicting Redis")
				}
				var ee *exec.ExitError
				if err := p.cmd.Wait(); !errors.As(err, &ee) || ee.ExitCode() != 1 {
					t.Fatalf("otpd exit: %v, want exit status 1", err)
				}
			} else {
				grpcAddr, _ := p.addrs(t)
				waitHealth(t, dial(t, grpcAddr), healthpb.HealthCheckResponse_SERVING)
			}
			out := p.Output()
			for _, want := range tc.wantInLog {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
			if !tc.allow && !tc.refused && strings.Contains(out, "maxmemory-policy") {
				t.Errorf("output mentions maxmemory-policy on a noeviction Redis:\n%s", out)
			}
		})
	}
}

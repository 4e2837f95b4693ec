package service_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/otpd/otpd/internal/redact"
	"github.com/otpd/otpd/internal/redistest"
	"github.com/otpd/otpd/otp"
	otpv1 "github.com/otpd/otpd/proto/otp/v1"
	"github.com/otpd/otpd/providers"
	"github.com/otpd/otpd/providers/fake"
	"github.com/otpd/otpd/service"
	"github.com/otpd/otpd/service/memstore"
	"github.com/otpd/otpd/service/redisstore"
	"github.com/otpd/otpd/templates"
)

const (
	phone = "+14155550123"
	email = "Jane.Doe@Example.COM"
)

var (
	signIn = otpv1.UsageType_USAGE_TYPE_SIGN_IN
	forgot = otpv1.UsageType_USAGE_TYPE_FORGOT_PASSWORD
)

// clock is a settable clock shared by the service under test.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

// harness is otpd's service on a real redis-server, served over an
// in-memory gRPC connection, with two fake providers per channel.
type harness struct {
	svc       *service.Service
	client    otpv1.OtpServiceClient
	redis     *redistest.Server
	rdb       *redis.Client
	cluster   *redis.ClusterClient
	primary   *fake.Provider
	secondary *fake.Provider
	clock     *clock
	reg       *prometheus.Registry
	logs      *syncBuffer
}

type syncBuffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	discard bool // benchmarks: format the logs, keep nothing
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.discard {
		return len(p), nil
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func newHarness(tb testing.TB, mutate func(*service.Config), routeOpts ...func([]providers.Route)) *harness {
	tb.Helper()
	return newHarnessWith(tb, harnessOptions{mutate: mutate, routeOpts: routeOpts})
}

// newHarnessOn is newHarness with the Redis store wrapped by wrap (nil: as
// it is).
func newHarnessOn(tb testing.TB, wrap func(service.Store) service.Store, mutate func(*service.Config), routeOpts ...func([]providers.Route)) *harness {
	tb.Helper()
	return newHarnessWith(tb, harnessOptions{wrap: wrap, mutate: mutate, routeOpts: routeOpts})
}

// harnessOptions vary the harness; the zero value is newHarness's.
type harnessOptions struct {
	wrap      func(service.Store) service.Store
	mutate    func(*service.Config)
	routeOpts []func([]providers.Route)
	// redis is a server to share with another harness; nil starts one
	// with redisArgs.
	redis     *redistest.Server
	redisArgs []string
	// redisTimeout, when set, builds the Redis client as otpd does
	// (redisstore.Config.Client) with this redis.timeout.
	redisTimeout time.Duration
	// skew puts the service's clock and the store's local clock this far
	// from the real time, as on a machine whose clock is off.
	skew time.Duration
	// cluster, when set, puts the store on this Redis Cluster instead of a
	// single node: h.redis and h.rdb are then nil, h.cluster is set.
	cluster *redistest.Cluster
	// templatesDir is the templates' override directory (templates.dir).
	templatesDir string
}

func newHarnessWith(tb testing.TB, o harnessOptions) *harness {
	tb.Helper()
	h := &harness{
		redis: o.redis,
		clock: &clock{now: time.Now().Add(o.skew)},
		reg:   prometheus.NewRegistry(),
		logs:  &syncBuffer{},
	}
	var urdb redis.UniversalClient
	switch {
	case o.cluster != nil:
		h.cluster = redis.NewClusterClient(&redis.ClusterOptions{Addrs: o.cluster.Addrs(), PoolSize: 64, MaxRetries: -1})
		tb.Cleanup(func() { _ = h.cluster.Close() })
		urdb = h.cluster
	case h.redis == nil:
		h.redis = redistest.StartWith(tb, o.redisArgs...)
	}
	switch {
	case o.cluster != nil:
	case o.redisTimeout > 0:
		cfg := redisstore.DefaultConfig()
		cfg.URL, cfg.Timeout, cfg.PoolSize = h.redis.URL(), o.redisTimeout, 64
		rdb, err := cfg.Client()
		if err != nil {
			tb.Fatal(err)
		}
		h.rdb = rdb.(*redis.Client)
	default:
		// RESP2, as redisstore.Config.Client.
		h.rdb = redis.NewClient(&redis.Options{Addr: h.redis.Addr(), PoolSize: 64, MaxRetries: -1, DialTimeout: 500 * time.Millisecond, Protocol: 2})
	}
	if h.rdb != nil {
		tb.Cleanup(func() { _ = h.rdb.Close() })
		urdb = h.rdb
	}
	mutate, wrap, routeOpts := o.mutate, o.wrap, o.routeOpts

	var err error
	if h.primary, err = fake.New("primary", fake.Config{}); err != nil {
		tb.Fatal(err)
	}
	if h.secondary, err = fake.New("secondary", fake.Config{}); err != nil {
		tb.Fatal(err)
	}
	var routes []providers.Route
	for _, ch := range []otp.Channel{otp.SMS, otp.Email} {
		routes = append(routes,
			providers.Route{Name: "primary", Channel: ch, Sender: h.primary},
			providers.Route{Name: "secondary", Channel: ch, Sender: h.secondary})
	}
	for _, o := range routeOpts {
		o(routes)
	}
	router, err := providers.NewRouter(routes, providers.RouterOptions{Delivery: providers.Delivery{Attempts: 1}, Registerer: h.reg})
	if err != nil {
		tb.Fatal(err)
	}
	renderer, err := templates.New(templates.Options{AppName: "Acme", Dir: o.templatesDir})
	if err != nil {
		tb.Fatal(err)
	}
	cfg := service.DefaultConfig()
	cfg.Secret = "0123456789abcdef0123456789abcdef-test"
	cfg.AppName = "Acme"
	// Most tests send more SMS codes to one country than anybody verifies:
	// the conversion rule (fraud_conversion_test.go turns it on) would
	// refuse them.
	cfg.Fraud.Conversion.Window = 0
	if mutate != nil {
		mutate(&cfg)
	}
	log := slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var store service.Store = redisstore.New(urdb, "", redisstore.WithLocalClock(func() time.Time { return time.Now().Add(o.skew) }))
	if wrap != nil {
		store = wrap(store)
	}
	svc, err := service.New(cfg, store, router, renderer,
		service.WithClock(h.clock.Now), service.WithRegisterer(h.reg), service.WithLogger(log))
	if err != nil {
		tb.Fatal(err)
	}
	// Before the Redis client closes: undos still running get their
	// chance, and none outlives the test.
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := svc.Close(ctx); err != nil {
			tb.Errorf("close service: %v", err)
		}
	})

	h.svc = svc
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer()
	otpv1.RegisterOtpServiceServer(gs, svc)
	go func() { _ = gs.Serve(lis) }()
	tb.Cleanup(gs.Stop)
	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = conn.Close() })
	h.client = otpv1.NewOtpServiceClient(conn)
	return h
}

func (h *harness) send(tb testing.TB, to string, u otpv1.UsageType) (*otpv1.SendCodeResponse, string) {
	tb.Helper()
	return h.sendReq(tb, &otpv1.SendCodeRequest{Recipient: to, UsageType: u})
}

// sendReq is send with a whole request.
func (h *harness) sendReq(tb testing.TB, req *otpv1.SendCodeRequest) (*otpv1.SendCodeResponse, string) {
	tb.Helper()
	before := len(h.primary.Sent()) + len(h.secondary.Sent())
	resp, err := h.client.SendCode(context.Background(), req)
	if err != nil {
		tb.Fatalf("SendCode(%s): %v", req.GetRecipient(), err)
	}
	sent := append(h.primary.Sent(), h.secondary.Sent()...)
	if len(sent) != before+1 {
		tb.Fatalf("SendCode delivered %d messages, want 1", len(sent)-before)
	}
	for _, m := range sent {
		if m.VerificationID == resp.GetVerificationId() {
			return resp, m.Code
		}
	}
	tb.Fatalf("no delivered message has verification id %s", resp.GetVerificationId())
	return nil, ""
}

func (h *harness) verify(tb testing.TB, to string, u otpv1.UsageType, code string) *otpv1.VerifyCodeResponse {
	tb.Helper()
	resp, err := h.client.VerifyCode(context.Background(), &otpv1.VerifyCodeRequest{Recipient: to, UsageType: u, Code: code})
	if err != nil {
		tb.Fatalf("VerifyCode: %v", err)
	}
	return resp
}

// wantVerify verifies and fails the test unless the result is want; what
// says what was being verified.
func (h *harness) wantVerify(tb testing.TB, to string, u otpv1.UsageType, code string, want otpv1.VerifyResult, what string) {
	tb.Helper()
	if r := h.verify(tb, to, u, code); r.GetResult() != want {
		tb.Fatalf("%s: %v, want %v", what, r, want)
	}
}

func wrongCode(code string) string {
	b := []byte(code)
	b[0] = '0' + (b[0]-'0'+1)%10
	return string(b)
}

// wantStatus checks err's code and returns its details.
func wantStatus(tb testing.TB, err error, want codes.Code) []any {
	tb.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code() != want {
		tb.Fatalf("error = %v, want code %s", err, want)
	}
	return st.Details()
}

func detail[T any](tb testing.TB, details []any) T {
	tb.Helper()
	for _, d := range details {
		if v, ok := d.(T); ok {
			return v
		}
	}
	var zero T
	tb.Fatalf("no %T among details %v", zero, details)
	return zero
}

func TestSendAndVerify(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	resp, code := h.send(t, phone, signIn)
	if len(code) != 6 || strings.Trim(code, "0123456789") != "" {
		t.Fatalf("code %q is not 6 digits", code)
	}
	if resp.GetProvider() != "primary" || resp.GetChannel() != otpv1.Channel_CHANNEL_SMS {
		t.Fatalf("response = %v, want primary on SMS", resp)
	}
	if got := resp.GetExpiresAt().AsTime().Sub(h.clock.Now()); got != 10*time.Minute {
		t.Fatalf("expires in %v, want 10m", got)
	}
	msg := h.primary.Sent()[0]
	if msg.To != phone || !strings.Contains(msg.Content.Text, code) || !strings.Contains(msg.Content.Text, "Acme") {
		t.Fatalf("delivered message %+v does not carry the code and app name to %s", msg.Content, phone)
	}
	h.wantVerify(t, phone, signIn, code, otpv1.VerifyResult_VERIFY_RESULT_OK, "verify")
	h.wantVerify(t, phone, signIn, code, otpv1.VerifyResult_VERIFY_RESULT_EXPIRED, "second verify")
	if got := counter(t, h.reg, "otpd_codes_sent_total", map[string]string{"entry": "grpc", "channel": "sms", "provider": "primary", "usage_type": "sign_in", "result": "ok"}); got != 1 {
		t.Fatalf("otpd_codes_sent_total{ok} = %v, want 1", got)
	}
	if got := counter(t, h.reg, "otpd_sms_sent_by_country_total", map[string]string{"country_code": "1"}); got != 1 {
		t.Fatalf("otpd_sms_sent_by_country_total{country_code=1} = %v, want 1", got)
	}
}

func TestEmailNormalisedAndInferred(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	resp, code := h.send(t, email, signIn)
	if resp.GetChannel() != otpv1.Channel_CHANNEL_EMAIL {
		t.Fatalf("channel = %v, want EMAIL", resp.GetChannel())
	}
	msg := h.primary.Sent()[0]
	if msg.To != "Jane.Doe@example.com" || msg.Content.Subject == "" || !strings.Contains(msg.Content.HTML, code) {
		t.Fatalf("message to %q subject %q: want normalised address and a rendered email", msg.To, msg.Content.Subject)
	}
	// The domain is case-insensitive, so verification with another casing
	// of the domain finds the same code.
	h.wantVerify(t, "Jane.Doe@example.com", signIn, code, otpv1.VerifyResult_VERIFY_RESULT_OK, "verify")
}

func TestConcurrentVerifyExactlyOneOK(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	_, code := h.send(t, phone, signIn)
	const n = 200
	var ok, expired, other atomic.Int64
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			r, err := h.client.VerifyCode(context.Background(), &otpv1.VerifyCodeRequest{Recipient: phone, UsageType: signIn, Code: code})
			switch {
			case err != nil:
				t.Errorf("VerifyCode: %v", err)
			case r.GetResult() == otpv1.VerifyResult_VERIFY_RESULT_OK:
				ok.Add(1)
			case r.GetResult() == otpv1.VerifyResult_VERIFY_RESULT_EXPIRED:
				expired.Add(1)
			default:
				other.Add(1)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 1 || expired.Load() != n-1 {
		t.Fatalf("%d concurrent verifies of the right code: %d OK, %d EXPIRED, %d other; want exactly one OK", n, ok.Load(), expired.Load(), other.Load())
	}
}

func TestConcurrentSendsPerRecipient(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *service.Config) {
		c.Limits.ResendInterval = 0
		c.Limits.PerRecipient = service.Window{Count: 5, Window: 10 * time.Minute}
	})
	const n = 50
	var ok, limited atomic.Int64
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			_, err := h.client.SendCode(context.Background(), &otpv1.SendCodeRequest{Recipient: phone, UsageType: signIn})
			if err == nil {
				ok.Add(1)
				return
			}
			st := status.Convert(err)
			if st.Code() != codes.ResourceExhausted {
				t.Errorf("SendCode: %v, want RESOURCE_EXHAUSTED", err)
				return
			}
			var retry *errdetails.RetryInfo
			var quota *errdetails.QuotaFailure
			for _, d := range st.Details() {
				switch d := d.(type) {
				case *errdetails.RetryInfo:
					retry = d
				case *errdetails.QuotaFailure:
					quota = d
				}
			}
			// Within the 10m window, give or take a call's latency: the
			// test's clock stands still while Redis's moves on.
			if retry == nil || retry.GetRetryDelay().AsDuration() <= 0 || retry.GetRetryDelay().AsDuration() > 10*time.Minute+time.Second {
				t.Errorf("RetryInfo = %v, want a delay within the 10m window", retry)
			}
			if quota == nil || quota.GetViolations()[0].GetSubject() != "per_recipient" {
				t.Errorf("QuotaFailure = %v, want per_recipient", quota)
			}
			limited.Add(1)
		})
	}
	wg.Wait()
	if ok.Load() != 5 || limited.Load() != n-5 {
		t.Fatalf("%d concurrent sends with per_recipient 5: %d accepted, %d limited", n, ok.Load(), limited.Load())
	}
	if c := h.primary.Calls(); c != 5 {
		t.Fatalf("provider called %d times, want 5", c)
	}
	if got := counter(t, h.reg, "otpd_rate_limited_total", map[string]string{"limit": "per_recipient"}); got != n-5 {
		t.Fatalf("otpd_rate_limited_total{per_recipient} = %v, want %d", got, n-5)
	}
}

func TestTooManyAttempts(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	_, code := h.send(t, phone, signIn)
	bad := wrongCode(code)
	for want := int32(4); want >= 0; want-- {
		r := h.verify(t, phone, signIn, bad)
		if r.GetResult() != otpv1.VerifyResult_VERIFY_RESULT_MISMATCH || r.GetAttemptsRemaining() != want {
			t.Fatalf("wrong code: %v, want MISMATCH with %d attempts left", r, want)
		}
	}
	for _, c := range []string{code, bad} {
		if r := h.verify(t, phone, signIn, c); r.GetResult() != otpv1.VerifyResult_VERIFY_RESULT_TOO_MANY_ATTEMPTS {
			t.Fatalf("after max_attempts: %v, want TOO_MANY_ATTEMPTS even for the right code", r)
		}
	}
}

func TestShortTTLExpires(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *service.Config) { c.Code.TTL = 2 * time.Second })
	_, code := h.send(t, phone, signIn)
	// Redis keeps time, moved by the service clock's offset: each call
	// lands a little later than the service clock says, by its latency.
	h.clock.Advance(2*time.Second + time.Second)
	h.wantVerify(t, phone, signIn, code, otpv1.VerifyResult_VERIFY_RESULT_EXPIRED, "verify after the TTL")
}

func TestRealTTLExpiresInRedis(t *testing.T) {
	t.Parallel()
	// The otpd clock stands still here: only Redis's own expiry, on the
	// real clock, can end the code. The recipient's record lives as long
	// as its longest part, here the code: no window or cooldown outlives
	// it.
	h := newHarness(t, func(c *service.Config) {
		c.Code.TTL = time.Second
		c.Limits.ResendInterval = 0
		c.Limits.PerRecipient = service.Window{}
	})
	_, code := h.send(t, phone, signIn)
	for i := 0; ; i++ {
		keys, err := h.rdb.Keys(context.Background(), "*:r").Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) == 0 {
			break
		}
		if i == 100 {
			t.Fatalf("Redis still holds %v long after the 1s TTL", keys)
		}
		time.Sleep(100 * time.Millisecond)
	}
	h.wantVerify(t, phone, signIn, code, otpv1.VerifyResult_VERIFY_RESULT_EXPIRED, "verify after Redis expired the code")
}

func TestUsageTypesNeverCross(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	_, code := h.send(t, phone, signIn)
	h.wantVerify(t, phone, forgot, code, otpv1.VerifyResult_VERIFY_RESULT_EXPIRED, "SignIn code against ForgotPassword")
	_, fpCode := h.send(t, phone, forgot)
	if fpCode != code {
		if r := h.verify(t, phone, forgot, code); r.GetResult() != otpv1.VerifyResult_VERIFY_RESULT_MISMATCH {
			t.Fatalf("SignIn code against a live ForgotPassword code = %v, want MISMATCH", r)
		}
	}
	h.wantVerify(t, phone, signIn, code, otpv1.VerifyResult_VERIFY_RESULT_OK, "SignIn code")
	h.wantVerify(t, phone, forgot, fpCode, otpv1.VerifyResult_VERIFY_RESULT_OK, "ForgotPassword code")
}

func TestResendReplacesCode(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	_, first := h.send(t, phone, signIn)
	_, err := h.client.SendCode(context.Background(), &otpv1.SendCodeRequest{Recipient: phone, UsageType: signIn})
	details := wantStatus(t, err, codes.ResourceExhausted)
	// Within a second of the interval: the test's clock stands still, and
	// Redis's moves on by each call's latency.
	if d := detail[*errdetails.RetryInfo](t, details).GetRetryDelay().AsDuration(); d < time.Minute-time.Second || d > time.Minute+time.Second {
		t.Fatalf("cooldown RetryInfo = %v, want about 60s", d)
	}
	if q := detail[*errdetails.QuotaFailure](t, details); q.GetViolations()[0].GetSubject() != "resend_interval" {
		t.Fatalf("QuotaFailure = %v, want resend_interval", q)
	}
	h.clock.Advance(time.Minute + time.Second) // past the cooldown, by more than a call's latency
	_, second := h.send(t, phone, signIn)
	for second == first { // one chance in a million: draw again
		h.clock.Advance(time.Minute + time.Second)
		_, second = h.send(t, phone, signIn)
	}
	h.wantVerify(t, phone, signIn, first, otpv1.VerifyResult_VERIFY_RESULT_MISMATCH, "old code after a resend")
	h.wantVerify(t, phone, signIn, second, otpv1.VerifyResult_VERIFY_RESULT_OK, "new code")
}

func TestRedisHoldsNoPlaintext(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	ctx := context.Background()
	var secrets []string
	for i, to := range []string{phone, "+8613800138000", email, "someone@example.org"} {
		resp, err := h.client.SendCode(ctx, &otpv1.SendCodeRequest{
			Recipient: to, UsageType: signIn, ClientIp: fmt.Sprintf("203.0.113.%d", i+7), IdempotencyKey: fmt.Sprintf("idem-key-%d", i),
		})
		if err != nil {
			t.Fatal(err)
		}
		sent := append(h.primary.Sent(), h.secondary.Sent()...)
		code := sent[len(sent)-1].Code
		// Leave a wrong attempt behind too.
		h.verify(t, to, signIn, wrongCode(code))
		secrets = append(secrets, code, to, strings.TrimPrefix(to, "+"), strings.ToLower(to),
			fmt.Sprintf("203.0.113.%d", i+7), fmt.Sprintf("idem-key-%d", i), resp.GetVerificationId()[:0])
		if at := strings.IndexByte(to, '@'); at > 0 {
			secrets = append(secrets, to[:at])
		}
	}
	dump := dumpRedis(t, h.rdb)
	if len(dump) < 10 {
		t.Fatalf("redis holds only %d keys and values; the test looks at nothing", len(dump))
	}
	for _, s := range secrets {
		if s == "" {
			continue
		}
		for _, item := range dump {
			if strings.Contains(strings.ToLower(item), strings.ToLower(s)) {
				t.Errorf("redis item %q contains plaintext %q", item, s)
			}
		}
	}
}

// dumpRedis returns every key and every value, member and field in the
// database.
func dumpRedis(tb testing.TB, rdb *redis.Client) []string {
	tb.Helper()
	ctx := context.Background()
	keys, err := rdb.Keys(ctx, "*").Result()
	if err != nil {
		tb.Fatal(err)
	}
	var out []string
	for _, k := range keys {
		out = append(out, k)
		switch rdb.Type(ctx, k).Val() {
		case "string":
			out = append(out, rdb.Get(ctx, k).Val())
		case "hash":
			for f, v := range rdb.HGetAll(ctx, k).Val() {
				out = append(out, f, v)
			}
		case "zset":
			out = append(out, rdb.ZRange(ctx, k, 0, -1).Val()...)
		default:
			tb.Fatalf("unexpected type of key %s", k)
		}
	}
	return out
}

func TestRedisDownThenBack(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	_, code := h.send(t, phone, signIn)
	h.redis.Stop()
	ctx := context.Background()
	_, err := h.client.SendCode(ctx, &otpv1.SendCodeRequest{Recipient: "+14155550124", UsageType: signIn})
	detail[*errdetails.RetryInfo](t, wantStatus(t, err, codes.Unavailable))
	_, err = h.client.VerifyCode(ctx, &otpv1.VerifyCodeRequest{Recipient: phone, UsageType: signIn, Code: code})
	wantStatus(t, err, codes.Unavailable)
	if strings.Contains(err.Error(), "127.0.0.1") || strings.Contains(err.Error(), "refused") {
		t.Fatalf("error text leaks internals: %v", err)
	}
	if h.primary.Calls() != 1 {
		t.Fatalf("provider called %d times; nothing may be sent while the store is down", h.primary.Calls())
	}

	h.redis.Restart()
	// The service recovers by itself: the same client, no restart.
	for i := 0; ; i++ {
		_, err = h.client.SendCode(ctx, &otpv1.SendCodeRequest{Recipient: "+14155550124", UsageType: signIn})
		if err == nil {
			break
		}
		if status.Code(err) != codes.Unavailable || i == 100 {
			t.Fatalf("SendCode after Redis came back: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Redis restarted empty: the old code is gone, and says so.
	h.wantVerify(t, phone, signIn, code, otpv1.VerifyResult_VERIFY_RESULT_EXPIRED, "verify after restart")
}

func TestBadInputChangesNothing(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	ctx := context.Background()
	long := strings.Repeat("a", 300) + "@example.com"
	for _, tc := range []struct {
		name  string
		req   *otpv1.SendCodeRequest
		field string
	}{
		{"empty recipient", &otpv1.SendCodeRequest{UsageType: signIn}, "recipient"},
		{"malformed phone", &otpv1.SendCodeRequest{Recipient: "+1415", UsageType: signIn}, "recipient"},
		{"phone without plus", &otpv1.SendCodeRequest{Recipient: "14155550123", Channel: otpv1.Channel_CHANNEL_SMS, UsageType: signIn}, "recipient"},
		{"letters in phone", &otpv1.SendCodeRequest{Recipient: "+1415555abcd", UsageType: signIn}, "recipient"},
		{"malformed email", &otpv1.SendCodeRequest{Recipient: "jane@", UsageType: signIn}, "recipient"},
		{"email with display name", &otpv1.SendCodeRequest{Recipient: "Jane <jane@example.com>", UsageType: signIn}, "recipient"},
		{"email on sms channel", &otpv1.SendCodeRequest{Recipient: "jane@example.com", Channel: otpv1.Channel_CHANNEL_SMS, UsageType: signIn}, "recipient"},
		{"phone on email channel", &otpv1.SendCodeRequest{Recipient: phone, Channel: otpv1.Channel_CHANNEL_EMAIL, UsageType: signIn}, "recipient"},
		{"unknown channel", &otpv1.SendCodeRequest{Recipient: phone, Channel: 7, UsageType: signIn}, "channel"},
		{"unspecified usage type", &otpv1.SendCodeRequest{Recipient: phone}, "usage_type"},
		{"unknown usage type", &otpv1.SendCodeRequest{Recipient: phone, UsageType: 42}, "usage_type"},
		{"oversized recipient", &otpv1.SendCodeRequest{Recipient: long, UsageType: signIn}, "recipient"},
		{"unknown locale", &otpv1.SendCodeRequest{Recipient: phone, UsageType: signIn, Locale: "xx-@@"}, "locale"},
		{"oversized locale", &otpv1.SendCodeRequest{Recipient: phone, UsageType: signIn, Locale: strings.Repeat("en-", 20)}, "locale"},
		{"bad client ip", &otpv1.SendCodeRequest{Recipient: phone, UsageType: signIn, ClientIp: "300.1.2.3"}, "client_ip"},
		{"oversized idempotency key", &otpv1.SendCodeRequest{Recipient: phone, UsageType: signIn, IdempotencyKey: strings.Repeat("k", 129)}, "idempotency_key"},
		{"control characters in idempotency key", &otpv1.SendCodeRequest{Recipient: phone, UsageType: signIn, IdempotencyKey: "a\nb"}, "idempotency_key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.client.SendCode(ctx, tc.req)
			br := detail[*errdetails.BadRequest](t, wantStatus(t, err, codes.InvalidArgument))
			if len(br.GetFieldViolations()) == 0 || br.GetFieldViolations()[0].GetField() != tc.field {
				t.Fatalf("BadRequest = %v, want a violation of %s", br, tc.field)
			}
			if strings.Contains(err.Error(), long) {
				t.Fatal("error echoes the input")
			}
		})
	}
	for _, tc := range []struct {
		name  string
		req   *otpv1.VerifyCodeRequest
		field string
	}{
		{"letters in code", &otpv1.VerifyCodeRequest{Recipient: phone, UsageType: signIn, Code: "12a456"}, "code"},
		{"empty code", &otpv1.VerifyCodeRequest{Recipient: phone, UsageType: signIn}, "code"},
		{"oversized code", &otpv1.VerifyCodeRequest{Recipient: phone, UsageType: signIn, Code: strings.Repeat("1", 50)}, "code"},
		{"unspecified usage type", &otpv1.VerifyCodeRequest{Recipient: phone, Code: "123456"}, "usage_type"},
		{"malformed phone", &otpv1.VerifyCodeRequest{Recipient: "+1", UsageType: signIn, Code: "123456"}, "recipient"},
	} {
		t.Run("verify "+tc.name, func(t *testing.T) {
			_, err := h.client.VerifyCode(ctx, tc.req)
			br := detail[*errdetails.BadRequest](t, wantStatus(t, err, codes.InvalidArgument))
			if br.GetFieldViolations()[0].GetField() != tc.field {
				t.Fatalf("BadRequest = %v, want a violation of %s", br, tc.field)
			}
		})
	}
	if n := h.rdb.DBSize(ctx).Val(); n != 0 {
		t.Fatalf("bad input left %d keys in Redis", n)
	}
	if c := h.primary.Calls() + h.secondary.Calls(); c != 0 {
		t.Fatalf("bad input reached a provider %d times", c)
	}
}

func TestFailoverAndFailedDelivery(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	ctx := context.Background()

	h.primary.SetMode("transient")
	resp, err := h.client.SendCode(ctx, &otpv1.SendCodeRequest{Recipient: phone, UsageType: signIn})
	if err != nil || resp.GetProvider() != "secondary" {
		t.Fatalf("primary down: %v, %v; want the secondary to deliver and be named", resp, err)
	}

	// Every provider down: UNAVAILABLE, and the user is not held back.
	h.secondary.SetMode("transient")
	_, err = h.client.SendCode(ctx, &otpv1.SendCodeRequest{Recipient: email, UsageType: signIn})
	wantStatus(t, err, codes.Unavailable)
	// Permanent rejection: FAILED_PRECONDITION, no failover.
	h.primary.SetMode("permanent")
	h.secondary.SetMode("ok")
	calls := h.secondary.Calls()
	_, err = h.client.SendCode(ctx, &otpv1.SendCodeRequest{Recipient: email, UsageType: signIn})
	wantStatus(t, err, codes.FailedPrecondition)
	if h.secondary.Calls() != calls {
		t.Fatal("a permanent failure failed over")
	}
	// After the failures the cooldown is free and no code is live.
	h.wantVerify(t, email, signIn, "123456", otpv1.VerifyResult_VERIFY_RESULT_EXPIRED, "verify after failed deliveries")
	h.primary.SetMode("ok")
	_, code := h.send(t, email, signIn)
	h.wantVerify(t, email, signIn, code, otpv1.VerifyResult_VERIFY_RESULT_OK, "verify")
	if got := counter(t, h.reg, "otpd_codes_sent_total", map[string]string{"entry": "grpc", "channel": "email", "provider": "primary", "usage_type": "sign_in", "result": "permanent_error"}); got != 1 {
		t.Fatalf("otpd_codes_sent_total{permanent_error} = %v, want 1", got)
	}
}

func TestDeadlineBoundsDelivery(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.primary.SetDelay(time.Minute)
	h.secondary.SetDelay(time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := h.client.SendCode(ctx, &otpv1.SendCodeRequest{Recipient: phone, UsageType: signIn})
	if c := status.Code(err); c != codes.DeadlineExceeded && c != codes.Unavailable {
		t.Fatalf("slow providers: %v, want DEADLINE_EXCEEDED or UNAVAILABLE", err)
	}
	// The cooldown was freed: as soon as providers are fast, a send goes through.
	h.primary.SetDelay(0)
	h.secondary.SetDelay(0)
	for i := 0; ; i++ {
		_, err := h.client.SendCode(context.Background(), &otpv1.SendCodeRequest{Recipient: phone, UsageType: signIn})
		if err == nil {
			break
		}
		// The server side may still be cleaning up the timed-out call.
		if status.Code(err) != codes.ResourceExhausted || i == 50 {
			t.Fatalf("send after a timed-out one: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestIdempotencyKey(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	ctx := context.Background()
	req := &otpv1.SendCodeRequest{Recipient: phone, UsageType: signIn, IdempotencyKey: "order-42"}
	first, err := h.client.SendCode(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	again, err := h.client.SendCode(ctx, req)
	if err != nil {
		t.Fatalf("retry with the same key: %v", err)
	}
	if again.GetVerificationId() != first.GetVerificationId() || !again.GetExpiresAt().AsTime().Equal(first.GetExpiresAt().AsTime()) {
		t.Fatalf("retry answered %v, want the first answer %v", again, first)
	}
	if c := h.primary.Calls(); c != 1 {
		t.Fatalf("provider called %d times, want 1", c)
	}
	_, err = h.client.SendCode(ctx, &otpv1.SendCodeRequest{Recipient: phone, UsageType: forgot, IdempotencyKey: "order-42"})
	br := detail[*errdetails.BadRequest](t, wantStatus(t, err, codes.InvalidArgument))
	if br.GetFieldViolations()[0].GetField() != "idempotency_key" {
		t.Fatalf("BadRequest = %v", br)
	}
}

func TestPerIPAndPerCountryLimits(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *service.Config) {
		c.Limits.PerIP = service.Window{Count: 2, Window: time.Hour}
		c.Limits.PerCountry = service.Window{Count: 3, Window: time.Hour}
	})
	ctx := context.Background()
	send := func(to, ip string) error {
		_, err := h.client.SendCode(ctx, &otpv1.SendCodeRequest{Recipient: to, UsageType: signIn, ClientIp: ip})
		return err
	}
	// IPv6 addresses of one /64 count together.
	for _, tc := range []struct{ to, ip string }{
		{"a@example.com", "2001:db8::1"}, {"b@example.com", "2001:db8::2"},
	} {
		if err := send(tc.to, tc.ip); err != nil {
			t.Fatal(err)
		}
	}
	err := send("c@example.com", "2001:db8::ffff")
	if q := detail[*errdetails.QuotaFailure](t, wantStatus(t, err, codes.ResourceExhausted)); q.GetViolations()[0].GetSubject() != "per_ip" {
		t.Fatalf("QuotaFailure = %v, want per_ip", q)
	}
	if err := send("c@example.com", "2001:db8:1::1"); err != nil {
		t.Fatalf("another /64: %v", err)
	}
	for _, to := range []string{"+14155550101", "+14155550102", "+14155550103"} {
		if err := send(to, ""); err != nil {
			t.Fatal(err)
		}
	}
	err = send("+14155550104", "")
	if q := detail[*errdetails.QuotaFailure](t, wantStatus(t, err, codes.ResourceExhausted)); q.GetViolations()[0].GetSubject() != "per_country" {
		t.Fatalf("QuotaFailure = %v, want per_country", q)
	}
	if err := send("+447400123456", ""); err != nil {
		t.Fatalf("another country: %v", err)
	}
	// A refused send held no one back: the refused recipient can still be
	// sent to once the country frees up, with no cooldown of its own.
	h.clock.Advance(time.Hour + time.Second)
	if err := send("+14155550104", ""); err != nil {
		t.Fatalf("after the window: %v", err)
	}
}

func TestVerifyPerRecipientLimit(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *service.Config) {
		c.Limits.VerifyPerRecipient = service.Window{Count: 3, Window: time.Hour}
		c.Limits.ResendInterval = 0
	})
	_, code := h.send(t, phone, signIn)
	for range 3 {
		h.verify(t, phone, signIn, wrongCode(code))
	}
	_, err := h.client.VerifyCode(context.Background(), &otpv1.VerifyCodeRequest{Recipient: phone, UsageType: signIn, Code: code})
	if q := detail[*errdetails.QuotaFailure](t, wantStatus(t, err, codes.ResourceExhausted)); q.GetViolations()[0].GetSubject() != "verify_per_recipient" {
		t.Fatalf("QuotaFailure = %v", q)
	}
}

func TestLogsHoldNoCodeOrRecipient(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	_, code := h.send(t, "+8613800138000", signIn)
	h.verify(t, "+8613800138000", signIn, wrongCode(code))
	h.verify(t, "+8613800138000", signIn, code)
	_, code2 := h.send(t, email, signIn)
	logs := h.logs.String()
	if !strings.Contains(logs, "code sent") || !strings.Contains(logs, "+86********000") {
		t.Fatalf("logs do not record the send with a masked recipient:\n%s", logs)
	}
	for _, s := range []string{code, wrongCode(code), code2, "8613800138000", "Jane.Doe"} {
		if strings.Contains(logs, s) {
			t.Errorf("logs contain %q:\n%s", s, logs)
		}
	}
}

// counter returns the value of one labelled counter series.
func counter(tb testing.TB, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	tb.Helper()
	v, ok := series(tb, reg, name, labels)
	if !ok {
		tb.Fatalf("no series %s%v", name, labels)
	}
	return v
}

// series is the value of a counter series, ok false when there is none.
func series(tb testing.TB, reg *prometheus.Registry, name string, labels map[string]string) (float64, bool) {
	tb.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for _, lp := range m.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue series
				}
			}
			return m.GetCounter().GetValue(), true
		}
	}
	return 0, false
}

func TestConcurrentIdempotentSendsDeliverOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.primary.SetDelay(100 * time.Millisecond) // keep the first send in flight
	const n = 20
	var wg sync.WaitGroup
	ids := make(chan string, n)
	var aborted atomic.Int64
	for range n {
		wg.Go(func() {
			resp, err := h.client.SendCode(context.Background(), &otpv1.SendCodeRequest{Recipient: phone, UsageType: signIn, IdempotencyKey: "retry-me"})
			switch status.Code(err) {
			case codes.OK:
				ids <- resp.GetVerificationId()
			case codes.Aborted:
				detail[*errdetails.RetryInfo](t, status.Convert(err).Details())
				aborted.Add(1)
			default:
				t.Errorf("SendCode: %v, want OK or ABORTED", err)
			}
		})
	}
	wg.Wait()
	close(ids)
	if c := h.primary.Calls(); c != 1 {
		t.Fatalf("%d concurrent sends with one idempotency key delivered %d messages, want 1", n, c)
	}
	var first string
	for id := range ids {
		if first == "" {
			first = id
		}
		if id != first {
			t.Fatalf("answers name verification ids %s and %s, want one", first, id)
		}
	}
	if first == "" {
		t.Fatal("no call succeeded")
	}
	// Once the first send finished, a retry gets its answer.
	resp, err := h.client.SendCode(context.Background(), &otpv1.SendCodeRequest{Recipient: phone, UsageType: signIn, IdempotencyKey: "retry-me"})
	if err != nil || resp.GetVerificationId() != first {
		t.Fatalf("retry after completion: %v %v, want verification id %s", resp, err, first)
	}
}

func TestConcurrentSendsCooldownOneAccepted(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	const n = 30
	var ok atomic.Int64
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			_, err := h.client.SendCode(context.Background(), &otpv1.SendCodeRequest{Recipient: phone, UsageType: signIn})
			switch status.Code(err) {
			case codes.OK:
				ok.Add(1)
			case codes.ResourceExhausted:
			default:
				t.Errorf("SendCode: %v", err)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 1 || h.primary.Calls() != 1 {
		t.Fatalf("%d concurrent sends within the resend interval: %d accepted, %d delivered; want 1", n, ok.Load(), h.primary.Calls())
	}
}

func TestIdempotentRetryIgnoresFullWindows(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *service.Config) { c.Limits.PerIP = service.Window{Count: 1, Window: time.Hour} })
	req := &otpv1.SendCodeRequest{Recipient: phone, UsageType: signIn, ClientIp: "198.51.100.7", IdempotencyKey: "k1"}
	first, err := h.client.SendCode(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	// The IP's window is now full; a retry of the first call must still get
	// its answer rather than RESOURCE_EXHAUSTED.
	again, err := h.client.SendCode(context.Background(), req)
	if err != nil || again.GetVerificationId() != first.GetVerificationId() {
		t.Fatalf("retry with a full per-IP window: %v %v, want the first answer", again, err)
	}
	_, err = h.client.SendCode(context.Background(), &otpv1.SendCodeRequest{Recipient: "+14155550124", UsageType: signIn, ClientIp: "198.51.100.7"})
	wantStatus(t, err, codes.ResourceExhausted)
}

func TestNoProviderRefusedBeforeCounting(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, func(routes []providers.Route) {
		for i := range routes {
			if routes[i].Channel == otp.SMS {
				routes[i].Match = []string{"+86"}
			}
		}
	})
	_, err := h.client.SendCode(context.Background(), &otpv1.SendCodeRequest{Recipient: phone, UsageType: signIn, ClientIp: "198.51.100.7"})
	info := detail[*errdetails.ErrorInfo](t, wantStatus(t, err, codes.FailedPrecondition))
	if info.GetReason() != "NO_PROVIDER" {
		t.Fatalf("ErrorInfo = %v, want NO_PROVIDER", info)
	}
	if n := h.rdb.DBSize(context.Background()).Val(); n != 0 {
		t.Fatalf("a send no provider serves left %d keys in Redis", n)
	}
	if _, code := h.send(t, "+8613800138000", signIn); code == "" {
		t.Fatal("no code for a served number")
	}
}

func TestProviderTimeoutsAreUnavailable(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, func(routes []providers.Route) {
		for i := range routes {
			routes[i].Timeout = 50 * time.Millisecond
		}
	})
	h.primary.SetDelay(time.Minute)
	h.secondary.SetDelay(time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Both providers time out on their own timeout while the caller still
	// has time: the providers are unavailable, the deadline was not hit.
	_, err := h.client.SendCode(ctx, &otpv1.SendCodeRequest{Recipient: phone, UsageType: signIn})
	info := detail[*errdetails.ErrorInfo](t, wantStatus(t, err, codes.Unavailable))
	if info.GetReason() != "PROVIDERS_UNAVAILABLE" || info.GetMetadata()["provider_reason"] != "timeout" {
		t.Fatalf("ErrorInfo = %v, want PROVIDERS_UNAVAILABLE after a timeout", info)
	}
	if h.primary.Calls() != 1 || h.secondary.Calls() != 1 {
		t.Fatalf("calls: primary %d, secondary %d; want one each (failover after the timeout)", h.primary.Calls(), h.secondary.Calls())
	}
}

// brokenRenderer renders nothing, as a template directory that lost a file
// at run time would.
type brokenRenderer struct{}

func (brokenRenderer) MatchLocale(string) (string, error) { return "en", nil }

func (brokenRenderer) Has(otp.Channel, string, otp.UsageType) bool { return true }

func (brokenRenderer) Render(otp.Channel, string, otp.UsageType, templates.Data) (otp.Content, error) {
	return otp.Content{}, errors.New("no sms template for SignIn")
}

func TestRenderFailureFreesTheSend(t *testing.T) {
	t.Parallel()
	p, err := fake.New("p", fake.Config{})
	if err != nil {
		t.Fatal(err)
	}
	router, err := providers.NewRouter([]providers.Route{{Name: "p", Channel: otp.SMS, Sender: p}}, providers.RouterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := service.DefaultConfig()
	cfg.Secret = redact.Secret(strings.Repeat("s", 32))
	store := memstore.New()
	svc, err := service.New(cfg, store, router, brokenRenderer{})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second call is not held back by a cooldown
		_, err = svc.SendCode(context.Background(), &otpv1.SendCodeRequest{Recipient: phone, UsageType: signIn})
		if info := detail[*errdetails.ErrorInfo](t, wantStatus(t, err, codes.FailedPrecondition)); info.GetReason() != "NO_TEMPLATE" {
			t.Fatalf("ErrorInfo = %v, want NO_TEMPLATE", info)
		}
	}
	if strings.Contains(err.Error(), "SignIn") {
		t.Fatalf("error text leaks renderer internals: %v", err)
	}
	if p.Calls() != 0 {
		t.Fatal("an unrendered message reached the provider")
	}
}

// answerLost runs each store step on Redis, then, for the step named in
// lose, cancels the call (the caller hangs up) and loses the answer, as
// when a client gives up while Redis is answering.
type answerLost struct {
	service.Store
	lose   string
	cancel context.CancelFunc
}

func (s *answerLost) lost(ctx context.Context, step string) bool {
	if step != s.lose {
		return false
	}
	s.cancel()
	<-ctx.Done()
	return true
}

func (s *answerLost) BeginSend(ctx context.Context, p service.SendParams) (service.SendResult, error) {
	r, err := s.Store.BeginSend(ctx, p)
	if s.lost(ctx, "BeginSend") {
		return service.SendResult{}, fmt.Errorf("begin send: %w", ctx.Err())
	}
	return r, err
}

func (s *answerLost) Verify(ctx context.Context, p service.VerifyParams) (service.VerifyResult, error) {
	r, err := s.Store.Verify(ctx, p)
	if s.lost(ctx, "Verify") {
		return service.VerifyResult{}, fmt.Errorf("verify: %w", ctx.Err())
	}
	return r, err
}

// A caller hanging up while a store step runs is "canceled", logged at
// info, and never a store_error (which the Redis alert watches); a send
// whose BeginSend answer was lost holds no cooldown and no per-IP slot
// afterwards.
func TestCallerCancelIsNotAStoreError(t *testing.T) {
	t.Parallel()
	for _, step := range []string{"BeginSend", "Verify"} {
		t.Run(step, func(t *testing.T) {
			t.Parallel()
			lossy := &answerLost{}
			h := newHarnessOn(t, func(s service.Store) service.Store { lossy.Store = s; return lossy },
				func(c *service.Config) { c.Limits.PerIP = service.Window{Count: 1, Window: time.Hour} })
			_, code := h.send(t, phone, signIn)
			h.clock.Advance(2 * time.Minute) // past the resend cooldown

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			lossy.lose, lossy.cancel = step, cancel
			var err error
			if step == "Verify" {
				_, err = h.svc.VerifyCode(ctx, &otpv1.VerifyCodeRequest{Recipient: phone, UsageType: signIn, Code: wrongCode(code)})
			} else {
				_, err = h.svc.SendCode(ctx, &otpv1.SendCodeRequest{Recipient: phone, UsageType: signIn, ClientIp: "203.0.113.9"})
			}
			lossy.lose = ""
			wantStatus(t, err, codes.Canceled)

			family, labels := "otpd_codes_sent_total", map[string]string{"entry": "grpc", "channel": "sms", "provider": "", "usage_type": "sign_in"}
			if step == "Verify" {
				family, labels = "otpd_verifications_total", map[string]string{"usage_type": "sign_in", "country_code": "1"}
			}
			labels["result"] = "canceled"
			if got := counter(t, h.reg, family, labels); got != 1 {
				t.Errorf("%s{result=canceled} = %v, want 1", family, got)
			}
			labels["result"] = "store_error"
			if got, _ := series(t, h.reg, family, labels); got != 0 {
				t.Errorf("%s{result=store_error} = %v, want 0", family, got)
			}
			if logs := h.logs.String(); strings.Contains(logs, `"level":"ERROR"`) || !strings.Contains(logs, "call canceled by the caller") {
				t.Errorf("logs: want the cancel at info and no error:\n%s", logs)
			}
			if step == "BeginSend" {
				// The lost step did store a new code and cooldown and take
				// the IP's only slot; all went again (in the background, as
				// soon as the call ended), so the user can ask again, from
				// the same IP.
				if err := h.svc.Wait(context.Background()); err != nil {
					t.Fatal(err)
				}
				_, newCode := h.sendReq(t, &otpv1.SendCodeRequest{Recipient: phone, UsageType: signIn, ClientIp: "203.0.113.9"})
				h.wantVerify(t, phone, signIn, newCode, otpv1.VerifyResult_VERIFY_RESULT_OK, "send after a lost BeginSend")
			}
		})
	}
}

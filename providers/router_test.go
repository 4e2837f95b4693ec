package providers_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/otpd/otpd/internal/promtest"
	"github.com/otpd/otpd/otp"
	"github.com/otpd/otpd/providers"
	"github.com/otpd/otpd/providers/fake"
)

// senderFunc adapts a function to providers.Sender.
type senderFunc func(context.Context, otp.Message) (otp.Receipt, error)

func (f senderFunc) Send(ctx context.Context, msg otp.Message) (otp.Receipt, error) {
	return f(ctx, msg)
}

// fakeRoute describes a route through a fake provider.
type fakeRoute struct {
	name    string
	channel otp.Channel // otp.SMS if empty
	match   []string
	timeout time.Duration
	cfg     fake.Config
}

// newFakes builds a fake provider per spec and the routes through them.
func newFakes(tb testing.TB, specs []fakeRoute) ([]providers.Route, map[string]*fake.Provider) {
	tb.Helper()
	routes := make([]providers.Route, 0, len(specs))
	fakes := make(map[string]*fake.Provider, len(specs))
	for _, s := range specs {
		p, err := fake.New(s.name, s.cfg)
		if err != nil {
			tb.Fatalf("fake.New(%q): %v", s.name, err)
		}
		ch := s.channel
		if ch == "" {
			ch = otp.SMS
		}
		fakes[s.name] = p
		routes = append(routes, providers.Route{Name: s.name, Channel: ch, Match: s.match, Timeout: s.timeout, Sender: p})
	}
	return routes, fakes
}

func newRouter(tb testing.TB, routes []providers.Route, opts providers.RouterOptions) *providers.Router {
	tb.Helper()
	if opts.Backoff == 0 {
		opts.Backoff = time.Millisecond
	}
	r, err := providers.NewRouter(routes, opts)
	if err != nil {
		tb.Fatalf("NewRouter: %v", err)
	}
	return r
}

func smsTo(to string) otp.Message {
	return otp.Message{
		Channel:        otp.SMS,
		To:             to,
		UsageType:      otp.SignIn,
		Locale:         "en",
		Code:           "482915",
		Content:        otp.Content{Text: "Your Acme code is 482915."},
		VerificationID: "vid-1",
	}
}

func emailTo(to string) otp.Message {
	return otp.Message{
		Channel:        otp.Email,
		To:             to,
		UsageType:      otp.Register,
		Locale:         "en",
		Code:           "482915",
		Content:        otp.Content{Subject: "Your code", Text: "Your code is 482915.", HTML: "<p>482915</p>"},
		VerificationID: "vid-2",
	}
}

func TestRouterCandidates(t *testing.T) {
	t.Parallel()
	routes, _ := newFakes(t, []fakeRoute{
		{name: "tencent-cn", match: []string{"+86"}},
		{name: "twilio-sf", match: []string{"+1415", "+1628"}},
		{name: "twilio"},
		{name: "mailgun-acme", channel: otp.Email, match: []string{"@Acme.COM"}},
		{name: "mailgun", channel: otp.Email},
		{name: "aliyun-cn", channel: otp.Email, match: []string{"example.cn"}},
		{name: "mailgun-idn", channel: otp.Email, match: []string{"bücher.example", "ｅｘａｍｐｌｅ．ｄｅ"}},
	})
	r := newRouter(t, routes, providers.RouterOptions{})
	for _, tc := range []struct {
		name string
		ch   otp.Channel
		to   string
		want []string
	}{
		{"china prefix first", otp.SMS, "+8613800138000", []string{"tencent-cn", "twilio"}},
		{"longer prefix", otp.SMS, "+14155550123", []string{"twilio-sf", "twilio"}},
		{"second prefix of a route", otp.SMS, "+16285550123", []string{"twilio-sf", "twilio"}},
		{"unmatched number goes to catch-all", otp.SMS, "+12125550123", []string{"twilio"}},
		{"domain", otp.Email, "john@acme.com", []string{"mailgun-acme", "mailgun"}},
		{"subdomain", otp.Email, "john@eu.mail.acme.com", []string{"mailgun-acme", "mailgun"}},
		{"domain case", otp.Email, "john@ACME.Com", []string{"mailgun-acme", "mailgun"}},
		{"suffix is not a subdomain", otp.Email, "john@notacme.com", []string{"mailgun"}},
		{"catch-all before later match", otp.Email, "li@example.cn", []string{"mailgun", "aliyun-cn"}},
		// Recipients arrive with the punycode domain (service/email.go);
		// patterns written in Unicode or fullwidth match them.
		{"IDN pattern, punycode recipient", otp.Email, "jane@xn--bcher-kva.example", []string{"mailgun", "mailgun-idn"}},
		{"fullwidth pattern", otp.Email, "jane@example.de", []string{"mailgun", "mailgun-idn"}},
		{"unknown channel", otp.Channel("fax"), "+14155550123", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var got []string
			for _, rt := range r.Candidates(tc.ch, tc.to) {
				got = append(got, rt.Name)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Candidates(%s, %s) = %v, want %v", tc.ch, tc.to, got, tc.want)
			}
		})
	}
	var names []string
	for _, rt := range r.Routes() {
		names = append(names, rt.Name)
	}
	if want := []string{"tencent-cn", "twilio-sf", "twilio", "mailgun-acme", "mailgun", "aliyun-cn", "mailgun-idn"}; !reflect.DeepEqual(names, want) {
		t.Errorf("Routes() = %v, want %v", names, want)
	}
}

func TestMatchRecipient(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		ch      otp.Channel
		pattern string
		to      string
		want    bool
	}{
		{"sms prefix", otp.SMS, "+86", "+8613800138000", true},
		{"sms other country", otp.SMS, "+86", "+14155550123", false},
		{"sms empty pattern", otp.SMS, "", "+14155550123", false},
		{"email domain", otp.Email, "example.com", "a@example.com", true},
		{"email at domain", otp.Email, "@example.com", "a@example.com", true},
		{"email subdomain", otp.Email, "example.com", "a@mail.example.com", true},
		{"email case", otp.Email, "Example.COM", "a@EXAMPLE.com", true},
		{"email lookalike", otp.Email, "example.com", "a@badexample.com", false},
		{"email parent domain", otp.Email, "mail.example.com", "a@example.com", false},
		{"email no at", otp.Email, "example.com", "example.com", false},
		{"wrong channel", otp.Channel("fax"), "+86", "+8613800138000", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := providers.MatchRecipient(tc.ch, tc.pattern, tc.to); got != tc.want {
				t.Errorf("MatchRecipient(%s, %q, %q) = %v, want %v", tc.ch, tc.pattern, tc.to, got, tc.want)
			}
		})
	}
}

func TestRouterSend(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		routes   []fakeRoute
		attempts int
		backoff  time.Duration
		deadline time.Duration // of the caller's ctx; 0 for 10s
		msg      otp.Message

		wantProvider  string // on success
		wantReason    string // on failure
		wantRetryable bool
		wantIs        []error
		wantNotIs     []error
		wantCalls     map[string]int
	}{
		{
			name:         "first candidate delivers",
			routes:       []fakeRoute{{name: "a"}, {name: "b"}},
			msg:          smsTo("+14155550123"),
			wantProvider: "a",
			wantCalls:    map[string]int{"a": 1, "b": 0},
		},
		{
			name:         "non-matching routes are skipped",
			routes:       []fakeRoute{{name: "cn", match: []string{"+86"}}, {name: "us"}},
			msg:          smsTo("+14155550123"),
			wantProvider: "us",
			wantCalls:    map[string]int{"cn": 0, "us": 1},
		},
		{
			name:         "email by domain",
			routes:       []fakeRoute{{name: "sms"}, {name: "other", channel: otp.Email, match: []string{"other.com"}}, {name: "acme", channel: otp.Email, match: []string{"acme.com"}}},
			msg:          emailTo("john@mx.acme.com"),
			wantProvider: "acme",
			wantCalls:    map[string]int{"sms": 0, "other": 0, "acme": 1},
		},
		{
			name:         "transient primary fails over to secondary",
			routes:       []fakeRoute{{name: "a", cfg: fake.Config{Mode: fake.ModeTransient, Reason: "http_503"}}, {name: "b"}},
			msg:          smsTo("+14155550123"),
			wantProvider: "b",
			wantCalls:    map[string]int{"a": 1, "b": 1},
		},
		{
			name:         "second round retries a provider that failed once",
			routes:       []fakeRoute{{name: "a", cfg: fake.Config{FailFirst: 1}}},
			msg:          smsTo("+14155550123"),
			wantProvider: "a",
			wantCalls:    map[string]int{"a": 2},
		},
		{
			name:          "permanent primary stops the send",
			routes:        []fakeRoute{{name: "a", cfg: fake.Config{Mode: fake.ModePermanent, Reason: "21211"}}, {name: "b"}},
			msg:           smsTo("+14155550123"),
			wantReason:    "21211",
			wantRetryable: false,
			wantCalls:     map[string]int{"a": 1, "b": 0},
		},
		{
			name: "all transient tries every provider every round",
			routes: []fakeRoute{
				{name: "a", cfg: fake.Config{Mode: fake.ModeTransient, Reason: "throttled"}},
				{name: "b", cfg: fake.Config{Mode: fake.ModeTransient, Reason: "http_502"}},
			},
			attempts:      3,
			msg:           smsTo("+14155550123"),
			wantReason:    "http_502",
			wantRetryable: true,
			wantNotIs:     []error{context.DeadlineExceeded},
			wantCalls:     map[string]int{"a": 3, "b": 3},
		},
		{
			name:          "no provider for the channel",
			routes:        []fakeRoute{{name: "mail", channel: otp.Email}},
			msg:           smsTo("+14155550123"),
			wantReason:    "no_provider",
			wantRetryable: false,
			wantIs:        []error{providers.ErrNoProvider},
			wantCalls:     map[string]int{"mail": 0},
		},
		{
			name:          "no provider for the recipient",
			routes:        []fakeRoute{{name: "cn", match: []string{"+86"}}},
			msg:           smsTo("+14155550123"),
			wantReason:    "no_provider",
			wantRetryable: false,
			wantIs:        []error{providers.ErrNoProvider},
			wantCalls:     map[string]int{"cn": 0},
		},
		{
			name:         "slow primary times out and fails over",
			routes:       []fakeRoute{{name: "slow", timeout: 50 * time.Millisecond, cfg: fake.Config{Delay: time.Minute}}, {name: "fast"}},
			msg:          smsTo("+14155550123"),
			wantProvider: "fast",
			wantCalls:    map[string]int{"slow": 1, "fast": 1},
		},
		{
			name: "caller deadline bounds everything",
			routes: []fakeRoute{
				{name: "a", cfg: fake.Config{Delay: time.Minute}},
				{name: "b", cfg: fake.Config{Delay: time.Minute}},
			},
			deadline:      100 * time.Millisecond,
			msg:           smsTo("+14155550123"),
			wantReason:    "timeout",
			wantRetryable: true,
			wantIs:        []error{context.DeadlineExceeded},
			wantCalls:     map[string]int{"a": 1, "b": 0},
		},
		{
			name:          "no pause past the deadline",
			routes:        []fakeRoute{{name: "a", cfg: fake.Config{Mode: fake.ModeTransient}}},
			attempts:      5,
			backoff:       time.Minute,
			deadline:      200 * time.Millisecond,
			msg:           smsTo("+14155550123"),
			wantReason:    "fake_transient",
			wantRetryable: true,
			wantNotIs:     []error{context.DeadlineExceeded},
			wantCalls:     map[string]int{"a": 1},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			routes, fakes := newFakes(t, tc.routes)
			r := newRouter(t, routes, providers.RouterOptions{Delivery: providers.Delivery{Attempts: tc.attempts, Backoff: tc.backoff}})
			deadline := tc.deadline
			if deadline == 0 {
				deadline = 10 * time.Second
			}
			ctx, cancel := context.WithTimeout(t.Context(), deadline)
			defer cancel()

			rc, err := r.Send(ctx, tc.msg)

			if tc.wantProvider != "" {
				if err != nil {
					t.Fatalf("Send: %v", err)
				}
				if rc.Provider != tc.wantProvider || rc.MessageID == "" {
					t.Errorf("Send receipt = %+v, want provider %q and a message ID", rc, tc.wantProvider)
				}
			} else {
				perr, ok := providers.AsError(err)
				if !ok {
					t.Fatalf("Send error %v has no *providers.Error", err)
				}
				if perr.Reason != tc.wantReason || perr.Retryable != tc.wantRetryable {
					t.Errorf("Send error = {%q, retryable %v}, want {%q, retryable %v}", perr.Reason, perr.Retryable, tc.wantReason, tc.wantRetryable)
				}
				for _, target := range tc.wantIs {
					if !errors.Is(err, target) {
						t.Errorf("Send error %v is not %v", err, target)
					}
				}
				for _, target := range tc.wantNotIs {
					if errors.Is(err, target) {
						t.Errorf("Send error %v is %v", err, target)
					}
				}
			}
			for name, want := range tc.wantCalls {
				if got := fakes[name].Calls(); got != want {
					t.Errorf("provider %s called %d times, want %d", name, got, want)
				}
			}
		})
	}
}

func TestRouterSendCanceled(t *testing.T) {
	t.Parallel()
	routes, fakes := newFakes(t, []fakeRoute{{name: "a"}})
	r := newRouter(t, routes, providers.RouterOptions{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := r.Send(ctx, smsTo("+14155550123"))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Send on a canceled context = %v, want context.Canceled", err)
	}
	if got := fakes["a"].Calls(); got != 0 {
		t.Errorf("provider called %d times on a canceled context, want 0", got)
	}
}

func TestRouterClassifiesBareErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		sender     senderFunc
		wantReason string
		wantRetry  bool
	}{
		{
			name: "plain error is transient unclassified",
			sender: func(context.Context, otp.Message) (otp.Receipt, error) {
				return otp.Receipt{}, errors.New("boom")
			},
			wantReason: "unclassified",
			wantRetry:  true,
		},
		{
			name: "context error after the attempt timeout is a timeout",
			sender: func(ctx context.Context, _ otp.Message) (otp.Receipt, error) {
				<-ctx.Done()
				return otp.Receipt{}, ctx.Err()
			},
			wantReason: "timeout",
			wantRetry:  true,
		},
		{
			name: "error without a provider name gets the route's",
			sender: func(context.Context, otp.Message) (otp.Receipt, error) {
				return otp.Receipt{}, providers.Permanent("", "21614", nil)
			},
			wantReason: "21614",
			wantRetry:  false,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRouter(t, []providers.Route{{Name: "custom", Channel: otp.SMS, Timeout: 50 * time.Millisecond, Sender: tc.sender}},
				providers.RouterOptions{Delivery: providers.Delivery{Attempts: 1}})
			_, err := r.Send(t.Context(), smsTo("+14155550123"))
			perr, ok := providers.AsError(err)
			if !ok {
				t.Fatalf("Send error %v has no *providers.Error", err)
			}
			if perr.Provider != "custom" || perr.Reason != tc.wantReason || perr.Retryable != tc.wantRetry {
				t.Errorf("Send error = {%q, %q, retryable %v}, want {custom, %q, retryable %v}",
					perr.Provider, perr.Reason, perr.Retryable, tc.wantReason, tc.wantRetry)
			}
		})
	}
}

func TestRouterPassesAttemptDeadline(t *testing.T) {
	t.Parallel()
	var left time.Duration
	sender := senderFunc(func(ctx context.Context, _ otp.Message) (otp.Receipt, error) {
		if d, ok := ctx.Deadline(); ok {
			left = time.Until(d)
		}
		return otp.Receipt{MessageID: "m1"}, nil
	})
	r := newRouter(t, []providers.Route{{Name: "s", Channel: otp.SMS, Timeout: time.Hour, Sender: sender}}, providers.RouterOptions{})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	rc, err := r.Send(ctx, smsTo("+14155550123"))
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if rc != (otp.Receipt{Provider: "s", MessageID: "m1"}) {
		t.Errorf("Send receipt = %+v, want provider s and the sender's message ID", rc)
	}
	if left <= 0 || left > time.Minute {
		t.Errorf("attempt deadline %v away, want the caller's minute, not the route's hour", left)
	}
}

func TestRouterMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	routes, fakes := newFakes(t, []fakeRoute{
		{name: "twilio", cfg: fake.Config{Mode: fake.ModeTransient, Reason: "20429"}},
		{name: "tencent"},
		{name: "mailgun", channel: otp.Email, cfg: fake.Config{Mode: fake.ModePermanent, Reason: "auth"}},
	})
	r := newRouter(t, routes, providers.RouterOptions{Registerer: reg})

	for range 2 {
		if _, err := r.Send(t.Context(), smsTo("+14155550123")); err != nil {
			t.Fatalf("Send sms: %v", err)
		}
	}
	if _, err := r.Send(t.Context(), emailTo("john@example.com")); err == nil {
		t.Fatal("Send email through a permanently failing provider succeeded")
	}
	fakes["twilio"].SetMode(fake.ModeOK)
	if _, err := r.Send(t.Context(), smsTo("+14155550123")); err != nil {
		t.Fatalf("Send sms: %v", err)
	}

	const duration, errorsTotal = "otpd_provider_request_duration_seconds", "otpd_provider_errors_total"
	for _, tc := range []struct {
		metric string
		labels map[string]string
		want   float64
	}{
		{duration, map[string]string{"provider": "twilio", "result": "transient_error"}, 2},
		{duration, map[string]string{"provider": "twilio", "result": "ok"}, 1},
		{duration, map[string]string{"provider": "tencent", "result": "ok"}, 2},
		{duration, map[string]string{"provider": "tencent", "result": "transient_error"}, 0},
		{duration, map[string]string{"provider": "mailgun", "result": "permanent_error"}, 1},
		{errorsTotal, map[string]string{"provider": "twilio", "reason": "20429"}, 2},
		{errorsTotal, map[string]string{"provider": "mailgun", "reason": "auth"}, 1},
		{errorsTotal, map[string]string{"provider": "tencent"}, 0},
	} {
		if got := promtest.Sum(t, reg, tc.metric, tc.labels); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.metric, tc.labels, got, tc.want)
		}
	}

	// Every provider has its duration series from the start, so that
	// dashboards and alerts see zeros rather than gaps.
	if n, err := testutil.GatherAndCount(reg, duration); err != nil || n != 9 {
		t.Errorf("%s has %d series (%v), want 9: 3 providers x 3 results", duration, n, err)
	}
}

func TestRouterLogsFailuresWithoutSecrets(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	leaky := senderFunc(func(_ context.Context, msg otp.Message) (otp.Receipt, error) {
		// A careless sender that puts the code and the number in its error.
		return otp.Receipt{}, providers.Transient("leaky", "http_500", errors.New("rejected "+msg.To+" code "+msg.Code+" link "+msg.Link))
	})
	p, err := fake.New("backup", fake.Config{})
	if err != nil {
		t.Fatal(err)
	}
	r := newRouter(t, []providers.Route{
		{Name: "leaky", Channel: otp.SMS, Sender: leaky},
		{Name: "backup", Channel: otp.SMS, Sender: p},
	}, providers.RouterOptions{Logger: log})
	msg := smsTo("+14155550123")
	if _, err := r.Send(t.Context(), msg); err != nil {
		t.Fatalf("Send: %v", err)
	}
	invite := smsTo("+14155550123")
	invite.UsageType, invite.Code, invite.Link = otp.OrganizationInvitation, "", "https://auth.example.com/i?token=t0k3n"
	if _, err := r.Send(t.Context(), invite); err != nil {
		t.Fatalf("Send: %v", err)
	}
	out := buf.String()
	for _, want := range []string{`"level":"WARN"`, `"provider":"leaky"`, `"reason":"http_500"`, `"retryable":true`, `"attempt":1`, `"recipient":"+14******123"`, `"verification_id":"vid-1"`} {
		if !strings.Contains(out, want) {
			t.Errorf("log %s lacks %s", out, want)
		}
	}
	for _, leak := range []string{msg.To, msg.Code, msg.Content.Text, "t0k3n"} {
		if strings.Contains(out, leak) {
			t.Errorf("log %s leaks %q", out, leak)
		}
	}
}

// picky is a sender that cannot serve OrganizationInvitation, as Tencent
// without an invitation template.
type picky struct{ senderFunc }

func (picky) CanServe(u otp.UsageType) error {
	if u == otp.OrganizationInvitation {
		return errors.New("no invitation template")
	}
	return nil
}

// TestRouterSkipsWhatASenderCannotServe: a route whose sender cannot serve
// the message's usage type is passed over, for Serves and Send alike.
func TestRouterSkipsWhatASenderCannotServe(t *testing.T) {
	t.Parallel()
	var pickyCalls int
	first := picky{func(context.Context, otp.Message) (otp.Receipt, error) {
		pickyCalls++
		return otp.Receipt{Provider: "picky"}, nil
	}}
	p, err := fake.New("backup", fake.Config{})
	if err != nil {
		t.Fatal(err)
	}
	const to = "+14155550123"
	invite := smsTo(to)
	invite.UsageType, invite.Code, invite.Link = otp.OrganizationInvitation, "", "https://auth.example.com/i?token=x"

	r := newRouter(t, []providers.Route{
		{Name: "picky", Channel: otp.SMS, Sender: first},
		{Name: "backup", Channel: otp.SMS, Sender: p},
	}, providers.RouterOptions{})
	if !r.Serves(otp.SMS, to, otp.OrganizationInvitation) || !r.Serves(otp.SMS, to, otp.SignIn) {
		t.Error("Serves = false with a route that can serve")
	}
	if rc, err := r.Send(t.Context(), invite); err != nil || rc.Provider != "backup" || pickyCalls != 0 {
		t.Errorf("Send(invitation) = %+v, %v with %d calls to picky; want backup, picky passed over", rc, err, pickyCalls)
	}
	if rc, err := r.Send(t.Context(), smsTo(to)); err != nil || rc.Provider != "picky" {
		t.Errorf("Send(SignIn) = %+v, %v; want picky", rc, err)
	}

	only := newRouter(t, []providers.Route{{Name: "picky", Channel: otp.SMS, Sender: first}}, providers.RouterOptions{})
	if only.Serves(otp.SMS, to, otp.OrganizationInvitation) {
		t.Error("Serves(invitation) = true with only a route that cannot serve it")
	}
	if !only.Serves(otp.SMS, to, otp.SignIn) {
		t.Error("Serves(SignIn) = false")
	}
	if _, err := only.Send(t.Context(), invite); !errors.Is(err, providers.ErrNoProvider) {
		t.Errorf("Send(invitation) = %v, want ErrNoProvider", err)
	}
	if pickyCalls != 1 {
		t.Errorf("picky called %d times, want 1 (the SignIn)", pickyCalls)
	}
}

func TestNewRouterValidation(t *testing.T) {
	t.Parallel()
	ok := senderFunc(func(context.Context, otp.Message) (otp.Receipt, error) { return otp.Receipt{}, nil })
	for _, tc := range []struct {
		name   string
		routes []providers.Route
		opts   providers.RouterOptions
		want   []string // substrings of the error; none for a valid config
	}{
		{"valid", []providers.Route{
			{Name: "a", Channel: otp.SMS, Match: []string{"+86", "+1415", "+123456789012345"}, Sender: ok},
			{Name: "b", Channel: otp.Email, Match: []string{"example.com", "@Mail.Example.org", "xn--fiqs8s.cn"}, Sender: ok},
		}, providers.RouterOptions{}, nil},
		{"no routes", nil, providers.RouterOptions{}, nil},
		{"empty name", []providers.Route{{Channel: otp.SMS, Sender: ok}}, providers.RouterOptions{}, []string{"route #1: name is empty"}},
		{"duplicate name", []providers.Route{{Name: "a", Channel: otp.SMS, Sender: ok}, {Name: "a", Channel: otp.SMS, Sender: ok}}, providers.RouterOptions{}, []string{`route "a": name is used`}},
		{"bad channel", []providers.Route{{Name: "a", Channel: "fax", Sender: ok}}, providers.RouterOptions{}, []string{`route "a": channel "fax"`}},
		{"nil sender", []providers.Route{{Name: "a", Channel: otp.SMS}}, providers.RouterOptions{}, []string{`route "a": sender is nil`}},
		{"negative timeout", []providers.Route{{Name: "a", Channel: otp.SMS, Timeout: -time.Second, Sender: ok}}, providers.RouterOptions{}, []string{`route "a": timeout`}},
		{"prefix without plus", []providers.Route{{Name: "a", Channel: otp.SMS, Match: []string{"86"}, Sender: ok}}, providers.RouterOptions{}, []string{`route "a": match "86"`}},
		{"prefix with letters", []providers.Route{{Name: "a", Channel: otp.SMS, Match: []string{"+86x"}, Sender: ok}}, providers.RouterOptions{}, []string{`match "+86x"`}},
		{"bare plus", []providers.Route{{Name: "a", Channel: otp.SMS, Match: []string{"+"}, Sender: ok}}, providers.RouterOptions{}, []string{`match "+"`}},
		{"prefix too long", []providers.Route{{Name: "a", Channel: otp.SMS, Match: []string{"+1234567890123456"}, Sender: ok}}, providers.RouterOptions{}, []string{`match "+1234567890123456"`}},
		{"domain on sms", []providers.Route{{Name: "a", Channel: otp.SMS, Match: []string{"example.com"}, Sender: ok}}, providers.RouterOptions{}, []string{`match "example.com"`}},
		{"prefix on email", []providers.Route{{Name: "m", Channel: otp.Email, Match: []string{"+86"}, Sender: ok}}, providers.RouterOptions{}, []string{`route "m": match "+86"`}},
		{"address on email", []providers.Route{{Name: "m", Channel: otp.Email, Match: []string{"john@example.com"}, Sender: ok}}, providers.RouterOptions{}, []string{`match "john@example.com"`}},
		{"empty domain", []providers.Route{{Name: "m", Channel: otp.Email, Match: []string{"@"}, Sender: ok}}, providers.RouterOptions{}, []string{`match "@"`}},
		{"empty label", []providers.Route{{Name: "m", Channel: otp.Email, Match: []string{"example..com"}, Sender: ok}}, providers.RouterOptions{}, []string{`match "example..com"`}},
		{"every problem at once", []providers.Route{
			{Name: "a", Channel: "fax"},
			{Name: "b", Channel: otp.SMS, Match: []string{"+1", "1"}, Sender: ok},
		}, providers.RouterOptions{Delivery: providers.Delivery{Attempts: -1, Backoff: -time.Second}}, []string{"attempts", "backoff", `route "a": channel`, `route "a": sender`, `route "b": match "1"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.opts.Registerer = prometheus.NewRegistry()
			_, err := providers.NewRouter(tc.routes, tc.opts)
			if len(tc.want) == 0 {
				if err != nil {
					t.Errorf("NewRouter: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("NewRouter accepted an invalid config, want an error with %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("NewRouter error %q lacks %q", err, w)
				}
			}
		})
	}
}

func BenchmarkRouterSend(b *testing.B) {
	routes, _ := newFakes(b, []fakeRoute{{name: "cn", match: []string{"+86"}}, {name: "us", match: []string{"+1"}}})
	r := newRouter(b, routes, providers.RouterOptions{Registerer: prometheus.NewRegistry()})
	ctx := context.Background()
	msg := smsTo("+14155550123")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := r.Send(ctx, msg); err != nil {
				b.Fatal(err)
			}
		}
	})
}

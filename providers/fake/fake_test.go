package fake_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otpd/otpd/otp"
	"github.com/otpd/otpd/providers"
	"github.com/otpd/otpd/providers/fake"
)

func newFake(tb testing.TB, cfg fake.Config) *fake.Provider {
	tb.Helper()
	p, err := fake.New("fake", cfg)
	if err != nil {
		tb.Fatalf("fake.New: %v", err)
	}
	return p
}

func msg(code string) otp.Message {
	return otp.Message{Channel: otp.SMS, To: "+14155550123", UsageType: otp.SignIn, Code: code}
}

// outcome summarises a send: "ok", or "<transient|permanent>:<reason>".
func outcome(tb testing.TB, rc otp.Receipt, err error) string {
	tb.Helper()
	if err == nil {
		if rc.Provider != "fake" || rc.MessageID == "" {
			tb.Errorf("receipt = %+v, want provider fake and a message ID", rc)
		}
		return "ok"
	}
	perr, ok := providers.AsError(err)
	if !ok {
		tb.Fatalf("error %v has no *providers.Error", err)
	}
	if perr.Provider != "fake" {
		tb.Errorf("error names provider %q, want fake", perr.Provider)
	}
	if perr.Retryable {
		return "transient:" + perr.Reason
	}
	return "permanent:" + perr.Reason
}

func TestSend(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  fake.Config
		want []string // outcomes of consecutive sends
	}{
		{"default accepts", fake.Config{}, []string{"ok", "ok"}},
		{"ok", fake.Config{Mode: fake.ModeOK}, []string{"ok"}},
		{"transient", fake.Config{Mode: fake.ModeTransient}, []string{"transient:fake_transient", "transient:fake_transient"}},
		{"permanent", fake.Config{Mode: fake.ModePermanent}, []string{"permanent:fake_permanent"}},
		{"reason", fake.Config{Mode: fake.ModePermanent, Reason: "21211"}, []string{"permanent:21211"}},
		{"fail first then ok", fake.Config{FailFirst: 2, Reason: "http_503"}, []string{"transient:http_503", "transient:http_503", "ok", "ok"}},
		{"fail first then permanent", fake.Config{FailFirst: 1, Mode: fake.ModePermanent}, []string{"transient:fake_transient", "permanent:fake_permanent"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := newFake(t, tc.cfg)
			ok := 0
			for i, want := range tc.want {
				rc, err := p.Send(t.Context(), msg(strconv.Itoa(100000+i)))
				if got := outcome(t, rc, err); got != want {
					t.Errorf("send %d = %s, want %s", i+1, got, want)
				}
				if err == nil {
					ok++
				}
			}
			if got := p.Calls(); got != len(tc.want) {
				t.Errorf("Calls() = %d, want %d", got, len(tc.want))
			}
			if got := len(p.Sent()); got != ok {
				t.Errorf("Sent() has %d messages, want the %d accepted", got, ok)
			}
		})
	}
}

func TestSendDelayHonoursContext(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		delay   time.Duration
		timeout time.Duration
		cancel  bool
		want    string
	}{
		{"delay within deadline", 10 * time.Millisecond, 10 * time.Second, false, "ok"},
		{"deadline cuts delay", time.Minute, 50 * time.Millisecond, false, "transient:timeout"},
		{"cancel cuts delay", time.Minute, 10 * time.Second, true, "transient:canceled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := newFake(t, fake.Config{Delay: tc.delay})
			ctx, cancel := context.WithTimeout(t.Context(), tc.timeout)
			defer cancel()
			if tc.cancel {
				time.AfterFunc(20*time.Millisecond, cancel)
			}
			rc, err := p.Send(ctx, msg("123456"))
			if got := outcome(t, rc, err); got != tc.want {
				t.Errorf("Send = %s, want %s", got, tc.want)
			}
			if err != nil && !errors.Is(err, ctx.Err()) {
				t.Errorf("Send error %v does not wrap %v", err, ctx.Err())
			}
		})
	}
}

func TestControls(t *testing.T) {
	t.Parallel()
	p := newFake(t, fake.Config{FailFirst: 1})
	send := func(code string) string {
		rc, err := p.Send(t.Context(), msg(code))
		return outcome(t, rc, err)
	}
	if got := send("111111"); got != "transient:fake_transient" {
		t.Errorf("first send = %s, want the fail-first failure", got)
	}
	if got := send("222222"); got != "ok" {
		t.Errorf("second send = %s, want ok", got)
	}
	p.SetMode(fake.ModePermanent)
	if got := send("333333"); got != "permanent:fake_permanent" {
		t.Errorf("send after SetMode(permanent) = %s", got)
	}
	p.SetMode(fake.ModeOK)
	p.SetDelay(time.Minute)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if _, err := p.Send(ctx, msg("444444")); err == nil {
		t.Error("send after SetDelay(1m) beat a 20ms deadline")
	}
	sent := p.Sent()
	if len(sent) != 1 || sent[0].Code != "222222" {
		t.Errorf("Sent() = %+v, want only the second message", sent)
	}
	sent[0].Code = "changed"
	if p.Sent()[0].Code != "222222" {
		t.Error("Sent() returned the provider's own slice, not a copy")
	}
	if got := p.Calls(); got != 4 {
		t.Errorf("Calls() = %d, want 4", got)
	}

	p.Reset()
	if p.Calls() != 0 || len(p.Sent()) != 0 {
		t.Errorf("after Reset, Calls() = %d and Sent() has %d messages, want 0 and 0", p.Calls(), len(p.Sent()))
	}
	if got := send("555555"); got != "transient:fake_transient" {
		t.Errorf("first send after Reset = %s, want the fail-first failure again", got)
	}
	if got := send("666666"); got != "ok" {
		t.Errorf("second send after Reset = %s, want ok with the configured delay", got)
	}
}

func TestSetModeRejectsUnknownMode(t *testing.T) {
	t.Parallel()
	p := newFake(t, fake.Config{})
	defer func() {
		if recover() == nil {
			t.Error("SetMode(\"flaky\") did not panic")
		}
	}()
	p.SetMode("flaky")
}

func TestSentKeepsTheLatest(t *testing.T) {
	t.Parallel()
	p := newFake(t, fake.Config{})
	const n = 1500
	for i := range n {
		if _, err := p.Send(t.Context(), otp.Message{VerificationID: strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
	}
	sent := p.Sent()
	if len(sent) != 1024 {
		t.Fatalf("Sent() has %d messages, want the last 1024", len(sent))
	}
	if first, last := sent[0].VerificationID, sent[len(sent)-1].VerificationID; first != strconv.Itoa(n-1024) || last != strconv.Itoa(n-1) {
		t.Errorf("Sent() runs from %q to %q, want oldest first", first, last)
	}
	if p.Calls() != n {
		t.Errorf("Calls() = %d, want %d", p.Calls(), n)
	}
}

func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	p := newFake(t, fake.Config{FailFirst: 10})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 25 {
				_, _ = p.Send(context.Background(), msg("123456"))
				_ = p.Sent()
			}
		})
	}
	wg.Wait()
	if got, sent := p.Calls(), len(p.Sent()); got != 200 || sent != 190 {
		t.Errorf("Calls() = %d, Sent() = %d, want 200 and 190", got, sent)
	}
}

func TestParseConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		raw     string
		want    fake.Config
		wantErr string // substring; empty for success
	}{
		{name: "empty", raw: ""},
		{name: "null", raw: "null"},
		{name: "all fields", raw: `{"mode": "transient", "reason": "http_503", "delay": "2s", "failFirst": 3}`,
			want: fake.Config{Mode: fake.ModeTransient, Reason: "http_503", Delay: 2 * time.Second, FailFirst: 3}},
		{name: "unknown mode", raw: `{"mode": "flaky"}`, wantErr: "mode"},
		{name: "bad delay", raw: `{"delay": "soon"}`, wantErr: "delay"},
		{name: "delay as number", raw: `{"delay": 2}`, wantErr: "delay"},
		{name: "negative delay", raw: `{"delay": "-1s"}`, wantErr: "delay"},
		{name: "negative failFirst", raw: `{"failFirst": -1}`, wantErr: "failFirst"},
		{name: "unknown key", raw: `{"mode": "ok", "endpont": "http://x"}`, wantErr: "endpont"},
		{name: "endpoint accepted", raw: `{"mode": "ok", "endpoint": "http://x"}`, want: fake.Config{Mode: "ok"}},
		{name: "trailing data", raw: `{}{}`, wantErr: "after"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := fake.ParseConfig([]byte(tc.raw))
			if tc.wantErr == "" {
				if err != nil || got != tc.want {
					t.Errorf("ParseConfig(%s) = %+v, %v; want %+v", tc.raw, got, err, tc.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseConfig(%s) error = %v, want one naming %q", tc.raw, err, tc.wantErr)
			}
		})
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	if _, err := fake.New("fake", fake.Config{Mode: "sometimes"}); err == nil || !strings.Contains(err.Error(), "mode") {
		t.Errorf("New with an unknown mode = %v, want an error naming mode", err)
	}
	if _, err := fake.New("", fake.Config{}); err == nil {
		t.Error("New accepted an empty name")
	}
}

func BenchmarkSend(b *testing.B) {
	p := newFake(b, fake.Config{})
	ctx := context.Background()
	m := msg("123456")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := p.Send(ctx, m); err != nil {
				b.Fatal(err)
			}
		}
	})
}

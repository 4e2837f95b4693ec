package console_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/otpd/otpd/otp"
	"github.com/otpd/otpd/providers"
	"github.com/otpd/otpd/providers/console"
)

func newConsole(tb testing.TB, w *bytes.Buffer) *console.Provider {
	tb.Helper()
	p, err := console.New("dev", console.Config{}, w)
	if err != nil {
		tb.Fatalf("console.New: %v", err)
	}
	return p
}

func TestSend(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		msg     otp.Message
		want    []string
		wantNot []string
	}{
		{
			name: "sms",
			msg: otp.Message{
				Channel: otp.SMS, To: "+14155550123", UsageType: otp.SignIn, Locale: "en",
				Code: "482915", VerificationID: "vid-7",
				Content: otp.Content{Text: "Your Acme code is 482915.\nIt expires in 10 minutes."},
			},
			want: []string{
				"otpd console: sms to +14******123 (SignIn, en, id vid-7)",
				"code: 482915",
				"  Your Acme code is 482915.\n  It expires in 10 minutes.\n",
				"end of console-1",
			},
			wantNot: []string{"+14155550123", "subject:", "html:"},
		},
		{
			name: "email",
			msg: otp.Message{
				Channel: otp.Email, To: "john@example.com", UsageType: otp.Register, Locale: "de",
				Code: "120034", VerificationID: "vid-8",
				Content: otp.Content{Subject: "Ihr Code 120034", Text: "Code: 120034", HTML: "<p>Code: <b>120034</b></p>"},
			},
			want: []string{
				"otpd console: email to j***@example.com (Register, de, id vid-8)",
				"code: 120034",
				"subject: Ihr Code 120034",
				"html: 26 bytes, not shown",
			},
			wantNot: []string{"john@", "<p>"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			p := newConsole(t, &buf)
			rc, err := p.Send(t.Context(), tc.msg)
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			if rc != (otp.Receipt{Provider: "dev", MessageID: "console-1"}) {
				t.Errorf("Send receipt = %+v, want dev/console-1", rc)
			}
			out := buf.String()
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tc.wantNot {
				if strings.Contains(out, w) {
					t.Errorf("output contains %q:\n%s", w, out)
				}
			}
		})
	}
}

func TestSendConcurrentBlocksDoNotInterleave(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	p := newConsole(t, &buf)
	const n = 50
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			msg := otp.Message{Channel: otp.SMS, To: "+8613800138000", UsageType: otp.Generic, Code: "000111",
				Content: otp.Content{Text: "line one\nline two"}}
			if _, err := p.Send(context.Background(), msg); err != nil {
				t.Errorf("Send: %v", err)
			}
		})
	}
	wg.Wait()
	blocks := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n===== otpd console")
	if len(blocks) != n {
		t.Fatalf("got %d blocks, want %d", len(blocks), n)
	}
	for i, b := range blocks {
		if strings.Count(b, "line one") != 1 || strings.Count(b, "===== end of console-") != 1 {
			t.Errorf("block %d is mangled:\n%s", i, b)
		}
	}
}

func TestSendHonoursContext(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	p := newConsole(t, &buf)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := p.Send(ctx, otp.Message{Channel: otp.SMS, To: "+14155550123", Code: "1234"})
	perr, ok := providers.AsError(err)
	if !ok || !perr.Retryable || perr.Reason != "canceled" || !errors.Is(err, context.Canceled) {
		t.Errorf("Send on a canceled context = %v, want a transient canceled *providers.Error", err)
	}
	if buf.Len() != 0 {
		t.Errorf("Send on a canceled context wrote %q", buf.String())
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestSendWriteFailureIsTransient(t *testing.T) {
	t.Parallel()
	p, err := console.New("dev", console.Config{}, failingWriter{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Send(t.Context(), otp.Message{Channel: otp.SMS, To: "+14155550123", Code: "1234"})
	if perr, ok := providers.AsError(err); !ok || !perr.Retryable || perr.Provider != "dev" {
		t.Errorf("Send to a failing writer = %v, want a transient *providers.Error of dev", err)
	}
}

func TestParseConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		raw     string
		wantErr bool
	}{
		{"empty", "", false},
		{"blank", "  \n", false},
		{"null", "null", false},
		{"empty object", "{}", false},
		{"unknown key", `{"color": true}`, true},
		{"not an object", `[]`, true},
		{"trailing data", `{} {}`, true},
		{"broken", `{`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := console.ParseConfig([]byte(tc.raw))
			if (err != nil) != tc.wantErr {
				t.Errorf("ParseConfig(%q) error = %v, want error %v", tc.raw, err, tc.wantErr)
			}
		})
	}
}

func TestNewRejectsEmptyName(t *testing.T) {
	t.Parallel()
	if _, err := console.New("", console.Config{}, &bytes.Buffer{}); err == nil {
		t.Error("New accepted an empty name")
	}
}

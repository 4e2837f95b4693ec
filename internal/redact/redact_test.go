package redact

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestRecipient(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"+8613800138000", "+86********000"},
		{"+14155550123", "+14******123"},
		{"+447911123456", "+44*******456"},
		{"+6591234567", "+65******67"}, // 10 digits: two and two
		{"+420601123", "+42*****23"},   // 9 digits
		{"+6837012", "+6****12"},       // Niue, 7 digits
		{"+2908999", "+2****99"},       // Tristan da Cunha
		{"+69012345", "+6*****45"},     // 8 digits
		{"+123456", "+******"},
		{"12345", "*****"},
		{"", ""},
		{"+", "+"},
		{"john@example.com", "j***@example.com"},
		{"j@example.com", "j***@example.com"},
		{"@example.com", "***@example.com"},
		{"élodie@example.com", "é***@example.com"},
		{"用户@xn--fsqu00a.xn--0zwm56d", "用***@xn--fsqu00a.xn--0zwm56d"},
		{"e\u0301lodie@example.com", "e***@example.com"},
		{"\u0301lodie@example.com", "****@example.com"},
		{"\u202ejane@example.com", "****@example.com"},
		{"\xc3@example.com", "****@example.com"},
		{"jane@exa\xffmple.com", "j***@exa\ufffdmple.com"},
		{"+86\xff3800138000", "+86********000"},
	} {
		if got := Recipient(tc.in); got != tc.want {
			t.Errorf("Recipient(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestRecipientHidesMostDigits: whatever its length, a number shows fewer
// than half of its digits, and never more than five.
func TestRecipientHidesMostDigits(t *testing.T) {
	t.Parallel()
	const digits = "4155550123456789"
	for n := 0; n <= len(digits); n++ {
		in := "+" + digits[:n]
		got := Recipient(in)
		shown := len(got) - len("+") - strings.Count(got, "*")
		if len(got) != len(in) || !strings.HasPrefix(got, "+") || (n > 0 && 2*shown >= n) || shown > 5 {
			t.Errorf("Recipient(%q) = %q: %d of %d digits show", in, got, shown, n)
		}
	}
}

// FuzzRecipient: the mask is valid UTF-8, whatever it is given, and shows
// fewer than half of a number.
func FuzzRecipient(f *testing.F) {
	for _, s := range []string{"+8613800138000", "+6837012", "élodie@example.com", "\xc3@x", "+\xff\xfe", "@", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		s = strings.ReplaceAll(s, "*", "#") // so that every "*" out is a masked character
		got := Recipient(s)
		if !utf8.ValidString(got) {
			t.Fatalf("Recipient(%q) = %q: invalid UTF-8", s, got)
		}
		if !strings.Contains(s, "@") {
			n := utf8.RuneCountInString(strings.ToValidUTF8(strings.TrimPrefix(s, "+"), "\uFFFD"))
			if hidden := strings.Count(got, "*"); n > 0 && 2*hidden <= n {
				t.Fatalf("Recipient(%q) = %q: %d of %d hidden", s, got, hidden, n)
			}
		}
	})
}

func TestSecretNeverPrints(t *testing.T) {
	t.Parallel()
	s := Secret("hunter2-very-secret")
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "secret", s)
	js, _ := json.Marshal(struct{ S Secret }{s})
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s", s, s, s, s), buf.String(), string(js)} {
		if strings.Contains(out, "hunter2") {
			t.Errorf("secret leaked: %s", out)
		}
	}
	if s.Reveal() != "hunter2-very-secret" {
		t.Error("Reveal lost the value")
	}
}

func TestPartial(t *testing.T) {
	for in, want := range map[string]string{
		"":                         "",
		"short":                    "*****",
		"AKIDz8krbsJ5yKBZ":         "AK**********yKBZ",
		"LTAI5tExampleAccessKeyId": "LT" + strings.Repeat("*", 18) + "eyId",
	} {
		if got := Partial(in); got != want {
			t.Errorf("Partial(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestKeyIDPrintsMasked(t *testing.T) {
	k := KeyID("LTAI5tExampleAccessKeyId")
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("x", "key", k)
	js, err := json.Marshal(struct{ K KeyID }{k})
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{fmt.Sprint(k), fmt.Sprintf("%v %+v %#v %s", k, k, k, k), logs.String(), string(js)} {
		if strings.Contains(out, string(k)) || !strings.Contains(out, "LT") {
			t.Errorf("%q: want the key ID masked", out)
		}
	}
	var back struct{ K KeyID }
	if err := json.Unmarshal([]byte(`{"K":"LTAI5tExampleAccessKeyId"}`), &back); err != nil || back.K != k {
		t.Errorf("decoded %q, %v; want the ID as written", back.K, err)
	}
}

func TestURLHidesPassword(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"redis://:S3cretPass@redis:6379/0":         "redis://:<redacted>@redis:6379/0",
		"rediss://app:S3cretPass@redis.internal/1": "rediss://app:<redacted>@redis.internal/1",
		"redis://redis:6379/0":                     "redis://redis:6379/0",
		"redis://admin:S3cret%zz@127.0.0.1:6379/0": "<redacted>",
		"": "",
	} {
		if got := URL(in); got != want {
			t.Errorf("URL(%q) = %q, want %q", in, got, want)
		}
	}
}

package redact

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestRecipient(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"+8613800138000", "+86********000"},
		{"+14155550123", "+14******123"},
		{"john@example.com", "j***@example.com"},
		{"j@example.com", "j***@example.com"},
		{"@example.com", "***@example.com"},
		{"12345", "*****"},
	} {
		if got := Recipient(tc.in); got != tc.want {
			t.Errorf("Recipient(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
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

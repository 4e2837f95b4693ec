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

package logtohttp_test

import (
	"testing"

	"github.com/otpd/otpd/internal/redact"
	"github.com/otpd/otpd/providers/logtohttp"
	"github.com/otpd/otpd/providers/providertest"
)

func TestParseConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		raw  string
		want logtohttp.Config
	}{
		{
			name: "Logto SMS connector paste",
			raw:  `{"endpoint": "https://hooks.example.com/logto/sms", "authorization": "Bearer s3cr3t"}`,
			want: logtohttp.Config{Endpoint: "https://hooks.example.com/logto/sms", Authorization: "Bearer s3cr3t"},
		},
		{
			name: "no authorization, as both connectors allow",
			raw:  `{"endpoint": "http://10.0.0.7:8080/send"}`,
			want: logtohttp.Config{Endpoint: "http://10.0.0.7:8080/send"},
		},
		{
			name: "trailing slash and query kept as they are",
			raw:  `{"endpoint": "https://hooks.example.com/sms/?key=abc", "authorization": ""}`,
			want: logtohttp.Config{Endpoint: "https://hooks.example.com/sms/?key=abc"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := logtohttp.ParseConfig([]byte(tc.raw))
			if err != nil {
				t.Fatalf("ParseConfig: %v", err)
			}
			if got != tc.want {
				t.Errorf("ParseConfig = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestParseConfigErrors(t *testing.T) {
	t.Parallel()
	const token = "tok-9f8e7d6c"
	for _, tc := range []struct {
		name string
		raw  string
		want []string
	}{
		{"empty block", `{}`, []string{"endpoint: required"}},
		{"missing endpoint", `{"authorization": "Bearer ` + token + `"}`, []string{"endpoint: required"}},
		{"blank endpoint", `{"endpoint": "  "}`, []string{"endpoint: required"}},
		{"bad URL scheme", `{"endpoint": "ftp://hooks.example.com/sms"}`, []string{"endpoint", "scheme must be http or https"}},
		{"no scheme", `{"endpoint": "hooks.example.com/sms"}`, []string{"endpoint", "scheme must be http or https"}},
		{"no host", `{"endpoint": "https:///sms"}`, []string{"endpoint", "has no host"}},
		{"user info", `{"endpoint": "https://otp:` + token + `@hooks.example.com/sms"}`, []string{"endpoint: must not hold user info", "authorization"}},
		{"fragment", `{"endpoint": "https://hooks.example.com/sms#x"}`, []string{"endpoint", "must not have a fragment"}},
		{"not a URL, query not quoted", `{"endpoint": "https://hooks.example.com/%zz?key=` + token + `"}`, []string{"endpoint: not a URL"}},
		{"scheme error masks the query", `{"endpoint": "ftp://hooks.example.com/sms?key=` + token + `"}`, []string{"key=<redacted>"}},
		{"unknown key", `{"endpoint": "https://hooks.example.com/sms", "authorisation": "Bearer ` + token + `"}`, []string{"authorisation"}},
		{"misspelt case", `{"Endpoint": "https://hooks.example.com/sms"}`, []string{`Endpoint: unknown key, did you mean "endpoint"?`}},
		{"not a string", `{"endpoint": 42}`, []string{"endpoint"}},
		{"line break in authorization", `{"endpoint": "https://hooks.example.com/sms", "authorization": "Bearer ` + token + `\r\nX-Evil: 1"}`,
			[]string{"authorization: must not hold control characters"}},
		{"blank authorization", `{"endpoint": "https://hooks.example.com/sms", "authorization": "   "}`, []string{"authorization: is blank"}},
		{"every problem at once", `{"endpoint": "ftp://x", "authorization": "a\nb"}`, []string{"endpoint", "authorization"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := logtohttp.ParseConfig([]byte(tc.raw))
			providertest.WantConfigError(t, err, tc.want, token)
		})
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	if _, err := logtohttp.New("", logtohttp.Config{Endpoint: "https://hooks.example.com/sms"}); err == nil {
		t.Error("New with an empty name succeeded")
	}
	_, err := logtohttp.New("hook", logtohttp.Config{Endpoint: "mailto:x@example.com", Authorization: redact.Secret("Bearer t0k3n")})
	providertest.WantConfigError(t, err, []string{`create http provider "hook"`, "scheme must be http or https"}, "t0k3n")
}

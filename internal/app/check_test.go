package app_test

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/otpd/otpd/internal/app"
	"github.com/otpd/otpd/internal/config"
	"github.com/otpd/otpd/internal/config/configtest"
	"github.com/otpd/otpd/internal/grpcauth"
	"github.com/otpd/otpd/internal/redact"
	"github.com/otpd/otpd/internal/testpki"
	"github.com/otpd/otpd/otp"
	"github.com/otpd/otpd/service"
)

// parseForCheck parses a configuration that must be valid.
func parseForCheck(tb testing.TB, yaml string, getenv func(string) string) *config.Config {
	tb.Helper()
	c, err := config.Parse([]byte(yaml), getenv)
	if err != nil {
		tb.Fatalf("config.Parse: %v", err)
	}
	return c
}

// hexSHA256 is the hex SHA-256 of s, as auth.tokens holds it.
func hexSHA256(s string) string { sum := sha256.Sum256([]byte(s)); return hex.EncodeToString(sum[:]) }

// providerSections splits Check's output into its provider sections, each
// starting after "provider ".
func providerSections(out string) []string { return strings.Split(out, "\nprovider ")[1:] }

// sectionTitle is the first line of a section.
func sectionTitle(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// lineStarting returns the first line of s that starts with prefix, or "".
func lineStarting(s, prefix string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

// wantNoSecrets fails if out holds any of secrets.
func wantNoSecrets(tb testing.TB, out string, secrets ...string) {
	tb.Helper()
	for _, s := range secrets {
		if strings.Contains(out, s) {
			tb.Errorf("check output holds the secret %q:\n%s", s, out)
		}
	}
}

// TestServiceConfig: the service gets its own block of otpd.yaml, with the
// application name that otpd.yaml sets once, under templates.
func TestServiceConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, yaml string
		env        func(string) string
		appName    string
	}{
		{"DESIGN.md example", configtest.DesignExampleYAML, configtest.EnvFrom(configtest.DesignEnv), "Acme"},
		{"minimal", configtest.MinimalYAML, configtest.KeyEnv(), "otpd"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			want := service.DefaultConfig()
			want.Secret = redact.Secret(configtest.TestKey)
			want.AppName = tc.appName
			if got := app.ServiceConfig(parseForCheck(t, tc.yaml, tc.env)); !reflect.DeepEqual(got, want) {
				t.Errorf("service config:\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestCheckDevConfig(t *testing.T) {
	t.Parallel()
	c := config.Dev()
	var out bytes.Buffer
	if err := app.Check(c, &out); err != nil {
		t.Fatalf("Check(dev): %v\n%s", err, out.String())
	}
	for _, want := range []string{"store dev (in-memory store)", "provider console (sms", "provider console (email"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("check output lacks %q:\n%s", want, out.String())
		}
	}
	wantNoSecrets(t, out.String(), c.Service.Secret.Reveal())
}

func TestCheckConfig(t *testing.T) {
	t.Parallel()
	const (
		secret   = "super-secret-hmac-key-0123456789abcdef"
		password = "redis-password-value-42"
	)
	yaml := `
redis:
  url: "redis://127.0.0.1:6379/0"
  password: "${REDIS_PASSWORD}"
secret: "${OTPD_HMAC_KEY}"
templates: {app_name: "Acme"}
providers:
  - name: console
    type: console
  - name: console-cn
    type: console
    channel: sms
    match: ["+86"]
    config: {}
`
	c := parseForCheck(t, yaml, configtest.EnvFrom(nil, "OTPD_HMAC_KEY", secret, "REDIS_PASSWORD", password))
	var out bytes.Buffer
	if err := app.Check(c, &out); err != nil {
		t.Fatalf("Check: %v\n%s", err, out.String())
	}
	s := out.String()
	wantNoSecrets(t, s, secret, password)
	if first := sectionTitle(s); !strings.HasPrefix(first, "otpd configuration OK: store redis, grpc 127.0.0.1:50051, http 127.0.0.1:9464") {
		t.Errorf("first line = %q", first)
	}
	if line := lineStarting(s, "grpc callers: "); !strings.Contains(line, "plaintext") {
		t.Errorf("callers line = %q, want plaintext", line)
	}
	sections := providerSections(s)
	wantSections := []string{"console (sms", "console (email", "console-cn (sms, +86)"}
	if len(sections) != len(wantSections) {
		t.Fatalf("%d provider sections, want %d:\n%s", len(sections), len(wantSections), s)
	}
	for i, sec := range sections {
		if !strings.HasPrefix(sec, wantSections[i]) {
			t.Errorf("section %d starts %q, want %q", i, sectionTitle(sec), wantSections[i])
		}
		for _, u := range otp.UsageTypes {
			line := lineStarting(sec, "  "+string(u)+":")
			if line == "" {
				t.Errorf("section %q does not render %s:\n%s", sectionTitle(sec), u, sec)
				continue
			}
			if !strings.Contains(line, "123456") {
				t.Errorf("%s %s preview lacks the sample code: %q", sectionTitle(sec), u, line)
			}
		}
	}
	if strings.Contains(s, "\nnote: ") {
		t.Errorf("both channels serve every recipient, yet a note:\n%s", s)
	}
}

// TestCheckNotesCoverage: -check says which recipients no provider serves.
func TestCheckNotesCoverage(t *testing.T) {
	t.Parallel()
	head, _, _ := strings.Cut(configtest.MinimalYAML, "providers:")
	yaml := head + `providers:
  - {name: cn, type: console, channel: sms, match: ["+86", "+852"]}
`
	c := parseForCheck(t, yaml, configtest.KeyEnv())
	var out bytes.Buffer
	if err := app.Check(c, &out); err != nil {
		t.Fatalf("Check: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		"note: sms providers serve only +86, +852: other recipients fail with FAILED_PRECONDITION",
		"note: no provider sends email: every email request fails with FAILED_PRECONDITION",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("check output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestCheckConfigFails(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		extra string
		want  []string
	}{
		{"bad provider config", `  - name: flaky
    type: twilio
    config: {accountSID: AC00000000000000000000000000000000, authToken: "0123456789abcdef"}
`, []string{"providers[1]", "flaky", "fromMessagingServiceSID: required"}},
		{"unknown provider config key", "  - name: loud\n    type: console\n    config: {colour: red}\n", []string{"providers[1]", "loud", "colour"}},
		{"missing template dir", "templates: {dir: /nonexistent/otpd-templates}\n", []string{"templates"}},
		{"tencent without a template for every usage type", `  - name: tencent-cn
    type: tencent
    config: {accessKeyId: AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE, accessKeySecret: s3cr3t, signName: Acme, region: ap-guangzhou,
             sdkAppId: "1400000000", templates: [{usageType: SignIn, templateCode: "1234567"}]}
`, []string{"providers[1] (tencent-cn): cannot serve Register", "cannot serve ForgotPassword", "cannot serve Generic"}},
		{"twilio with a phone number for a messaging service", `  - name: twilio
    type: twilio
    config: {accountSID: AC00000000000000000000000000000000, authToken: "0123456789abcdef", fromMessagingServiceSID: "+14155550100"}
`, []string{"providers[1] (twilio)", "fromMessagingServiceSID"}},
		{"missing TLS files", "tls: {cert_file: /nonexistent/otpd/tls.crt, key_file: /nonexistent/otpd/tls.key}\n", []string{"tls.crt"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := parseForCheck(t, configtest.MinimalYAML+tt.extra, configtest.KeyEnv())
			for _, check := range []struct {
				name string
				fn   func(*config.Config, *bytes.Buffer) error
			}{
				{"Check", func(c *config.Config, w *bytes.Buffer) error { return app.Check(c, w) }},
				{"CheckJSON", func(c *config.Config, w *bytes.Buffer) error { return app.CheckJSON(c, w) }},
			} {
				var out bytes.Buffer
				err := check.fn(c, &out)
				if err == nil {
					t.Fatalf("%s succeeded, want an error:\n%s", check.name, out.String())
				}
				for _, w := range tt.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("%s: error %q lacks %q", check.name, err, w)
					}
				}
				if check.name == "CheckJSON" && out.Len() != 0 {
					t.Errorf("CheckJSON failed yet printed a report:\n%s", out.String())
				}
			}
		})
	}
}

// logtoPasteYAML holds the four vendor connectors' Logto configurations
// as a Logto console shows them, pasted as JSON, templates for all nine of
// Logto's usage types included.
const logtoPasteYAML = `
redis: {url: "redis://127.0.0.1:6379/0"}
secret: "${OTPD_HMAC_KEY}"
providers:
  - name: twilio
    type: twilio
    config: {
      "accountSID": "AC0123456789abcdef0123456789abcdef",
      "authToken": "f0e1d2c3b4a5968778695a4b3c2d1e0f",
      "fromMessagingServiceSID": "MG0123456789abcdef0123456789abcdef",
      "templates": [
        {"usageType": "Register", "content": "Welcome! Your registration code is {{code}}."},
        {"usageType": "SignIn", "content": "Your sign-in code is {{code}}."},
        {"usageType": "ForgotPassword", "content": "Your password reset code is {{code}}."},
        {"usageType": "Generic", "content": "Your verification code is {{code}}."},
        {"usageType": "OrganizationInvitation", "content": "Join us: {{link}}"},
        {"usageType": "UserPermissionValidation", "content": "Code {{code}}"},
        {"usageType": "BindNewIdentifier", "content": "Code {{code}}"},
        {"usageType": "MfaVerification", "content": "Code {{code}}"},
        {"usageType": "BindMfa", "content": "Code {{code}}"}
      ]
    }
  - name: tencent
    type: tencent
    config: {
      "accessKeyId": "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE",
      "accessKeySecret": "Gu5t9xGARNpq86cd98joQYCN3EXAMPLEKEY",
      "signName": "Logto",
      "region": "ap-guangzhou",
      "sdkAppId": "1400006666",
      "templates": [
        {"usageType": "Register", "templateCode": "1234561"},
        {"usageType": "SignIn", "templateCode": "1234562"},
        {"usageType": "ForgotPassword", "templateCode": "1234563"},
        {"usageType": "Generic", "templateCode": "1234564"},
        {"usageType": "MfaVerification", "templateCode": "1234565"}
      ]
    }
  - name: mailgun
    type: mailgun
    config: {
      "endpoint": "https://api.mailgun.net",
      "domain": "mg.example.com",
      "apiKey": "key-3ax6xnjp29jd6fds4gc373sgvjxteol0",
      "from": "Logto <noreply@mg.example.com>",
      "deliveries": {
        "Register": {
          "subject": "{{code}} est votre code de vérification",
          "replyTo": "Foo <foo@bar.com>",
          "html": "<h1>Bienvenue sur Logto</h1><p>Votre code de vérification est {{code}}.</p>",
          "text": "Bienvenue sur Logto. Votre code de vérification est {{code}}."
        },
        "SignIn": {
          "subject": "Bon retour sur Logto",
          "replyTo": "Foo <foo@bar.com>",
          "template": "logto-sign-in",
          "variables": {"bar": "baz"}
        },
        "OrganizationInvitation": {"subject": "Invitation", "html": "<a href=\"{{link}}\">Join</a>"}
      }
    }
  - name: aliyun
    type: aliyun-dm
    config: {
      "accessKeyId": "LTAI5tExampleAccessKeyId",
      "accessKeySecret": "ExampleAccessKeySecret0123456789",
      "accountName": "noreply@dm.example.com",
      "fromAlias": "Logto",
      "templates": [
        {"usageType": "Register", "subject": "Bienvenue", "content": "<p>Votre code est {{code}}.</p>"},
        {"usageType": "SignIn", "subject": "Connexion", "content": "<p>Votre code est {{code}}.</p>"},
        {"usageType": "ForgotPassword", "subject": "Mot de passe", "content": "<p>Votre code est {{code}}.</p>"},
        {"usageType": "Generic", "subject": "Code", "content": "<p>Votre code est {{code}}.</p>"},
        {"usageType": "BindMfa", "subject": "MFA", "content": "<p>{{code}}</p>"}
      ]
    }
`

// logtoPasteSecrets are the credentials of logtoPasteYAML, none of which
// may print.
var logtoPasteSecrets = []string{configtest.TestKey, "f0e1d2c3b4a5968778695a4b3c2d1e0f", "Gu5t9xGARNpq86cd98joQYCN3EXAMPLEKEY",
	"AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE", "key-3ax6xnjp29jd6fds4gc373sgvjxteol0",
	"LTAI5tExampleAccessKeyId", "ExampleAccessKeySecret0123456789"}

// logtoHTTPYAML has an http provider per channel, each as Logto's HTTP
// connector config pasted, the token from the environment.
const logtoHTTPYAML = `
redis: {url: "redis://127.0.0.1:6379/0"}
secret: "${OTPD_HMAC_KEY}"
providers:
  - name: hook-sms
    type: http
    channel: sms
    config: {"endpoint": "https://hooks.example.com/logto/sms?sig=qq7rr8ss9", "authorization": "${HOOK_AUTH}"}
  - name: hook-email
    type: http
    channel: email
    config: {"endpoint": "https://hooks.example.com/logto/email"}
`

// TestCheckVendorConfigs runs otpd -check's work on Logto configurations
// pasted unchanged and on DESIGN.md's example: every provider × usage type
// renders with the sample code, settings print, and no secret does.
func TestCheckVendorConfigs(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, yaml string
		env        func(string) string
		secrets    []string
		sections   []string
	}{
		{
			name: "Logto paste", yaml: logtoPasteYAML, env: configtest.KeyEnv(),
			secrets:  logtoPasteSecrets,
			sections: []string{"twilio (sms", "tencent (sms", "mailgun (email", "aliyun (email"},
		},
		{
			name: "Logto HTTP connectors", yaml: logtoHTTPYAML, env: configtest.KeyEnv("HOOK_AUTH", "Bearer hk_live_0123456789"),
			secrets:  []string{configtest.TestKey, "hk_live_0123456789", "qq7rr8ss9"},
			sections: []string{"hook-sms (sms", "hook-email (email"},
		},
		{
			name: "DESIGN.md example", yaml: configtest.DesignExampleYAML, env: configtest.EnvFrom(configtest.DesignEnv),
			secrets:  []string{configtest.TestKey, "tencent-secret-value", "twiliotokenvalue0123456789abcdef", "key-mailgun-value", "aliyun-secret-value", "AKIDtencent", "LTAIaliyun"},
			sections: []string{"tencent-cn (sms, +86)", "twilio (sms", "mailgun (email", "aliyun (email"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := parseForCheck(t, tc.yaml, tc.env)
			var out bytes.Buffer
			if err := app.Check(c, &out); err != nil {
				t.Fatalf("Check: %v\n%s", err, out.String())
			}
			s := out.String()
			wantNoSecrets(t, s, tc.secrets...)
			sections := providerSections(s)
			if len(sections) != len(tc.sections) {
				t.Fatalf("%d provider sections, want %d:\n%s", len(sections), len(tc.sections), s)
			}
			for i, sec := range sections {
				if !strings.HasPrefix(sec, tc.sections[i]) {
					t.Errorf("section %d starts %q, want %q", i, sectionTitle(sec), tc.sections[i])
				}
				if lineStarting(sec, "  settings: ") == "" {
					t.Errorf("section %q prints no settings:\n%s", sectionTitle(sec), sec)
				}
				for _, u := range otp.UsageTypes {
					if line := lineStarting(sec, "  "+string(u)+":"); !strings.Contains(line, "123456") {
						t.Errorf("%s %s: preview %q lacks the sample code", sectionTitle(sec), u, line)
					}
				}
			}
		})
	}
}

// checkJSONReport is what CheckJSON prints, as far as the test reads it.
type checkJSONReport struct {
	Config        map[string]any `json:"config"`
	Store         string         `json:"store"`
	Callers       string         `json:"callers"`
	Locales       []string       `json:"locales"`
	DefaultLocale string         `json:"default_locale"`
	Routes        []struct {
		Name     string   `json:"name"`
		Channel  string   `json:"channel"`
		Match    []string `json:"match"`
		Settings string   `json:"settings"`
		Previews []struct {
			UsageType string `json:"usage_type"`
			Message   string `json:"message"`
		} `json:"previews"`
	} `json:"routes"`
	SampleCode string `json:"sample_code"`
	Autofill   string `json:"autofill"`
	SMS        []struct {
		Template  string `json:"template"`
		Locale    string `json:"locale"`
		Provider  string `json:"provider"`
		UsageType string `json:"usage_type"`
		Encoding  string `json:"encoding"`
		Units     int    `json:"units"`
		Bytes     int    `json:"bytes"`
		Segments  int    `json:"segments"`
		Refused   string `json:"refused"`
	} `json:"sms"`
	Notes    []string `json:"notes"`
	Warnings []string `json:"warnings"`
	// Fraud is checked by TestCheckJSONFraud.
	Fraud app.FraudReport `json:"fraud"`
}

// jsonPath returns the value at the dotted path of m ("listen.grpc"), and
// whether it is there.
func jsonPath(m map[string]any, path string) (any, bool) {
	var v any = m
	for _, k := range strings.Split(path, ".") {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = mm[k]; !ok {
			return nil, false
		}
	}
	return v, true
}

func TestCheckJSON(t *testing.T) {
	t.Parallel()
	const (
		secret   = "super-secret-hmac-key-0123456789abcdef"
		password = "redis-password-value-42"
		// urlPassword is in redis.url, as ${REDIS_URL} often has it.
		urlPassword = "url-password-value-77"
	)
	// The Logto paste's providers, plus Redis passwords and a caller token.
	yaml := strings.Replace(logtoPasteYAML, `redis: {url: "redis://127.0.0.1:6379/0"}`,
		`redis: {url: "redis://otpd:${REDIS_URL_PASSWORD}@127.0.0.1:6379/0", password: "${REDIS_PASSWORD}"}
auth: {tokens: [{name: auth-server, sha256: "`+hexSHA256("caller-token")+`"}]}
templates: {app_name: "Acme"}`, 1)
	c := parseForCheck(t, yaml, configtest.EnvFrom(nil, "OTPD_HMAC_KEY", secret, "REDIS_PASSWORD", password, "REDIS_URL_PASSWORD", urlPassword))
	var out bytes.Buffer
	if err := app.CheckJSON(c, &out); err != nil {
		t.Fatalf("CheckJSON: %v\n%s", err, out.String())
	}
	s := out.String()
	if !json.Valid(out.Bytes()) {
		t.Fatalf("CheckJSON printed invalid JSON:\n%s", s)
	}
	wantNoSecrets(t, s, append([]string{secret, password, urlPassword, "caller-token"}, logtoPasteSecrets[1:]...)...)

	var r checkJSONReport
	dec := json.NewDecoder(bytes.NewReader(out.Bytes()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		t.Fatalf("decode report: %v\n%s", err, s)
	}

	// The effective configuration: what the file set, and the defaults of
	// everything it did not.
	for path, want := range map[string]any{
		"listen.grpc":              "127.0.0.1:50051",
		"listen.http":              "127.0.0.1:9464",
		"shutdown.timeout":         "20s",
		"shutdown.delay":           "0s",
		"health.interval":          "2s",
		"code.length":              float64(6),
		"code.ttl":                 "10m0s",
		"code.max_attempts":        float64(5),
		"limits.resend_interval":   "1m0s",
		"limits.per_ip.count":      float64(20),
		"limits.per_ip.window":     "1h0m0s",
		"send_timeout":             "15s",
		"idempotency_ttl":          "24h0m0s",
		"delivery.attempts":        float64(2),
		"delivery.backoff":         "200ms",
		"log.level":                "info",
		"templates.default_locale": "en",
		"templates.app_name":       "Acme",
		"redis.url":                "redis://otpd:<redacted>@127.0.0.1:6379/0",
		"redis.prefix":             "otpd:",
		"redis.timeout":            "1s",
		"auth.open_health":         true,
		"auth.open_reflection":     false,
		"secret":                   "<redacted>",
		"redis.password":           "<redacted>",
	} {
		got, ok := jsonPath(r.Config, path)
		if !ok {
			t.Errorf("config.%s is missing", path)
			continue
		}
		if got != want {
			t.Errorf("config.%s = %#v, want %#v", path, got, want)
		}
	}
	for _, key := range []string{"server", "service", "dev", "app_name", "Server", "Service", "Dev"} {
		if _, ok := r.Config[key]; ok {
			t.Errorf("config has a %q key, which otpd.yaml does not", key)
		}
	}
	if tokens, _ := jsonPath(r.Config, "auth.tokens"); !strings.Contains(s, hexSHA256("caller-token")) || tokens == nil {
		t.Errorf("config.auth.tokens = %v, want the caller with its hash", tokens)
	}

	ps, ok := r.Config["providers"].([]any)
	if !ok || len(ps) != 4 {
		t.Fatalf("config.providers = %#v, want the four providers", r.Config["providers"])
	}
	for i, p := range ps {
		pm, ok := p.(map[string]any)
		if !ok {
			t.Errorf("config.providers[%d] = %#v, want a mapping", i, p)
			continue
		}
		if _, ok := pm["config"]; ok {
			t.Errorf("config.providers[%d] has a config key: %v", i, pm)
		}
		if pm["name"] == nil || pm["type"] == nil {
			t.Errorf("config.providers[%d] = %v, want its name and type", i, pm)
		}
	}

	if r.Store != "redis" || r.DefaultLocale != "en" || !slices.Contains(r.Locales, "en") {
		t.Errorf("store %q, locales %q (default %q): want redis and en", r.Store, r.Locales, r.DefaultLocale)
	}
	if !strings.Contains(r.Callers, "auth-server") {
		t.Errorf("callers = %q, want the token's caller", r.Callers)
	}
	wantRoutes := []string{"twilio/sms", "tencent/sms", "mailgun/email", "aliyun/email"}
	if len(r.Routes) != len(wantRoutes) {
		t.Fatalf("%d routes, want %d", len(r.Routes), len(wantRoutes))
	}
	for i, rt := range r.Routes {
		if got := rt.Name + "/" + rt.Channel; got != wantRoutes[i] {
			t.Errorf("routes[%d] = %s, want %s", i, got, wantRoutes[i])
		}
		if rt.Settings == "" {
			t.Errorf("routes[%d] (%s) has no settings", i, rt.Name)
		}
		if len(rt.Previews) != len(otp.UsageTypes) {
			t.Errorf("routes[%d] (%s) has %d previews, want one per usage type (%d)", i, rt.Name, len(rt.Previews), len(otp.UsageTypes))
		}
		for j, pv := range rt.Previews {
			if j < len(otp.UsageTypes) && pv.UsageType != string(otp.UsageTypes[j]) {
				t.Errorf("routes[%d].previews[%d] is %s, want %s", i, j, pv.UsageType, otp.UsageTypes[j])
			}
			if !strings.Contains(pv.Message, "123456") {
				t.Errorf("routes[%d] (%s) %s preview lacks the sample code: %q", i, rt.Name, pv.UsageType, pv.Message)
			}
		}
	}
	if len(r.Notes) != 0 {
		t.Errorf("notes = %q, want none", r.Notes)
	}
}

func TestCheckJSONDev(t *testing.T) {
	t.Parallel()
	c := config.Dev()
	var out bytes.Buffer
	if err := app.CheckJSON(c, &out); err != nil {
		t.Fatalf("CheckJSON(dev): %v", err)
	}
	wantNoSecrets(t, out.String(), c.Service.Secret.Reveal())
	var r checkJSONReport
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("decode report: %v\n%s", err, out.String())
	}
	if r.Store != "memory" || len(r.Routes) != 2 {
		t.Errorf("store %q with %d routes, want memory with console on both channels", r.Store, len(r.Routes))
	}
	if got, _ := jsonPath(r.Config, "secret"); got != "<redacted>" {
		t.Errorf("config.secret = %#v, want <redacted>", got)
	}
}

// shippedEnv gives every ${VAR} of the shipped configurations a
// placeholder of the right shape.
func shippedEnv(name string) string {
	switch name {
	case "OTPD_HMAC_KEY":
		return configtest.TestKey
	case "REDIS_URL":
		return "redis://redis:6379/0"
	case "TWILIO_ACCOUNT_SID":
		return "AC00000000000000000000000000000000"
	case "TWILIO_AUTH_TOKEN":
		return "0123456789abcdef0123456789abcdef"
	case "TWILIO_MESSAGING_SERVICE_SID":
		return "MG00000000000000000000000000000000"
	case "OTPD_TOKEN_AUTH_SERVER_SHA256":
		return hexSHA256("placeholder-token")
	}
	return "placeholder-" + name
}

// TestShippedConfigsCheck runs otpd -check's work on every configuration
// the repository ships: deploy/otpd.example.yaml and the otpd.yaml of each
// Kubernetes layout (their TLS files are replaced by generated ones).
func TestShippedConfigsCheck(t *testing.T) {
	t.Parallel()
	paths := []string{filepath.Join("..", "..", "deploy", "otpd.example.yaml")}
	k8s, err := filepath.Glob(filepath.Join("..", "..", "deploy", "kubernetes", "*", "otpd.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	overlays, err := filepath.Glob(filepath.Join("..", "..", "deploy", "kubernetes", "overlays", "*", "otpd.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	paths = append(append(paths, k8s...), overlays...)
	if len(paths) < 4 {
		t.Fatalf("found %d shipped configurations, want the example and three Kubernetes layouts: %v", len(paths), paths)
	}
	dir := t.TempDir()
	authority := testpki.NewCA(t, "test CA")
	certPEM, keyPEM := authority.Issue(t, "otpd", x509.ExtKeyUsageServerAuth)
	certFile, keyFile := testpki.WriteFile(t, dir, "tls.crt", certPEM), testpki.WriteFile(t, dir, "tls.key", keyPEM)
	caFile := testpki.WriteFile(t, dir, "ca.crt", authority.PEM)
	for _, path := range paths {
		t.Run(path, func(t *testing.T) {
			t.Parallel()
			c, err := config.Load(path, shippedEnv)
			if err != nil {
				t.Fatalf("config.Load: %v", err)
			}
			if c.TLS.Enabled() {
				c.TLS = grpcauth.TLSConfig{CertFile: certFile, KeyFile: keyFile, ClientCAFile: map[bool]string{true: caFile}[c.TLS.ClientCAFile != ""]}
			}
			var out bytes.Buffer
			if err := app.Check(c, &out); err != nil {
				t.Errorf("otpd -check %s: %v\n%s", path, err, out.String())
			}
			out.Reset()
			if err := app.CheckJSON(c, &out); err != nil || !json.Valid(out.Bytes()) {
				t.Errorf("otpd -check -json %s: %v\n%s", path, err, out.String())
			}
			wantNoSecrets(t, out.String(), configtest.TestKey, shippedEnv("TWILIO_AUTH_TOKEN"), shippedEnv("TENCENT_SECRET_KEY"),
				shippedEnv("MAILGUN_API_KEY"), shippedEnv("ALIYUN_SK"), shippedEnv("ALIYUN_ACCESS_KEY_SECRET"), shippedEnv("REDIS_PASSWORD"))
		})
	}
	path := paths[0]
	_, err = config.Load(path, func(name string) string {
		if name == "OTPD_HMAC_KEY" {
			return ""
		}
		return shippedEnv(name)
	})
	if err == nil || !strings.Contains(err.Error(), "OTPD_HMAC_KEY") {
		t.Errorf("%s without OTPD_HMAC_KEY: err = %v, want one naming OTPD_HMAC_KEY", path, err)
	}
}

package mailgun_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/otpd/otpd/providers/mailgun"
	"github.com/otpd/otpd/providers/providertest"
)

// TestParseConfigSeed loads a full Logto config with the guide's example
// deliveries pasted verbatim.
func TestParseConfigSeed(t *testing.T) {
	t.Parallel()
	cfg, err := mailgun.ParseConfig([]byte(logtoConfig(mailgun.EUEndpoint, seedDeliveries)))
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	if cfg.Endpoint != mailgun.EUEndpoint || cfg.Domain != domain || cfg.APIKey.Reveal() != apiKey || cfg.From != from {
		t.Errorf("config = %+v", cfg)
	}
	reg, in := cfg.Deliveries["Register"], cfg.Deliveries["SignIn"]
	if len(cfg.Deliveries) != 2 || reg.HTML == "" || reg.Text == "" || reg.Template != "" ||
		in.Template != "logto-sign-in" || string(in.Variables["bar"]) != `"baz"` || in.ReplyTo != "Foo <foo@bar.com>" {
		t.Errorf("deliveries = %+v", cfg.Deliveries)
	}
}

// TestParseConfigAccepts loads configs at the edges of what is valid.
func TestParseConfigAccepts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, raw string }{
		{"all nine Logto usage types, the invitation with Logto-only placeholders", logtoConfig("", `{
			"Register": {"html": "{{code}}"}, "SignIn": {"html": "{{code}}"}, "ForgotPassword": {"html": "{{code}}"}, "Generic": {"html": "{{code}}"},
			"OrganizationInvitation": {"html": "<a href=\"{{link}}\">join</a>"}, "UserPermissionValidation": {"template": "upv"},
			"BindNewIdentifier": {"html": "{{code}}"}, "MfaVerification": {"text": "{{code}}"}, "BindMfa": {"template": "bind", "variables": {}}}`)},
		{"no deliveries", configWith(t, "deliveries", "")},
		{"deliveries null", configWith(t, "deliveries", "null")},
		{"html only (as Logto requires)", logtoConfig("", `{"Generic": {"html": "<p>{{code}}</p>"}}`)},
		{"text only", logtoConfig("", `{"Generic": {"text": "{{code}}"}}`)},
		{"template without variables", logtoConfig("", `{"Generic": {"template": "otp"}}`)},
		{"template with empty variables", logtoConfig("", `{"Generic": {"template": "otp", "variables": {}}}`)},
		{"bare from address", configWith(t, "from", `"no-reply@mg.example.com"`)},
		{"endpoint with /v3", logtoConfig("https://api.eu.mailgun.net/v3", seedDeliveries)},
		{"http endpoint with path", logtoConfig("http://127.0.0.1:8080/mailgun/", seedDeliveries)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := mailgun.ParseConfig([]byte(tc.raw)); err != nil {
				t.Errorf("ParseConfig: %v", err)
			}
		})
	}
}

// TestParseConfigErrors checks that each bad config is refused with errors
// naming every bad key.
func TestParseConfigErrors(t *testing.T) {
	t.Parallel()
	deliveries := func(d string) string { return logtoConfig("", d) }
	for _, tc := range []struct {
		name string
		raw  string
		want []string // substrings of the error, each naming a key
	}{
		{"empty", "", []string{"domain: required", "apiKey: required", "from: required"}},
		{"all required missing", `{"deliveries": {}}`, []string{"domain: required", "apiKey: required", "from: required"}},
		{"unknown key", configWith(t, "api_key", `"x"`), []string{`"api_key"`}},
		{"unknown key in a delivery", deliveries(`{"Register": {"htm": "{{code}}"}}`), []string{"deliveries.Register", `"htm"`}},
		{"trailing data", logtoConfig("", seedDeliveries) + "{}", []string{"after"}},
		{"link in a code delivery", deliveries(`{"Register": {"html": "{{code}} {{link}}"}}`), []string{"deliveries.Register.html", "{{link}} has a value only in an OrganizationInvitation message"}},
		{"endpoint not http", logtoConfig("ftp://api.mailgun.net", seedDeliveries), []string{"endpoint"}},
		{"endpoint with query", logtoConfig("https://api.mailgun.net/?key=x", seedDeliveries), []string{"endpoint"}},
		{"endpoint with user info", logtoConfig("https://api:k@api.mailgun.net", seedDeliveries), []string{"endpoint"}},
		{"domain with scheme", configWith(t, "domain", `"https://mg.example.com"`), []string{"domain", "without a scheme"}},
		{"domain with path", configWith(t, "domain", `"mg.example.com/v3"`), []string{"domain"}},
		{"domain with space", configWith(t, "domain", `"mg example.com"`), []string{"domain"}},
		{"domain one label", configWith(t, "domain", `"localhost"`), []string{"domain"}},
		{"from not an address", configWith(t, "from", `"Acme"`), []string{"from"}},
		{"apiKey not a string", configWith(t, "apiKey", `123`), []string{"apiKey"}},
		{"deliveries not an object", configWith(t, "deliveries", `[]`), []string{"deliveries"}},
		{"usage type listed twice", deliveries(`{"Register": {"html": "a"}, "Register": {"html": "b"}}`), []string{"deliveries.Register: usage type listed twice"}},
		{"unknown usage type", deliveries(`{"Login": {"html": "{{code}}"}}`), []string{"deliveries.Login", "Register"}},
		{"usage type in the wrong case", deliveries(`{"signIn": {"html": "{{code}}"}}`), []string{"deliveries.signIn"}},
		{"bad placeholder in html", deliveries(`{"Register": {"html": "<p>{{cod}}</p>"}}`), []string{"deliveries.Register.html:1:4", "{{cod}}"}},
		{"bad placeholder in subject", deliveries(`{"SignIn": {"subject": "{{code}", "template": "t"}}`), []string{"deliveries.SignIn.subject"}},
		{"bad placeholder in text", deliveries(`{"Generic": {"html": "x", "text": "{{ otp }}"}}`), []string{"deliveries.Generic.text"}},
		{"template and html", deliveries(`{"SignIn": {"template": "t", "html": "{{code}}"}}`), []string{"deliveries.SignIn: has both"}},
		{"template and text", deliveries(`{"SignIn": {"template": "t", "text": "{{code}}"}}`), []string{"deliveries.SignIn: has both"}},
		{"variables in raw mode", deliveries(`{"Register": {"html": "{{code}}", "variables": {"a": 1}}}`), []string{"deliveries.Register.variables"}},
		{"variables without template", deliveries(`{"SignIn": {"variables": {"bar": "baz"}}}`), []string{"deliveries.SignIn.template: required"}},
		{"blank template name", deliveries(`{"SignIn": {"template": "  "}}`), []string{"deliveries.SignIn.template"}},
		{"empty template name, nothing else", deliveries(`{"SignIn": {"subject": "Hi", "template": ""}}`), []string{"deliveries.SignIn: needs html"}},
		{"empty delivery", deliveries(`{"Generic": {}}`), []string{"deliveries.Generic: needs html"}},
		{"variables not an object", deliveries(`{"SignIn": {"template": "t", "variables": "bar=baz"}}`), []string{"deliveries.SignIn"}},
		{"bad replyTo", deliveries(`{"Register": {"html": "x", "replyTo": "Foo"}}`), []string{"deliveries.Register.replyTo"}},
		// The guide as scraped, with Cloudflare's email obfuscation in the
		// reply-to address.
		{"seed's scraped replyTo", deliveries(strings.ReplaceAll(seedDeliveries, "foo@bar.com", "[email protected]")),
			[]string{"deliveries.Register.replyTo", "deliveries.SignIn.replyTo"}},
		{"several problems at once", `{"domain": "https://mg.example.com", "from": "nobody", "deliveries": {"Register": {"html": "{{x}}"}, "Foo": {}}}`,
			[]string{"domain:", "apiKey: required", "from:", "deliveries.Foo", "deliveries.Register.html"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := mailgun.ParseConfig([]byte(tc.raw))
			if err == nil {
				t.Fatalf("ParseConfig(%s) = nil error, want one naming %q", tc.raw, tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			providertest.NoLeak(t, err.Error(), apiKey)
		})
	}
}

// TestNewValidates checks that New refuses what ParseConfig would, so that
// a Config built in code is checked too.
func TestNewValidates(t *testing.T) {
	t.Parallel()
	if _, err := mailgun.New("", mailgun.Config{Domain: domain, APIKey: apiKey, From: from}); err == nil {
		t.Error("New accepted an empty name")
	}
	_, err := mailgun.New("mailgun", mailgun.Config{Domain: domain, APIKey: apiKey, From: from,
		Deliveries: mailgun.Deliveries{"SignIn": {Template: "t", HTML: "x"}}})
	if err == nil || !strings.Contains(err.Error(), "deliveries.SignIn") {
		t.Errorf("New with template and html = %v, want an error naming deliveries.SignIn", err)
	}
	if _, err := mailgun.New("mailgun", mailgun.Config{Domain: domain, APIKey: apiKey, From: from}); err != nil {
		t.Errorf("New with no deliveries: %v", err)
	}
}

// TestConfigKeepsKeySecret checks that the API key never prints.
func TestConfigKeepsKeySecret(t *testing.T) {
	t.Parallel()
	cfg, err := mailgun.ParseConfig([]byte(logtoConfig("", seedDeliveries)))
	if err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var logged strings.Builder
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("config", "cfg", cfg)
	for _, out := range []string{fmt.Sprintf("%v %+v %#v %s", cfg, cfg, cfg, cfg), string(js), logged.String()} {
		providertest.NoLeak(t, out, apiKey)
	}
}

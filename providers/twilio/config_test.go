package twilio_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/otpd/otpd/otp"
	"github.com/otpd/otpd/providers/providertest"
	"github.com/otpd/otpd/providers/twilio"
)

// designConfig is the twilio block of DESIGN.md's example, as JSON, with
// the environment references expanded.
const designConfig = `{"accountSID": "ACa1b2c3d4e5f60718293a4b5c6d7e8f90", "authToken": "f00dbabe0123456789abcdef01234567",
	"fromMessagingServiceSID": "MG0000", "templates": [{"usageType": "Generic", "content": "Your code is {{code}}"}]}`

// logtoConfig is a Logto Twilio connector config as its console saves it
// (the fields of the connector guide's table, plus disableRiskCheck), with
// templates for all nine of Logto's usage types.
const logtoConfig = `{
  "accountSID": "ACa1b2c3d4e5f60718293a4b5c6d7e8f90",
  "authToken": "f00dbabe0123456789abcdef01234567",
  "fromMessagingServiceSID": "MG11aa22bb33cc44dd55ee66ff77889900",
  "disableRiskCheck": true,
  "templates": [
    {"usageType": "Register", "content": "Your Logto sign-up verification code is {{code}}. The code will remain active for 10 minutes."},
    {"usageType": "SignIn", "content": "Your Logto sign-in verification code is {{code}}. The code will remain active for 10 minutes."},
    {"usageType": "ForgotPassword", "content": "Your Logto password change verification code is {{code}}. The code will remain active for 10 minutes."},
    {"usageType": "Generic", "content": "Your Logto verification code is {{code}}. The code will remain active for 10 minutes."},
    {"usageType": "OrganizationInvitation", "content": "Your invitation code is {{code}}."},
    {"usageType": "UserPermissionValidation", "content": "Your code is {{code}}."},
    {"usageType": "BindNewIdentifier", "content": "Your code is {{code}}."},
    {"usageType": "MfaVerification", "content": "Your MFA verification code is {{code}}."},
    {"usageType": "BindMfa", "content": "Your MFA binding code is {{code}}."}
  ]
}`

func TestParseLogtoConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, raw, describe string
	}{
		{"design example", designConfig, "twilio account " + maskedSID +
			", messaging service MG0000, endpoint https://api.twilio.com, risk check on, templates Generic"},
		{"logto, nine usage types", logtoConfig, "twilio account " + maskedSID + ", messaging service " + testService +
			", endpoint https://api.twilio.com, risk check disabled, templates Register SignIn ForgotPassword" +
			" UserPermissionValidation BindNewIdentifier MfaVerification BindMfa Generic; ignored (cannot carry the link): OrganizationInvitation"},
		{"endpoint", strings.Replace(designConfig, `"templates"`, `"endpoint": "https://proxy.example/twilio/", "templates"`, 1),
			"twilio account " + maskedSID + ", messaging service MG0000, endpoint https://proxy.example/twilio, risk check on, templates Generic"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := twilio.ParseConfig([]byte(tc.raw))
			if err != nil {
				t.Fatalf("ParseConfig: %v", err)
			}
			if cfg.AccountSID != testSID || cfg.AuthToken.Reveal() != testToken {
				t.Errorf("credentials lost: account %q", cfg.AccountSID)
			}
			p, err := twilio.New(providerName, cfg)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if got := p.Describe(); got != tc.describe {
				t.Errorf("Describe() =\n%s\nwant\n%s", got, tc.describe)
			}
			for _, u := range otp.UsageTypes {
				if err := p.CanServe(u); err != nil {
					t.Errorf("CanServe(%s) = %v", u, err)
				}
			}
		})
	}
}

func TestParseConfigErrors(t *testing.T) {
	t.Parallel()
	// with replaces old in designConfig by repl.
	with := func(old, repl string) string {
		if !strings.Contains(designConfig, old) {
			t.Fatalf("designConfig has no %q", old)
		}
		return strings.Replace(designConfig, old, repl, 1)
	}
	withTemplates := func(templates string) string {
		return with(`[{"usageType": "Generic", "content": "Your code is {{code}}"}]`, templates)
	}
	withEndpoint := func(endpoint string) string {
		return with(`"templates"`, `"endpoint": "`+endpoint+`", "templates"`)
	}
	for _, tc := range []struct {
		name string
		raw  string
		want []string // substrings the error must hold, all of them
	}{
		{"empty object", `{}`, []string{"accountSID: required", "authToken: required", "fromMessagingServiceSID: required"}},
		{"blank values", with(`"MG0000"`, `" "`), []string{"fromMessagingServiceSID: required"}},
		{"account SID with a dash", with(`"ACa1b2`, `"AC-a1b2`), []string{"accountSID", "letters and digits"}},
		{"account SID of another kind", with(`"ACa1b2`, `"SKa1b2`), []string{"accountSID", "must start with AC"}},
		{"auth token with blanks", with(`"f00dbabe`, `" f00dbabe`), []string{"authToken: must be letters and digits"}},
		{"phone number as messaging service", with(`"MG0000"`, `"+14155550100"`), []string{"fromMessagingServiceSID", "not a phone number"}},
		{"messaging service of another kind", with(`"MG0000"`, `"PN0000"`), []string{"fromMessagingServiceSID", "must start with MG"}},
		{"unknown key", with(`"templates"`, `"from": "+14155550100", "templates"`), []string{"from"}},
		{"key with other case", with(`"accountSID"`, `"accountSid"`), []string{"accountSid", `did you mean "accountSID"`}},
		{"disableRiskCheck as string", with(`"templates"`, `"disableRiskCheck": "true", "templates"`), []string{"disableRiskCheck"}},
		{"templates not a list", withTemplates(`{"Generic": "{{code}}"}`), []string{"templates"}},
		{"unknown usage type", withTemplates(`[{"usageType": "Generic", "content": "{{code}}"}, {"usageType": "Login", "content": "{{code}}"}]`),
			[]string{`templates[1].usageType "Login"`}},
		{"duplicate usage type", withTemplates(`[{"usageType": "Generic", "content": "{{code}}"}, {"usageType": "Generic", "content": "{{code}}"}]`),
			[]string{"templates[1].usageType: Generic already has templates[0]"}},
		{"duplicate logto-only usage type", withTemplates(`[{"usageType": "BindMfa", "content": "{{code}}"}, {"usageType": "BindMfa", "content": "{{code}}"}]`),
			[]string{"templates[1].usageType: BindMfa already has templates[0]"}},
		{"missing content", withTemplates(`[{"usageType": "SignIn"}, {"usageType": "MfaVerification", "content": ""}]`),
			[]string{"templates[0].content: required", "templates[1].content: required"}},
		{"unknown placeholder", withTemplates(`[{"usageType": "Generic", "content": "Code: {{cod}}"}]`),
			[]string{"templates[0].content", `unknown placeholder "{{cod}}"`}},
		{"unterminated placeholder", withTemplates(`[{"usageType": "Register", "content": "Code: {{code"}]`),
			[]string{"templates[0].content", "unterminated"}},
		{"no code placeholder", withTemplates(`[{"usageType": "Generic", "content": "Welcome to {{app_name}}"}]`),
			[]string{"templates[0].content: has no {{code}} placeholder"}},
		{"link in a code template", withTemplates(`[{"usageType": "SignIn", "content": "{{code}} or {{link}}"}]`),
			[]string{"templates[0].content", "{{link}} has a value only in an OrganizationInvitation message"}},
		{"duplicate invitation", withTemplates(`[{"usageType": "OrganizationInvitation", "content": "{{link}}"}, {"usageType": "OrganizationInvitation", "content": "{{code}}"}]`),
			[]string{"templates[1].usageType: OrganizationInvitation already has templates[0]"}},
		{"endpoint scheme", withEndpoint("ftp://api.example"), []string{"endpoint", "scheme"}},
		{"endpoint query", withEndpoint("https://proxy.example?x=1"), []string{"endpoint", "query"}},
		{"endpoint user info", withEndpoint("https://u:p@proxy.example"), []string{"endpoint", "user info"}},
		{"trailing data", designConfig + `{}`, []string{"after"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := twilio.ParseConfig([]byte(tc.raw))
			providertest.WantConfigError(t, err, tc.want, "f00dbabe")
		})
	}
}

func TestConfigNeverPrintsSecrets(t *testing.T) {
	t.Parallel()
	cfg, err := twilio.ParseConfig([]byte(logtoConfig))
	if err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("config", "cfg", cfg)
	encoded, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for name, out := range map[string]string{
		"%v":   fmt.Sprintf("%v", cfg),
		"%+v":  fmt.Sprintf("%+v", cfg),
		"%#v":  fmt.Sprintf("%#v", cfg),
		"slog": logged.String(),
		"json": string(encoded),
	} {
		if strings.Contains(out, testToken) {
			t.Errorf("%s output %s holds the auth token", name, out)
		}
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	if _, err := twilio.New(providerName, twilio.Config{}); err == nil ||
		!strings.Contains(err.Error(), "accountSID: required") || !strings.Contains(err.Error(), "authToken: required") {
		t.Errorf("New with an empty config = %v, want errors naming accountSID and authToken", err)
	}
	if _, err := twilio.New("", testConfig("")); err == nil {
		t.Error("New accepted an empty name")
	}
}

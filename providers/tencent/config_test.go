package tencent_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/otpd/otpd/otp"
	"github.com/otpd/otpd/providers/providertest"
	"github.com/otpd/otpd/providers/tencent"
)

// designConfig is the tencent block of DESIGN.md's example, as JSON.
const designConfig = `{"accessKeyId": "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE", "accessKeySecret": "Gu5t9xGARNpq86cd98joQYCN3EXAMPLEKEY",
	"signName": "Acme", "region": "ap-guangzhou", "sdkAppId": "1400000000",
	"templates": [{"usageType": "Generic", "templateCode": "1234567"}]}`

// logtoConfig is a Logto Tencent SMS connector config as its console saves
// it (the fields of the connector guide's table), with templates for all
// nine of Logto's usage types.
const logtoConfig = `{
  "accessKeyId": "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE",
  "accessKeySecret": "Gu5t9xGARNpq86cd98joQYCN3EXAMPLEKEY",
  "signName": "腾讯云",
  "region": "ap-guangzhou",
  "sdkAppId": "1400000000",
  "templates": [
    {"usageType": "Register", "templateCode": "1000001"},
    {"usageType": "SignIn", "templateCode": "1000002"},
    {"usageType": "ForgotPassword", "templateCode": "1000003"},
    {"usageType": "Generic", "templateCode": "1000004"},
    {"usageType": "OrganizationInvitation", "templateCode": "1000005"},
    {"usageType": "UserPermissionValidation", "templateCode": "1000006"},
    {"usageType": "BindNewIdentifier", "templateCode": "1000007"},
    {"usageType": "MfaVerification", "templateCode": "1000008"},
    {"usageType": "BindMfa", "templateCode": "1000009"}
  ]
}`

func TestParseLogtoConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, raw, describe string
	}{
		{"design example", designConfig,
			`accessKeyId AK******************************MPLE, signName "Acme", sdkAppId 1400000000, region ap-guangzhou, ` +
				`endpoint https://sms.tencentcloudapi.com, templates Generic=1234567`},
		{"logto, nine usage types", logtoConfig,
			`accessKeyId AK******************************MPLE, signName "腾讯云", sdkAppId 1400000000, region ap-guangzhou, ` +
				`endpoint https://sms.tencentcloudapi.com, templates Register=1000001 SignIn=1000002 ForgotPassword=1000003 ` +
				`UserPermissionValidation=1000006 BindNewIdentifier=1000007 MfaVerification=1000008 BindMfa=1000009 Generic=1000004 OrganizationInvitation=1000005`},
		{"endpoint", strings.Replace(designConfig, `"signName"`, `"endpoint": "http://127.0.0.1:9000", "signName"`, 1),
			`accessKeyId AK******************************MPLE, signName "Acme", sdkAppId 1400000000, region ap-guangzhou, ` +
				`endpoint http://127.0.0.1:9000, templates Generic=1234567`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := tencent.ParseConfig([]byte(tc.raw))
			if err != nil {
				t.Fatalf("ParseConfig: %v", err)
			}
			if string(cfg.AccessKeyID) != testKeyID || cfg.AccessKeySecret.Reveal() != testSecret ||
				cfg.Region != testRegion || cfg.SDKAppID != testAppID {
				t.Errorf("credentials or IDs lost: key %q, region %q, app %q", string(cfg.AccessKeyID), cfg.Region, cfg.SDKAppID)
			}
			p, err := tencent.New(providerName, cfg)
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
	// withTemplates is designConfig with its templates replaced.
	withTemplates := func(templates string) string {
		return strings.Replace(designConfig, `[{"usageType": "Generic", "templateCode": "1234567"}]`, templates, 1)
	}
	withEndpoint := func(endpoint string) string {
		return strings.Replace(designConfig, `"signName"`, `"endpoint": "`+endpoint+`", "signName"`, 1)
	}
	for _, tc := range []struct {
		name string
		raw  string
		want []string // substrings the error must hold, all of them
	}{
		{"empty object", `{}`, []string{"accessKeyId: required", "accessKeySecret: required", "signName: required",
			"region: required", "sdkAppId: required", "templates: need a templateCode"}},
		{"blank values", strings.NewReplacer(`"Acme"`, `" "`, `"ap-guangzhou"`, `""`).Replace(designConfig),
			[]string{"signName: required", "region: required"}},
		{"unknown key", strings.Replace(designConfig, `"region"`, `"secretKey": "x", "region"`, 1), []string{"secretKey"}},
		{"templates not a list", withTemplates(`{"Generic": "1234567"}`), []string{"templates"}},
		{"no templates", withTemplates(`[]`), []string{"templates: need a templateCode for Generic or another usage type"}},
		{"only the invitation", withTemplates(`[{"usageType": "OrganizationInvitation", "templateCode": "1"}]`),
			[]string{"templates: need a templateCode"}},
		{"unknown usage type", withTemplates(`[{"usageType": "Generic", "templateCode": "1"}, {"usageType": "Login", "templateCode": "2"}]`),
			[]string{`templates[1].usageType "Login"`}},
		{"duplicate usage type", withTemplates(`[{"usageType": "Generic", "templateCode": "1"}, {"usageType": "Generic", "templateCode": "2"}]`),
			[]string{"templates[1].usageType: Generic already has templates[0]"}},
		{"duplicate logto-only usage type", withTemplates(`[{"usageType": "Generic", "templateCode": "1"}, {"usageType": "OrganizationInvitation", "templateCode": "2"}, {"usageType": "OrganizationInvitation", "templateCode": "3"}]`),
			[]string{"templates[2].usageType: OrganizationInvitation already has templates[1]"}},
		{"missing templateCode", withTemplates(`[{"usageType": "Generic"}]`), []string{"templates[0].templateCode: required"}},
		{"text instead of template ID", withTemplates(`[{"usageType": "Generic", "templateCode": "Your code is {{code}}"}]`),
			[]string{"templates[0].templateCode", "approved template"}},
		{"tencent placeholder instead of ID", withTemplates(`[{"usageType": "SignIn", "templateCode": "{1}"}]`),
			[]string{"templates[0].templateCode"}},
		{"endpoint scheme", withEndpoint("ftp://sms.example"), []string{"endpoint", "scheme"}},
		{"endpoint path", withEndpoint("https://proxy.example/tencent"), []string{"endpoint", "path"}},
		{"endpoint query", withEndpoint("https://proxy.example?x=1"), []string{"endpoint", "query"}},
		{"endpoint user info", withEndpoint("https://u:p@proxy.example"), []string{"endpoint", "user info"}},
		{"trailing data", designConfig + `{}`, []string{"after"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := tencent.ParseConfig([]byte(tc.raw))
			providertest.WantConfigError(t, err, tc.want, testSecret)
		})
	}
}

func TestConfigNeverPrintsSecrets(t *testing.T) {
	t.Parallel()
	cfg, err := tencent.ParseConfig([]byte(designConfig))
	if err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("config", "cfg", cfg, "key", cfg.AccessKeyID)
	encoded, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for name, out := range map[string]string{
		"%v":   fmt.Sprintf("%v", cfg),
		"%+v":  fmt.Sprintf("%+v", cfg),
		"%#v":  fmt.Sprintf("%#v", cfg),
		"%s":   fmt.Sprintf("%s", cfg.AccessKeyID), //nolint:staticcheck // S1025: the %s verb itself is under test, not String()
		"slog": logged.String(),
		"json": string(encoded),
	} {
		for _, secret := range []string{testSecret, testKeyID} {
			if strings.Contains(out, secret) {
				t.Errorf("%s output %s holds %q", name, out, secret)
			}
		}
		if !strings.Contains(out, "AK******************************MPLE") {
			t.Errorf("%s output %s does not show the masked key ID", name, out)
		}
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	if _, err := tencent.New(providerName, tencent.Config{}); err == nil ||
		!strings.Contains(err.Error(), "accessKeyId: required") || !strings.Contains(err.Error(), "templates") {
		t.Errorf("New with an empty config = %v, want errors naming accessKeyId and templates", err)
	}
	if _, err := tencent.New("", testConfig("", tpl("Generic", "1"))); err == nil {
		t.Error("New accepted an empty name")
	}
}

package aliyundm_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/otpd/otpd/internal/redact"
	"github.com/otpd/otpd/otp"
	"github.com/otpd/otpd/providers/aliyundm"
	"github.com/otpd/otpd/providers/providertest"
)

// designExample is the aliyun provider's config of DESIGN.md's example, as
// JSON, before ${...} expansion.
const designExample = `{"accessKeyId": "${ALIYUN_AK}", "accessKeySecret": "${ALIYUN_SK}", "accountName": "no-reply@dm.example.com",
  "templates": [{"usageType": "Generic", "subject": "Your code", "content": "<p>{{code}}</p>"}]}`

// logtoPaste is a config as Logto's Aliyun Direct Mail connector holds it
// (the fields of its guide), with a template for each of Logto's nine usage
// types; OrganizationInvitation uses Logto's {{link}}, which otpd has not.
const logtoPaste = `{
  "accessKeyId": "LTAI5tTestAccessKeyId001",
  "accessKeySecret": "test-secret-Zk3v9QpL2x",
  "accountName": "no-reply@dm.example.com",
  "fromAlias": "Acme",
  "templates": [
    {"usageType": "SignIn", "subject": "Acme sign-in code", "content": "<p>Your sign-in code is {{code}}.</p>"},
    {"usageType": "Register", "subject": "Welcome to Acme", "content": "<p>Your registration code is {{code}}.</p>"},
    {"usageType": "ForgotPassword", "subject": "Reset your Acme password", "content": "<p>Your reset code is {{code}}.</p>"},
    {"usageType": "Generic", "subject": "Your Acme code", "content": "<p>Your code is {{code}}.</p>"},
    {"usageType": "OrganizationInvitation", "subject": "Join Acme", "content": "<p><a href=\"{{link}}\">Join</a></p>"},
    {"usageType": "UserPermissionValidation", "subject": "Confirm", "content": "<p>{{code}}</p>"},
    {"usageType": "BindNewIdentifier", "subject": "Bind", "content": "<p>{{code}}</p>"},
    {"usageType": "MfaVerification", "subject": "MFA", "content": "<p>{{code}}</p>"},
    {"usageType": "BindMfa", "subject": "Bind MFA", "content": "<p>{{code}}</p>"}
  ]
}`

// TestParseConfigPasted checks that configs pasted from DESIGN.md and from
// Logto load, and that only otpd's usage types are served from them.
func TestParseConfigPasted(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, raw, describe string
	}{
		{"DESIGN.md example", designExample,
			`accessKeyId ${******_AK}, accountName no-reply@dm.example.com, fromAlias none, region cn-hangzhou, endpoint https://dm.aliyuncs.com, templates Generic`},
		{"Logto connector", logtoPaste,
			`accessKeyId LT******************d001, accountName no-reply@dm.example.com, fromAlias "Acme", region cn-hangzhou, endpoint https://dm.aliyuncs.com, templates Register SignIn ForgotPassword UserPermissionValidation BindNewIdentifier MfaVerification BindMfa Generic OrganizationInvitation`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := aliyundm.ParseConfig([]byte(tc.raw))
			if err != nil {
				t.Fatalf("ParseConfig: %v", err)
			}
			p, err := aliyundm.New(provider, cfg)
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

// TestParseConfigErrors checks that bad configs are refused with errors
// naming the key, all problems at once.
func TestParseConfigErrors(t *testing.T) {
	t.Parallel()
	// base returns a valid config with extra appended inside the object.
	base := func(extra string) string {
		return `{"accessKeyId": "` + keyID + `", "accessKeySecret": "` + keySecret + `", "accountName": "` + accountName + `"` + extra + `}`
	}
	tpl := func(tpls ...string) string { return `, "templates": [` + strings.Join(tpls, ", ") + `]` }
	for _, tc := range []struct {
		name string
		raw  string
		want []string
	}{
		{"everything missing", `{}`, []string{"accessKeyId: required", "accessKeySecret: required", "accountName: required"}},
		{"unknown key", base(`, "region": "cn-hangzhou"`), []string{`unknown field "region"`}},
		{"sender with a name", base(`, "accountName": "Acme <no-reply@dm.example.com>"`), []string{"accountName:", "fromAlias"}},
		{"sender not an address", base(`, "accountName": "no-reply"`), []string{"accountName:"}},
		{"alias with a line break", base(`, "fromAlias": "Acme\r\nBcc: x@example.com"`), []string{"fromAlias:"}},
		{"unknown region", base(`, "regionId": "cn-shanghai"`), []string{`regionId "cn-shanghai"`, "ap-southeast-1"}},
		{"endpoint not http", base(`, "endpoint": "ftp://dm.example.com"`), []string{"endpoint", "scheme"}},
		{"endpoint with a path", base(`, "endpoint": "https://proxy.example.com/dm"`), []string{"endpoint", "path"}},
		{"endpoint with a query", base(`, "endpoint": "https://proxy.example.com?a=b"`), []string{"endpoint", "query"}},
		{"unknown usage type", base(tpl(`{"usageType": "Login", "subject": "s", "content": "{{code}}"}`)), []string{"templates[0].usageType", "Login"}},
		{"duplicate usage type", base(tpl(`{"usageType": "Generic", "subject": "a", "content": "{{code}}"}`,
			`{"usageType": "Generic", "subject": "b", "content": "{{code}}"}`)), []string{"templates[1].usageType: Generic already has templates[0]"}},
		{"duplicate Logto-only usage type", base(tpl(`{"usageType": "BindMfa", "subject": "a", "content": "b"}`,
			`{"usageType": "BindMfa", "subject": "a", "content": "b"}`)), []string{"templates[1].usageType: BindMfa already has templates[0]"}},
		{"unknown placeholder", base(tpl(`{"usageType": "SignIn", "subject": "s", "content": "<a href='{{lnk}}'>{{code}}</a>"}`)),
			[]string{"templates[0].content:1:10", "{{lnk}}"}},
		{"link in a code template", base(tpl(`{"usageType": "SignIn", "subject": "s", "content": "<a href='{{link}}'>{{code}}</a>"}`)),
			[]string{"templates[0].content", "{{link}} has a value only in an OrganizationInvitation message"}},
		{"unterminated placeholder", base(tpl(`{"usageType": "SignIn", "subject": "Code {{code", "content": "{{code}}"}`)),
			[]string{"templates[0].subject:1:6", "unterminated"}},
		{"no subject", base(tpl(`{"usageType": "SignIn", "content": "{{code}}"}`)), []string{"templates[0].subject: required"}},
		{"no content", base(tpl(`{"usageType": "SignIn", "subject": "{{code}}"}`)), []string{"templates[0].content: required"}},
		{"no code", base(tpl(`{"usageType": "SignIn", "subject": "Hi", "content": "<p>{{app_name}}</p>"}`)),
			[]string{"templates[0]: neither subject nor content holds {{code}}"}},
		{"several problems", base(`, "regionId": "mars-1"` + tpl(`{"usageType": "SignIn", "subject": "", "content": ""}`)),
			[]string{"regionId", "templates[0].subject: required", "templates[0].content: required"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := aliyundm.ParseConfig([]byte(tc.raw))
			if err == nil {
				t.Fatal("ParseConfig accepted it")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			providertest.NoLeak(t, err.Error(), keySecret)
			if _, err := aliyundm.New(provider, aliyundm.Config{}); err == nil {
				t.Error("New accepted an empty config")
			}
		})
	}
}

// TestNewRejectsEmptyName checks that a provider needs a name.
func TestNewRejectsEmptyName(t *testing.T) {
	t.Parallel()
	if _, err := aliyundm.New("", baseConfig()); err == nil {
		t.Error("New accepted an empty name")
	}
}

// TestSecretsNeverPrint checks that the config, Describe and Preview hold
// neither the secret nor the whole access key ID.
func TestSecretsNeverPrint(t *testing.T) {
	t.Parallel()
	cfg, err := aliyundm.ParseConfig([]byte(logtoPaste))
	if err != nil {
		t.Fatal(err)
	}
	p := newProvider(t, nil, cfg)
	preview, err := p.Preview(sampleMail(otp.SignIn))
	if err != nil {
		t.Fatal(err)
	}
	js, _ := json.Marshal(cfg)
	for _, out := range []string{fmt.Sprintf("%v %+v %#v %s", cfg, cfg, cfg, cfg.AccessKeyID), string(js), p.Describe(), preview} {
		providertest.NoLeak(t, out, keySecret, keyID)
	}
	if !strings.Contains(p.Describe(), redact.Partial(keyID)) {
		t.Errorf("Describe() = %q lacks the masked key ID %q", p.Describe(), redact.Partial(keyID))
	}
}

// TestDescribeAndPreview checks the one-line summaries otpd -check prints,
// per region and endpoint: the API host Send calls, and what goes out.
func TestDescribeAndPreview(t *testing.T) {
	t.Parallel()
	generic := []aliyundm.Template{{UsageType: "Generic", Subject: "Your {{app_name}} code is {{code}}", Content: "<p>{{code}}</p>"}}
	textOnly := sampleMail(otp.SignIn)
	textOnly.Content.HTML = ""
	for _, tc := range []struct {
		name              string
		cfg               func(*aliyundm.Config)
		msg               otp.Message
		describe, preview string
	}{
		{
			name: "default region, own template",
			cfg:  func(c *aliyundm.Config) { c.FromAlias, c.Templates = "Acme", generic },
			msg:  sampleMail(otp.SignIn),
			describe: `accessKeyId LT******************d001, accountName no-reply@dm.example.com, fromAlias "Acme", ` +
				`region cn-hangzhou, endpoint https://dm.aliyuncs.com, templates Generic`,
			preview: `email from no-reply@dm.example.com ("Acme") subject "Your Acme code is 482915" html 13 bytes "482915" (template Generic), ` +
				`region cn-hangzhou via dm.aliyuncs.com`,
		},
		{
			name: "invitation template with a code ignored",
			cfg: func(c *aliyundm.Config) {
				c.Templates = append(slices.Clone(generic), aliyundm.Template{UsageType: "OrganizationInvitation", Subject: "Join", Content: "Your invitation code is {{code}}"})
			},
			msg: providertest.Invitation(otp.Email, recipient),
			describe: `accessKeyId LT******************d001, accountName no-reply@dm.example.com, fromAlias none, ` +
				`region cn-hangzhou, endpoint https://dm.aliyuncs.com, templates Generic; ignored (cannot carry the link): OrganizationInvitation`,
			preview: `email from no-reply@dm.example.com subject "Join Acme" html 98 bytes "Join Acme" (otpd templates), region cn-hangzhou via dm.aliyuncs.com`,
		},
		{
			name: "Singapore, otpd's templates",
			cfg:  func(c *aliyundm.Config) { c.RegionID = "ap-southeast-1" },
			msg:  sampleMail(otp.Register),
			describe: `accessKeyId LT******************d001, accountName no-reply@dm.example.com, fromAlias none, ` +
				`region ap-southeast-1, endpoint https://dm.ap-southeast-1.aliyuncs.com, templates none (otpd's own for all)`,
			preview: `email from no-reply@dm.example.com subject "Your Acme code: 482915" html 39 bytes "Your Acme code is 482915." (otpd templates), ` +
				`region ap-southeast-1 via dm.ap-southeast-1.aliyuncs.com`,
		},
		{
			name:     "Sydney, text only",
			cfg:      func(c *aliyundm.Config) { c.RegionID = "ap-southeast-2" },
			msg:      textOnly,
			describe: "region ap-southeast-2, endpoint https://dm.ap-southeast-2.aliyuncs.com,",
			preview:  `subject "Your Acme code: 482915" text "Your Acme code is 482915." (otpd templates), region ap-southeast-2 via dm.ap-southeast-2.aliyuncs.com`,
		},
		{
			name:     "Frankfurt",
			cfg:      func(c *aliyundm.Config) { c.RegionID = "eu-central-1" },
			msg:      sampleMail(otp.SignIn),
			describe: "region eu-central-1, endpoint https://dm.eu-central-1.aliyuncs.com,",
			preview:  "region eu-central-1 via dm.eu-central-1.aliyuncs.com",
		},
		{
			name:     "Virginia",
			cfg:      func(c *aliyundm.Config) { c.RegionID = "us-east-1" },
			msg:      sampleMail(otp.SignIn),
			describe: "region us-east-1, endpoint https://dm.us-east-1.aliyuncs.com,",
			preview:  "region us-east-1 via dm.us-east-1.aliyuncs.com",
		},
		{
			name:     "http endpoint of a test double",
			cfg:      func(c *aliyundm.Config) { c.RegionID, c.Endpoint = "us-east-1", "http://127.0.0.1:8080" },
			msg:      sampleMail(otp.SignIn),
			describe: "region us-east-1, endpoint http://127.0.0.1:8080,",
			preview:  "region us-east-1 via http://127.0.0.1:8080",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := baseConfig()
			tc.cfg(&cfg)
			p := newProvider(t, nil, cfg)
			if got := p.Describe(); !strings.Contains(got, tc.describe) {
				t.Errorf("Describe() =\n%s\nwant it to hold\n%s", got, tc.describe)
			}
			got, err := p.Preview(tc.msg)
			if err != nil {
				t.Fatalf("Preview: %v", err)
			}
			if !strings.Contains(got, tc.preview) || strings.Contains(got, "\n") {
				t.Errorf("Preview() =\n%s\nwant one line holding\n%s", got, tc.preview)
			}
		})
	}
}

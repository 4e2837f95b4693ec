package app_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/otpd/otpd/internal/app"
	"github.com/otpd/otpd/internal/config/configtest"
	"github.com/otpd/otpd/otp"
)

// autofillYAML is the minimal configuration with both SMS autofill keys.
const autofillYAML = configtest.MinimalYAML + `templates:
  webotp_domain: example.com
  android_app_hash: FA+9qCX9VSu
`

// smsSection returns the lines of Check's "sms" section.
func smsSection(out string) []string {
	_, rest, ok := strings.Cut(out, "\nsms (")
	if !ok {
		return nil
	}
	sec, _, _ := strings.Cut(rest, "\n\n")
	return strings.Split(sec, "\n")[1:]
}

// TestCheckSMSDefaults: with both autofill keys, -check measures every
// embedded SMS template (3 locales × every usage type) and passes: each is
// one segment, GSM-7 but for zh-CN's UCS-2.
func TestCheckSMSDefaults(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := app.Check(parseForCheck(t, autofillYAML, configtest.KeyEnv()), &out); err != nil {
		t.Fatalf("Check: %v\n%s", err, out.String())
	}
	s := out.String()
	if want := "\nsms (sample code 123456; autofill: android app hash FA+9qCX9VSu, WebOTP line @example.com):\n"; !strings.Contains(s, want) {
		t.Errorf("output lacks %q:\n%s", want, s)
	}
	lines := smsSection(s)
	if want := 3 * len(otp.UsageTypes); len(lines) != want {
		t.Fatalf("%d SMS lines, want %d:\n%s", len(lines), want, s)
	}
	for _, line := range lines {
		enc := "GSM-7"
		if strings.HasPrefix(line, "  zh-CN/") {
			enc = "UCS-2"
		}
		if !strings.Contains(line, " "+enc+" ") || !strings.Contains(line, " 1 segment ") ||
			!strings.Contains(line, "default/sms/") || strings.Contains(line, "REFUSED") {
			t.Errorf("SMS line %q: want %s, one segment, its file, not refused", line, enc)
		}
	}
	if l := lineStarting(s, "  zh-CN/ForgotPassword "); !strings.Contains(l, "UCS-2  68 units   136 bytes  1 segment   default/sms/zh-CN/ForgotPassword.txt") {
		t.Errorf("zh-CN ForgotPassword line %q", l)
	}
	if l := lineStarting(s, "  en/SignIn "); !strings.Contains(l, "GSM-7 118 septets 104 bytes  1 segment   default/sms/en/SignIn.txt") {
		t.Errorf("en SignIn line %q", l)
	}
	// The console's preview shows the text on the wire, autofill included.
	if l := lineStarting(providerSections(s)[0], "  SignIn:"); !strings.HasSuffix(l, `FA+9qCX9VSu @example.com #123456"`) {
		t.Errorf("console SignIn preview %q lacks the autofill lines", l)
	}
	if strings.Contains(s, "warning:") {
		t.Errorf("unexpected warning:\n%s", s)
	}
}

// TestCheckSMSRefuses: -check fails, naming the template file or the
// provider's template, when a rendered SMS breaks an autofill format, and
// passes the same templates without autofill.
func TestCheckSMSRefuses(t *testing.T) {
	t.Parallel()
	twilio := `  - name: twilio
    type: twilio
    config: {accountSID: "AC00000000000000000000000000000000", authToken: "0123456789abcdef0123456789abcdef",
             fromMessagingServiceSID: "MG00000000000000000000000000000000",
             templates: [{usageType: Generic, content: "Your Acme code is {{code}}."},
                         {usageType: SignIn, content: "@acme: sign in with {{code}}"}]}
`
	long := strings.Repeat("请", 60) + "{{code}}" // with the hash: 60+6+2+11 = 79 units
	for _, tc := range []struct {
		name     string
		keys     string            // the templates block's autofill keys
		files    map[string]string // templates.dir
		extra    string            // more YAML
		wantErrs []string          // "" entries: none
		wantLine string            // a line of the sms section that must say REFUSED
	}{
		{
			name:  "over 140 bytes in UCS-2 with the app hash",
			keys:  "android_app_hash: FA+9qCX9VSu",
			files: map[string]string{"sms/zh-CN/SignIn.txt": long},
			wantErrs: []string{"sms template DIR/sms/zh-CN/SignIn.txt, rendered with code 123456 and the lines of templates.android_app_hash: " +
				"the message is 158 bytes in UCS-2 (2 segments): Android's SMS Retriever reads messages of at most 140 bytes"},
			wantLine: "  zh-CN/SignIn ",
		},
		{
			name:     "a line starting with @",
			keys:     "webotp_domain: example.com",
			files:    map[string]string{"sms/en/Generic.txt": "@{{app_name}}: {{code}}"},
			wantErrs: []string{`sms template DIR/sms/en/Generic.txt, rendered with code 123456 and the lines of templates.webotp_domain: line 1 starts with "@" too`},
			wantLine: "  en/Generic ",
		},
		{
			name:     "a provider's own template",
			keys:     "webotp_domain: example.com",
			extra:    twilio,
			wantErrs: []string{`provider twilio, sms template SignIn, rendered with code 123456 and the lines of templates.webotp_domain: line 1 starts with "@" too`},
			wantLine: "  twilio/SignIn ",
		},
		{
			name:     "code length counts",
			keys:     "android_app_hash: FA+9qCX9VSu\n  webotp_domain: example.com\ncode: {length: 10}",
			wantErrs: []string{"sms template default/sms/zh-CN/ForgotPassword.txt, rendered with code 1234567890 and the lines of templates.android_app_hash, templates.webotp_domain: the message is 152 bytes in UCS-2 (2 segments)"},
			wantLine: "  zh-CN/ForgotPassword ",
		},
		{
			name:  "no autofill, no refusal",
			files: map[string]string{"sms/zh-CN/SignIn.txt": long, "sms/en/Generic.txt": "@{{app_name}}: {{code}}"},
			extra: twilio,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			yaml := configtest.MinimalYAML + tc.extra + "templates:\n"
			if tc.keys != "" {
				yaml += "  " + tc.keys + "\n"
			}
			dir := ""
			if tc.files != nil {
				dir = t.TempDir()
				for p, content := range tc.files {
					full := filepath.Join(dir, filepath.FromSlash(p))
					if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				yaml = strings.Replace(yaml, "templates:\n", "templates:\n  dir: "+dir+"\n", 1)
			}
			c := parseForCheck(t, yaml, configtest.KeyEnv())
			var out bytes.Buffer
			err := app.Check(c, &out)
			s := out.String()
			if len(tc.wantErrs) == 0 {
				if err != nil {
					t.Fatalf("Check: %v\n%s", err, s)
				}
				if strings.Contains(s, "REFUSED") {
					t.Errorf("a line is refused:\n%s", s)
				}
				return
			}
			if err == nil {
				t.Fatalf("Check passed:\n%s", s)
			}
			for _, want := range tc.wantErrs {
				want = strings.ReplaceAll(want, "DIR/", dir+string(filepath.Separator))
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error:\n%v\nwant it to say:\n%s", err, want)
				}
			}
			if l := lineStarting(s, tc.wantLine); !strings.Contains(l, "REFUSED: ") {
				t.Errorf("sms line %q (%q) does not say REFUSED:\n%s", l, tc.wantLine, s)
			}
			var js bytes.Buffer
			if jerr := app.CheckJSON(c, &js); jerr == nil || jerr.Error() != err.Error() {
				t.Errorf("CheckJSON: %v, want Check's error", jerr)
			}
		})
	}
}

// TestCheckSMSWarnsNoText: an SMS provider that sends a template ID
// (tencent) or the code alone (http) cannot carry autofill lines: -check
// warns, and does not fail.
func TestCheckSMSWarnsNoText(t *testing.T) {
	t.Parallel()
	providers := `  - name: tencent
    type: tencent
    match: ["+86"]
    config: {accessKeyId: "AKIDexample", accessKeySecret: "secret-example", signName: "Acme", region: "ap-guangzhou",
             sdkAppId: "1400000000", templates: [{usageType: Generic, templateCode: "1234567"}]}
`
	for _, tc := range []struct {
		name, keys string
		wantWarn   bool
	}{
		{"autofill", "templates: {webotp_domain: example.com}\n", true},
		{"no autofill", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := parseForCheck(t, configtest.MinimalYAML+providers+tc.keys, configtest.KeyEnv())
			var out bytes.Buffer
			if err := app.Check(c, &out); err != nil {
				t.Fatalf("Check: %v\n%s", err, out.String())
			}
			warn := lineStarting(out.String(), "warning: provider tencent sends SMS as a template ID")
			if (warn != "") != tc.wantWarn {
				t.Errorf("warning %q, want one: %v\n%s", warn, tc.wantWarn, out.String())
			}
			if tc.wantWarn && !strings.Contains(warn, "cannot append the SMS autofill lines (templates.webotp_domain)") {
				t.Errorf("warning %q does not say what it cannot do", warn)
			}
			var js bytes.Buffer
			if err := app.CheckJSON(c, &js); err != nil {
				t.Fatal(err)
			}
			var r checkJSONReport
			if err := json.Unmarshal(js.Bytes(), &r); err != nil {
				t.Fatal(err)
			}
			if (len(r.Warnings) == 1) != tc.wantWarn {
				t.Errorf("JSON warnings %q, want one: %v", r.Warnings, tc.wantWarn)
			}
		})
	}
}

// TestCheckJSONSMS: -check -json carries the same measures.
func TestCheckJSONSMS(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := app.CheckJSON(parseForCheck(t, autofillYAML, configtest.KeyEnv()), &out); err != nil {
		t.Fatal(err)
	}
	var r checkJSONReport
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatal(err)
	}
	if r.SampleCode != "123456" || r.Autofill != "android app hash FA+9qCX9VSu, WebOTP line @example.com" {
		t.Errorf("sample_code %q, autofill %q", r.SampleCode, r.Autofill)
	}
	if len(r.SMS) != 3*len(otp.UsageTypes) {
		t.Fatalf("%d sms entries, want %d", len(r.SMS), 3*len(otp.UsageTypes))
	}
	for _, m := range r.SMS {
		if m.Template == "" || m.Locale == "" || m.Segments != 1 || m.Bytes > 140 || m.Refused != "" ||
			(m.Locale == "zh-CN") != (m.Encoding == "UCS-2") {
			t.Errorf("sms entry %+v", m)
		}
		if m.Encoding == "GSM-7" && m.Bytes != (m.Units*7+7)/8 || m.Encoding == "UCS-2" && m.Bytes != 2*m.Units {
			t.Errorf("sms entry %+v: bytes do not follow from units", m)
		}
	}
	if got, ok := jsonPath(r.Config, "templates.webotp_domain"); !ok || got != "example.com" {
		t.Errorf("config templates.webotp_domain = %v", got)
	}
}

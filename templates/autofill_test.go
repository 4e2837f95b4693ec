package templates

import (
	"strings"
	"testing"
	"time"

	"github.com/otpd/otpd/otp"
)

// Google's example app hash, from the SMS Retriever documentation.
const testHash = "FA+9qCX9VSu"

// TestRenderAutofillEveryEmbedded renders every embedded SMS template, in
// every locale and for every usage type (the Logto ones through Generic),
// with each autofill key alone and both together, as the defaults are
// configured (application name "otpd", 6-digit codes, 10 minutes): the
// WebOTP line must be the last, exactly, with the message's code; the app
// hash on its own line before it; the text before them what Render gives
// without autofill; and, with the hash, the message must fit the 140 bytes
// the SMS Retriever reads.
func TestRenderAutofillEveryEmbedded(t *testing.T) {
	t.Parallel()
	plain := newRenderer(t, Options{})
	for _, tc := range []struct {
		name      string
		opts      Options
		wantLines func(code string) string
	}{
		{"both", Options{WebOTPDomain: "example.com", AndroidAppHash: testHash},
			func(code string) string { return testHash + "\n@example.com #" + code }},
		{"webotp only", Options{WebOTPDomain: "example.com"},
			func(code string) string { return "@example.com #" + code }},
		{"app hash only", Options{AndroidAppHash: testHash},
			func(string) string { return testHash }},
		{"international domain", Options{WebOTPDomain: "bücher.example"},
			func(code string) string { return "@xn--bcher-kva.example #" + code }},
	} {
		r := newRenderer(t, tc.opts)
		if got := r.Locales(); strings.Join(got, ",") != "en,fr,zh-CN" {
			t.Fatalf("Locales() = %v", got)
		}
		for _, loc := range r.Locales() {
			for i, u := range otp.UsageTypes {
				code := []string{"482913", "000000", "999999", "100001"}[i%4]
				t.Run(tc.name+"/"+loc+"/"+string(u), func(t *testing.T) {
					t.Parallel()
					d := Data{Code: code, TTL: 10 * time.Minute}
					c, err := r.Render(otp.SMS, loc, u, d)
					if err != nil {
						t.Fatalf("Render: %v", err)
					}
					base, err := plain.Render(otp.SMS, loc, u, d)
					if err != nil {
						t.Fatalf("Render without autofill: %v", err)
					}
					lines := tc.wantLines(code)
					if c.Autofill != lines {
						t.Errorf("Content.Autofill = %q, want %q", c.Autofill, lines)
					}
					if want := base.Text + "\n\n" + lines; c.Text != want {
						t.Errorf("text:\n%s\nwant:\n%s", c.Text, want)
					}
					all := strings.Split(c.Text, "\n")
					last := all[len(all)-1]
					if tc.opts.WebOTPDomain != "" {
						if want := "@" + r.Autofill().WebOTPDomain + " #" + code; last != want {
							t.Errorf("last line %q, want %q", last, want)
						}
						for _, l := range all[:len(all)-1] {
							if strings.HasPrefix(l, "@") {
								t.Errorf("another line starts with @: %q", l)
							}
						}
					}
					if tc.opts.AndroidAppHash != "" {
						hashLine := all[len(all)-1]
						if tc.opts.WebOTPDomain != "" {
							hashLine = all[len(all)-2]
						}
						if hashLine != testHash {
							t.Errorf("hash line %q, want %q", hashLine, testHash)
						}
						s := MeasureSMS(c.Text)
						if s.Bytes > 140 || s.Segments != 1 {
							t.Errorf("with the app hash the SMS is %+v, want at most 140 bytes in one segment:\n%s", s, c.Text)
						}
						wantEnc := GSM7
						if loc == "zh-CN" {
							wantEnc = UCS2
						}
						if s.Encoding != wantEnc {
							t.Errorf("encoding %s, want %s", s.Encoding, wantEnc)
						}
					}
					if err := r.Autofill().Check(c.Text, code); err != nil {
						t.Errorf("Check: %v\n%s", err, c.Text)
					}
				})
			}
		}
	}
}

// TestAutofillOnlySMSCodes: email and invitations (no code) get no
// autofill lines.
func TestAutofillOnlySMSCodes(t *testing.T) {
	t.Parallel()
	opts := Options{Dir: writeFiles(t, invitationFiles), WebOTPDomain: "example.com", AndroidAppHash: testHash}
	r := newRenderer(t, opts)
	c, err := r.Render(otp.Email, "en", otp.SignIn, Data{Code: "123456", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if c.Autofill != "" || strings.Contains(c.Text, "#123456") || strings.Contains(c.HTML, testHash) {
		t.Errorf("email got autofill: %+v", c)
	}
	c, err = r.Render(otp.SMS, "fr", otp.OrganizationInvitation, Data{Link: "https://auth.example.com/i?t=1"})
	if err != nil {
		t.Fatal(err)
	}
	if want := (otp.Content{Text: "otpd : https://auth.example.com/i?t=1"}); c != want {
		t.Errorf("invitation SMS = %+v, want %+v", c, want)
	}
}

func TestAppendAutofill(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ text, lines, want string }{
		{"Your code is 1234.", "", "Your code is 1234."},
		{"Your code is 1234.\n", "", "Your code is 1234.\n"},
		{"Your code is 1234.", "@a.example #1234", "Your code is 1234.\n\n@a.example #1234"},
		{"Your code is 1234. \r\n\n", "H\n@a.example #1234", "Your code is 1234.\n\nH\n@a.example #1234"},
	} {
		if got := AppendAutofill(tc.text, tc.lines); got != tc.want {
			t.Errorf("AppendAutofill(%q, %q) = %q, want %q", tc.text, tc.lines, got, tc.want)
		}
	}
}

func TestAutofillCheck(t *testing.T) {
	t.Parallel()
	both := Autofill{WebOTPDomain: "example.com", AppHash: testHash}
	web := Autofill{WebOTPDomain: "example.com"}
	hash := Autofill{AppHash: testHash}
	const code = "123456"
	for _, tc := range []struct {
		name    string
		a       Autofill
		text    string
		wantErr string // "" for none
	}{
		{"good", both, "Acme: 123456 is your code.\n\n" + testHash + "\n@example.com #123456", ""},
		{"zero autofill checks nothing", Autofill{}, "@evil.example #1", ""},
		{"no WebOTP line", web, "Acme: 123456 is your code.", `the last line is "Acme: 123456 is your code.", not the WebOTP line "@example.com #123456"`},
		{"wrong code", web, "Acme: 123456.\n\n@example.com #654321", `not the WebOTP line "@example.com #123456"`},
		{"WebOTP line not last", web, "@example.com #123456\nAcme: 123456.", "the last line is"},
		{"trailing blank", web, "Acme.\n\n@example.com #123456 ", "the last line is"},
		{"template line starting with @", web, "@acme: 123456 is your code.\n\n@example.com #123456",
			`line 1 starts with "@" too`},
		{"indented @ line", web, "Acme\n  @support\n\n@example.com #123456", `line 2 starts with "@" too`},
		{"origin-bound code inside a line", web, "Acme: use @other.example #999 now.\n\n@example.com #123456",
			"line 1 holds an origin-bound code too"},
		{"an address is no origin-bound code", web, "Write to help@acme.example #1 team.\n\n@example.com #123456", ""},
		{"hash missing", hash, "Acme: 123456.", "the app hash " + testHash + " is missing"},
		{"160 septets fit", hash, strings.Repeat("a", 160-12) + "\n" + testHash, ""},
		{"161 septets do not", hash, strings.Repeat("a", 161-12) + "\n" + testHash,
			"the message is 141 bytes in GSM-7 (2 segments): Android's SMS Retriever reads messages of at most 140 bytes"},
		{"euro counts two", hash, strings.Repeat("a", 160-13) + "€" + "\n" + testHash, "141 bytes in GSM-7"},
		{"70 UCS-2 units fit", hash, strings.Repeat("中", 70-12) + "\n" + testHash, ""},
		{"71 do not", hash, strings.Repeat("中", 71-12) + "\n" + testHash, "142 bytes in UCS-2 (2 segments)"},
		{"WebOTP alone has no size limit", web, strings.Repeat("中", 200) + "\n\n@example.com #123456", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.a.Check(tc.text, code)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("Check: %v", err)
			case tc.wantErr != "" && err == nil:
				t.Errorf("Check passed, want an error with %q", tc.wantErr)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Errorf("Check: %v\nwant it to say %q", err, tc.wantErr)
			}
		})
	}
}

func TestOptionsValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		opts       Options
		wantErr    string // "" for none
		wantDomain string
	}{
		{"unset", Options{}, "", ""},
		{"domain", Options{WebOTPDomain: "example.com"}, "", "example.com"},
		{"upper case", Options{WebOTPDomain: "Login.Example.COM"}, "", "login.example.com"},
		{"IDN", Options{WebOTPDomain: "bücher.example"}, "", "xn--bcher-kva.example"},
		{"single label", Options{WebOTPDomain: "localhost"}, "", "localhost"},
		{"URL", Options{WebOTPDomain: "https://example.com"}, "webotp_domain: \"https://example.com\" is a URL", ""},
		{"port", Options{WebOTPDomain: "example.com:8443"}, "webotp_domain: \"example.com:8443\" is not a host name", ""},
		{"path", Options{WebOTPDomain: "example.com/login"}, "webotp_domain:", ""},
		{"trailing dot", Options{WebOTPDomain: "example.com."}, "webotp_domain: \"example.com.\" ends with a dot", ""},
		{"IP address", Options{WebOTPDomain: "192.0.2.1"}, "is an IP address", ""},
		{"leading hyphen", Options{WebOTPDomain: "-acme.example"}, "webotp_domain:", ""},
		{"underscore", Options{WebOTPDomain: "my_site.example"}, "webotp_domain:", ""},
		{"empty label", Options{WebOTPDomain: "a..example"}, "webotp_domain:", ""},
		{"hash", Options{AndroidAppHash: testHash}, "", ""},
		{"hash of 10", Options{AndroidAppHash: "FA+9qCX9VS"}, `android_app_hash: "FA+9qCX9VS" is not an SMS Retriever app hash`, ""},
		{"hash of 12", Options{AndroidAppHash: "FA+9qCX9VSuu"}, "android_app_hash:", ""},
		{"hash with padding", Options{AndroidAppHash: "FA+9qCX9VS="}, "android_app_hash:", ""},
		{"URL-safe base64 is not it", Options{AndroidAppHash: "FA-9qCX9VSu"}, "android_app_hash:", ""},
		{"both bad", Options{WebOTPDomain: "x y", AndroidAppHash: "short"}, "webotp_domain:", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.opts.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				if got := tc.opts.Autofill().WebOTPDomain; got != tc.wantDomain {
					t.Errorf("WebOTPDomain %q, want %q", got, tc.wantDomain)
				}
				if _, err := New(tc.opts); err != nil {
					t.Errorf("New: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Validate: %v, want an error with %q", err, tc.wantErr)
			}
			if _, err := New(tc.opts); err == nil || !strings.HasPrefix(err.Error(), "templates: ") {
				t.Errorf("New: %v, want the validation error", err)
			}
		})
	}
	err := Options{WebOTPDomain: "x y", AndroidAppHash: "short"}.Validate()
	if err == nil || !strings.Contains(err.Error(), "android_app_hash:") {
		t.Errorf("both keys bad: %v, want both named", err)
	}
}

// TestSMSTemplates lists the file behind every locale and usage type.
func TestSMSTemplates(t *testing.T) {
	t.Parallel()
	r := newRenderer(t, Options{Dir: writeFiles(t, map[string]string{
		"sms/de/Generic.txt":                "{{app_name}}: Code {{code}}",
		"sms/fr/OrganizationInvitation.txt": "{{link}}",
	})})
	got := map[string]string{}
	for _, st := range r.SMSTemplates() {
		got[st.Locale+"/"+string(st.UsageType)] = st.File
	}
	want := map[string]string{
		"en/SignIn":                 "default/sms/en/SignIn.txt",
		"en/MfaVerification":        "default/sms/en/Generic.txt",
		"de/SignIn":                 "sms/de/Generic.txt",
		"zh-CN/ForgotPassword":      "default/sms/zh-CN/ForgotPassword.txt",
		"fr/OrganizationInvitation": "sms/fr/OrganizationInvitation.txt",
		"en/OrganizationInvitation": "",
	}
	for k, w := range want {
		if g := got[k]; !strings.HasSuffix(g, w) || (w == "") != (g == "") {
			t.Errorf("%s: file %q, want %q", k, g, w)
		}
	}
	if n := len(got); n != 4*len(otp.UsageTypes)+1 {
		t.Errorf("%d SMS templates, want %d", n, 4*len(otp.UsageTypes)+1)
	}
}

package templates

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/otpd/otpd/otp"
)

// newRenderer returns a Renderer for opts, failing the test on error.
func newRenderer(t *testing.T, opts Options) *Renderer {
	t.Helper()
	r, err := New(opts)
	if err != nil {
		t.Fatalf("New(%+v): %v", opts, err)
	}
	return r
}

// writeFiles writes files (slash-separated path → content) under a new
// temporary directory and returns it.
func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for p, content := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestEmbeddedLocales(t *testing.T) {
	t.Parallel()
	r := newRenderer(t, Options{})
	got := strings.Join(r.Locales(), ",")
	if want := "en,fr,zh-CN"; got != want {
		t.Errorf("Locales() = %s, want %s", got, want)
	}
	if got := r.DefaultLocale(); got != "en" {
		t.Errorf("DefaultLocale() = %q, want en", got)
	}
	// Locales returns a copy.
	r.Locales()[0] = "xx"
	if r.Locales()[0] != "en" {
		t.Error("Locales() shares its slice with the Renderer")
	}
}

// embeddedUsageTypes are the usage types with default files of their own;
// the others (Logto's MFA, binding and validation types) fall back to
// Generic.
var embeddedUsageTypes = []otp.UsageType{otp.Register, otp.SignIn, otp.ForgotPassword, otp.Generic}

// TestRenderEveryEmbedded renders every embedded template set, and checks
// that each part has the code, app name and minutes, and no placeholder
// left. It also checks that every set is its own file (no fallback among
// the defaults).
func TestRenderEveryEmbedded(t *testing.T) {
	t.Parallel()
	r := newRenderer(t, Options{AppName: "Acme"})
	d := Data{Code: "482913", TTL: 10 * time.Minute}
	for _, loc := range []string{"en", "zh-CN", "fr"} {
		for _, ch := range channels {
			for _, u := range embeddedUsageTypes {
				t.Run(string(ch)+"/"+loc+"/"+string(u), func(t *testing.T) {
					t.Parallel()
					for _, part := range channelParts[ch] {
						p := "default/" + string(ch) + "/" + loc + "/" + string(u) + "." + part
						if _, err := defaultFS.ReadFile(p); err != nil {
							t.Errorf("missing default file: %v", err)
						}
					}
					c, err := r.Render(ch, loc, u, d)
					if err != nil {
						t.Fatalf("Render: %v", err)
					}
					parts := map[string]string{"text": c.Text}
					if ch == otp.Email {
						parts["subject"] = c.Subject
						parts["html"] = c.HTML
					} else if c.Subject != "" || c.HTML != "" {
						t.Errorf("SMS has Subject %q / HTML %q", c.Subject, c.HTML)
					}
					for name, s := range parts {
						if s == "" {
							t.Errorf("%s is empty", name)
							continue
						}
						want := []string{"482913", "Acme"}
						if name != "subject" {
							want = append(want, "10")
						}
						for _, w := range want {
							if !strings.Contains(s, w) {
								t.Errorf("%s lacks %q:\n%s", name, w, s)
							}
						}
						if strings.Contains(s, "{{") || strings.Contains(s, "}}") {
							t.Errorf("%s has a placeholder left:\n%s", name, s)
						}
						if strings.HasSuffix(s, "\n") {
							t.Errorf("%s ends in a newline", name)
						}
					}
					if strings.ContainsAny(c.Subject, "\r\n") {
						t.Errorf("subject has a line break: %q", c.Subject)
					}
					if ch == otp.Email && !strings.HasPrefix(c.HTML, "<!DOCTYPE html>") {
						t.Errorf("HTML is not a whole document:\n%s", c.HTML)
					}
					if ch == otp.SMS && loc == "zh-CN" {
						if n := utf8.RuneCountInString(c.Text); n > 70 {
							t.Errorf("zh-CN SMS is %d characters, want at most 70: %s", n, c.Text)
						}
					}
				})
			}
		}
	}
}

// TestLogtoUsageTypesFallBackToGeneric checks that the usage types without
// default files of their own (UserPermissionValidation, BindNewIdentifier,
// MfaVerification, BindMfa) render, in every embedded locale and channel,
// exactly as the locale's Generic does, with the code in it; and that an
// override file for one of them is used for that usage type only.
func TestLogtoUsageTypesFallBackToGeneric(t *testing.T) {
	t.Parallel()
	r := newRenderer(t, Options{AppName: "Acme"})
	d := Data{Code: "Ab12cD", TTL: 10 * time.Minute}
	var logto []otp.UsageType
	for _, u := range otp.UsageTypes {
		if !slices.Contains(embeddedUsageTypes, u) {
			logto = append(logto, u)
		}
	}
	if len(logto) != 4 {
		t.Fatalf("usage types without default files = %v, want Logto's four", logto)
	}
	for _, loc := range r.Locales() {
		for _, ch := range channels {
			generic, err := r.Render(ch, loc, otp.Generic, d)
			if err != nil {
				t.Fatalf("Render(%s, %s, Generic): %v", ch, loc, err)
			}
			for _, u := range logto {
				got, err := r.Render(ch, loc, u, d)
				if err != nil {
					t.Errorf("Render(%s, %s, %s): %v", ch, loc, u, err)
					continue
				}
				if got != generic || !strings.Contains(got.Text+got.HTML, "Ab12cD") {
					t.Errorf("Render(%s, %s, %s) = %+v, want Generic's %+v", ch, loc, u, got, generic)
				}
			}
		}
	}

	dir := writeFiles(t, map[string]string{"sms/en/MfaVerification.txt": "{{app_name}} MFA code: {{code}}"})
	r = newRenderer(t, Options{Dir: dir, AppName: "Acme"})
	if c, err := r.Render(otp.SMS, "en", otp.MfaVerification, d); err != nil || c.Text != "Acme MFA code: Ab12cD" {
		t.Errorf("Render(sms, en, MfaVerification) with an override = %+v, %v; want the override", c, err)
	}
	if c, err := r.Render(otp.SMS, "fr", otp.MfaVerification, d); err != nil || strings.Contains(c.Text, "MFA") {
		t.Errorf("Render(sms, fr, MfaVerification) = %+v, %v; want fr's Generic before en's MfaVerification", c, err)
	}
	generic, _ := r.Render(otp.SMS, "en", otp.Generic, d)
	if c, err := r.Render(otp.SMS, "en", otp.BindMfa, d); err != nil || c != generic {
		t.Errorf("Render(sms, en, BindMfa) = %+v, %v; want Generic's %+v", c, err, generic)
	}
}

func TestHTMLEscaping(t *testing.T) {
	t.Parallel()
	const app = `<b>&"`
	const escaped = `&lt;b&gt;&amp;&#34;`
	tests := []struct {
		name string
		opts Options
		d    Data
	}{
		{"Data.AppName", Options{}, Data{Code: "123456", AppName: app, TTL: time.Minute}},
		{"Options.AppName", Options{AppName: app}, Data{Code: "123456", TTL: time.Minute}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newRenderer(t, tt.opts)
			for _, loc := range r.Locales() {
				c, err := r.Render(otp.Email, loc, otp.SignIn, tt.d)
				if err != nil {
					t.Fatalf("Render(%s): %v", loc, err)
				}
				if !strings.Contains(c.HTML, escaped) || strings.Contains(c.HTML, app) {
					t.Errorf("%s: HTML does not escape the app name:\n%s", loc, c.HTML)
				}
				if !strings.Contains(c.Text, app) {
					t.Errorf("%s: text lacks the raw app name:\n%s", loc, c.Text)
				}
				if !strings.Contains(c.Subject, app) {
					t.Errorf("%s: subject lacks the raw app name: %s", loc, c.Subject)
				}
				sms, err := r.Render(otp.SMS, loc, otp.SignIn, tt.d)
				if err != nil {
					t.Fatalf("Render(sms, %s): %v", loc, err)
				}
				if !strings.Contains(sms.Text, app) {
					t.Errorf("%s: SMS lacks the raw app name: %s", loc, sms.Text)
				}
			}
		})
	}
}

func TestMatchLocale(t *testing.T) {
	t.Parallel()
	r := newRenderer(t, Options{})
	tests := []struct {
		tag  string
		want string
		bad  bool
	}{
		{tag: "", want: "en"},
		{tag: "en", want: "en"},
		{tag: "fr", want: "fr"},
		{tag: "zh-CN", want: "zh-CN"},
		{tag: "zh-cn", want: "zh-CN"},
		{tag: "fr-CA", want: "fr"},
		{tag: "fr-FR", want: "fr"},
		{tag: "zh", want: "zh-CN"},
		{tag: "zh-Hans", want: "zh-CN"},
		{tag: "zh-Hans-CN", want: "zh-CN"},
		{tag: "en-GB", want: "en"},
		{tag: "en-US", want: "en"},
		{tag: "en_US", want: "en"},
		{tag: "de", want: "en"},
		{tag: "zh-TW", want: "en"}, // Traditional script: only a low-confidence match
		{tag: "und", want: "en"},
		{tag: "en_US!!", bad: true},
		{tag: "xx-@@", bad: true},
		{tag: "xx", bad: true}, // well-formed, unknown language
		{tag: "en-", bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.tag, func(t *testing.T) {
			t.Parallel()
			got, err := r.MatchLocale(tt.tag)
			if tt.bad {
				if !errors.Is(err, ErrBadLocale) {
					t.Fatalf("MatchLocale(%q) = %q, %v; want ErrBadLocale", tt.tag, got, err)
				}
				if !strings.Contains(err.Error(), tt.tag) {
					t.Errorf("error %q does not name the tag %q", err, tt.tag)
				}
				if _, err := r.Render(otp.SMS, tt.tag, otp.Generic, Data{}); !errors.Is(err, ErrBadLocale) {
					t.Errorf("Render with %q: err = %v, want ErrBadLocale", tt.tag, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("MatchLocale(%q) = %q, %v; want %q", tt.tag, got, err, tt.want)
			}
		})
	}
}

func TestRenderLocaleFallback(t *testing.T) {
	t.Parallel()
	r := newRenderer(t, Options{})
	d := Data{Code: "123456", TTL: 5 * time.Minute}
	tests := []struct {
		tag, want string
	}{
		{"fr-CA", "fr"},
		{"zh-Hans", "zh-CN"},
		{"en-GB", "en"},
		{"de", "en"},
	}
	for _, tt := range tests {
		t.Run(tt.tag, func(t *testing.T) {
			t.Parallel()
			got, err := r.Render(otp.SMS, tt.tag, otp.SignIn, d)
			if err != nil {
				t.Fatal(err)
			}
			want, err := r.Render(otp.SMS, tt.want, otp.SignIn, d)
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("Render(%s) = %q, want the %s text %q", tt.tag, got.Text, tt.want, want.Text)
			}
		})
	}
}

func TestOverrideDir(t *testing.T) {
	t.Parallel()
	d := Data{Code: "123456", AppName: "Acme", TTL: 3 * time.Minute}
	type check struct {
		ch      otp.Channel
		locale  string
		u       otp.UsageType
		want    otp.Content
		wantErr string // substring of the error, if one is expected
	}
	tests := []struct {
		name        string
		files       map[string]string
		opts        Options
		wantLocales string
		checks      []check
	}{
		{
			name: "new locale with only Generic",
			files: map[string]string{
				"sms/de/Generic.txt":       "{{app_name}}: Ihr Code lautet {{ code }}. Gültig für {{ttl_minutes}} Min.\n",
				"email/de/Generic.subject": "Ihr {{app_name}}-Code: {{code}}\n",
				"email/de/Generic.txt":     "Code: {{code}}\n",
			},
			wantLocales: "de,en,fr,zh-CN",
			checks: []check{
				{ch: otp.SMS, locale: "de", u: otp.Register,
					want: otp.Content{Text: "Acme: Ihr Code lautet 123456. Gültig für 3 Min."}},
				{ch: otp.SMS, locale: "de-AT", u: otp.ForgotPassword,
					want: otp.Content{Text: "Acme: Ihr Code lautet 123456. Gültig für 3 Min."}},
				{ch: otp.Email, locale: "de", u: otp.SignIn,
					want: otp.Content{Subject: "Ihr Acme-Code: 123456", Text: "Code: 123456"}},
			},
		},
		{
			name: "new locale as default",
			files: map[string]string{
				"sms/de/Generic.txt":       "{{code}}",
				"email/de/Generic.subject": "{{code}}",
				"email/de/Generic.html":    "<p>{{app_name}}</p>",
			},
			opts:        Options{DefaultLocale: "de"},
			wantLocales: "de,en,fr,zh-CN",
			checks: []check{
				{ch: otp.SMS, locale: "es", u: otp.SignIn, want: otp.Content{Text: "123456"}},
				{ch: otp.Email, locale: "", u: otp.SignIn,
					want: otp.Content{Subject: "123456", HTML: "<p>Acme</p>"}},
			},
		},
		{
			name: "new locale with a usage type but no Generic falls back to the default locale",
			files: map[string]string{
				"sms/de/SignIn.txt": "Anmeldecode {{code}}",
			},
			wantLocales: "de,en,fr,zh-CN",
			checks: []check{
				{ch: otp.SMS, locale: "de", u: otp.SignIn, want: otp.Content{Text: "Anmeldecode 123456"}},
				{ch: otp.SMS, locale: "de", u: otp.Register,
					want: otp.Content{Text: "Acme: 123456 is your sign-up code. It expires in 3 min. Don't share it with anyone."}},
			},
		},
		{
			name: "override replaces a default file",
			files: map[string]string{
				"sms/en/SignIn.txt":         "Sign-in code {{code}}\r\n",
				"email/fr/Register.subject": "Bienvenue sur {{app_name}}",
				// A lower-case locale directory is the same locale.
				"sms/zh-cn/Generic.txt": "验证码{{code}}",
			},
			wantLocales: "en,fr,zh-CN",
			checks: []check{
				{ch: otp.SMS, locale: "en", u: otp.SignIn, want: otp.Content{Text: "Sign-in code 123456"}},
				{ch: otp.SMS, locale: "zh", u: otp.Generic, want: otp.Content{Text: "验证码123456"}},
			},
		},
		{
			name: "empty email body file removes the default part",
			files: map[string]string{
				"email/en/SignIn.html": "",
				"email/en/SignIn.txt":  "Code {{code}}\n",
			},
			wantLocales: "en,fr,zh-CN",
			checks: []check{
				{ch: otp.Email, locale: "en", u: otp.SignIn,
					want: otp.Content{Subject: "123456 is your Acme sign-in code", Text: "Code 123456"}},
			},
		},
		{
			name:        "dot files are ignored",
			files:       map[string]string{".gitkeep": "", "sms/.DS_Store": "x", ".git/config": "x"},
			wantLocales: "en,fr,zh-CN",
		},
		{
			name:  "unknown channel and usage type in Render",
			files: map[string]string{},
			checks: []check{
				{ch: "push", locale: "en", u: otp.SignIn, wantErr: `unknown channel "push"`},
				{ch: otp.SMS, locale: "en", u: "Login", wantErr: `unknown usage type "Login"`},
			},
			wantLocales: "en,fr,zh-CN",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts := tt.opts
			opts.Dir = writeFiles(t, tt.files)
			r := newRenderer(t, opts)
			if got := strings.Join(r.Locales(), ","); got != tt.wantLocales {
				t.Errorf("Locales() = %s, want %s", got, tt.wantLocales)
			}
			for _, c := range tt.checks {
				got, err := r.Render(c.ch, c.locale, c.u, d)
				if c.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), c.wantErr) {
						t.Errorf("Render(%s, %q, %s) error = %v, want one containing %q", c.ch, c.locale, c.u, err, c.wantErr)
					}
					continue
				}
				if err != nil {
					t.Errorf("Render(%s, %q, %s): %v", c.ch, c.locale, c.u, err)
					continue
				}
				if got != c.want {
					t.Errorf("Render(%s, %q, %s) =\n%#v\nwant\n%#v", c.ch, c.locale, c.u, got, c.want)
				}
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		files    map[string]string
		opts     Options
		wantFile string // path under the override dir the error must name
		wantErr  string // other substring of the error
		badLoc   bool   // the error must wrap ErrBadLocale
	}{
		{name: "unknown usage type", files: map[string]string{"sms/en/Signin.txt": "{{code}}"},
			wantFile: "sms/en/Signin.txt", wantErr: `unknown usage type "Signin"`},
		{name: "unknown part", files: map[string]string{"email/en/SignIn.text": "{{code}}"},
			wantFile: "email/en/SignIn.text", wantErr: `unknown email part "text"`},
		{name: "backup file", files: map[string]string{"email/en/SignIn.txt~": "{{code}}"},
			wantFile: "email/en/SignIn.txt~", wantErr: "unknown email part"},
		{name: "sms has no subject", files: map[string]string{"sms/en/SignIn.subject": "{{code}}"},
			wantFile: "sms/en/SignIn.subject", wantErr: `unknown sms part "subject"`},
		{name: "no part", files: map[string]string{"sms/en/SignIn": "{{code}}"},
			wantFile: "sms/en/SignIn", wantErr: `unknown sms part ""`},
		{name: "unknown channel", files: map[string]string{"mail/en/SignIn.txt": "{{code}}"},
			wantFile: "mail", wantErr: `unknown channel "mail"`},
		{name: "bad locale directory", files: map[string]string{"sms/en_US!!/SignIn.txt": "{{code}}"},
			wantFile: "sms/en_US!!", wantErr: "locale directory", badLoc: true},
		{name: "unknown locale", files: map[string]string{"sms/xx/SignIn.txt": "{{code}}"},
			wantFile: "sms/xx", wantErr: "locale directory", badLoc: true},
		{name: "file outside a locale", files: map[string]string{"sms/SignIn.txt": "{{code}}"},
			wantFile: "sms/SignIn.txt", wantErr: "unexpected file"},
		{name: "nested directory", files: map[string]string{"sms/en/old/SignIn.txt": "{{code}}"},
			wantFile: "sms/en/old", wantErr: "unexpected directory"},
		{name: "unknown placeholder", files: map[string]string{"sms/en/SignIn.txt": "Code {{otp}}"},
			wantFile: "sms/en/SignIn.txt", wantErr: `1:6: unknown placeholder "{{otp}}"`},
		{name: "unknown placeholder in html", files: map[string]string{"email/en/SignIn.html": "<p>\n {{code}} {{ appname }}</p>"},
			wantFile: "email/en/SignIn.html", wantErr: `2:11: unknown placeholder "{{ appname }}"`},
		{name: "unterminated placeholder", files: map[string]string{"email/fr/Generic.subject": "Code {{code"},
			wantFile: "email/fr/Generic.subject", wantErr: "unterminated"},
		{name: "multi-line subject", files: map[string]string{"email/en/SignIn.subject": "Code\n{{code}}\n"},
			wantFile: "email/en/SignIn.subject", wantErr: "single line"},
		{name: "empty subject", files: map[string]string{"email/en/SignIn.subject": "\n"},
			wantFile: "email/en/SignIn.subject", wantErr: "empty"},
		{name: "empty sms", files: map[string]string{"sms/en/SignIn.txt": ""},
			wantFile: "sms/en/SignIn.txt", wantErr: "empty"},
		{name: "invalid UTF-8", files: map[string]string{"sms/zh-CN/SignIn.txt": "\xd1\xe9\xd6\xa4\xc2\xeb {{code}}"},
			wantFile: "sms/zh-CN/SignIn.txt", wantErr: "UTF-8"},
		{name: "email without subject", files: map[string]string{"email/de/Generic.txt": "{{code}}"},
			wantFile: "email/de/Generic.txt", wantErr: "needs a subject"},
		{name: "email without body", files: map[string]string{"email/de/Generic.subject": "{{code}}"},
			wantFile: "email/de/Generic.subject", wantErr: "needs a subject and a txt or html part"},
		{name: "email bodies all removed",
			files:    map[string]string{"email/en/SignIn.txt": "", "email/en/SignIn.html": ""},
			wantFile: "email/en/SignIn.", wantErr: "needs a subject and a txt or html part"},
		{name: "same locale twice",
			files:    map[string]string{"sms/zh-CN/SignIn.txt": "{{code}}", "sms/zh-cn/SignIn.txt": "{{code}}"},
			wantFile: "SignIn.txt", wantErr: "same template as"},
		{name: "default locale without templates", opts: Options{DefaultLocale: "de"},
			wantErr: `default locale "de" has no templates`},
		{name: "default locale missing a channel", opts: Options{DefaultLocale: "de"},
			files:   map[string]string{"sms/de/Generic.txt": "{{code}}"},
			wantErr: `default locale "de" has no email template for Register`},
		{name: "malformed default locale", opts: Options{DefaultLocale: "en_US!!"},
			wantErr: "en_US!!", badLoc: true},
		{name: "code in an invitation", files: map[string]string{"email/en/OrganizationInvitation.html": "<a href=\"{{link}}\">{{code}}</a>"},
			wantFile: "email/en/OrganizationInvitation.html", wantErr: "{{code}} has no value in an OrganizationInvitation message"},
		{name: "minutes in an invitation subject", files: map[string]string{"email/en/OrganizationInvitation.subject": "Join within {{ttl_minutes}} min"},
			wantFile: "email/en/OrganizationInvitation.subject", wantErr: "{{ttl_minutes}} has no value"},
		{name: "link in a code template", files: map[string]string{"sms/en/SignIn.txt": "{{code}} {{link}}"},
			wantFile: "sms/en/SignIn.txt", wantErr: "{{link}} has a value only in an OrganizationInvitation message"},
		{name: "invitation without its link", files: map[string]string{"sms/fr/OrganizationInvitation.txt": "Rejoignez {{app_name}}"},
			wantFile: "sms/fr/OrganizationInvitation.txt", wantErr: "has no {{link}} placeholder"},
		{name: "invitation email without body",
			files:    map[string]string{"email/en/OrganizationInvitation.subject": "Join {{app_name}}"},
			wantFile: "email/en/OrganizationInvitation.subject", wantErr: "needs a subject and a txt or html part"},
		{name: "invitation spelled otherwise", files: map[string]string{"email/en/OrganisationInvitation.txt": "{{link}}"},
			wantFile: "email/en/OrganisationInvitation.txt", wantErr: "OrganizationInvitation)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts := tt.opts
			opts.Dir = writeFiles(t, tt.files)
			r, err := New(opts)
			if err == nil {
				t.Fatalf("New succeeded with locales %v", r.Locales())
			}
			if tt.wantFile != "" && !strings.Contains(err.Error(), filepath.Join(opts.Dir, filepath.FromSlash(tt.wantFile))) &&
				!strings.Contains(err.Error(), tt.wantFile) {
				t.Errorf("error %q does not name %s", err, tt.wantFile)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not contain %q", err, tt.wantErr)
			}
			if tt.badLoc != errors.Is(err, ErrBadLocale) {
				t.Errorf("errors.Is(%q, ErrBadLocale) = %v, want %v", err, !tt.badLoc, tt.badLoc)
			}
			if !strings.HasPrefix(err.Error(), "templates: ") {
				t.Errorf("error %q lacks the templates: prefix", err)
			}
		})
	}
}

func TestNewMissingDir(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "nope")
	if _, err := New(Options{Dir: dir}); err == nil || !strings.Contains(err.Error(), dir) {
		t.Errorf("New with a missing dir: err = %v, want one naming %s", err, dir)
	}
	file := writeFiles(t, map[string]string{"f": "x"})
	file = filepath.Join(file, "f")
	if _, err := New(Options{Dir: file}); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("New with a file as dir: err = %v, want not a directory", err)
	}
}

func TestCompile(t *testing.T) {
	t.Parallel()
	d := Data{Code: "12<34", AppName: `A&"B'`, TTL: 90 * time.Second, Link: "https://x.example/i?a=1&b=<2>"}
	tests := []struct {
		name, text string
		html       bool
		want       string
		wantErr    string
	}{
		{name: "logto", text: "Your code is {{code}}", want: "Your code is 12<34"},
		{name: "blanks", text: "{{ code }}|{{\tapp_name\t}}|{{ttl_minutes  }}", want: `12<34|A&"B'|2`},
		{name: "no placeholders", text: "plain", want: "plain"},
		{name: "empty", text: "", want: ""},
		{name: "repeated", text: "{{code}}{{code}}", want: "12<3412<34"},
		{name: "lone closing braces", text: "}} {{code}} }}", want: "}} 12<34 }}"},
		{name: "html escapes values only", text: "<p>{{code}} {{app_name}}</p>", html: true,
			want: "<p>12&lt;34 A&amp;&#34;B&#39;</p>"},
		{name: "link", text: "{{link}}", html: true, want: "https://x.example/i?a=1&amp;b=&lt;2&gt;"},
		{name: "unknown", text: "{{Code}}", wantErr: `unknown placeholder "{{Code}}"`},
		{name: "triple braces", text: "{{{code}}}", wantErr: "unknown placeholder"},
		{name: "empty braces", text: "a {{}}", wantErr: "unknown placeholder"},
		{name: "unterminated", text: "ok {{code}} {{code", wantErr: `1:13: unterminated "{{"`},
		{name: "unterminated at end", text: "{{", wantErr: "unterminated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tmpl, err := Compile("provider:"+tt.name, tt.text, tt.html)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("Compile(%q) succeeded", tt.text)
				}
				if !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "provider:"+tt.name) {
					t.Errorf("Compile(%q) error %q, want one naming provider:%s and containing %q", tt.text, err, tt.name, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Compile(%q): %v", tt.text, err)
			}
			if got := tmpl.Execute(d); got != tt.want {
				t.Errorf("Execute = %q, want %q", got, tt.want)
			}
			if tmpl.Name() != "provider:"+tt.name {
				t.Errorf("Name() = %q", tmpl.Name())
			}
		})
	}
}

func TestTTLMinutes(t *testing.T) {
	t.Parallel()
	tmpl, err := Compile("ttl", "{{ttl_minutes}}", false)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		ttl  time.Duration
		want string
	}{
		{0, "1"},
		{-time.Minute, "1"},
		{time.Nanosecond, "1"},
		{59 * time.Second, "1"},
		{time.Minute, "1"},
		{61 * time.Second, "2"},
		{90 * time.Second, "2"},
		{10 * time.Minute, "10"},
		{10*time.Minute + time.Nanosecond, "11"},
		{24 * time.Hour, "1440"},
	}
	for _, tt := range tests {
		t.Run(tt.ttl.String(), func(t *testing.T) {
			t.Parallel()
			if got := tmpl.Execute(Data{TTL: tt.ttl}); got != tt.want {
				t.Errorf("ttl_minutes for %v = %s, want %s", tt.ttl, got, tt.want)
			}
		})
	}
}

func TestSubjectLineBreaks(t *testing.T) {
	t.Parallel()
	r := newRenderer(t, Options{})
	c, err := r.Render(otp.Email, "en", otp.Generic, Data{Code: "1", AppName: "A\r\nBcc: x@example.com\nC\rD", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(c.Subject, "\r\n") {
		t.Errorf("subject has a line break: %q", c.Subject)
	}
	if !strings.Contains(c.Subject, "A Bcc: x@example.com C D") {
		t.Errorf("subject = %q", c.Subject)
	}
}

func TestRenderConcurrent(t *testing.T) {
	t.Parallel()
	r := newRenderer(t, Options{})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 50 {
				loc := []string{"en-GB", "zh", "fr-CA", "de", ""}[(i+j)%5]
				u := otp.UsageTypes[j%len(otp.UsageTypes)]
				if _, err := r.Render(otp.Email, loc, u, Data{Code: "1", TTL: time.Minute}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// invitationFiles are an operator's invitation templates: email in en (the
// default locale) and fr, SMS in fr only.
var invitationFiles = map[string]string{
	"email/en/OrganizationInvitation.subject": "Join {{app_name}}",
	"email/en/OrganizationInvitation.html":    `<p>You are invited to <a href="{{ link }}">{{app_name}}</a>.</p>`,
	"email/en/OrganizationInvitation.txt":     "Open {{link}} to join {{app_name}}.",
	"email/fr/OrganizationInvitation.subject": "Rejoignez {{app_name}}",
	"email/fr/OrganizationInvitation.txt":     "Ouvrez {{link}}",
	"sms/fr/OrganizationInvitation.txt":       "{{app_name}} : {{link}}",
}

func TestRenderInvitation(t *testing.T) {
	t.Parallel()
	r := newRenderer(t, Options{Dir: writeFiles(t, invitationFiles), AppName: "Acme & Co"})
	d := Data{Link: "https://auth.example.com/invite?token=a&b=1"}
	tests := []struct {
		name   string
		ch     otp.Channel
		locale string
		want   otp.Content
	}{
		{name: "default locale", ch: otp.Email, locale: "en", want: otp.Content{
			Subject: "Join Acme & Co",
			Text:    "Open https://auth.example.com/invite?token=a&b=1 to join Acme & Co.",
			HTML:    `<p>You are invited to <a href="https://auth.example.com/invite?token=a&amp;b=1">Acme &amp; Co</a>.</p>`,
		}},
		{name: "own locale", ch: otp.Email, locale: "fr-CA", want: otp.Content{
			Subject: "Rejoignez Acme & Co", Text: "Ouvrez https://auth.example.com/invite?token=a&b=1",
		}},
		{name: "falls back to the default locale", ch: otp.Email, locale: "zh-CN", want: otp.Content{
			Subject: "Join Acme & Co",
			Text:    "Open https://auth.example.com/invite?token=a&b=1 to join Acme & Co.",
			HTML:    `<p>You are invited to <a href="https://auth.example.com/invite?token=a&amp;b=1">Acme &amp; Co</a>.</p>`,
		}},
		{name: "sms", ch: otp.SMS, locale: "fr", want: otp.Content{Text: "Acme & Co : https://auth.example.com/invite?token=a&b=1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if !r.Has(tt.ch, tt.locale, otp.OrganizationInvitation) {
				t.Errorf("Has(%s, %s, OrganizationInvitation) = false", tt.ch, tt.locale)
			}
			got, err := r.Render(tt.ch, tt.locale, otp.OrganizationInvitation, d)
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			if got != tt.want {
				t.Errorf("Render = %+v\nwant %+v", got, tt.want)
			}
		})
	}

	// SMS has an invitation in fr only, and the default locale has none:
	// no Generic fallback ("your code"), no other locale's.
	for _, loc := range []string{"en", "zh-CN", ""} {
		if r.Has(otp.SMS, loc, otp.OrganizationInvitation) {
			t.Errorf("Has(sms, %q, OrganizationInvitation) = true, want false", loc)
		}
		_, err := r.Render(otp.SMS, loc, otp.OrganizationInvitation, d)
		if !errors.Is(err, ErrNoTemplate) {
			t.Errorf("Render(sms, %q, OrganizationInvitation) error = %v, want ErrNoTemplate", loc, err)
		}
		if err != nil && strings.Contains(err.Error(), "token") {
			t.Errorf("error %q quotes the link", err)
		}
	}
	// Code-bearing usage types are unchanged and always there.
	for _, u := range otp.UsageTypes {
		if !r.Has(otp.SMS, "zh-CN", u) {
			t.Errorf("Has(sms, zh-CN, %s) = false", u)
		}
	}
	if r.Has(otp.Email, "en_US!!", otp.OrganizationInvitation) {
		t.Error("Has with a malformed locale = true")
	}
}

// TestNoInvitationByDefault: the embedded defaults have no invitation, and
// adding one is not required for any locale.
func TestNoInvitationByDefault(t *testing.T) {
	t.Parallel()
	r := newRenderer(t, Options{})
	for _, ch := range channels {
		for _, loc := range r.Locales() {
			if r.Has(ch, loc, otp.OrganizationInvitation) {
				t.Errorf("Has(%s, %s, OrganizationInvitation) = true with the defaults", ch, loc)
			}
			_, err := r.Render(ch, loc, otp.OrganizationInvitation, Data{Link: "https://x.example/i"})
			if !errors.Is(err, ErrNoTemplate) {
				t.Errorf("Render(%s, %s, OrganizationInvitation) error = %v, want ErrNoTemplate", ch, loc, err)
			}
		}
	}
	// A default locale of the override dir needs no invitation either.
	dir := writeFiles(t, map[string]string{"sms/de/Generic.txt": "{{code}}", "email/de/Generic.subject": "{{code}}", "email/de/Generic.txt": "{{code}}"})
	newRenderer(t, Options{Dir: dir, DefaultLocale: "de"})
}

func TestCheckUsage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		text    string
		u       otp.UsageType
		wantErr string
	}{
		{"{{app_name}} {{link}}", otp.OrganizationInvitation, ""},
		{"{{code}} {{ttl_minutes}} {{app_name}}", otp.SignIn, ""},
		{"{{link}} {{code}}", otp.OrganizationInvitation, "{{code}}"},
		{"{{ttl_minutes}}", otp.OrganizationInvitation, "{{ttl_minutes}}"},
		{"{{code}} {{ link }}", otp.Generic, "{{link}}"},
	}
	for _, tt := range tests {
		tmpl, err := Compile("tpl", tt.text, false)
		if err != nil {
			t.Fatal(err)
		}
		err = tmpl.CheckUsage(tt.u)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("CheckUsage(%s) of %q = %v, want nil", tt.u, tt.text, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "tpl")):
			t.Errorf("CheckUsage(%s) of %q = %v, want an error naming tpl and %s", tt.u, tt.text, err, tt.wantErr)
		}
	}
}

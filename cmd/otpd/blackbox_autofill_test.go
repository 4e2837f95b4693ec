package main_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestStartRefusesAutofillBreaker: a template that -check refuses for SMS
// autofill stops otpd at start too, before it connects to Redis, rather
// than breaking every user's autofill; the same configuration with the
// template fixed passes -check.
func TestStartRefusesAutofillBreaker(t *testing.T) {
	t.Parallel()
	bin := otpdBinary(t)
	dir := t.TempDir()
	tpl := filepath.Join(dir, "templates", "sms", "en")
	if err := os.MkdirAll(tpl, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(text string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(tpl, "Generic.txt"), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg := filepath.Join(dir, "otpd.yaml")
	if err := os.WriteFile(cfg, []byte(`
listen: {grpc: "127.0.0.1:0", http: ""}
redis: {url: "redis://127.0.0.1:1"}
secret: "0123456789abcdef0123456789abcdef-autofill"
templates: {dir: "`+filepath.Join(dir, "templates")+`", webotp_domain: example.com}
providers: [{name: console, type: console}]
`), 0o600); err != nil {
		t.Fatal(err)
	}

	write("@{{app_name}}: {{code}}") // a line starting with @ before the WebOTP line
	out, err := exec.Command(bin, "-config", cfg).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("otpd with an autofill-breaking template: %v, want exit 1\n%s", err, out)
	}
	for _, want := range []string{"sms autofill", "sms/en/Generic.txt", `starts with \"@\" too`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "otpd serving") {
		t.Errorf("otpd served:\n%s", out)
	}

	write("{{app_name}}: {{code}} is your code.")
	if out, err := exec.Command(bin, "-config", cfg, "-check").CombinedOutput(); err != nil {
		t.Fatalf("-check with the template fixed: %v\n%s", err, out)
	}
}

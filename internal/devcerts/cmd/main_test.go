package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWritesThenKeeps(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "certs")
	run1 := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := run(args, &out, &errOut)
		return code, out.String(), errOut.String()
	}
	code, out, errOut := run1("-dir", dir, "-client-name", "auth-server")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"CN auth-server",
		"tls:\n  cert_file: " + filepath.Join(dir, "server.pem") + "\n  key_file: " + filepath.Join(dir, "server-key.pem") +
			"\n  client_ca_file: " + filepath.Join(dir, "ca.pem") + "\n",
		"otpctl -ca " + filepath.Join(dir, "ca.pem") + " -cert " + filepath.Join(dir, "client.pem") + " -key " + filepath.Join(dir, "client-key.pem") + " health",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	ca, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}

	// A second run keeps the CA that clients may already trust.
	code, out, _ = run1("-dir", dir)
	if again, _ := os.ReadFile(filepath.Join(dir, "ca.pem")); code != 0 || !bytes.Equal(again, ca) || !strings.Contains(out, "kept") {
		t.Errorf("second run: exit %d, CA replaced %v, stdout:\n%s", code, !bytes.Equal(again, ca), out)
	}
	// -force replaces it.
	code, _, _ = run1("-dir", dir, "-force")
	if again, _ := os.ReadFile(filepath.Join(dir, "ca.pem")); code != 0 || bytes.Equal(again, ca) {
		t.Errorf("-force: exit %d, CA replaced %v", code, !bytes.Equal(again, ca))
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"extra"}, {"-nope"}} {
		var out, errOut bytes.Buffer
		if code := run(append([]string{"-dir", t.TempDir()}, args...), &out, &errOut); code != 2 || errOut.Len() == 0 {
			t.Errorf("%q: exit %d, stderr %q; want 2 and a message", args, code, errOut.String())
		}
	}
}

package validate

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func goDirective(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(data)
	if m == nil {
		t.Fatal("no go directive in go.mod")
	}
	return string(m[1])
}

func TestDockerfile(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range CheckDockerfile(string(data), goDirective(t)) {
		t.Error(p)
	}

	// The version the build stamps is a variable of package main.
	main, err := os.ReadFile("../../cmd/otpd/main.go")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^var version = `).Match(main) {
		t.Error(`cmd/otpd/main.go has no "var version": -X main.version=... would set nothing`)
	}
}

func TestDockerfileRejects(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("testdata/Dockerfile.broken")
	if err != nil {
		t.Fatal(err)
	}
	problems := CheckDockerfile(string(data), "1.26.0")
	for _, want := range []string{
		"builder FROM golang:1.22: want golang:1.26",
		"CGO_ENABLED=0 is not set",
		`go build without -ldflags "-X main.version=..."`,
		`final stage USER "", want nonroot`,
	} {
		if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, want) }) {
			t.Errorf("no problem mentions %q; got:\n%s", want, strings.Join(problems, "\n"))
		}
	}
}

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

	// The build context leaves out what the image never needs.
	ignore, err := os.ReadFile("../../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Fields(string(ignore))
	for _, want := range []string{".git", "bin"} {
		if !slices.Contains(lines, want) {
			t.Errorf(".dockerignore does not exclude %s", want)
		}
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
		"go mod download runs after COPY . .",
		"CGO_ENABLED=0 is not set",
		`go build without -ldflags "-s -w -X main.version=..."`,
		"final stage FROM debian:12-slim, want gcr.io/distroless/static-debian12:nonroot",
		"RUN in the final stage",
		"ENTRYPOINT is not in exec form",
		`final stage USER "", want nonroot`,
		"final stage does not EXPOSE 9464",
	} {
		if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, want) }) {
			t.Errorf("no problem mentions %q; got:\n%s", want, strings.Join(problems, "\n"))
		}
	}
}

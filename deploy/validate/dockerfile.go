package validate

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
)

// Instruction is one Dockerfile instruction, continuation lines joined.
type Instruction struct {
	Line int
	Cmd  string // upper case: FROM, RUN, ...
	Args string
}

// Stage is a FROM and the instructions after it.
type Stage struct {
	From         string // image
	Instructions []Instruction
}

// ParseDockerfile splits a Dockerfile into stages. It handles comments,
// parser directives, blank lines and backslash continuations, which is all
// deploy/Dockerfile uses (no heredocs, no escape directive). ${NAME} in a
// FROM is replaced by the default of an ARG NAME=... before the first FROM.
func ParseDockerfile(text string) ([]Stage, error) {
	var stages []Stage
	globalArgs := map[string]string{}
	var cur *Instruction
	var insts []Instruction
	for i, line := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(line)
		if cur == nil && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if cur != nil && strings.HasPrefix(trimmed, "#") {
			continue // comment lines inside a continuation are dropped
		}
		cont := strings.HasSuffix(trimmed, `\`)
		part := strings.TrimSuffix(trimmed, `\`)
		if cur == nil {
			cmd, args, _ := strings.Cut(part, " ")
			cur = &Instruction{Line: i + 1, Cmd: strings.ToUpper(cmd), Args: strings.TrimSpace(args)}
		} else {
			cur.Args = strings.TrimSpace(cur.Args + " " + part)
		}
		if !cont {
			insts = append(insts, *cur)
			cur = nil
		}
	}
	if cur != nil {
		return nil, fmt.Errorf("line %d: continuation at end of file", cur.Line)
	}
	for _, in := range insts {
		if in.Cmd == "FROM" {
			st := Stage{}
			for _, w := range strings.Fields(in.Args) {
				if !strings.HasPrefix(w, "--") { // --platform=...
					st.From = os.Expand(w, func(name string) string { return globalArgs[name] })
					break
				}
			}
			stages = append(stages, st)
			continue
		}
		if len(stages) == 0 {
			if in.Cmd != "ARG" {
				return nil, fmt.Errorf("line %d: %s before the first FROM", in.Line, in.Cmd)
			}
			name, value, _ := strings.Cut(in.Args, "=")
			globalArgs[name] = strings.Trim(value, `"`)
			continue
		}
		stages[len(stages)-1].Instructions = append(stages[len(stages)-1].Instructions, in)
	}
	if len(stages) == 0 {
		return nil, errors.New("no FROM")
	}
	return stages, nil
}

var ldflagsVersion = regexp.MustCompile(`-ldflags\s+"[^"]*-X\s+main\.version=`)

// CheckDockerfile verifies deploy/Dockerfile: a Go builder matching goVersion
// (go.mod's "go" line, e.g. "1.26.0") that builds a static binary with its
// version stamped, and a final stage that runs as nonroot.
func CheckDockerfile(text, goVersion string) []string {
	stages, err := ParseDockerfile(text)
	if err != nil {
		return []string{err.Error()}
	}
	var problems []string
	errorf := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if len(stages) < 2 {
		errorf("want a multi-stage build (builder + final), got %d stage(s)", len(stages))
		return problems
	}

	// The builder: go.mod's Go (GOTOOLCHAIN=local refuses an older one),
	// no cgo (the final image has no libc), -X main.version (otpd -version).
	build := stages[0]
	want := "golang:" + strings.Join(strings.SplitN(goVersion, ".", 3)[:2], ".")
	if tag, _, _ := strings.Cut(build.From, "@"); tag != want && !strings.HasPrefix(tag, want+".") && !strings.HasPrefix(tag, want+"-") {
		errorf("builder FROM %s: want %s (go.mod says go %s)", build.From, want, goVersion)
	}
	goBuild, cgoOff := false, false
	for _, in := range build.Instructions {
		switch {
		case in.Cmd == "ENV" && slices.Contains(strings.Fields(in.Args), "CGO_ENABLED=0"):
			cgoOff = true
		case in.Cmd == "RUN" && strings.Contains(in.Args, "go build"):
			goBuild = true
			cgoOff = cgoOff || strings.Contains(in.Args, "CGO_ENABLED=0")
			if !ldflagsVersion.MatchString(in.Args) {
				errorf(`line %d: go build without -ldflags "-X main.version=...": otpd -version would print "dev"`, in.Line)
			}
		}
	}
	if !goBuild {
		errorf("the builder never runs go build")
	}
	if !cgoOff {
		errorf("CGO_ENABLED=0 is not set for go build: the binary would need libc, which distroless/static lacks")
	}

	// The final stage runs as nonroot also where no pod securityContext says so.
	var user string
	for _, in := range stages[len(stages)-1].Instructions {
		if in.Cmd == "USER" {
			user = in.Args
		}
	}
	if u, _, _ := strings.Cut(user, ":"); u != "nonroot" && u != "65532" {
		errorf("final stage USER %q, want nonroot (65532)", user)
	}
	return problems
}

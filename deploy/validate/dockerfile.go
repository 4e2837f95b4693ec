package validate

import (
	"encoding/json"
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
	Name         string // AS name
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
			f := strings.Fields(in.Args)
			st := Stage{}
			for _, w := range f {
				if !strings.HasPrefix(w, "--") {
					st.From = os.Expand(w, func(name string) string { return globalArgs[name] })
					break
				}
			}
			if n := len(f); n >= 3 && strings.EqualFold(f[n-2], "AS") {
				st.Name = f[n-1]
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
		return nil, fmt.Errorf("no FROM")
	}
	return stages, nil
}

// FinalImage is the base the image must ship on.
const FinalImage = "gcr.io/distroless/static-debian12:nonroot"

var ldflagsVersion = regexp.MustCompile(`-ldflags\s+"[^"]*-s\b[^"]*-w\b[^"]*-X\s+main\.version=`)

// CheckDockerfile verifies deploy/Dockerfile: a Go builder matching goVersion
// (go.mod's "go" line, e.g. "1.26.0") that caches modules in their own layer
// and builds a static, trimmed binary with its version stamped, and a final
// distroless nonroot stage with no RUN, no shell-form ENTRYPOINT and otpd's
// two ports.
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

	build := stages[0]
	want := "golang:" + strings.Join(strings.SplitN(goVersion, ".", 3)[:2], ".")
	if tag, _, _ := strings.Cut(build.From, "@"); tag != want && !strings.HasPrefix(tag, want+".") && !strings.HasPrefix(tag, want+"-") {
		errorf("builder FROM %s: want %s (go.mod says go %s)", build.From, want, goVersion)
	}
	var download, copyAll, goBuild = -1, -1, -1
	cgoOff := false
	for i, in := range build.Instructions {
		switch {
		case in.Cmd == "ENV" && slices.Contains(strings.Fields(in.Args), "CGO_ENABLED=0"):
			cgoOff = true
		case in.Cmd == "RUN" && strings.Contains(in.Args, "go mod download"):
			download = i
		case in.Cmd == "COPY" && slices.Contains(strings.Fields(in.Args), "."): // the whole context
			copyAll = i
		case in.Cmd == "RUN" && strings.Contains(in.Args, "go build"):
			goBuild = i
			if strings.Contains(in.Args, "CGO_ENABLED=0") {
				cgoOff = true
			}
			for _, want := range []string{"-trimpath", "./cmd/otpd"} {
				if !strings.Contains(in.Args, want) {
					errorf("line %d: go build without %s", in.Line, want)
				}
			}
			if !ldflagsVersion.MatchString(in.Args) {
				errorf(`line %d: go build without -ldflags "-s -w -X main.version=..."`, in.Line)
			}
		}
	}
	switch {
	case goBuild < 0:
		errorf("the builder never runs go build")
	case download < 0:
		errorf("no RUN go mod download: modules are fetched again on every source change")
	case copyAll >= 0 && download > copyAll:
		errorf("go mod download runs after COPY . .: its layer is rebuilt on every source change")
	}
	if !cgoOff {
		errorf("CGO_ENABLED=0 is not set for go build: the binary would need libc, which distroless/static lacks")
	}

	final := stages[len(stages)-1]
	if base, _, _ := strings.Cut(final.From, "@"); base != FinalImage {
		errorf("final stage FROM %s, want %s", final.From, FinalImage)
	}
	var user string
	var entrypoint []string
	var exposed []string
	for _, in := range final.Instructions {
		switch in.Cmd {
		case "RUN":
			errorf("line %d: RUN in the final stage: it has no shell", in.Line)
		case "USER":
			user = in.Args
		case "EXPOSE":
			exposed = append(exposed, strings.Fields(in.Args)...)
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(in.Args), &entrypoint); err != nil {
				errorf("line %d: ENTRYPOINT is not in exec form (a JSON array): shell form needs /bin/sh", in.Line)
			}
		case "CMD":
			if !strings.HasPrefix(in.Args, "[") {
				errorf("line %d: CMD is not in exec form", in.Line)
			}
		}
	}
	if u, _, _ := strings.Cut(user, ":"); u != "nonroot" && u != "65532" {
		errorf("final stage USER %q, want nonroot (65532)", user)
	}
	if len(entrypoint) == 0 || entrypoint[0] != "/otpd" {
		errorf(`final stage ENTRYPOINT %v, want ["/otpd"]`, entrypoint)
	}
	for _, p := range []string{"50051", "9464"} {
		if !slices.ContainsFunc(exposed, func(e string) bool { return strings.TrimSuffix(e, "/tcp") == p }) {
			errorf("final stage does not EXPOSE %s", p)
		}
	}
	return problems
}

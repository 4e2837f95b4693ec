package main_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otpd/otpd/internal/redistest"
)

// exampleDir is the Node/TypeScript example client (examples/node): otpd
// through the Connect protocol with @connectrpc/connect-node.
const exampleDir = "../../examples/node"

// exampleDepsCommand installs and builds what the example needs.
const exampleDepsCommand = "make node-example (or: cd examples/node && npm ci --no-audit --no-fund && npx tsc -p .)"

var (
	exampleBuildOnce sync.Once
	exampleBuildErr  error
)

// needNodeExample returns the node binary once examples/node is compiled
// (tsc, once per test run, so the test never runs a stale dist/). It skips
// the test when node or examples/node/node_modules is missing; with
// OTPD_REQUIRE_NODE=1 (make test-go) it fails instead.
func needNodeExample(t *testing.T) string {
	t.Helper()
	tsc := filepath.Join(exampleDir, "node_modules", "typescript", "bin", "tsc")
	node := needNodeModules(t, tsc, "examples/node/node_modules", exampleDepsCommand)
	exampleBuildOnce.Do(func() {
		out, err := exec.Command(node, tsc, "-p", exampleDir).CombinedOutput()
		if err != nil {
			exampleBuildErr = fmt.Errorf("tsc -p examples/node: %v\n%s", err, out)
		}
	})
	if exampleBuildErr != nil {
		t.Fatal(exampleBuildErr)
	}
	return node
}

// exampleStep is one JSON line of `node dist/example.js --selftest`.
type exampleStep struct {
	Step              string `json:"step"`
	Provider          string `json:"provider"`
	Result            string `json:"result"`
	AttemptsRemaining int    `json:"attemptsRemaining"`
	Error             *struct {
		Code            string            `json:"code"`
		Message         string            `json:"message"`
		Reason          string            `json:"reason"`
		Metadata        map[string]string `json:"metadata"`
		RetryDelayMs    int64             `json:"retryDelayMs"`
		Attempts        int               `json:"attempts"`
		FieldViolations []struct {
			Field       string `json:"field"`
			Description string `json:"description"`
		} `json:"fieldViolations"`
	} `json:"error"`
	raw string
}

// deliveredCode is the code the self-test's DeliverCode step brings.
const deliveredCode = "Xy42Q7"

// runExampleSelftest runs the example's self-test against p with env
// (OTPD_API_URL or OTPD_API_SOCKET, OTPD_TOKEN, ...): it hands the node
// process the code of its first send, read from otpd's console provider,
// checks that the delivered code reached the provider too, and returns
// the steps by name.
func runExampleSelftest(t *testing.T, node string, p *process, env ...string) map[string]exampleStep {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "dist/example.js", "--selftest")
	cmd.Dir = exampleDir
	cmd.Env = append(os.Environ(), env...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	steps := map[string]exampleStep{}
	var order []string
	fail := func(format string, args ...any) {
		t.Helper()
		_ = stdin.Close()
		cancel()
		_ = cmd.Wait()
		t.Fatalf("%s\nnode steps:\n%s\nnode stderr:\n%s", fmt.Sprintf(format, args...), strings.Join(order, "\n"), stderr.String())
	}
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		var s exampleStep
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			fail("node printed %q: %v", sc.Text(), err)
		}
		s.raw = sc.Text()
		steps[s.Step], order = s, append(order, s.raw)
		if s.Step != "send" {
			continue
		}
		if s.Error != nil {
			fail("SendCode over Connect failed")
		}
		select {
		case code := <-p.codes:
			if _, err := fmt.Fprintln(stdin, code); err != nil {
				fail("write the code to node: %v", err)
			}
			_ = stdin.Close()
		case <-time.After(30 * time.Second):
			fail("otpd printed no code in 30s")
		}
	}
	if err := cmd.Wait(); err != nil {
		fail("node dist/example.js --selftest: %v", err)
	}
	var shown []string // the environment, without the token
	for _, kv := range env {
		if !strings.HasPrefix(kv, "OTPD_TOKEN=") {
			shown = append(shown, kv)
		}
	}
	t.Logf("node selftest (%s): %d steps in %v", strings.Join(shown, " "), len(order), time.Since(start).Round(time.Millisecond))
	if _, ok := steps["done"]; !ok {
		fail("the self-test did not finish")
	}
	select {
	case code := <-p.codes:
		if code != deliveredCode {
			fail("the console provider printed code %q after DeliverCode, want %q", code, deliveredCode)
		}
	case <-time.After(5 * time.Second):
		fail("DeliverCode's code never reached the console provider")
	}
	// The steps every scenario shares: an answer is not an error, a limit
	// is resource_exhausted with its RetryInfo and never retried, a bad
	// request names its fields.
	check := func(ok bool, step, want string) {
		t.Helper()
		if !ok {
			fail("step %s: want %s, got %s", step, want, steps[step].raw)
		}
	}
	s := steps["verify_wrong"]
	check(s.Error == nil && s.Result == "MISMATCH" && s.AttemptsRemaining == 4, "verify_wrong", "result MISMATCH, 4 attempts left")
	s = steps["verify"]
	check(s.Error == nil && s.Result == "OK", "verify", "result OK")
	s = steps["send_again"]
	check(s.Error != nil && s.Error.Code == "resource_exhausted" && s.Error.Reason == "RATE_LIMITED" &&
		s.Error.Metadata["limit"] == "resend_interval" && s.Error.RetryDelayMs > 0 && s.Error.RetryDelayMs <= 60_000 && s.Error.Attempts == 1,
		"send_again", "resource_exhausted RATE_LIMITED (resend_interval), a RetryInfo delay in (0, 60s], 1 attempt")
	s = steps["send_bad_request"]
	var fields []string
	if s.Error != nil {
		for _, v := range s.Error.FieldViolations {
			fields = append(fields, v.Field)
			check(v.Description != "" && strings.Contains(s.Error.Message, v.Description), "send_bad_request", "each violation's description in the message")
		}
	}
	check(s.Error != nil && s.Error.Code == "invalid_argument" && slices.Contains(fields, "recipient") && slices.Contains(fields, "usage_type"),
		"send_bad_request", "invalid_argument with BadRequest violations of recipient and usage_type")
	s = steps["deliver"]
	check(s.Error == nil && s.Provider != "", "deliver", "delivered")
	return steps
}

// TestNodeConnectExample runs the Node example client (examples/node)
// against otpd's listen.api with a caller token: over HTTP/1.1 in binary
// protobuf and over h2c in JSON, send, verify (wrong, then right), a rate
// limit, a bad request, DeliverCode, and a call without the token.
func TestNodeConnectExample(t *testing.T) {
	t.Parallel()
	node := needNodeExample(t)
	rs := redistest.Start(t)
	token := rand.Text()
	sum := sha256.Sum256([]byte(token))
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "otpd.yaml")
	cfg := fmt.Sprintf(`
listen:
  grpc: "%[1]s"
  http: "%[1]s"
  api: "%[1]s"
redis:
  url: "${REDIS_URL}"
secret: "0123456789abcdef0123456789abcdef-node-connect"
auth:
  tokens:
    - name: node-example
      sha256: "%[2]s"
limits:
  resend_interval: 60s
providers:
  - name: dev-console
    type: console
`, anyPort, hex.EncodeToString(sum[:]))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startOtpd(t, []string{"-config", cfgPath}, "REDIS_URL="+rs.URL())
	api := p.api(t)
	if api == "" {
		t.Fatalf("otpd logged no listen.api address:\n%s", p.Output())
	}
	for i, tc := range []struct {
		name        string
		httpVersion string
		json        string
	}{
		{"http1.1-binary", "1.1", "0"},
		{"h2c-json", "2", "1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			steps := runExampleSelftest(t, node, p,
				"OTPD_API_URL=http://"+api, "OTPD_TOKEN="+token,
				"OTPD_HTTP_VERSION="+tc.httpVersion, "OTPD_JSON="+tc.json,
				fmt.Sprintf("OTPD_RECIPIENT=+1415555%04d", 100+i),
				fmt.Sprintf("OTPD_DELIVER_RECIPIENT=node-%d@example.com", i))
			if s := steps["send"]; s.Provider != "dev-console" {
				t.Errorf("send: provider %q, want dev-console (%s)", s.Provider, s.raw)
			}
			if s := steps["no_token"]; s.Error == nil || s.Error.Code != "unauthenticated" || s.Error.Reason != "MISSING_TOKEN" {
				t.Errorf("no_token: want unauthenticated MISSING_TOKEN, got %s", s.raw)
			}
		})
	}
}

// TestNodeConnectUnixSocket runs the example over a unix socket (the
// sidecar layout: listen.api "unix:///..."), with HTTP/2 (h2c), against
// otpd in dev mode (in-memory store, no tokens).
func TestNodeConnectUnixSocket(t *testing.T) {
	t.Parallel()
	node := needNodeExample(t)
	sock := filepath.Join(t.TempDir(), "run", "api.sock")
	p := startOtpd(t, []string{"-listen-grpc", anyPort, "-listen-http", anyPort, "-listen-api", "unix://" + sock}, "OTPD_CONFIG=")
	if api := p.api(t); api == "" {
		t.Fatalf("otpd logged no listen.api address:\n%s", p.Output())
	}
	steps := runExampleSelftest(t, node, p,
		"OTPD_API_SOCKET=unix://"+sock, "OTPD_HTTP_VERSION=2", "OTPD_RECIPIENT=+14155550142")
	// No tokens in dev mode: the tokenless verification is answered, and
	// the code was consumed by the step before.
	if s := steps["no_token"]; s.Error != nil || s.Result != "EXPIRED" {
		t.Errorf("no_token: want result EXPIRED, got %s", s.raw)
	}
}

// TestNodeConnectClientUnit runs the example client's own tests
// (examples/node/src/otpd-client.test.ts, node --test) against an
// in-process fake otpd: what otpd rarely does on cue, such as UNAVAILABLE
// with a RetryInfo (retried, with the same idempotency key) next to
// RESOURCE_EXHAUSTED with a short one (never retried).
func TestNodeConnectClientUnit(t *testing.T) {
	t.Parallel()
	node := needNodeExample(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--test", "dist/otpd-client.test.js")
	cmd.Dir = exampleDir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node --test dist/otpd-client.test.js: %v\n%s", err, out)
	}
	pass := regexp.MustCompile(`(?m)^# pass (\d+)$`).FindSubmatch(out)
	if pass == nil || string(pass[1]) == "0" || !bytes.Contains(out, []byte("\n# fail 0\n")) {
		t.Fatalf("node --test ran no passing tests, or some failed:\n%s", out)
	}
	t.Logf("node --test dist/otpd-client.test.js: %s passed", pass[1])
}

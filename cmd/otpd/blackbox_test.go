package main_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/otpd/otpd/internal/redistest"
	otpv1 "github.com/otpd/otpd/proto/otp/v1"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// otpdBinary builds cmd/otpd once per test run, with the fake provider
// (-tags otpd_fake), which release builds leave out.
func otpdBinary(tb testing.TB) string {
	tb.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "otpd-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "otpd")
		// The go command that runs this test (make exports GOTOOLCHAIN=local).
		goBin, err := exec.LookPath("go")
		if err != nil {
			buildErr = err
			return
		}
		out, err := exec.Command(goBin, "build", "-race", "-tags", "otpd_fake", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return binPath
}

// process is a running otpd.
type process struct {
	cmd    *exec.Cmd
	codes  chan string
	mu     sync.Mutex
	output strings.Builder
	done   chan struct{}
	// serving is closed once otpd logged the addresses it bound, so tests
	// can listen on port 0 instead of guessing a free port that another
	// parallel test (or its redis-server) may take first.
	serving            chan struct{}
	grpcAddr, httpAddr string
	apiAddr            string // listen.api's, "" when off
}

func (p *process) Output() string { p.mu.Lock(); defer p.mu.Unlock(); return p.output.String() }

func startOtpd(tb testing.TB, args []string, env ...string) *process {
	tb.Helper()
	cmd := exec.Command(otpdBinary(tb), args...)
	cmd.Env = append(os.Environ(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stdout = cmd.Stderr
	p := &process{cmd: cmd, codes: make(chan string, 16), done: make(chan struct{}), serving: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.output.WriteString(line + "\n")
			p.mu.Unlock()
			if code, ok := strings.CutPrefix(line, "code: "); ok {
				p.codes <- code
			}
			p.noteAddrs(line)
		}
	}()
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		_ = cmd.Wait()
		if tb.Failed() {
			tb.Logf("otpd output:\n%s", p.Output())
		}
	})
	return p
}

// anyPort is a listen address for otpd: the kernel picks the port and
// the test reads it back with addrs.
const anyPort = "127.0.0.1:0"

// noteAddrs records the addresses of otpd's "admin http listening" and
// "otpd serving" log lines; the second is logged last.
func (p *process) noteAddrs(line string) {
	var rec struct {
		Msg  string `json:"msg"`
		Addr string `json:"addr"`
		GRPC string `json:"grpc"`
		API  string `json:"api"`
	}
	if json.Unmarshal([]byte(line), &rec) != nil {
		return
	}
	switch rec.Msg {
	case "admin http listening":
		p.httpAddr = rec.Addr
	case "otpd serving":
		select {
		case <-p.serving: // logged once; never close twice
		default:
			p.grpcAddr, p.apiAddr = rec.GRPC, rec.API
			close(p.serving)
		}
	}
}

// addrs waits until otpd serves and returns the gRPC and admin HTTP
// addresses it bound ("" for an admin port it does not open).
func (p *process) addrs(tb testing.TB) (grpcAddr, httpAddr string) {
	tb.Helper()
	select {
	case <-p.serving:
		return p.grpcAddr, p.httpAddr
	case <-p.done:
		tb.Fatalf("otpd exited before serving:\n%s", p.Output())
	case <-time.After(30 * time.Second):
		tb.Fatalf("otpd did not log \"otpd serving\" in 30s:\n%s", p.Output())
	}
	return "", ""
}

// api waits until otpd serves and returns the listen.api address it bound
// ("" when listen.api is off).
func (p *process) api(tb testing.TB) string {
	tb.Helper()
	p.addrs(tb)
	return p.apiAddr
}

func dial(tb testing.TB, target string) *grpc.ClientConn {
	tb.Helper()
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = conn.Close() })
	return conn
}

// waitHealth polls grpc.health.v1 until it reports want.
func waitHealth(tb testing.TB, conn *grpc.ClientConn, want healthpb.HealthCheckResponse_ServingStatus) {
	tb.Helper()
	hc := healthpb.NewHealthClient(conn)
	var last string
	for range 300 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "otp.v1.OtpService"})
		cancel()
		if err == nil && resp.GetStatus() == want {
			return
		}
		last = fmt.Sprint(resp.GetStatus(), err)
		time.Sleep(50 * time.Millisecond)
	}
	tb.Fatalf("health never became %v (last: %s)", want, last)
}

func httpGet(tb testing.TB, url string) (int, string) {
	tb.Helper()
	resp, err := http.Get(url)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestBlackBox(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	dir := t.TempDir()
	sock := filepath.Join(dir, "run", "otpd.sock")
	cfgPath := filepath.Join(dir, "otpd.yaml")
	cfg := fmt.Sprintf(`
listen:
  grpc: "unix://%s"
  http: "%s"
redis:
  url: "${REDIS_URL}"
secret: "${OTPD_HMAC_KEY}"
code: {length: 8, ttl: 5m}
limits:
  resend_interval: 30s
health: {interval: 200ms}
shutdown: {timeout: 10s}
templates: {app_name: "Acme"}
providers:
  - name: dev-console
    type: console
    channel: sms
  - name: slow-mail
    type: fake
    channel: email
    config: {delay: 1500ms}
`, sock, anyPort)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"REDIS_URL=" + rs.URL(), "OTPD_HMAC_KEY=0123456789abcdef0123456789abcdef-blackbox"}

	// -check validates the file and renders every provider × usage type.
	check := exec.Command(otpdBinary(t), "-config", cfgPath, "-check")
	check.Env = append(os.Environ(), env...)
	out, err := check.CombinedOutput()
	if err != nil {
		t.Fatalf("otpd -check: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "configuration OK") || !strings.Contains(string(out), "ForgotPassword") || strings.Contains(string(out), "blackbox") {
		t.Fatalf("otpd -check output:\n%s", out)
	}

	p := startOtpd(t, []string{"-config", cfgPath}, env...)
	_, httpAddr := p.addrs(t)
	conn := dial(t, "unix://"+sock)
	waitHealth(t, conn, healthpb.HealthCheckResponse_SERVING)
	client := otpv1.NewOtpServiceClient(conn)
	ctx := context.Background()

	// Send over the unix socket, read the code the console provider
	// printed, verify it.
	resp, err := client.SendCode(ctx, &otpv1.SendCodeRequest{Recipient: "+14155550123", UsageType: otpv1.UsageType_USAGE_TYPE_SIGN_IN, Locale: "fr-CA"})
	if err != nil {
		t.Fatalf("SendCode: %v", err)
	}
	if resp.GetProvider() != "dev-console" {
		t.Fatalf("provider = %q", resp.GetProvider())
	}
	var code string
	select {
	case code = <-p.codes:
	case <-time.After(10 * time.Second):
		t.Fatal("the console provider printed no code")
	}
	if len(code) != 8 {
		t.Fatalf("code %q: want 8 digits as configured", code)
	}
	v, err := client.VerifyCode(ctx, &otpv1.VerifyCodeRequest{Recipient: "+14155550123", UsageType: otpv1.UsageType_USAGE_TYPE_SIGN_IN, Code: code})
	if err != nil || v.GetResult() != otpv1.VerifyResult_VERIFY_RESULT_OK {
		t.Fatalf("VerifyCode: %v %v", v, err)
	}
	_, err = client.SendCode(ctx, &otpv1.SendCodeRequest{Recipient: "not-a-number", UsageType: otpv1.UsageType_USAGE_TYPE_SIGN_IN})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("bad recipient: %v, want INVALID_ARGUMENT", err)
	}

	// Admin HTTP.
	if c, _ := httpGet(t, "http://"+httpAddr+"/healthz"); c != 200 {
		t.Fatalf("/healthz = %d", c)
	}
	if c, _ := httpGet(t, "http://"+httpAddr+"/readyz"); c != 200 {
		t.Fatalf("/readyz = %d", c)
	}
	// Profiles only in a binary built with -tags pprof (make load).
	if c, _ := httpGet(t, "http://"+httpAddr+"/debug/pprof/"); c != http.StatusNotFound {
		t.Fatalf("/debug/pprof/ = %d on a release build, want 404", c)
	}
	_, metrics := httpGet(t, "http://"+httpAddr+"/metrics")
	for _, want := range []string{
		`otpd_codes_sent_total{channel="sms",entry="grpc",provider="dev-console",result="ok",usage_type="sign_in"} 1`,
		`otpd_verifications_total{country_code="1",result="ok",usage_type="sign_in"} 1`,
		`grpc_server_handled_total{grpc_code="InvalidArgument",grpc_method="SendCode",grpc_service="otp.v1.OtpService",grpc_type="unary"} 1`,
		`otpd_provider_request_duration_seconds_count{provider="dev-console",result="ok"} 1`,
		`otpd_sms_sent_by_country_total{country_code="1"} 1`,
		`otpd_store_up 1`,
		`otpd_rpc_calls_total{caller="anonymous",code="OK",entry="grpc",method="/otp.v1.OtpService/VerifyCode"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// Redis down: NOT_SERVING and not ready; back: serving again by itself.
	rs.Stop()
	waitHealth(t, conn, healthpb.HealthCheckResponse_NOT_SERVING)
	if c, _ := httpGet(t, "http://"+httpAddr+"/readyz"); c != http.StatusServiceUnavailable {
		t.Fatalf("/readyz with Redis down = %d, want 503", c)
	}
	if _, m := httpGet(t, "http://"+httpAddr+"/metrics"); !strings.Contains(m, "\notpd_store_up 0\n") {
		t.Error("/metrics with Redis down lacks otpd_store_up 0")
	}
	_, err = client.SendCode(ctx, &otpv1.SendCodeRequest{Recipient: "+14155550199", UsageType: otpv1.UsageType_USAGE_TYPE_SIGN_IN})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("SendCode with Redis down: %v, want UNAVAILABLE", err)
	}
	rs.Restart()
	waitHealth(t, conn, healthpb.HealthCheckResponse_SERVING)

	// SIGTERM while a slow send is in flight: the send finishes, then otpd
	// exits 0.
	inflight := make(chan error, 1)
	go func() {
		_, err := client.SendCode(ctx, &otpv1.SendCodeRequest{Recipient: "jane@example.com", UsageType: otpv1.UsageType_USAGE_TYPE_REGISTER})
		inflight <- err
	}()
	for i := 0; ; i++ {
		_, m := httpGet(t, "http://"+httpAddr+"/metrics")
		if strings.Contains(m, `grpc_server_started_total{grpc_method="SendCode",grpc_service="otp.v1.OtpService",grpc_type="unary"} 4`) {
			break
		}
		if i == 200 {
			t.Fatal("the slow send never started")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-inflight; err != nil {
		t.Fatalf("in-flight SendCode during drain: %v, want it to finish", err)
	}
	<-p.done
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("otpd exit after SIGTERM: %v", err)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket file left behind: %v", err)
	}
	logs := p.Output()
	if !strings.Contains(logs, "otpd stopped") {
		t.Error("no shutdown log")
	}
	for _, leak := range []string{"0123456789abcdef0123456789abcdef-blackbox", "4155550123", "jane@"} {
		if strings.Contains(logs, leak) {
			t.Errorf("output leaks %q", leak)
		}
	}
}

func TestBadConfigNamesKeys(t *testing.T) {
	t.Parallel()
	bin := otpdBinary(t)
	dir := t.TempDir()
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"unknown key", "limits: {per_ipp: 3}\n", []string{"limits.per_ipp: unknown key"}},
		{"wrong type", "code: {length: six}\n", []string{"code.length:"}},
		{"bad values", `
listen: {grpc: nowhere}
redis: {url: "redis://127.0.0.1:1"}
secret: short
limits: {per_ip: {count: -1}}
providers: [{name: a, type: carrier-pigeon}]
`, []string{"listen.grpc:", "secret: must be at least 32 bytes", "limits.per_ip.count:", `providers[0].type: "carrier-pigeon" is not a provider type`}},
		{"missing env", "secret: ${OTPD_TEST_UNSET_VARIABLE}\n", []string{"secret: environment variable OTPD_TEST_UNSET_VARIABLE is not set"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			for _, args := range [][]string{{"-config", path}, {"-config", path, "-check"}} {
				out, err := exec.Command(bin, args...).CombinedOutput()
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.ExitCode() != 2 {
					t.Fatalf("otpd %v: %v, want exit 2\n%s", args, err, out)
				}
				for _, w := range tc.want {
					if !strings.Contains(string(out), w) {
						t.Errorf("otpd %v output lacks %q:\n%s", args, w, out)
					}
				}
			}
		})
	}
}

func TestDevMode(t *testing.T) {
	t.Parallel()
	p := startOtpd(t, []string{"-listen-grpc", anyPort, "-listen-http", anyPort, "-listen-api", anyPort}, "OTPD_CONFIG=")
	grpcAddr, _ := p.addrs(t)
	conn := dial(t, "passthrough:///"+grpcAddr)
	waitHealth(t, conn, healthpb.HealthCheckResponse_SERVING)
	client := otpv1.NewOtpServiceClient(conn)
	ctx := context.Background()
	for _, to := range []string{"+8613800138000", "dev@example.com"} {
		if _, err := client.SendCode(ctx, &otpv1.SendCodeRequest{Recipient: to, UsageType: otpv1.UsageType_USAGE_TYPE_REGISTER, Locale: "zh-CN"}); err != nil {
			t.Fatalf("SendCode(%s): %v", to, err)
		}
		code := <-p.codes
		v, err := client.VerifyCode(ctx, &otpv1.VerifyCodeRequest{Recipient: to, UsageType: otpv1.UsageType_USAGE_TYPE_REGISTER, Code: code})
		if err != nil || v.GetResult() != otpv1.VerifyResult_VERIFY_RESULT_OK {
			t.Fatalf("VerifyCode(%s): %v %v", to, v, err)
		}
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-p.done
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	out := p.Output()
	if !strings.Contains(out, "DEV MODE") || !strings.Contains(out, `"level":"WARN","msg":"dev mode`) {
		t.Fatalf("no loud dev-mode warning:\n%s", out)
	}
}

package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	otpv1 "github.com/otpd/otpd/proto/otp/v1"
)

// panicky is an OtpService whose SendCode panics, as a bug would.
type panicky struct {
	otpv1.UnimplementedOtpServiceServer
}

func (panicky) SendCode(context.Context, *otpv1.SendCodeRequest) (*otpv1.SendCodeResponse, error) {
	panic("boom: nil map")
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// dialPlain connects to addr without TLS.
func dialPlain(tb testing.TB, addr string) *grpc.ClientConn {
	tb.Helper()
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = conn.Close() })
	return conn
}

func TestPanicAnswersInternal(t *testing.T) {
	t.Parallel()
	var logs lockedBuffer
	g := NewGRPC(DefaultConfig().Listen, panicky{}, nil, nil, prometheus.NewRegistry(), slog.New(slog.NewJSONHandler(&logs, nil)))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Server.Serve(lis) }()
	t.Cleanup(g.Server.Stop)
	conn := dialPlain(t, lis.Addr().String())

	_, err = otpv1.NewOtpServiceClient(conn).SendCode(t.Context(), &otpv1.SendCodeRequest{})
	if st := status.Convert(err); st.Code() != codes.Internal || st.Message() != "internal error" {
		t.Fatalf("a panicking handler answered %v, want INTERNAL without details", err)
	}
	if !strings.Contains(logs.String(), "panic in handler") || !strings.Contains(logs.String(), "boom: nil map") {
		t.Fatalf("the panic was not logged:\n%s", logs.String())
	}
	// The server survived and still answers, reflection included.
	names := listServices(t, conn)
	for _, want := range []string{"otp.v1.OtpService", "grpc.health.v1.Health"} {
		if !strings.Contains(names, want) {
			t.Errorf("reflection lists %v, want %s", names, want)
		}
	}
}

// listServices asks server reflection for the services, space-separated.
func listServices(tb testing.TB, conn *grpc.ClientConn) string {
	tb.Helper()
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(tb.Context())
	if err != nil {
		tb.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		tb.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		tb.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	return strings.Join(names, " ")
}

// slogJSON logs JSON at debug level to w.
func slogJSON(w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func TestConfigErrorsNameKeys(t *testing.T) {
	t.Parallel()
	for _, ok := range []func(*Config){
		func(*Config) {},
		func(c *Config) { c.Listen.GRPC = "unix:///run/otpd/otpd.sock" },
		func(c *Config) { c.Listen.HTTP = "" }, // admin port off
		func(c *Config) { c.Listen.GRPC, c.Listen.HTTP = ":50051", "[::1]:0" },
		func(c *Config) { c.Listen.API = "0.0.0.0:8080" },
		func(c *Config) { c.Listen.API = "unix:///run/otpd/api.sock" },
		func(c *Config) {
			c.Hooks.Logto.IgnoreIPs = []string{"10.0.0.0/8", "203.0.113.7", "2001:db8::/48", "::1"}
		},
		func(c *Config) {
			c.Listen.MaxConnectionsPerIP, c.Listen.MaxConnectionAge, c.Listen.MaxConnectionAgeGrace = 0, 0, 0
		}, // off
	} {
		c := DefaultConfig()
		ok(&c)
		if err := c.Validate(); err != nil {
			t.Errorf("%+v: Validate = %v, want nil", c, err)
		}
	}
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"no grpc address", func(c *Config) { c.Listen.GRPC = "" }, "listen.grpc: must be set"},
		{"grpc without port", func(c *Config) { c.Listen.GRPC = "localhost" }, `listen.grpc: "localhost" is not host:port`},
		{"grpc port out of range", func(c *Config) { c.Listen.GRPC = "127.0.0.1:65536" }, `listen.grpc: "127.0.0.1:65536" has no valid port`},
		{"unix socket without path", func(c *Config) { c.Listen.GRPC = "unix://" }, "listen.grpc: unix:// needs a socket path"},
		{"bad http address", func(c *Config) { c.Listen.HTTP = "127.0.0.1" }, `listen.http: "127.0.0.1" is not host:port`},
		{"named http port", func(c *Config) { c.Listen.HTTP = "127.0.0.1:http" }, `listen.http: "127.0.0.1:http" has no valid port`},
		{"bad api address", func(c *Config) { c.Listen.API = "8080" }, `listen.api: "8080" is not host:port`},
		{"api unix socket without path", func(c *Config) { c.Listen.API = "unix://" }, "listen.api: unix:// needs a socket path"},
		{"drain under a second", func(c *Config) { c.Shutdown.Timeout = 999 * time.Millisecond }, "shutdown.timeout: must be at least 1s"},
		{"negative delay", func(c *Config) { c.Shutdown.Delay = -time.Second }, "shutdown.delay: must not be negative"},
		{"health interval too short", func(c *Config) { c.Health.Interval = 99 * time.Millisecond }, "health.interval: must be at least 100ms"},
		{"no connections", func(c *Config) { c.Listen.MaxConnections = 0 }, "listen.max_connections: must be at least 1"},
		{"negative per-IP cap", func(c *Config) { c.Listen.MaxConnectionsPerIP = -1 }, "listen.max_connections_per_ip: must not be negative"},
		{"no streams", func(c *Config) { c.Listen.MaxConcurrentStreams = 0 }, "listen.max_concurrent_streams: must be from 1 to 4294967295"},
		{"handshake timeout off", func(c *Config) { c.Listen.HandshakeTimeout = 0 }, "listen.handshake_timeout: must be at least 100ms"},
		{"idle timeout off", func(c *Config) { c.Listen.IdleTimeout = 0 }, "listen.idle_timeout: must be at least 1s"},
		{"connection age too short", func(c *Config) { c.Listen.MaxConnectionAge = time.Millisecond }, "listen.max_connection_age: must be at least 1s"},
		{"negative grace", func(c *Config) { c.Listen.MaxConnectionAgeGrace = -time.Second }, "listen.max_connection_age_grace: must not be negative"},
		{"keepalive too often", func(c *Config) { c.Listen.KeepaliveTime = 500 * time.Millisecond }, "listen.keepalive_time: must be at least 1s"},
		{"keepalive timeout too short", func(c *Config) { c.Listen.KeepaliveTimeout = 0 }, "listen.keepalive_timeout: must be at least 100ms"},
		{"bad ignored ip", func(c *Config) { c.Hooks.Logto.IgnoreIPs = []string{"10.0.0.0/8", "10.0.0.300"} }, `hooks.logto.ignore_ips[1]: "10.0.0.300" is not an IP address or a CIDR prefix`},
		{"bad ignored prefix", func(c *Config) { c.Hooks.Logto.IgnoreIPs = []string{"10.0.0.0/33"} }, `hooks.logto.ignore_ips[0]: "10.0.0.0/33" is not an IP address or a CIDR prefix`},
		{"ping interval zero", func(c *Config) { c.Listen.MinPingInterval = 0 }, "listen.min_ping_interval: must be at least 1s"},
	} {
		c := DefaultConfig()
		tc.mutate(&c)
		err := c.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: Validate = %v, want the one error %q", tc.name, err, tc.want)
		}
	}
}

// waitFor polls cond until it holds, failing the test after a generous
// bound.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	for deadline := time.Now().Add(15 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			tb.Fatalf("gave up waiting for %s", what)
		}
	}
}

// logAttr returns attr of the first JSON log line whose msg is msg, or "".
func logAttr(logs, msg, attr string) string {
	sc := bufio.NewScanner(strings.NewReader(logs))
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) != nil || rec["msg"] != msg {
			continue
		}
		s, _ := rec[attr].(string)
		return s
	}
	return ""
}

// get returns the status and body of GET url, or -1 if it did not answer.
func get(tb testing.TB, url string) (int, string) {
	tb.Helper()
	req, err := http.NewRequestWithContext(tb.Context(), http.MethodGet, url, nil)
	if err != nil {
		tb.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return -1, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestRunFollowsStoreAndStopsOnCancel(t *testing.T) {
	t.Parallel()
	var logs lockedBuffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	reg := prometheus.NewRegistry()
	var storeUp atomic.Bool
	ping := func(context.Context) error {
		if !storeUp.Load() {
			return errors.New("redis: connection refused")
		}
		return nil
	}
	cfg := DefaultConfig()
	cfg.Listen = Listen{GRPC: "127.0.0.1:0", HTTP: "127.0.0.1:0"}
	cfg.Health.Interval = 100 * time.Millisecond
	g := NewGRPC(DefaultConfig().Listen, otpv1.UnimplementedOtpServiceServer{}, nil, nil, reg, log)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, g, reg, ping, log, "version", "test") }()

	var grpcAddr, httpAddr string
	waitFor(t, "the bound addresses in the log", func() bool {
		l := logs.String()
		grpcAddr, httpAddr = logAttr(l, "otpd serving", "grpc"), logAttr(l, "admin http listening", "addr")
		return grpcAddr != "" && httpAddr != ""
	})
	if v := logAttr(logs.String(), "otpd serving", "version"); v != "test" {
		t.Errorf("otpd serving line has version %q, want the attrs given to Run", v)
	}
	health := healthpb.NewHealthClient(dialPlain(t, grpcAddr))
	healthStatus := func(service string) healthpb.HealthCheckResponse_ServingStatus {
		resp, err := health.Check(t.Context(), &healthpb.HealthCheckRequest{Service: service})
		if err != nil {
			t.Fatalf("health check %q: %v", service, err)
		}
		return resp.GetStatus()
	}
	admin := "http://" + httpAddr

	// The store does not answer: alive, not ready.
	if code, body := get(t, admin+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d %q while the store is down, want 200", code, body)
	}
	waitFor(t, "a failed store ping", func() bool {
		return strings.Contains(logs.String(), "store unavailable (unreachable or refusing writes): not serving")
	})
	if code, body := get(t, admin+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz = %d %q while the store is down, want 503", code, body)
	}
	for _, svc := range []string{"", "otp.v1.OtpService"} {
		if st := healthStatus(svc); st != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Errorf("health %q = %v while the store is down, want NOT_SERVING", svc, st)
		}
	}
	if _, body := get(t, admin+"/metrics"); !strings.Contains(body, "\notpd_store_up 0\n") {
		t.Errorf("/metrics lacks otpd_store_up 0 while the store is down:\n%s", body)
	}

	// The store answers: ready and serving.
	storeUp.Store(true)
	waitFor(t, "/readyz 200 once the store answers", func() bool { code, _ := get(t, admin+"/readyz"); return code == http.StatusOK })
	for _, svc := range []string{"", "otp.v1.OtpService"} {
		if st := healthStatus(svc); st != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health %q = %v once the store answers, want SERVING", svc, st)
		}
	}
	if _, body := get(t, admin+"/metrics"); !strings.Contains(body, "\notpd_store_up 1\n") {
		t.Errorf("/metrics lacks otpd_store_up 1 once the store answers:\n%s", body)
	}

	// Cancelling drains and stops both listeners.
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v after cancel, want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	for _, addr := range []string{grpcAddr, httpAddr} {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after Run returned", addr)
		}
	}
}

package server

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/connectivity"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/otpd/otpd/internal/h2test"
	otpv1 "github.com/otpd/otpd/proto/otp/v1"
)

// rawHealthCheck opens a bare connection to addr (host:port or
// unix:///path) and makes one
// grpc.health.v1 Check on it by hand (HTTP/2 preface, SETTINGS, HEADERS,
// DATA), without the goroutines of a gRPC client, so that a test can hold
// thousands of connections and count only the server's. It returns the
// connection, open, once the check answered OK, or an error if the server
// closed it first.
func rawHealthCheck(addr string) (net.Conn, error) { return h2test.HealthCheck(net.Dialer{}, addr) }

// closedByServer reports whether the server has closed c, waiting for it
// for at most wait.
func closedByServer(c net.Conn, wait time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 4096)
	for {
		if _, err := c.Read(buf); err != nil {
			var ne net.Error
			return !(errors.As(err, &ne) && ne.Timeout())
		}
	}
}

// testListen is DefaultConfig's listen block with short timeouts, for
// tests that wait for them.
func testListen(mutate func(*Listen)) Listen {
	lc := DefaultConfig().Listen
	mutate(&lc)
	return lc
}

func TestIdleConnectionsAreClosed(t *testing.T) {
	t.Parallel()
	ts := startServer(t, testListen(func(l *Listen) { l.IdleTimeout = 300 * time.Millisecond }))
	health := healthpb.NewHealthClient(ts.conn)
	if _, err := health.Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	if n := ts.metric(t, "otpd_grpc_connections_open", nil); n != 1 {
		t.Errorf("otpd_grpc_connections_open = %v with one client, want 1", n)
	}
	// The server sends GOAWAY once the connection has been idle for
	// idle_timeout: the client goes idle and the slot is free.
	waitFor(t, "the idle connection to be closed", func() bool {
		return ts.metric(t, "otpd_grpc_connections_open", nil) == 0 && ts.conn.GetState() == connectivity.Idle
	})
	// The client reconnects on its next call.
	if _, err := health.Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("health check after the idle close: %v", err)
	}
	// A connection that never finishes the HTTP/2 preface is closed after
	// handshake_timeout, whatever idle_timeout says.
	silent := startServer(t, testListen(func(l *Listen) { l.HandshakeTimeout = 200 * time.Millisecond; l.IdleTimeout = time.Hour }))
	c, err := net.Dial("tcp", silent.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !closedByServer(c, 15*time.Second) {
		t.Fatal("a silent connection was still open after 15s with a 200ms handshake_timeout")
	}
	waitFor(t, "the silent connection's slot to be free", func() bool { return silent.metric(t, "otpd_grpc_connections_open", nil) == 0 })
}

func TestConnectionCapRefusesThenRecovers(t *testing.T) {
	t.Parallel()
	ts := startServer(t, testListen(func(l *Listen) {
		l.MaxConnections, l.MaxConnectionsPerIP = 2, 0
		l.IdleTimeout = 500 * time.Millisecond
	}))
	// ts.conn is not connected yet: the cap's two slots go to raw clients.
	var held []net.Conn
	for range 2 {
		c, err := rawHealthCheck(ts.addr)
		if err != nil {
			t.Fatalf("connection within the cap: %v", err)
		}
		held = append(held, c)
	}
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	if _, err := rawHealthCheck(ts.addr); err == nil {
		t.Fatal("a third connection was served with max_connections 2")
	}
	if n := ts.metric(t, "otpd_grpc_connections_refused_total", map[string]string{"limit": "max_connections"}); n != 1 {
		t.Errorf("otpd_grpc_connections_refused_total{limit=max_connections} = %v, want 1", n)
	}
	if n := ts.metric(t, "otpd_grpc_connections_open", nil); n != 2 {
		t.Errorf("otpd_grpc_connections_open = %v, want 2", n)
	}
	if !bytes.Contains([]byte(ts.logs.String()), []byte("grpc connection refused: listen.max_connections reached")) {
		t.Errorf("no warning about the cap in the log:\n%s", ts.logs.String())
	}
	// The held connections go idle and are reaped: a new caller gets in.
	for _, c := range held {
		if !closedByServer(c, 15*time.Second) {
			t.Fatal("an idle connection was not closed within 15s with a 500ms idle_timeout")
		}
	}
	waitFor(t, "the slots to be free", func() bool { return ts.metric(t, "otpd_grpc_connections_open", nil) == 0 })
	c, err := rawHealthCheck(ts.addr)
	if err != nil {
		t.Fatalf("a new caller after the idle connections were reaped: %v", err)
	}
	c.Close()
}

func TestConnectionCapPerIP(t *testing.T) {
	t.Parallel()
	ts := startServer(t, testListen(func(l *Listen) { l.MaxConnections, l.MaxConnectionsPerIP = 10, 2 }))
	for range 2 {
		c, err := rawHealthCheck(ts.addr)
		if err != nil {
			t.Fatalf("connection within the per-IP cap: %v", err)
		}
		defer c.Close()
	}
	if _, err := rawHealthCheck(ts.addr); err == nil {
		t.Fatal("a third connection from 127.0.0.1 was served with max_connections_per_ip 2")
	}
	if n := ts.metric(t, "otpd_grpc_connections_refused_total", map[string]string{"limit": "max_connections_per_ip"}); n != 1 {
		t.Errorf("otpd_grpc_connections_refused_total{limit=max_connections_per_ip} = %v, want 1", n)
	}
}

// TestRunCapsUnixSocket checks that Run applies the cap to a unix-socket
// listener too (the sidecar's).
func TestRunCapsUnixSocket(t *testing.T) {
	t.Parallel()
	var logs lockedBuffer
	log := slogJSON(&logs)
	reg := prometheus.NewRegistry()
	cfg := DefaultConfig()
	sock := "unix://" + filepath.Join(t.TempDir(), "otpd.sock")
	cfg.Listen.GRPC, cfg.Listen.HTTP = sock, ""
	g := NewGRPC(testListen(func(l *Listen) { l.MaxConnections = 1 }), otpv1.UnimplementedOtpServiceServer{}, nil, nil, reg, log)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, g, reg, func(context.Context) error { return nil }, log) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	}()
	waitFor(t, "otpd serving", func() bool { return logAttr(logs.String(), "otpd serving", "grpc") != "" })

	first, err := rawHealthCheck(sock)
	if err != nil {
		t.Fatalf("first connection: %v", err)
	}
	if _, err := rawHealthCheck(sock); err == nil {
		t.Fatal("a second connection was served on a unix socket with max_connections 1")
	}
	first.Close()
	waitFor(t, "a new caller once the first connection closed", func() bool {
		c, err := rawHealthCheck(sock)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

func TestClientKey(t *testing.T) {
	t.Parallel()
	key := func(s string) string {
		p, ok := clientKey(net.TCPAddrFromAddrPort(netip.MustParseAddrPort(s)))
		if !ok {
			return "none"
		}
		return p.String()
	}
	for _, tc := range []struct{ a, b string }{
		{"[2001:db8:1:2:aaaa::1]:1000", "[2001:db8:1:2:bbbb::2]:2000"}, // one /64
		{"[::ffff:192.0.2.1]:1000", "192.0.2.1:2000"},                  // v4-mapped is v4
	} {
		if key(tc.a) != key(tc.b) {
			t.Errorf("%s and %s count separately (%s, %s), want one client", tc.a, tc.b, key(tc.a), key(tc.b))
		}
	}
	for _, tc := range []struct{ a, b string }{
		{"[2001:db8:1:2::1]:1000", "[2001:db8:1:3::1]:1000"},
		{"192.0.2.1:1000", "192.0.2.2:1000"},
	} {
		if key(tc.a) == key(tc.b) {
			t.Errorf("%s and %s count as one client (%s)", tc.a, tc.b, key(tc.a))
		}
	}
	if _, ok := clientKey(&net.UnixAddr{Name: "@", Net: "unix"}); ok {
		t.Error("a unix-socket peer has a client key")
	}
}

// TestFiveThousandConnections attempts 5,000 connections, each making a
// health check, against a server capped at 1,000, and checks that what the
// server holds is bounded by the cap: goroutines and heap. The figures are
// logged (go test -v -run FiveThousand).
func TestFiveThousandConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("5,000 connections")
	}
	const attempts, limit = 5000, 1000
	ts := startServer(t, testListen(func(l *Listen) { l.MaxConnections, l.MaxConnectionsPerIP = limit, 0 }))

	// The baseline: the server up, with one connection made and gone.
	c, err := rawHealthCheck(ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	waitFor(t, "the first connection to close", func() bool { return ts.metric(t, "otpd_grpc_connections_open", nil) == 0 })
	goroutines0, mem0 := settle()

	var (
		mu      sync.Mutex
		held    []net.Conn
		refused atomic.Int64
		work    = make(chan struct{})
		wg      sync.WaitGroup
	)
	for range 32 {
		wg.Go(func() {
			for range work {
				c, err := rawHealthCheck(ts.addr)
				if err != nil {
					refused.Add(1)
					continue
				}
				mu.Lock()
				held = append(held, c)
				mu.Unlock()
			}
		})
	}
	for range attempts {
		work <- struct{}{}
	}
	close(work)
	wg.Wait()
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	goroutines1, mem1 := settle()

	open := ts.metric(t, "otpd_grpc_connections_open", nil)
	refusedByServer := ts.metric(t, "otpd_grpc_connections_refused_total", nil)
	perConnMem := float64(int64(mem1)-int64(mem0)) / float64(len(held))
	perConnGoroutines := float64(goroutines1-goroutines0) / float64(len(held))
	t.Logf("%d attempted: %d served and held open, %d refused (server counted %v); open %v; goroutines %d -> %d (%.2f per connection); heap and stacks in use %.1f -> %.1f MB (%.1f KB per held connection, the test's side of loopback included)",
		attempts, len(held), refused.Load(), refusedByServer, open, goroutines0, goroutines1, perConnGoroutines,
		float64(mem0)/1e6, float64(mem1)/1e6, perConnMem/1e3)

	if len(held) != limit || open != limit {
		t.Errorf("%d connections served (gauge %v), want exactly max_connections %d", len(held), open, limit)
	}
	if int(refused.Load()) != attempts-limit || refusedByServer != attempts-limit {
		t.Errorf("%d refused (server counted %v), want %d", refused.Load(), refusedByServer, attempts-limit)
	}
	// grpc-go holds 2 to 3 goroutines per established connection (reader,
	// writer, keepalive); refused ones hold none. Without the cap, 5,000
	// connections hold 15,000.
	if g := goroutines1 - goroutines0; g > 4*limit {
		t.Errorf("goroutines grew by %d for %d open connections, want at most %d", g, limit, 4*limit)
	}
	// About 55 KB per established connection, both sides of loopback (66
	// under the race detector): 5,000 would be over 270 MB.
	if grew := int64(mem1) - int64(mem0); grew > 160<<20 {
		t.Errorf("heap and stacks grew by %d MB with %d connections open, want under 160 MB", grew>>20, limit)
	}
}

// settle collects garbage and returns the goroutine count and the memory
// in use: heap and goroutine stacks.
func settle() (goroutines int, inUse uint64) {
	var ms runtime.MemStats
	for range 2 {
		runtime.GC()
		time.Sleep(50 * time.Millisecond)
	}
	runtime.ReadMemStats(&ms)
	return runtime.NumGoroutine(), ms.HeapInuse + ms.StackInuse
}

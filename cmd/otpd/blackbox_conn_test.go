package main_test

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/otpd/otpd/internal/h2test"
)

// rawHealthCheck connects to addr from the local address src and makes one
// grpc.health.v1 Check by hand (HTTP/2 preface, SETTINGS, HEADERS, DATA),
// without a gRPC client's goroutines. It returns the open connection once
// the check answered OK, or an error if otpd closed it first.
func rawHealthCheck(src net.IP, addr string) (net.Conn, error) {
	return h2test.HealthCheck(net.Dialer{LocalAddr: &net.TCPAddr{IP: src}}, addr)
}

// scrape returns the unlabelled samples of /metrics at url, and the sum of
// each labelled metric over its series.
func scrape(tb testing.TB, url string) map[string]float64 {
	tb.Helper()
	resp, err := http.Get(url)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 || strings.HasPrefix(f[0], "#") {
			continue
		}
		v, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			continue
		}
		name, _, _ := strings.Cut(f[0], "{")
		out[name] += v
	}
	return out
}

// TestBlackBoxConnectionCap attempts 5,000 connections, each making a
// health check, from 50 loopback addresses, against otpd with its default
// connection limits (dev mode: no configuration), and checks on /metrics
// that otpd serves exactly listen.max_connections of them, refuses the
// rest at accept, and stays bounded in goroutines and resident memory.
func TestBlackBoxConnectionCap(t *testing.T) {
	if testing.Short() {
		t.Skip("5,000 connections")
	}
	t.Parallel()
	const attempts, sources, maxConns = 5000, 50, 1000 // 50 × the per-address cap of 100 > 1000
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 1, 1)}}
	if c, err := d.Dial("tcp", "127.0.0.1:1"); errors.Is(err, syscall.EADDRNOTAVAIL) {
		t.Skipf("no loopback address 127.0.1.1 to connect from: %v", err)
	} else if err == nil {
		c.Close()
	}

	p := startOtpd(t, []string{"-listen-grpc", anyPort, "-listen-http", anyPort, "-listen-api", anyPort}, "OTPD_CONFIG=")
	grpcAddr, httpAddr := p.addrs(t)
	metrics := "http://" + httpAddr + "/metrics"
	if c, err := rawHealthCheck(net.IPv4(127, 0, 0, 1), grpcAddr); err != nil {
		t.Fatalf("first health check: %v", err)
	} else {
		c.Close()
	}
	time.Sleep(time.Second) // let the first connection close and otpd settle
	before := scrape(t, metrics)

	var (
		mu      sync.Mutex
		held    []net.Conn
		refused int
		work    = make(chan int)
		wg      sync.WaitGroup
	)
	for range 32 {
		wg.Go(func() {
			for i := range work {
				c, err := rawHealthCheck(net.IPv4(127, 0, 1, byte(1+i%sources)), grpcAddr)
				mu.Lock()
				if err != nil {
					refused++
				} else {
					held = append(held, c)
				}
				mu.Unlock()
			}
		})
	}
	for i := range attempts {
		work <- i
	}
	close(work)
	wg.Wait()
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	time.Sleep(time.Second) // let refused connections' goroutines end
	after := scrape(t, metrics)

	rss0, rss1 := before["process_resident_memory_bytes"], after["process_resident_memory_bytes"]
	g0, g1 := before["go_goroutines"], after["go_goroutines"]
	t.Logf("%d attempted from %d addresses: %d served and held, %d refused (otpd counted %v); RSS %.1f -> %.1f MB (%.1f KB per held connection); goroutines %v -> %v (race-detector build)",
		attempts, sources, len(held), refused, after["otpd_grpc_connections_refused_total"],
		rss0/1e6, rss1/1e6, (rss1-rss0)/float64(max(len(held), 1))/1e3, g0, g1)

	if len(held) != maxConns || after["otpd_grpc_connections_open"] != maxConns {
		t.Errorf("%d connections served (otpd_grpc_connections_open %v), want listen.max_connections' default %d",
			len(held), after["otpd_grpc_connections_open"], maxConns)
	}
	if refused != attempts-maxConns || after["otpd_grpc_connections_refused_total"] != attempts-maxConns {
		t.Errorf("%d refused (otpd counted %v), want %d", refused, after["otpd_grpc_connections_refused_total"], attempts-maxConns)
	}
	// 3 goroutines per open connection; 5,000 would be 15,000.
	if g1-g0 > 4*maxConns {
		t.Errorf("goroutines grew from %v to %v with %d connections open, want at most %d more", g0, g1, maxConns, 4*maxConns)
	}
	// An open connection costs otpd about 280 KB of RSS in this
	// race-detector build (about 31 KB in a release build): 5,000 would be
	// 1.4 GB.
	if grew := rss1 - rss0; grew > 600e6 {
		t.Errorf("RSS grew by %.0f MB with %d connections open, want under 600 MB", grew/1e6, maxConns)
	}
	if !strings.Contains(p.Output(), "grpc connection refused: listen.max_connections reached") {
		t.Error("otpd did not warn that the connection cap was reached")
	}
}

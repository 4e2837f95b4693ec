// Package redistest starts a real redis-server for tests: its own process,
// temporary directory and port, stopped when the test ends. Tests that need
// Redis never share one and never mock it.
package redistest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is a redis-server process owned by one test.
type Server struct {
	tb   testing.TB
	dir  string
	port int
	// conf is a config file given first (Sentinel needs one it can
	// rewrite); args are more redis-server arguments.
	conf string
	args []string
	// cluster makes a cluster node, whose bus port is picked afresh with
	// its port on each start attempt (the default, port+10000, may not
	// exist).
	cluster bool
	busPort int

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// Start starts a redis-server on a free loopback port in a temporary
// directory and stops it when tb ends. The test is skipped, never silently
// passed, when redis-server is not installed and OTPD_REQUIRE_REDIS is unset;
// with OTPD_REQUIRE_REDIS=1 (as `make test` sets it) it fails instead.
func Start(tb testing.TB) *Server {
	tb.Helper()
	return StartWith(tb)
}

// StartWith is Start with more redis-server arguments ("--maxmemory",
// "64mb").
func StartWith(tb testing.TB, args ...string) *Server {
	tb.Helper()
	return start(tb, &Server{tb: tb, dir: tb.TempDir(), args: args})
}

// StartWithDebug is StartWith with the DEBUG command enabled (SLEEP,
// POPULATE), which Redis 7 refuses by default: fault-injection tests
// stall or fill the server with it.
func StartWithDebug(tb testing.TB, args ...string) *Server {
	tb.Helper()
	return StartWith(tb, append([]string{"--enable-debug-command", "yes"}, args...)...)
}

func start(tb testing.TB, s *Server) *Server {
	tb.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("OTPD_REQUIRE_REDIS") != "" {
			tb.Fatalf("redis-server not found: install Debian's redis-server package (apt-get install -y redis-server)")
		}
		tb.Skip("redis-server not found: install Debian's redis-server package")
	}
	// A free port is only free until someone else binds it: a parallel
	// test's server may take it first, so a failed start retries with
	// new ports.
	for attempt := 0; ; attempt++ {
		s.port = freePort(tb)
		if s.cluster {
			s.busPort = freePort(tb)
			for s.busPort == s.port {
				s.busPort = freePort(tb)
			}
		}
		err := s.start()
		if err == nil {
			break
		}
		if attempt == 4 {
			tb.Fatalf("start redis-server: %v", err)
		}
	}
	tb.Cleanup(s.Stop)
	return s
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// URL is a redis:// URL for the server's database 0.
func (s *Server) URL() string { return "redis://" + s.Addr() + "/0" }

// Client returns a go-redis client for the server, closed when the test ends.
func (s *Server) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr()})
	s.tb.Cleanup(func() { _ = c.Close() })
	return c
}

// Stop stops the server and waits for it to exit. Calling it twice is fine.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

// Restart starts a stopped server again on the same port, with empty data
// (and an empty script cache, as after a real Redis restart).
func (s *Server) Restart() {
	s.tb.Helper()
	s.Stop()
	var err error
	for range 50 {
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond) // the port may linger briefly
	}
	s.tb.Fatalf("restart redis-server: %v", err)
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var args []string
	if s.conf != "" {
		args = append(args, s.conf, "--sentinel")
	}
	args = append(args,
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--dir", s.dir,
		"--save", "",
		"--appendonly", "no",
		"--protected-mode", "yes",
		"--loglevel", "warning",
		"--logfile", "",
	)
	if s.cluster {
		args = append(args, "--cluster-enabled", "yes", "--cluster-port", strconv.Itoa(s.busPort),
			"--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000")
	}
	cmd := exec.Command("redis-server", append(args, s.args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return err
	}
	var logMu sync.Mutex
	var logTail []string
	done := make(chan struct{})
	go func() {
		defer func() { _ = cmd.Wait(); close(done) }()
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			logMu.Lock()
			logTail = append(logTail, sc.Text())
			if len(logTail) > 20 {
				logTail = logTail[1:]
			}
			logMu.Unlock()
		}
	}()
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		// The answer must come from this process, not from another
		// test's server that took the port first.
		info, err := c.Info(ctx, "server").Result()
		cancel()
		if err == nil && !strings.Contains(info, "\nprocess_id:"+strconv.Itoa(cmd.Process.Pid)+"\r") {
			err = fmt.Errorf("port %d is another process's", s.port)
			_ = cmd.Process.Kill()
			<-done
			return err
		}
		if err == nil {
			s.cmd, s.done = cmd, done
			return nil
		}
		exited := false
		select {
		case <-done:
			exited = true
		default:
		}
		if exited || time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-done
			logMu.Lock()
			defer logMu.Unlock()
			return fmt.Errorf("redis-server on port %d not ready: %v; log: %s", s.port, err, strings.Join(logTail, " | "))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func freePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

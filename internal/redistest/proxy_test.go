package redistest_test

import (
	"context"
	"errors"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/otpd/otpd/internal/redistest"
)

// The proxy passes commands, holds them for its delay, and cuts or resets
// every connection, open or new, until healed.
func TestProxy(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	p := redistest.StartProxy(t, srv.Addr())
	c := redis.NewClient(&redis.Options{Addr: p.Addr(), MaxRetries: -1, DialTimeout: time.Second,
		ReadTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond})
	defer c.Close()
	ctx := context.Background()
	ping := func() error { return c.Ping(ctx).Err() }
	if err := ping(); err != nil {
		t.Fatalf("PING through the proxy: %v", err)
	}

	p.Delay(500 * time.Millisecond)
	var ne net.Error
	if err := ping(); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("PING delayed beyond the read timeout: %v, want a timeout", err)
	}
	p.Heal()
	if err := ping(); err != nil {
		t.Fatalf("PING after heal: %v", err)
	}

	p.Cut()
	for range 3 { // the open connection, then new ones
		if err := ping(); err == nil {
			t.Fatal("PING through a cut proxy answered")
		}
	}
	p.Heal()
	if err := ping(); err != nil {
		t.Fatalf("PING after heal: %v", err)
	}

	p.Reset()
	if err := ping(); err == nil {
		t.Fatal("PING through a resetting proxy answered")
	}
	// A new connection is reset: by the time the client connects, writes
	// or reads, whichever comes first.
	conn, err := net.Dial("tcp", p.Addr())
	if err == nil {
		defer conn.Close()
		time.Sleep(20 * time.Millisecond)
		if _, err = conn.Write([]byte("PING\r\n")); err == nil {
			_, err = conn.Read(make([]byte, 16))
		}
	}
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("new connection through a resetting proxy: %v, want connection reset by peer", err)
	}
	p.Heal()
	if err := ping(); err != nil {
		t.Fatalf("PING after heal: %v", err)
	}
}

package redistest

import (
	"net"
	"sync"
	"testing"
	"time"
)

// Proxy is a TCP proxy between a client and a server that a test turns
// faulty: Delay holds every chunk of bytes, each way; Cut and Reset close
// every connection (with a FIN or a TCP RST) and every new one at once;
// Heal ends all three. The network faults between otpd and Redis without
// touching either.
type Proxy struct {
	target string
	ln     net.Listener

	mu    sync.Mutex
	delay time.Duration
	fault string // "", "cut" or "reset"
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// StartProxy listens on a free loopback port and forwards every
// connection to target (host:port). It stops when tb ends.
func StartProxy(tb testing.TB, target string) *Proxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("proxy: listen: %v", err)
	}
	p := &Proxy{target: target, ln: ln, conns: map[net.Conn]struct{}{}}
	p.wg.Go(p.accept)
	tb.Cleanup(p.stop)
	return p
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// URL is a redis:// URL for database 0 behind the proxy.
func (p *Proxy) URL() string { return "redis://" + p.Addr() + "/0" }

// Delay holds each chunk of bytes for d before passing it on, each way,
// from now on (on open connections too).
func (p *Proxy) Delay(d time.Duration) {
	p.mu.Lock()
	p.delay = d
	p.mu.Unlock()
}

// Cut closes every connection, each side with a FIN, and from now on
// closes every new connection as soon as it is accepted.
func (p *Proxy) Cut() { p.setFault("cut") }

// Reset aborts every connection with a TCP RST, each side, and from now
// on resets every new connection as soon as it is accepted.
func (p *Proxy) Reset() { p.setFault("reset") }

// Heal ends Delay, Cut and Reset: new connections pass again.
func (p *Proxy) Heal() {
	p.mu.Lock()
	p.delay, p.fault = 0, ""
	p.mu.Unlock()
}

func (p *Proxy) setFault(f string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fault = f
	for c := range p.conns {
		kill(c, f)
	}
	clear(p.conns)
}

// kill closes c, with a RST for "reset".
func kill(c net.Conn, fault string) {
	if tc, ok := c.(*net.TCPConn); ok && fault == "reset" {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

func (p *Proxy) accept() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return // closed by stop
		}
		p.mu.Lock()
		fault := p.fault
		p.mu.Unlock()
		if fault != "" {
			kill(client, fault)
			continue
		}
		p.wg.Go(func() { p.forward(client) })
	}
}

// forward pipes client to a new connection to the target, both ways,
// until either side closes or a fault closes both.
func (p *Proxy) forward(client net.Conn) {
	server, err := net.DialTimeout("tcp", p.target, time.Second)
	if err != nil {
		_ = client.Close()
		return
	}
	p.mu.Lock()
	if p.fault != "" { // a fault began while dialling
		p.mu.Unlock()
		kill(client, p.fault)
		kill(server, p.fault)
		return
	}
	p.conns[client], p.conns[server] = struct{}{}, struct{}{}
	p.mu.Unlock()
	var wg sync.WaitGroup
	wg.Go(func() { p.pipe(server, client) })
	wg.Go(func() { p.pipe(client, server) })
	wg.Wait()
	p.mu.Lock()
	delete(p.conns, client)
	delete(p.conns, server)
	p.mu.Unlock()
}

// pipe copies from src to dst, each chunk after the delay of the moment,
// then closes both.
func (p *Proxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			d := p.delay
			p.mu.Unlock()
			if d > 0 {
				time.Sleep(d)
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // EOF, or a connection the fault closed
		}
	}
}

func (p *Proxy) stop() {
	_ = p.ln.Close()
	p.setFault("cut")
	p.wg.Wait()
}

package server

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// connMetrics are the gRPC listener's connection counts.
type connMetrics struct {
	open    prometheus.Gauge
	refused *prometheus.CounterVec
}

func newConnMetrics(reg prometheus.Registerer) connMetrics {
	m := connMetrics{
		open: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "otpd_grpc_connections_open",
			Help: "gRPC connections open now (accepted and not yet closed), against listen.max_connections.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otpd_grpc_connections_refused_total",
			Help: "gRPC connections closed at accept because a cap was reached, by the key of that cap.",
		}, []string{"limit"}),
	}
	reg.MustRegister(m.open, m.refused)
	for _, l := range []string{limitConns, limitConnsPerIP} {
		m.refused.WithLabelValues(l)
	}
	return m
}

// The limit label values of otpd_grpc_connections_refused_total.
const (
	limitConns      = "max_connections"
	limitConnsPerIP = "max_connections_per_ip"
)

// limitListener closes, as soon as they are accepted, the connections that
// would take the open ones past max, or one client address's past perIP
// (0: no per-address cap). Unlike netutil.LimitListener, which stops
// accepting and leaves callers hanging in the kernel's backlog, a refused
// caller learns at once and its client backs off or tries another replica.
// Slots come back when connections close, which grpc-go's idle timeout,
// keepalive and handshake timeout make sure of.
type limitListener struct {
	net.Listener
	max, perIP int
	metrics    connMetrics
	log        *slog.Logger

	mu     sync.Mutex
	open   int
	byAddr map[netip.Prefix]int

	// Per limit (limitConns, limitConnsPerIP): the unix nanoseconds of the
	// last "reached" warning, and the refusals since.
	lastWarn, refused map[string]*atomic.Int64
}

func newLimitListener(l net.Listener, maxConns, perIP int, m connMetrics, log *slog.Logger) *limitListener {
	ll := &limitListener{
		Listener: l, max: maxConns, perIP: perIP, metrics: m, log: log, byAddr: map[netip.Prefix]int{},
		lastWarn: map[string]*atomic.Int64{}, refused: map[string]*atomic.Int64{},
	}
	for _, limit := range []string{limitConns, limitConnsPerIP} {
		ll.lastWarn[limit], ll.refused[limit] = new(atomic.Int64), new(atomic.Int64)
	}
	return ll
}

// Accept returns the next connection within the caps, closing those beyond.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key, keyed := clientKey(c.RemoteAddr())
		keyed = keyed && l.perIP > 0
		var refused string
		l.mu.Lock()
		switch {
		case l.open >= l.max:
			refused = limitConns
		case keyed && l.byAddr[key] >= l.perIP:
			refused = limitConnsPerIP
		default:
			l.open++
			if keyed {
				l.byAddr[key]++
			}
		}
		l.mu.Unlock()
		if refused != "" {
			l.refuse(c, refused)
			continue
		}
		l.metrics.open.Inc()
		lc := &limitConn{Conn: c}
		lc.release = func() {
			l.mu.Lock()
			l.open--
			if keyed {
				if l.byAddr[key]--; l.byAddr[key] <= 0 {
					delete(l.byAddr, key)
				}
			}
			l.mu.Unlock()
			l.metrics.open.Dec()
		}
		return lc, nil
	}
}

// refuse counts c, warns at most once a minute, and closes c, with a reset
// rather than a FIN on TCP so that a flood of refused connections leaves no
// TIME_WAIT sockets behind.
func (l *limitListener) refuse(c net.Conn, limit string) {
	l.metrics.refused.WithLabelValues(limit).Inc()
	refused, lastWarn := l.refused[limit], l.lastWarn[limit]
	n := refused.Add(1)
	now := time.Now().UnixNano()
	if last := lastWarn.Load(); now-last >= int64(time.Minute) && lastWarn.CompareAndSwap(last, now) {
		refused.Add(-n)
		l.mu.Lock()
		open := l.open
		l.mu.Unlock()
		l.log.Warn("grpc connection refused: listen."+limit+" reached", "open", open, "refused_since_last_warning", n)
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// clientKey is the address a per-client cap counts against: the IPv4
// address, or the /64 of an IPv6 one (one host usually holds a whole /64).
// Connections without an IP address (unix sockets) have none.
func clientKey(a net.Addr) (netip.Prefix, bool) {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.Prefix{}, false
	}
	ip := ta.AddrPort().Addr().Unmap()
	if !ip.IsValid() {
		return netip.Prefix{}, false
	}
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, err := ip.Prefix(bits)
	return p, err == nil
}

// limitConn gives its slot back when it is closed, once.
type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

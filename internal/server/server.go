// Package server runs otpd's listeners as one group: the gRPC server
// (otp.v1.OtpService, grpc.health.v1, reflection) with its interceptors, the
// admin HTTP port (/metrics, /healthz, /readyz), and the store watch that
// drives health; on shutdown it drains them in order.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/otpd/otpd/internal/grpcauth"
	"github.com/otpd/otpd/internal/promcache"
	otpv1 "github.com/otpd/otpd/proto/otp/v1"
)

// GRPC is otpd's gRPC server and the health service whose status Run keeps.
type GRPC struct {
	Server *grpc.Server
	Health *health.Server

	listen Listen      // the connection limits Run applies to the listener
	conns  connMetrics // their metrics
	tls    *tls.Config // nil: plaintext; the API listener's too
	calls  *callStats  // reports the calls that no interceptor saw
}

// NewGRPC serves svc, grpc.health.v1 and reflection, with metrics, caller
// authentication (auth; nil checks nothing), call logging and panic
// recovery (a panic answers INTERNAL, never UNKNOWN). lc bounds the
// connections: keepalive, idle timeout, connection age, handshake timeout
// and streams per connection here, the connection caps in Run. Malformed
// and oversize requests are answered INVALID_ARGUMENT and
// RESOURCE_EXHAUSTED (see requestCodec), counted and logged like any call.
// tlsCfg nil serves plaintext.
func NewGRPC(lc Listen, svc otpv1.OtpServiceServer, auth *grpcauth.Authenticator, tlsCfg *tls.Config, reg prometheus.Registerer, log *slog.Logger) GRPC {
	grpcMetrics := newGRPCMetrics()
	grpcMetrics.register(reg)
	calls := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "otpd_rpc_calls_total",
		Help: "Unary calls by authenticated caller (\"anonymous\" when caller auth is off or the service is open), method, status code and entry point (grpc, connect, grpc_web, logto).",
	}, []string{"caller", "method", "code", "entry"})
	reg.MustRegister(calls)
	record := recordCall(log, calls)
	cst := &callStats{unary: map[string]bool{}, report: func(ctx context.Context, method string, err error, elapsed time.Duration) {
		// Counted through the metrics interceptor itself, so that the
		// grpc_server_* series mean the same whoever answered.
		_, _ = grpcMetrics.unaryInterceptor(ctx, nil, &grpc.UnaryServerInfo{FullMethod: method}, func(context.Context, any) (any, error) { return nil, err })
		attrs := []any{"answered_by", "grpc-go"}
		if ac := apiCallFrom(ctx); ac != nil {
			if who, refused := ac.refusal(); refused != nil { // the API listener answered the caller
				err, attrs = refused, []any{"answered_by", who}
			}
		}
		if status.Code(err) == codes.ResourceExhausted { // over maxTransportBytes
			attrs = append(attrs, "malformed", malformedTooLarge)
		}
		record(ctx, method, status.Code(err), elapsed, attrs...)
	}}
	opts := []grpc.ServerOption{
		grpc.ForceServerCodecV2(newRequestCodec()),
		grpc.MaxRecvMsgSize(maxTransportBytes),
		grpc.StatsHandler(cst),
		grpc.MaxConcurrentStreams(uint32(lc.MaxConcurrentStreams)),
		grpc.ConnectionTimeout(lc.HandshakeTimeout),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle:     lc.IdleTimeout,
			MaxConnectionAge:      lc.MaxConnectionAge, // 0: grpc-go's infinity
			MaxConnectionAgeGrace: lc.MaxConnectionAgeGrace,
			Time:                  lc.KeepaliveTime,
			Timeout:               lc.KeepaliveTimeout,
		}),
		// Pings without calls in flight are fine: they do not reset the
		// idle timeout, which reaps such connections anyway.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: lc.MinPingInterval, PermitWithoutStream: true}),
		// Reused workers keep their grown stacks: a fresh goroutine per call
		// grows its stack on every call (about 10% of the CPU of a verify
		// under ghz).
		grpc.NumStreamWorkers(64),
		grpc.UnaryInterceptor((&unaryChain{
			metrics: grpcMetrics,
			auth:    auth.Unary(),
			record:  record,
			recover: recovery.UnaryServerInterceptor(recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
				log.ErrorContext(ctx, "panic in handler", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
				return status.Error(codes.Internal, "internal error")
			})),
		}).intercept),
		grpc.ChainStreamInterceptor(grpcMetrics.streamInterceptor, auth.Stream(), checkStreams()),
	}
	if tlsCfg != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(tlsCfg)))
	}
	gs := grpc.NewServer(opts...)
	otpv1.RegisterOtpServiceServer(gs, svc)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	reflection.Register(gs)
	grpcMetrics.initialize(gs)
	for name, info := range gs.GetServiceInfo() {
		for _, m := range info.Methods {
			if !m.IsClientStream && !m.IsServerStream {
				cst.unary["/"+name+"/"+m.Name] = true
			}
		}
	}
	return GRPC{Server: gs, Health: hs, listen: lc, conns: newConnMetrics(reg), tls: tlsCfg, calls: cst}
}

// Run serves g and the admin HTTP port until ctx is done or a listener
// fails, then drains: health NOT_SERVING, optional delay, GracefulStop
// bounded by shutdown.timeout, admin HTTP down. Health follows ping (the
// store): NOT_SERVING until it first answers and while it fails. The
// "otpd serving" line logs the bound addresses with attrs. The gRPC
// listener closes at accept the connections beyond the caps g was built
// with (listen.max_connections, listen.max_connections_per_ip).
func Run(ctx context.Context, cfg Config, g GRPC, reg *prometheus.Registry, ping func(context.Context) error, log *slog.Logger, attrs ...any) error {
	lis, cleanup, err := listen(cfg.Listen.GRPC)
	if err != nil {
		return fmt.Errorf("listen grpc %s: %w", cfg.Listen.GRPC, err)
	}
	defer cleanup()
	if g.listen.MaxConnections > 0 { // 0: a GRPC not made by NewGRPC
		lis = newLimitListener(lis, g.listen.MaxConnections, g.listen.MaxConnectionsPerIP, g.conns, log)
	}

	var ready, draining atomic.Bool
	setServing := func(ok bool) {
		st := healthpb.HealthCheckResponse_NOT_SERVING
		if ok && !draining.Load() {
			st = healthpb.HealthCheckResponse_SERVING
		}
		g.Health.SetServingStatus("", st)
		g.Health.SetServingStatus(otpv1.OtpService_ServiceDesc.ServiceName, st)
		ready.Store(st == healthpb.HealthCheckResponse_SERVING)
	}
	setServing(false)
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	var wg sync.WaitGroup
	storeUp := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "otpd_store_up",
		Help: "1 when the last health ping of the store (Redis) succeeded, else 0.",
	})
	reg.MustRegister(storeUp)
	wg.Go(func() {
		watchStore(watchCtx, ping, cfg.Health.Interval, func(ok bool) {
			storeUp.Set(map[bool]float64{true: 1}[ok])
			setServing(ok)
		}, log)
	})

	var admin, api *http.Server
	errc := make(chan error, 3)
	var plis net.Listener // listen.api's
	if cfg.Listen.API != "" {
		h, err := NewAPIHandler(g, cfg.Hooks)
		if err != nil {
			return fmt.Errorf("listen api: %w", err)
		}
		l, pcleanup, err := listen(cfg.Listen.API)
		if err != nil {
			return fmt.Errorf("listen api %s: %w", cfg.Listen.API, err)
		}
		defer pcleanup()
		defer l.Close() // in case Run fails before serving it; then a no-op
		plis, api = l, apiServer(h, g.listen, g.tls)
	}
	if cfg.Listen.HTTP != "" {
		alis, acleanup, err := listen(cfg.Listen.HTTP)
		if err != nil {
			return fmt.Errorf("listen http %s: %w", cfg.Listen.HTTP, err)
		}
		defer acleanup()
		admin = &http.Server{Handler: adminHandler(reg, &ready), ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := admin.Serve(alis); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("admin http: %w", err)
			}
		}()
		log.Info("admin http listening", "addr", alis.Addr().String())
	}
	if api != nil {
		go func() {
			var err error
			if api.TLSConfig != nil {
				err = api.ServeTLS(plis, "", "")
			} else {
				err = api.Serve(plis)
			}
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("api http: %w", err)
			}
		}()
		attrs = append(attrs, "api", plis.Addr().String())
	}
	go func() {
		if err := g.Server.Serve(lis); err != nil {
			errc <- fmt.Errorf("grpc: %w", err)
		}
	}()
	log.Info("otpd serving", append([]any{"grpc", lis.Addr().String()}, attrs...)...)

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down: draining in-flight calls", "timeout", cfg.Shutdown.Timeout.String())
	case runErr = <-errc:
		log.Error("server failed; shutting down", "error", runErr)
	}

	draining.Store(true)
	stopWatch()
	wg.Wait()
	setServing(false)
	g.Health.Shutdown()
	if d := cfg.Shutdown.Delay; d > 0 && runErr == nil {
		time.Sleep(d)
	}
	// The API listener's calls run in the gRPC server (ServeHTTP), whose
	// GracefulStop waits for them too; its HTTP server stops accepting
	// and closes idle connections meanwhile.
	stopped := make(chan struct{})
	apiDone := make(chan struct{})
	drainCtx, cancelDrain := context.WithTimeout(context.Background(), cfg.Shutdown.Timeout+apiShutdownGrace)
	defer cancelDrain()
	go func() {
		defer close(apiDone)
		if api != nil {
			if err := api.Shutdown(drainCtx); err != nil {
				_ = api.Close()
			}
		}
	}()
	go func() { g.Server.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(cfg.Shutdown.Timeout):
		log.Warn("drain timed out; cancelling remaining calls")
		g.Server.Stop()
		<-stopped
	}
	<-apiDone
	if admin != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = admin.Shutdown(sctx)
	}
	return runErr
}

// watchStore pings the store every interval and reports each result to set,
// logging when reachability changes.
func watchStore(ctx context.Context, ping func(context.Context) error, every time.Duration, set func(bool), log *slog.Logger) {
	healthy := true
	check := func() {
		pctx, cancel := context.WithTimeout(ctx, every)
		err := ping(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if ok := err == nil; ok != healthy {
			healthy = ok
			if ok {
				log.Info("store available again: serving")
			} else {
				log.Error("store unavailable (unreachable or refusing writes): not serving", "error", err)
			}
		}
		set(err == nil)
	}
	check()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			check()
		}
	}
}

func adminHandler(reg *prometheus.Registry, ready *atomic.Bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "not ready: draining, or the store is unreachable or refuses writes", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ready\n")
	})
	debugHandlers(mux)
	return mux
}

// listen opens host:port or unix:///path. A stale socket file is removed
// first, and the socket again on cleanup.
func listen(addr string) (net.Listener, func(), error) {
	path, ok := strings.CutPrefix(addr, "unix://")
	if !ok {
		l, err := net.Listen("tcp", addr)
		return l, func() {}, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, nil, err
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		_ = os.Remove(path)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, nil, err
	}
	// The peer (the auth server in a sidecar pod) may run as another user
	// of the same group.
	_ = os.Chmod(path, 0o660)
	return l, func() { _ = os.Remove(path) }, nil
}

// recordCall returns the function that counts a call in
// otpd_rpc_calls_total and logs it: every failed call with its code (never
// the request: it holds recipients and codes), and every call at debug.
func recordCall(log *slog.Logger, calls *prometheus.CounterVec) func(ctx context.Context, method string, code codes.Code, elapsed time.Duration, attrs ...any) {
	counters := newCallCounters(calls)
	return func(ctx context.Context, method string, code codes.Code, elapsed time.Duration, attrs ...any) {
		entry := entryOf(ctx)
		counters.Get(callLabels{caller: grpcauth.Caller(ctx), method: method, code: code, entry: entry}).Inc()
		level := slog.LevelDebug
		switch code {
		case codes.OK, codes.InvalidArgument, codes.ResourceExhausted, codes.NotFound, codes.Canceled:
		case codes.Internal, codes.Unknown, codes.DataLoss:
			level = slog.LevelError
		default:
			level = slog.LevelWarn
		}
		if log.Enabled(ctx, level) {
			args := append([]any{"method", method, "code", code.String(), "entry", entry, "elapsed_ms", ms(elapsed)}, attrs...)
			log.Log(ctx, level, "grpc call", args...)
		}
	}
}

// callLabels are the label values of an otpd_rpc_calls_total series.
type callLabels struct {
	caller, method string
	code           codes.Code
	entry          string
}

// newCallCounters caches the otpd_rpc_calls_total series (promcache):
// their label values are few (the configured callers, the methods served,
// the codes, the entry points).
func newCallCounters(vec *prometheus.CounterVec) *promcache.Counters[callLabels] {
	return promcache.New(vec, func(l callLabels) []string { return []string{l.caller, l.method, l.code.String(), l.entry} })
}

// unaryChain is otpd's unary interceptors as one: in order, markReached,
// the grpc_server_* metrics, caller authentication, the call log,
// refuseMalformed and panic recovery. One interceptor instead of a chain
// of six: grpc-go's chain allocates a handler closure for every link on
// every call.
type unaryChain struct {
	metrics *grpcMetrics
	auth    grpc.UnaryServerInterceptor
	record  func(context.Context, string, codes.Code, time.Duration, ...any)
	recover grpc.UnaryServerInterceptor
}

func (u *unaryChain) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx = markReached(ctx)
	c := u.metrics.beginUnary(info.FullMethod)
	resp, err := u.auth(ctx, req, info, func(ctx context.Context, req any) (any, error) {
		return u.logged(ctx, req, info, handler)
	})
	c.endUnary(err)
	return resp, err
}

// logged records every unary call that gets past authentication, with why
// a malformed request was refused.
func (u *unaryChain) logged(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := u.recoverMalformed(ctx, req, info, handler)
	var attrs []any
	if cs := callStateFrom(ctx); cs != nil && cs.malformed != "" {
		attrs = []any{"malformed", cs.malformed}
	}
	u.record(ctx, info.FullMethod, status.Code(err), time.Since(start), attrs...)
	return resp, err
}

// recoverMalformed answers a request that requestCodec marked, and
// otherwise calls handler, a panic answering INTERNAL.
func (u *unaryChain) recoverMalformed(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := refuseMalformed(ctx, req); err != nil {
		return nil, err
	}
	return u.recover(ctx, req, info, handler)
}

// ms is d in milliseconds, to the microsecond, as every elapsed_ms.
func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

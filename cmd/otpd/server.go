package main

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

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	otpv1 "github.com/otpd/otpd/proto/otp/v1"
	"github.com/otpd/otpd/service"
	"github.com/otpd/otpd/service/memstore"
	"github.com/otpd/otpd/service/redisstore"
	"github.com/otpd/otpd/templates"
)

// serve runs otpd until ctx is done, then drains: health NOT_SERVING,
// optional delay, GracefulStop bounded by shutdown.timeout, admin HTTP
// down, Redis closed.
func serve(ctx context.Context, cfg *config, log *slog.Logger, stderr io.Writer) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	renderer, err := templates.New(templates.Options{
		Dir: cfg.Templates.Dir, DefaultLocale: cfg.Templates.DefaultLocale, AppName: cfg.Templates.AppName,
	})
	if err != nil {
		return fmt.Errorf("load templates: %w", err)
	}
	router, err := newRouter(cfg, buildEnv{console: stderr, log: log}, reg)
	if err != nil {
		return fmt.Errorf("build providers: %w", err)
	}

	var store service.Store
	var closeStore func() error
	if cfg.dev {
		store, closeStore = memstore.New(), func() error { return nil }
	} else {
		redis.SetLogger(redisLogger{log})
		rdb, err := newRedis(cfg.Redis)
		if err != nil {
			return fmt.Errorf("connect redis: %w", err)
		}
		store, closeStore = redisstore.New(rdb, cfg.Redis.Prefix), rdb.Close
	}
	defer func() {
		if err := closeStore(); err != nil {
			log.Warn("close redis", "error", err)
		}
	}()

	svc, err := service.New(cfg.serviceConfig(), store, router, renderer,
		service.WithLogger(log), service.WithRegisterer(reg))
	if err != nil {
		return fmt.Errorf("build service: %w", err)
	}

	tlsCfg, clientCAs, err := loadTLS(cfg.TLS)
	if err != nil {
		return err
	}
	gs, hs := newGRPCServer(svc, reg, log, security{tls: tlsCfg, auth: newAuthenticator(cfg, clientCAs, reg, log)})

	lis, cleanup, err := listen(cfg.Listen.GRPC)
	if err != nil {
		return fmt.Errorf("listen grpc %s: %w", cfg.Listen.GRPC, err)
	}
	defer cleanup()

	var ready atomic.Bool
	var draining atomic.Bool
	setServing := func(ok bool) {
		st := healthpb.HealthCheckResponse_NOT_SERVING
		if ok && !draining.Load() {
			st = healthpb.HealthCheckResponse_SERVING
		}
		hs.SetServingStatus("", st)
		hs.SetServingStatus(otpv1.OtpService_ServiceDesc.ServiceName, st)
		ready.Store(st == healthpb.HealthCheckResponse_SERVING)
	}

	// Health follows the store: NOT_SERVING until Redis first answers and
	// while it is unreachable, SERVING again as soon as it answers.
	setServing(false)
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	var wg sync.WaitGroup
	storeUp := newStoreUp(reg)
	wg.Go(func() {
		watchStore(watchCtx, svc, cfg.Health.Interval.std(), func(ok bool) {
			if ok {
				storeUp.Set(1)
			} else {
				storeUp.Set(0)
			}
			setServing(ok)
		}, log)
	})

	var admin *http.Server
	errc := make(chan error, 2)
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
	go func() {
		if err := gs.Serve(lis); err != nil {
			errc <- fmt.Errorf("grpc: %w", err)
		}
	}()
	log.Info("otpd serving", "version", version, "grpc", lis.Addr().String(), "security", describeSecurity(cfg),
		"providers", len(cfg.Providers), "dev", cfg.dev)
	if len(cfg.Auth.Tokens) == 0 && cfg.TLS.ClientCAFile == "" && !cfg.dev && !strings.HasPrefix(cfg.Listen.GRPC, "unix://") {
		log.Warn("caller auth is off: anyone who reaches " + cfg.Listen.GRPC + " can send codes; set auth.tokens or tls.client_ca_file, or keep the port private")
	}

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down: draining in-flight calls", "timeout", cfg.Shutdown.Timeout.std().String())
	case runErr = <-errc:
		log.Error("server failed; shutting down", "error", runErr)
	}

	draining.Store(true)
	stopWatch()
	wg.Wait()
	setServing(false)
	hs.Shutdown()
	if d := cfg.Shutdown.Delay.std(); d > 0 && runErr == nil {
		time.Sleep(d)
	}
	stopped := make(chan struct{})
	go func() { gs.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(cfg.Shutdown.Timeout.std()):
		log.Warn("drain timed out; cancelling remaining calls")
		gs.Stop()
		<-stopped
	}
	if admin != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = admin.Shutdown(sctx)
	}
	log.Info("otpd stopped")
	return runErr
}

// security is how the gRPC server authenticates: TLS (nil: plaintext) and
// the caller checks (nil: none).
type security struct {
	tls  *tls.Config
	auth *authenticator
}

// newGRPCServer serves otp.v1.OtpService, grpc.health.v1 and reflection,
// with metrics, caller authentication, call logging and panic recovery (a
// panic answers INTERNAL, never UNKNOWN).
func newGRPCServer(svc otpv1.OtpServiceServer, reg prometheus.Registerer, log *slog.Logger, sec security) (*grpc.Server, *health.Server) {
	grpcMetrics := grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram())
	reg.MustRegister(grpcMetrics)
	calls := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "otpd_rpc_calls_total",
		Help: "gRPC calls by authenticated caller (\"anonymous\" when caller auth is off or the service is open), method and status code.",
	}, []string{"caller", "method", "code"})
	reg.MustRegister(calls)
	auth := sec.auth
	if auth == nil {
		auth = &authenticator{}
	}
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(64 << 10),
		// Reused workers keep their grown stacks: a fresh goroutine per call
		// grows its stack on every call (about 10% of the CPU of a verify
		// under ghz).
		grpc.NumStreamWorkers(64),
		grpc.ChainUnaryInterceptor(
			grpcMetrics.UnaryServerInterceptor(),
			auth.unary(),
			logCalls(log, calls),
			recovery.UnaryServerInterceptor(recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
				log.ErrorContext(ctx, "panic in handler", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
				return status.Error(codes.Internal, "internal error")
			})),
		),
		grpc.ChainStreamInterceptor(grpcMetrics.StreamServerInterceptor(), auth.stream()),
	}
	if sec.tls != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(sec.tls)))
	}
	gs := grpc.NewServer(opts...)
	otpv1.RegisterOtpServiceServer(gs, svc)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	reflection.Register(gs)
	grpcMetrics.InitializeMetrics(gs)
	return gs, hs
}

// newStoreUp registers otpd_store_up, which watchStore keeps.
func newStoreUp(reg prometheus.Registerer) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "otpd_store_up",
		Help: "1 when the last health ping of the store (Redis) succeeded, else 0.",
	})
	reg.MustRegister(g)
	return g
}

func watchStore(ctx context.Context, svc *service.Service, every time.Duration, set func(bool), log *slog.Logger) {
	healthy := true
	check := func() {
		pctx, cancel := context.WithTimeout(ctx, every)
		err := svc.Ping(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if ok := err == nil; ok != healthy {
			healthy = ok
			if ok {
				log.Info("store reachable again: serving")
			} else {
				log.Error("store unreachable: not serving", "error", err)
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
			http.Error(w, "not ready: draining or store unreachable", http.StatusServiceUnavailable)
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

func newRedis(c redisConfig) (redis.UniversalClient, error) {
	timeout := c.Timeout.std()
	if c.URL != "" {
		opts, err := redis.ParseURL(c.URL)
		if err != nil {
			return nil, fmt.Errorf("redis.url: %w", err)
		}
		opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout = timeout, timeout, timeout
		opts.ContextTimeoutEnabled = true
		if c.PoolSize > 0 {
			opts.PoolSize = c.PoolSize
		}
		if c.Password != "" {
			opts.Password = c.Password.Reveal()
		}
		return redis.NewClient(opts), nil
	}
	opts := &redis.UniversalOptions{
		Addrs:                 c.Addrs,
		MasterName:            c.MasterName,
		IsClusterMode:         c.Cluster,
		Username:              c.Username,
		Password:              c.Password.Reveal(),
		DB:                    c.DB,
		PoolSize:              c.PoolSize,
		DialTimeout:           timeout,
		ReadTimeout:           timeout,
		WriteTimeout:          timeout,
		ContextTimeoutEnabled: true,
	}
	if c.TLS {
		opts.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return redis.NewUniversalClient(opts), nil
}

// logCalls logs every failed call with its code (never the request: it
// holds recipients and codes), and every call at debug.
func logCalls(log *slog.Logger, calls *prometheus.CounterVec) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := handler(ctx, req)
		code := status.Code(err)
		caller := callerOf(ctx)
		calls.WithLabelValues(caller, info.FullMethod, code.String()).Inc()
		level := slog.LevelDebug
		switch code {
		case codes.OK, codes.InvalidArgument, codes.ResourceExhausted, codes.NotFound, codes.Canceled:
		case codes.Internal, codes.Unknown, codes.DataLoss:
			level = slog.LevelError
		default:
			level = slog.LevelWarn
		}
		if log.Enabled(ctx, level) {
			log.Log(ctx, level, "grpc call", "method", info.FullMethod, "code", code.String(), "elapsed", time.Since(start))
		}
		return resp, err
	}
}

// redisLogger sends go-redis's own messages (reconnects, dial failures) to
// the JSON log instead of plain text on stderr.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, "redis client: "+strings.TrimSpace(fmt.Sprintf(format, v...)))
}

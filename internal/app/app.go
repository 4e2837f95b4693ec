// Package app builds otpd from its configuration — store, providers,
// templates, service, caller authentication — and runs it with package
// server until its context ends. It also does otpd -check's work.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"

	"github.com/otpd/otpd/internal/config"
	"github.com/otpd/otpd/internal/grpcauth"
	"github.com/otpd/otpd/internal/registry"
	"github.com/otpd/otpd/internal/server"
	"github.com/otpd/otpd/providers"
	"github.com/otpd/otpd/service"
	"github.com/otpd/otpd/service/memstore"
	"github.com/otpd/otpd/service/redisstore"
	"github.com/otpd/otpd/templates"
)

// Run builds otpd from cfg and serves until ctx is done, then drains and
// closes the store. console is where the console provider prints; version
// is logged at start.
func Run(ctx context.Context, cfg *config.Config, log *slog.Logger, console io.Writer, version string) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	renderer, err := templates.New(cfg.Templates)
	if err != nil {
		return fmt.Errorf("load templates: %w", err)
	}
	routes, err := registry.Build(cfg.Providers, registry.Env{Console: console, Log: log})
	if err != nil {
		return fmt.Errorf("build providers: %w", err)
	}
	router, err := providers.NewRouter(routes, providers.RouterOptions{Delivery: cfg.Delivery, Registerer: reg, Logger: log})
	if err != nil {
		return fmt.Errorf("build providers: %w", err)
	}
	if !renderer.Autofill().IsZero() {
		// What -check refuses, start refuses too: a message that breaks
		// its autofill line would go out to every user.
		if errs := checkSMS(&Report{}, renderer, routes, cfg); len(errs) > 0 {
			return fmt.Errorf("sms autofill: %w", errors.Join(errs...))
		}
	}

	store, closeStore, err := openStore(cfg, log)
	if err != nil {
		return err
	}
	defer func() {
		if err := closeStore(); err != nil {
			log.Warn("close store", "error", err)
		}
	}()

	svc, err := service.New(serviceConfig(cfg), store, router, renderer,
		service.WithLogger(log), service.WithRegisterer(reg))
	if err != nil {
		return fmt.Errorf("build service: %w", err)
	}
	warnFraud(cfg, log)

	tlsCfg, clientCAs, err := grpcauth.LoadTLS(cfg.TLS)
	if err != nil {
		return err
	}
	g := server.NewGRPC(cfg.Server.Listen, svc, grpcauth.New(cfg.Auth, clientCAs, reg, log), tlsCfg, reg, log)
	if len(cfg.Auth.Tokens) == 0 && cfg.TLS.ClientCAFile == "" && !cfg.Dev {
		// listen.api serves the same calls, with the same caller auth.
		for _, addr := range []string{cfg.Server.Listen.GRPC, cfg.Server.Listen.API} {
			if addr != "" && !strings.HasPrefix(addr, "unix://") {
				log.Warn("caller auth is off: anyone who reaches " + addr + " can send codes; set auth.tokens or tls.client_ca_file, or keep the port private")
			}
		}
	}
	srv := cfg.Server
	srv.Hooks.SendTimeout = cfg.Service.SendTimeout // Logto never times out
	err = server.Run(ctx, srv, g, reg, svc.Ping, log,
		"version", version, "security", grpcauth.Describe(cfg.TLS, cfg.Auth), "providers", len(cfg.Providers), "dev", cfg.Dev)
	// The drained calls may have left undos running (a store answer lost
	// in a stall): they get a few seconds more, before the store closes.
	cctx, cancel := context.WithTimeout(context.Background(), serviceCloseTimeout)
	if cerr := svc.Close(cctx); cerr != nil {
		log.Warn("undos still running at exit: what they did not undo stays in Redis until it expires", "error", cerr)
	}
	cancel()
	log.Info("otpd stopped")
	return err
}

// serviceCloseTimeout bounds how long shutdown waits, after the drain,
// for the service's undos in flight.
const serviceCloseTimeout = 5 * time.Second

// serviceConfig is the service's own block with the application name,
// which otpd.yaml sets once, under templates.
func serviceConfig(cfg *config.Config) service.Config {
	c := cfg.Service
	c.AppName = cfg.Templates.AppName
	return c
}

// openStore connects to Redis, or in dev mode makes an in-memory store.
func openStore(cfg *config.Config, log *slog.Logger) (service.Store, func() error, error) {
	if cfg.Dev {
		return memstore.New(), func() error { return nil }, nil
	}
	redis.SetLogger(redisLogger{log})
	rdb, err := cfg.Redis.Client()
	if err != nil {
		return nil, nil, fmt.Errorf("connect redis: %w", err)
	}
	store := redisstore.New(rdb, cfg.Redis.Prefix,
		redisstore.WithEvictionCheck(cfg.Redis.AllowEviction, func(msg string) { log.Warn(msg) }))
	// An evicting maxmemory-policy is a property of the server, not of
	// the file: otpd exits 1 (serving failed), not 2. A Redis that does
	// not answer yet is not a refusal: the health probe reads the policy
	// once it does, and reports NOT_SERVING if it evicts.
	ctx, cancel := context.WithTimeout(context.Background(), policyCheckTimeout)
	err = store.CheckEviction(ctx)
	cancel()
	if errors.Is(err, service.ErrStoreUnavailable) {
		log.Warn("redis maxmemory-policy not checked: Redis does not answer yet; the health check reads it once it does", "error", err)
	} else if err != nil {
		_ = rdb.Close()
		return nil, nil, fmt.Errorf("check redis: %w", err)
	}
	return store, rdb.Close, nil
}

// policyCheckTimeout bounds the start-up read of Redis's maxmemory-policy.
const policyCheckTimeout = 5 * time.Second

// redisLogger sends go-redis's own messages (reconnects, dial failures) to
// the JSON log instead of plain text on stderr.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, "redis client: "+strings.TrimSpace(fmt.Sprintf(format, v...)))
}

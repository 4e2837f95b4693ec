// Package app builds otpd from its configuration — store, providers,
// templates, service, caller authentication — and runs it with package
// server until its context ends. It also does otpd -check's work.
package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

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

	tlsCfg, clientCAs, err := grpcauth.LoadTLS(cfg.TLS)
	if err != nil {
		return err
	}
	g := server.NewGRPC(svc, grpcauth.New(cfg.Auth, clientCAs, reg, log), tlsCfg, reg, log)
	if len(cfg.Auth.Tokens) == 0 && cfg.TLS.ClientCAFile == "" && !cfg.Dev && !strings.HasPrefix(cfg.Server.Listen.GRPC, "unix://") {
		log.Warn("caller auth is off: anyone who reaches " + cfg.Server.Listen.GRPC + " can send codes; set auth.tokens or tls.client_ca_file, or keep the port private")
	}
	err = server.Run(ctx, cfg.Server, g, reg, svc.Ping, log,
		"version", version, "security", grpcauth.Describe(cfg.TLS, cfg.Auth), "providers", len(cfg.Providers), "dev", cfg.Dev)
	log.Info("otpd stopped")
	return err
}

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
	return redisstore.New(rdb, cfg.Redis.Prefix), rdb.Close, nil
}

// redisLogger sends go-redis's own messages (reconnects, dial failures) to
// the JSON log instead of plain text on stderr.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, "redis client: "+strings.TrimSpace(fmt.Sprintf(format, v...)))
}

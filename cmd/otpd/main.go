// Command otpd is the one-time-code delivery server: gRPC otp.v1.OtpService
// (plus grpc.health.v1 and reflection) and an admin HTTP port with
// /metrics, /healthz and /readyz.
//
//	otpd -config otpd.yaml          serve
//	otpd -config otpd.yaml -check   validate the configuration and exit
//	otpd                            dev mode: in-memory store, console provider
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() { os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr)) }

// run is otpd without process globals: it returns the exit code.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("otpd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", getenv("OTPD_CONFIG"), "configuration file (env OTPD_CONFIG); none starts dev mode")
	check := fs.Bool("check", false, "validate the configuration, render every provider × usage type, and exit")
	showVersion := fs.Bool("version", false, "print the version and exit")
	listenGRPC := fs.String("listen-grpc", "", "override listen.grpc (host:port or unix:///path)")
	listenHTTP := fs.String("listen-http", "", "override listen.http")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "otpd: unexpected arguments: %s\n", strings.Join(fs.Args(), " "))
		return 2
	}
	if *showVersion {
		fmt.Fprintln(stdout, "otpd", version)
		return 0
	}

	var cfg *config
	if *configPath == "" {
		cfg = devConfig()
	} else {
		var err error
		if cfg, err = loadConfig(*configPath, getenv); err != nil {
			fmt.Fprintf(stderr, "otpd: invalid configuration %s:\n%s\n", *configPath, indent(err))
			return 2
		}
	}
	if *listenGRPC != "" || *listenHTTP != "" {
		if *listenGRPC != "" {
			cfg.Listen.GRPC = *listenGRPC
		}
		if *listenHTTP != "" {
			cfg.Listen.HTTP = *listenHTTP
		}
		if err := cfg.validate(); err != nil {
			fmt.Fprintf(stderr, "otpd: invalid listen flags:\n%s\n", indent(err))
			return 2
		}
	}
	level, _ := parseLevel(cfg.Log.Level)
	log := slog.New(callerHandler{slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level})})

	if *check {
		if err := checkConfig(cfg, stdout); err != nil {
			fmt.Fprintf(stderr, "otpd: invalid configuration:\n%s\n", indent(err))
			return 2
		}
		return 0
	}

	if cfg.dev {
		secret := make([]byte, 32)
		_, _ = rand.Read(secret)
		cfg.devSecret = secret
		warnDev(stderr, log)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, cfg, log, stderr); err != nil {
		log.Error("otpd stopped", "error", err)
		return 1
	}
	return 0
}

func warnDev(w io.Writer, log *slog.Logger) {
	fmt.Fprint(w, `
*****************************************************************************
*  otpd is running in DEV MODE: no configuration file was given.            *
*  Codes live in memory and are PRINTED to this terminal by the console     *
*  provider; nothing is delivered. Never run this in production:            *
*  start otpd with -config otpd.yaml (see deploy/otpd.example.yaml).        *
*****************************************************************************

`)
	log.Warn("dev mode: in-memory store, console provider, random secret; not for production")
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("%q is not one of debug, info, warn, error", s)
	}
	return l, nil
}

// indent prints each error of a joined error on its own line.
func indent(err error) string {
	var b strings.Builder
	for _, e := range splitJoined(err) {
		for _, line := range strings.Split(e.Error(), "\n") {
			b.WriteString("  " + line + "\n")
		}
	}
	return strings.TrimRight(b.String(), "\n")
}

// Command otpd is the one-time-code delivery server: gRPC otp.v1.OtpService
// (plus grpc.health.v1 and reflection) and an admin HTTP port with
// /metrics, /healthz and /readyz.
//
//	otpd -config otpd.yaml               serve
//	otpd -config otpd.yaml -check        validate the configuration and exit
//	otpd -config otpd.yaml -check -json  the same, as JSON for programs
//	otpd -config otpd.yaml -print-config the effective configuration, as JSON
//	otpd                                 dev mode: in-memory store, console provider
//
// This file is wiring only: flags, configuration (internal/config), then
// internal/app builds and runs otpd.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/otpd/otpd/internal/app"
	"github.com/otpd/otpd/internal/config"
	"github.com/otpd/otpd/internal/grpcauth"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// defaultGCPercent is the garbage collector's target when GOGC is not set:
// otpd's live heap is small (a few MB: configuration, templates,
// connections), so collecting at 4x the live heap instead of Go's 2x costs
// a few MB of memory and saves most of the collector's CPU per call (it
// was 15-20 % of otpd's CPU under load). GOGC, set, wins.
const defaultGCPercent = 300

// run is otpd without process globals: it returns the exit code, 2 for
// bad flags or configuration, 1 when serving failed.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("otpd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", getenv("OTPD_CONFIG"), "configuration file (env OTPD_CONFIG); none starts dev mode")
	check := fs.Bool("check", false, "validate the configuration, render every template and provider × usage type (measuring each SMS), and exit")
	asJSON := fs.Bool("json", false, "with -check: print the effective configuration and the previews (or the errors) as JSON")
	printConfig := fs.Bool("print-config", false, "print the effective configuration (defaults applied, secrets redacted) as JSON, or the errors, and exit")
	showVersion := fs.Bool("version", false, "print the version and exit")
	listenGRPC := fs.String("listen-grpc", "", "override listen.grpc (host:port or unix:///path)")
	listenHTTP := fs.String("listen-http", "", "override listen.http")
	listenAPI := fs.String("listen-api", "", "override listen.api (Connect and gRPC-Web)")
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
	invalid := func(what string, err error) int {
		if (*check && *asJSON) || *printConfig {
			writeErrors(stdout, err)
		}
		fmt.Fprintf(stderr, "otpd: invalid %s:\n%s\n", what, indent(err))
		return 2
	}

	cfg := config.Dev()
	if *configPath != "" {
		var err error
		if cfg, err = config.Load(*configPath, getenv); err != nil {
			return invalid("configuration "+*configPath, err)
		}
	}
	if *listenGRPC != "" || *listenHTTP != "" || *listenAPI != "" {
		for flag, key := range map[*string]*string{listenGRPC: &cfg.Server.Listen.GRPC, listenHTTP: &cfg.Server.Listen.HTTP, listenAPI: &cfg.Server.Listen.API} {
			if *flag != "" {
				*key = *flag
			}
		}
		if err := cfg.Validate(); err != nil {
			return invalid("listen flags", err)
		}
	}
	if *printConfig {
		if err := app.PrintConfig(cfg, stdout); err != nil {
			return invalid("configuration", err)
		}
		return 0
	}
	if *check {
		checkFn := app.Check
		if *asJSON {
			checkFn = app.CheckJSON
		}
		if err := checkFn(cfg, stdout); err != nil {
			return invalid("configuration", err)
		}
		return 0
	}

	// From here on, what otpd logs is written out in batches (logBuffer).
	logs := newLogBuffer(stderr)
	defer logs.Close()
	stderr = logs
	log := slog.New(grpcauth.LogHandler(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: cfg.Log.SlogLevel()})))
	if cfg.Dev {
		warnDev(stderr, log)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := app.Run(ctx, cfg, log, stderr, version); err != nil {
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

// indent prints each error of a joined error on its own line.
func indent(err error) string {
	var b strings.Builder
	for _, e := range config.Split(err) {
		for _, line := range strings.Split(e.Error(), "\n") {
			b.WriteString("  " + line + "\n")
		}
	}
	return strings.TrimRight(b.String(), "\n")
}

// writeErrors prints err for programs (-check -json, -print-config):
// {"errors": ["key: message", ...], "missing_env": [{"key": ..., "name": ...}]}.
func writeErrors(w io.Writer, err error) {
	out := struct {
		Errors     []string        `json:"errors"`
		MissingEnv []config.EnvRef `json:"missing_env,omitempty"`
	}{MissingEnv: config.MissingEnv(err)}
	for _, e := range config.Split(err) {
		out.Errors = append(out.Errors, e.Error())
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(out)
}

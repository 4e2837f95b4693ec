package app

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/otpd/otpd/internal/config"
	"github.com/otpd/otpd/internal/grpcauth"
	"github.com/otpd/otpd/internal/registry"
	"github.com/otpd/otpd/internal/server"
	"github.com/otpd/otpd/providers"
	"github.com/otpd/otpd/service"
	"github.com/otpd/otpd/service/memstore"
	"github.com/otpd/otpd/templates"
)

// metricsRecorder is a Registerer that keeps what is registered with it.
type metricsRecorder struct {
	prometheus.Registerer
	collectors []prometheus.Collector
}

func (r *metricsRecorder) Register(c prometheus.Collector) error {
	r.collectors = append(r.collectors, c)
	return r.Registerer.Register(c)
}

func (r *metricsRecorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

// metricsDescPattern reads the name and variable labels out of a Desc's
// String.
var metricsDescPattern = regexp.MustCompile(`fqName: "([^"]+)".*variableLabels: \{([^}]*)\}`)

// TestMetricsFileMatchesCode builds every part of otpd that exports metrics
// and checks that deploy/prometheus/metrics.txt, which the alert rules and
// the dashboard are checked against, lists exactly their metrics and
// labels.
func TestMetricsFileMatchesCode(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	rec := &metricsRecorder{Registerer: reg}
	log := slog.New(slog.DiscardHandler)
	cfg := config.Dev()
	routes, err := registry.Build(cfg.Providers, registry.Env{Console: io.Discard, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	router, err := providers.NewRouter(routes, providers.RouterOptions{Delivery: cfg.Delivery, Registerer: rec, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	renderer, err := templates.New(cfg.Templates)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := service.New(serviceConfig(cfg), memstore.New(), router, renderer, service.WithLogger(log), service.WithRegisterer(rec))
	if err != nil {
		t.Fatal(err)
	}
	g := server.NewGRPC(cfg.Server.Listen, svc, grpcauth.New(cfg.Auth, nil, rec, log), nil, rec, log)

	code := map[string]string{}
	for _, col := range rec.collectors {
		ch := make(chan *prometheus.Desc, 64)
		go func() { col.Describe(ch); close(ch) }()
		for d := range ch {
			m := metricsDescPattern.FindStringSubmatch(d.String())
			if m == nil {
				t.Fatalf("cannot read %s", d)
			}
			labels := strings.FieldsFunc(m[2], func(r rune) bool { return r == ',' || r == ' ' })
			slices.Sort(labels)
			code[m[1]] = strings.Join(labels, " ")
		}
	}

	// server.Run registers the store's health gauge on the registry itself
	// (it takes a *prometheus.Registry, not the recorder): run it once,
	// already cancelled, and read what it added from the registry.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	sc := server.DefaultConfig()
	sc.Listen = server.Listen{GRPC: "127.0.0.1:0"}
	if err := server.Run(ctx, sc, g, reg, svc.Ping, log); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if _, ok := code[mf.GetName()]; ok || len(mf.GetMetric()) == 0 {
			continue
		}
		var labels []string
		for _, l := range mf.GetMetric()[0].GetLabel() {
			labels = append(labels, l.GetName())
		}
		slices.Sort(labels)
		code[mf.GetName()] = strings.Join(labels, " ")
	}

	f, err := os.Open(filepath.Join("..", "..", "deploy", "prometheus", "metrics.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	file := map[string]string{}
	lines := bufio.NewScanner(f)
	for lines.Scan() {
		fields := strings.Fields(lines.Text())
		if len(fields) < 2 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		labels := slices.Clone(fields[2:])
		slices.Sort(labels)
		file[fields[0]] = strings.Join(labels, " ")
	}
	if err := lines.Err(); err != nil {
		t.Fatal(err)
	}
	for name, labels := range code {
		switch want, ok := file[name]; {
		case !ok:
			t.Errorf("metrics.txt lacks %s (labels %s)", name, labels)
		case want != labels:
			t.Errorf("metrics.txt: %s has labels %q, the code %q", name, want, labels)
		}
	}
	for name := range file {
		if _, ok := code[name]; !ok {
			t.Errorf("metrics.txt lists %s, which otpd does not export", name)
		}
	}
}

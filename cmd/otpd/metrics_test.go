package main

import (
	"bufio"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/otpd/otpd/providers"
	"github.com/otpd/otpd/service"
	"github.com/otpd/otpd/service/memstore"
	"github.com/otpd/otpd/templates"
)

// recorder is a Registerer that keeps what is registered with it.
type recorder struct {
	prometheus.Registerer
	collectors []prometheus.Collector
}

func (r *recorder) Register(c prometheus.Collector) error {
	r.collectors = append(r.collectors, c)
	return r.Registerer.Register(c)
}

func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

// descPattern reads the name and variable labels out of a Desc's String.
var descPattern = regexp.MustCompile(`fqName: "([^"]+)".*variableLabels: \{([^}]*)\}`)

// TestMetricsFileMatchesCode builds every part of otpd that exports metrics
// and checks that deploy/prometheus/metrics.txt, which the alert rules and
// the dashboard are checked against, lists exactly their metrics and
// labels.
func TestMetricsFileMatchesCode(t *testing.T) {
	t.Parallel()
	rec := &recorder{Registerer: prometheus.NewRegistry()}
	log := slog.New(slog.DiscardHandler)
	c := devConfig()
	routes, err := buildRoutes(c, buildEnv{console: io.Discard, log: log})
	if err != nil {
		t.Fatal(err)
	}
	router, err := providers.NewRouter(routes, providers.RouterOptions{Registerer: rec})
	if err != nil {
		t.Fatal(err)
	}
	renderer, err := templates.New(templates.Options{})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := service.New(c.serviceConfig(), memstore.New(), router, renderer, service.WithRegisterer(rec))
	if err != nil {
		t.Fatal(err)
	}
	newGRPCServer(svc, rec, log, security{auth: newAuthenticator(c, nil, rec, log)})
	newStoreUp(rec)

	code := map[string]string{}
	for _, col := range rec.collectors {
		ch := make(chan *prometheus.Desc, 64)
		go func() { col.Describe(ch); close(ch) }()
		for d := range ch {
			m := descPattern.FindStringSubmatch(d.String())
			if m == nil {
				t.Fatalf("cannot read %s", d)
			}
			labels := strings.FieldsFunc(m[2], func(r rune) bool { return r == ',' || r == ' ' })
			slices.Sort(labels)
			code[m[1]] = strings.Join(labels, " ")
		}
	}

	f, err := os.Open(filepath.Join("..", "..", "deploy", "prometheus", "metrics.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	file := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		labels := slices.Clone(fields[2:])
		slices.Sort(labels)
		file[fields[0]] = strings.Join(labels, " ")
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

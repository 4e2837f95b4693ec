package validate

import (
	"os"
	"slices"
	"strings"
	"testing"
)

func loadMetrics(t *testing.T) Metrics {
	t.Helper()
	data, err := os.ReadFile("../prometheus/metrics.txt")
	if err != nil {
		t.Fatal(err)
	}
	ms, err := ParseMetrics(string(data))
	if err != nil {
		t.Fatalf("metrics.txt: %v", err)
	}
	return ms
}

func TestRules(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../prometheus/otpd-rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range CheckRules(data, NewExprChecker(loadMetrics(t))) {
		t.Error(p)
	}
}

func TestDashboard(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../grafana/otpd-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range CheckDashboard(data, NewExprChecker(loadMetrics(t))) {
		t.Error(p)
	}
}

func TestRulesRejects(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("testdata/bad-rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	problems := CheckRules(data, NewExprChecker(loadMetrics(t)))
	for _, want := range []string{
		`rule OtpdWrongMetric: expr: otpd_codes_send_total{result="ok"}: otpd exports no metric "otpd_codes_send_total"`,
		`rule OtpdWrongLabel: expr: otpd_provider_errors_total{code="500"}: metric otpd_provider_errors_total has no label "code"`,
		`rule OtpdWrongGrouping: expr: sum(...) by: label "country" is not on the series it applies to`,
		`rule OtpdHistogramBase: expr: otpd_provider_request_duration_seconds: otpd exports no metric`,
		`rule OtpdWrongTemplate: annotations.summary uses $labels.provider, which the expression's result does not have`,
		`rule OtpdNoFor: no for:`,
		`rule OtpdNoFor: labels.severity "page" is not one of critical, warning, info`,
		`rule OtpdNoFor: no runbook annotation`,
	} {
		if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, want) }) {
			t.Errorf("no problem mentions %q; got:\n%s", want, strings.Join(problems, "\n"))
		}
	}
	if got := CheckRules([]byte("groups:\n  - name: x\n    rules:\n      - alert: A\n        expr: up ==\n"), NewExprChecker(loadMetrics(t))); len(got) == 0 {
		t.Error("a PromQL syntax error passed")
	}
}

func TestDashboardRejects(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("testdata/bad-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	problems := CheckDashboard(data, NewExprChecker(loadMetrics(t)))
	for _, want := range []string{
		`variable job: otpd_store_up{foo="bar"}: metric otpd_store_up has no label "foo"`,
		`panel 2 "Wrong metric" target A: otpd_sms_sent_by_country{`,
		`panel 3 "No job filter" target A: otpd_rate_limited_total{namespace=~"grafana_var_namespace"} does not filter on job`,
		`panel 3 "No job filter": datasource uid "prometheus", want ${datasource}`,
		`panel 4 "Wrong by" target A: sum(...) by: label "code" is not on the series`,
		`panel 4 "Wrong by": id is used twice`,
	} {
		if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, want) }) {
			t.Errorf("no problem mentions %q; got:\n%s", want, strings.Join(problems, "\n"))
		}
	}
}

func TestExprChecker(t *testing.T) {
	t.Parallel()
	c := NewExprChecker(loadMetrics(t))
	tests := []struct {
		name, expr string
		want       string // a problem containing this, or "" for none
		labels     []string
	}{
		{"counter", `sum by (channel) (rate(otpd_codes_sent_total[5m]))`, "", []string{"channel"}},
		{"target labels", `sum by (namespace, pod) (otpd_store_up{job="otpd"})`, "", []string{"namespace", "pod"}},
		{"histogram bucket", `histogram_quantile(0.9, sum by (le, provider) (rate(otpd_provider_request_duration_seconds_bucket[5m])))`, "", []string{"provider"}},
		{"histogram count", `otpd_provider_request_duration_seconds_count{result="ok"}`, "", nil},
		{"quantile without le", `histogram_quantile(0.9, sum by (provider) (rate(otpd_provider_request_duration_seconds_bucket[5m])))`, `histogram_quantile: label "le"`, nil},
		{"bucket of a counter", `otpd_codes_sent_total_bucket`, `no metric "otpd_codes_sent_total_bucket"`, nil},
		{"unknown metric", `rate(otpd_codes_total[5m])`, `no metric "otpd_codes_total"`, nil},
		{"name by regex", `{__name__=~"otpd_.*"}`, "select metrics by exact name", nil},
		{"label_replace adds", `sum by (cc) (label_replace(otpd_sms_sent_by_country_total, "cc", "$1", "country_code", "(.*)"))`, "", []string{"cc"}},
		{"label_replace source", `label_replace(otpd_store_up, "x", "$1", "country_code", "(.*)")`, `label_replace source: label "country_code"`, nil},
		{"on both sides", `otpd_codes_sent_total / on (limit) otpd_rate_limited_total`, `on() left side: label "limit"`, nil},
		{"on keeps", `sum by (job, provider) (otpd_provider_errors_total) / on (job) group_left sum by (job) (otpd_codes_sent_total)`, "", []string{"job", "provider"}},
		{"without", `sum without (instance) (otpd_rate_limited_total)`, "", nil},
		{"topk keeps", `topk(3, otpd_sms_sent_by_country_total)`, "", nil},
		{"syntax", `sum(rate(otpd_store_up[5m])`, "unclosed left parenthesis", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, problems := c.Check(tc.expr)
			if tc.want == "" {
				if len(problems) != 0 {
					t.Fatalf("Check(%s) = %v", tc.expr, problems)
				}
			} else if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, tc.want) }) {
				t.Fatalf("Check(%s) = %v, want a problem containing %q", tc.expr, problems, tc.want)
			}
			for _, l := range tc.labels {
				if !slices.Contains(out, l) {
					t.Errorf("result labels %v lack %s", out, l)
				}
			}
		})
	}
}

package validate

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

// Severities an alert's severity label may take.
var Severities = []string{"critical", "warning", "info"}

var templateLabel = regexp.MustCompile(`\$labels\.([A-Za-z_][A-Za-z0-9_]*)`)

// CheckRules validates a Prometheus rule file the way `promtool check rules`
// does (rulefmt: strict YAML, PromQL, templates), then checks every
// expression against otpd's metrics, and every alert for a for:, a severity,
// summary/description/runbook annotations, and $labels.X that its
// expression's result carries.
func CheckRules(content []byte, c *ExprChecker) []string {
	groups, errs := rulefmt.Parse(content, false, model.LegacyValidation, parser.NewParser(parser.Options{}), slog.New(slog.DiscardHandler))
	var problems []string
	for _, err := range errs {
		problems = append(problems, err.Error())
	}
	if groups == nil {
		return problems
	}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			name := r.Alert + r.Record
			where := fmt.Sprintf("group %s rule %s", g.Name, name)
			errorf := func(format string, args ...any) {
				problems = append(problems, where+": "+fmt.Sprintf(format, args...))
			}
			out, exprProblems := c.Check(r.Expr)
			for _, p := range exprProblems {
				errorf("expr: %s", p)
			}
			if r.Alert == "" {
				continue
			}
			if r.For <= 0 {
				errorf("no for: (a single bad scrape would page)")
			}
			if !slices.Contains(Severities, r.Labels["severity"]) {
				errorf("labels.severity %q is not one of %s", r.Labels["severity"], strings.Join(Severities, ", "))
			}
			for _, a := range []string{"summary", "description", "runbook"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					errorf("no %s annotation", a)
				}
			}
			if exprProblems != nil {
				continue
			}
			texts := map[string]string{}
			for k, v := range r.Annotations {
				texts["annotations."+k] = v
			}
			for k, v := range r.Labels {
				texts["labels."+k] = v
			}
			for key, text := range texts {
				for _, m := range templateLabel.FindAllStringSubmatch(text, -1) {
					if !slices.Contains(out, m[1]) {
						errorf("%s uses $labels.%s, which the expression's result does not have (it has %s)", key, m[1], strings.Join(out, ", "))
					}
				}
			}
		}
	}
	return problems
}

// Grafana's own variables, replaced by a valid duration before parsing.
var grafanaInterval = regexp.MustCompile(`\$__(rate_interval|interval|range)(_ms|_s)?|\$\{__(rate_interval|interval|range)(_ms|_s)?\}`)

// Dashboard variables ($name, ${name}, ${name:fmt}, [[name]]).
var grafanaVar = regexp.MustCompile(`\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]`)

// grafanaVarValue is what a dashboard variable becomes before parsing: a
// recognisable value inside label matchers.
func grafanaVarValue(name string) string { return "grafana_var_" + name }

func expandGrafana(expr string) string {
	expr = grafanaInterval.ReplaceAllString(expr, "5m")
	return grafanaVar.ReplaceAllStringFunc(expr, func(m string) string {
		s := grafanaVar.FindStringSubmatch(m)
		return grafanaVarValue(s[1] + s[2] + s[3])
	})
}

var labelValuesQuery = regexp.MustCompile(`^\s*label_values\((.*),\s*(\w+)\s*\)\s*$`)

// DashboardFilters are the variables every selector of the dashboard must
// filter on, so that one dashboard serves several otpd installations.
var DashboardFilters = []string{"namespace", "job"}

// CheckDashboard checks a Grafana dashboard: a Prometheus datasource
// variable used by every panel and query, the DashboardFilters variables
// applied to every selector, unique panel ids, and every expression (panels
// and label_values variable queries) valid PromQL over otpd's metrics.
func CheckDashboard(data []byte, c *ExprChecker) []string {
	var problems []string
	errorf := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	var d struct {
		Templating struct {
			List []struct {
				Name  string          `json:"name"`
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
		Panels []panel `json:"panels"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return []string{err.Error()}
	}

	// Variables.
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
		switch v.Type {
		case "datasource":
			var q string
			if json.Unmarshal(v.Query, &q) != nil || q != "prometheus" {
				errorf("variable %s: datasource query %s, want \"prometheus\"", v.Name, v.Query)
			}
		case "query":
			var q struct {
				Query string `json:"query"`
			}
			if err := json.Unmarshal(v.Query, &q); err != nil {
				if err := json.Unmarshal(v.Query, &q.Query); err != nil {
					errorf("variable %s: query is neither a string nor an object", v.Name)
				}
			}
			m := labelValuesQuery.FindStringSubmatch(q.Query)
			if m == nil {
				errorf("variable %s: query %q is not label_values(selector, label)", v.Name, q.Query)
				continue
			}
			out, ps := c.Check(expandGrafana(m[1]))
			for _, p := range ps {
				errorf("variable %s: %s", v.Name, p)
			}
			if ps == nil && !slices.Contains(out, m[2]) {
				errorf("variable %s: %s has no label %q", v.Name, m[1], m[2])
			}
		}
	}
	if vars["datasource"] != "datasource" {
		errorf(`no datasource variable named "datasource"`)
	}
	for _, f := range DashboardFilters {
		if vars[f] != "query" {
			errorf("no query variable %q", f)
		}
	}

	// Panels, rows included.
	ids := map[int]bool{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			where := fmt.Sprintf("panel %d %q", p.ID, p.Title)
			if ids[p.ID] {
				errorf("%s: id is used twice", where)
			}
			ids[p.ID] = true
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if p.Datasource.UID != "${datasource}" {
				errorf("%s: datasource uid %q, want ${datasource}", where, p.Datasource.UID)
			}
			if len(p.Targets) == 0 {
				errorf("%s: no targets", where)
			}
			for _, t := range p.Targets {
				tw := fmt.Sprintf("%s target %s", where, t.RefID)
				if t.Datasource.UID != "${datasource}" {
					errorf("%s: datasource uid %q, want ${datasource}", tw, t.Datasource.UID)
				}
				expr := expandGrafana(t.Expr)
				if _, ps := c.Check(expr); ps != nil {
					for _, p := range ps {
						errorf("%s: %s", tw, p)
					}
					continue
				}
				e, _ := c.parser.ParseExpr(expr)
				parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
					vs, ok := n.(*parser.VectorSelector)
					if !ok {
						return nil
					}
					for _, f := range DashboardFilters {
						if !slices.ContainsFunc(vs.LabelMatchers, func(m *labels.Matcher) bool {
							return m.Name == f && strings.Contains(m.Value, grafanaVarValue(f))
						}) {
							errorf("%s: %s does not filter on %s=~\"$%s\"", tw, vs, f, f)
						}
					}
					return nil
				})
			}
		}
	}
	walk(d.Panels)
	return problems
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		RefID      string `json:"refId"`
		Expr       string `json:"expr"`
		Datasource struct {
			UID string `json:"uid"`
		} `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

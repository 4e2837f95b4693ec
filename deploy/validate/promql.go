package validate

import (
	"bufio"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// Metric is one line of deploy/prometheus/metrics.txt.
type Metric struct {
	Name   string
	Type   string // counter, gauge or histogram
	Labels []string
}

// Metrics are otpd's exported metrics by name.
type Metrics map[string]Metric

// ParseMetrics reads metrics.txt: "NAME TYPE LABEL..." per line, # comments.
func ParseMetrics(text string) (Metrics, error) {
	ms := Metrics{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			return nil, fmt.Errorf("line %d: want NAME TYPE [LABEL ...]", n)
		}
		m := Metric{Name: f[0], Type: f[1], Labels: f[2:]}
		if !slices.Contains([]string{"counter", "gauge", "histogram"}, m.Type) {
			return nil, fmt.Errorf("line %d: type %q is not counter, gauge or histogram", n, m.Type)
		}
		if _, dup := ms[m.Name]; dup {
			return nil, fmt.Errorf("line %d: %s is listed twice", n, m.Name)
		}
		ms[m.Name] = m
	}
	return ms, sc.Err()
}

// TargetLabels are attached by Prometheus to every scraped series: job and
// instance always, the rest by the Prometheus Operator's ServiceMonitor
// (deploy/kubernetes/base/servicemonitor.yaml).
var TargetLabels = []string{"job", "instance", "namespace", "pod", "service", "container", "endpoint"}

// series returns the labels a series name carries, accepting a histogram's
// _bucket (with le), _sum and _count.
func (ms Metrics) series(name string) (labelSet, bool) {
	set := func(m Metric, extra ...string) labelSet {
		s := labelSet{}
		for _, l := range append(append(slices.Clone(m.Labels), TargetLabels...), extra...) {
			s[l] = true
		}
		return s
	}
	if m, ok := ms[name]; ok {
		if m.Type == "histogram" {
			return nil, false // a classic histogram has no series of its base name
		}
		return set(m), true
	}
	for suffix, extra := range map[string][]string{"_bucket": {"le"}, "_sum": nil, "_count": nil} {
		if m, ok := ms[strings.TrimSuffix(name, suffix)]; ok && strings.HasSuffix(name, suffix) && m.Type == "histogram" {
			return set(m, extra...), true
		}
	}
	return nil, false
}

type labelSet map[string]bool

// anyLabels stands for the result of an expression already reported as
// wrong, so that one mistake is not reported again by every enclosing node.
var anyLabels = labelSet{"*": true}

func (s labelSet) sorted() []string {
	out := make([]string, 0, len(s))
	for l := range s {
		out = append(out, l)
	}
	sort.Strings(out)
	return out
}

func union(sets ...labelSet) labelSet {
	out := labelSet{}
	for _, s := range sets {
		for l := range s {
			out[l] = true
		}
	}
	return out
}

// ExprChecker checks PromQL expressions against otpd's metrics.
type ExprChecker struct {
	Metrics Metrics
	parser  parser.Parser
}

// NewExprChecker returns a checker for ms.
func NewExprChecker(ms Metrics) *ExprChecker {
	return &ExprChecker{Metrics: ms, parser: parser.NewParser(parser.Options{})}
}

// Check parses expr and verifies that every metric it selects is one otpd
// exports, that every label it matches, groups by or joins on exists on what
// it applies to, and returns the labels of its result (for $labels.X in
// alert templates).
func (c *ExprChecker) Check(expr string) ([]string, []string) {
	e, err := c.parser.ParseExpr(expr)
	if err != nil {
		return nil, []string{err.Error()}
	}
	a := &exprAnalysis{c: c}
	out := a.labels(e)
	return out.sorted(), a.problems
}

type exprAnalysis struct {
	c        *ExprChecker
	problems []string
}

func (a *exprAnalysis) errorf(format string, args ...any) {
	a.problems = append(a.problems, fmt.Sprintf(format, args...))
}

func (a *exprAnalysis) need(have labelSet, what string, ls ...string) {
	if have["*"] {
		return
	}
	for _, l := range ls {
		if !have[l] {
			a.errorf("%s: label %q is not on the series it applies to (they have %s)", what, l, strings.Join(have.sorted(), ", "))
		}
	}
}

// labels returns the label names of e's result (nil for scalars and strings).
func (a *exprAnalysis) labels(e parser.Expr) labelSet {
	switch e := e.(type) {
	case *parser.VectorSelector:
		name := e.Name
		for _, m := range e.LabelMatchers {
			if m.Name == model.MetricNameLabel {
				if m.Type != labels.MatchEqual {
					a.errorf("%s: select metrics by exact name, not %s", e, m)
					return anyLabels
				}
				name = m.Value
			}
		}
		have, ok := a.c.Metrics.series(name)
		if !ok {
			a.errorf("%s: otpd exports no metric %q (deploy/prometheus/metrics.txt)", e, name)
			return anyLabels
		}
		for _, m := range e.LabelMatchers {
			if m.Name != model.MetricNameLabel && !have[m.Name] {
				a.errorf("%s: metric %s has no label %q (it has %s)", e, name, m.Name, strings.Join(have.sorted(), ", "))
			}
		}
		return have
	case *parser.MatrixSelector:
		return a.labels(e.VectorSelector)
	case *parser.SubqueryExpr:
		return a.labels(e.Expr)
	case *parser.ParenExpr:
		return a.labels(e.Expr)
	case *parser.UnaryExpr:
		return a.labels(e.Expr)
	case *parser.StepInvariantExpr:
		return a.labels(e.Expr)
	case *parser.NumberLiteral, *parser.StringLiteral:
		return nil
	case *parser.AggregateExpr:
		in := a.labels(e.Expr)
		if e.Param != nil {
			a.labels(e.Param)
		}
		what := fmt.Sprintf("%s(...) %s", e.Op, map[bool]string{true: "without", false: "by"}[e.Without])
		a.need(in, what, e.Grouping...)
		switch {
		case e.Op == parser.TOPK || e.Op == parser.BOTTOMK || e.Op == parser.LIMITK || e.Op == parser.LIMIT_RATIO:
			return in // these keep whole series
		case e.Without:
			out := union(in)
			for _, l := range e.Grouping {
				delete(out, l)
			}
			return out
		default:
			out := labelSet{}
			for _, l := range e.Grouping {
				out[l] = true
			}
			if s, ok := e.Param.(*parser.StringLiteral); ok && e.Op == parser.COUNT_VALUES {
				out[s.Val] = true
			}
			return out
		}
	case *parser.Call:
		args := make([]labelSet, len(e.Args))
		for i, arg := range e.Args {
			args[i] = a.labels(arg)
		}
		switch e.Func.Name {
		case "histogram_quantile", "histogram_fraction":
			in := args[len(args)-1]
			a.need(in, e.Func.Name, "le")
			out := union(in)
			delete(out, "le")
			return out
		case "label_replace":
			if src, ok := e.Args[3].(*parser.StringLiteral); ok {
				a.need(args[0], "label_replace source", src.Val)
			}
			out := union(args[0])
			if dst, ok := e.Args[1].(*parser.StringLiteral); ok {
				out[dst.Val] = true
			}
			return out
		case "label_join":
			for _, arg := range e.Args[3:] {
				if src, ok := arg.(*parser.StringLiteral); ok {
					a.need(args[0], "label_join source", src.Val)
				}
			}
			out := union(args[0])
			if dst, ok := e.Args[1].(*parser.StringLiteral); ok {
				out[dst.Val] = true
			}
			return out
		case "vector", "scalar", "time":
			if e.Type() == parser.ValueTypeVector {
				return labelSet{}
			}
			return nil
		}
		return union(args...)
	case *parser.BinaryExpr:
		l, r := a.labels(e.LHS), a.labels(e.RHS)
		vm := e.VectorMatching
		if vm == nil || e.LHS.Type() != parser.ValueTypeVector || e.RHS.Type() != parser.ValueTypeVector {
			if e.LHS.Type() == parser.ValueTypeVector {
				return l
			}
			return r
		}
		if vm.On {
			a.need(l, "on() left side", vm.MatchingLabels...)
			a.need(r, "on() right side", vm.MatchingLabels...)
		} else {
			a.need(union(l, r), "ignoring()", vm.MatchingLabels...)
		}
		switch {
		case e.Op == parser.LAND || e.Op == parser.LUNLESS:
			return l
		case e.Op == parser.LOR:
			return union(l, r)
		case vm.Card == parser.CardManyToOne:
			a.need(r, "group_left()", vm.Include...)
			return union(l, setOf(vm.Include))
		case vm.Card == parser.CardOneToMany:
			a.need(l, "group_right()", vm.Include...)
			return union(r, setOf(vm.Include))
		case vm.On:
			return setOf(vm.MatchingLabels)
		default:
			out := union(l)
			for _, x := range vm.MatchingLabels {
				delete(out, x)
			}
			return out
		}
	}
	a.errorf("%s: expression type %T is not handled by the checker", e, e)
	return anyLabels
}

func setOf(ls []string) labelSet {
	s := labelSet{}
	for _, l := range ls {
		s[l] = true
	}
	return s
}

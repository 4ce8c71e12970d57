package deploy_test

import (
	"fmt"
	"slices"
	"strings"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// targetLabels are the labels Prometheus adds to every scraped series (job, instance) and those the
// usual Kubernetes pod relabelling adds; queries may select and group by them.
var targetLabels = []string{"job", "instance", "namespace", "pod"}

// prometheusSeries are series of Prometheus itself that queries may use beside the broker's.
var prometheusSeries = map[string][]string{"up": nil}

// fixedValues are the labels whose values come from the broker's fixed lists: an equality matcher
// on one must name a value the broker exposes, or the query silently selects nothing.
var fixedValues = []string{"outcome", "effect", "result", "event", "operation", "reason", "protocol"}

// checkExpr parses a PromQL expression and returns what in it does not match the broker's registry:
// an unknown metric name, a label the metric does not have, an unknown value of a fixed label, or a
// grouping by a label none of the selected series has. used collects the metric names it selects.
func checkExpr(expr string, s series, used map[string]bool) []string {
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return []string{fmt.Sprintf("does not parse: %v", err)}
	}
	var problems []string
	parser.Inspect(e, func(node parser.Node, _ []parser.Node) error {
		switch n := node.(type) {
		case *parser.VectorSelector:
			problems = append(problems, checkSelector(n, s, used)...)
		case *parser.AggregateExpr:
			if n.Without {
				break
			}
			have := selectedLabels(n.Expr, s)
			for _, g := range n.Grouping {
				if !have[g] && !slices.Contains(targetLabels, g) {
					problems = append(problems, fmt.Sprintf("%s groups by %q, which none of its series has", n.Op, g))
				}
			}
		}
		return nil
	})
	return problems
}

func checkSelector(n *parser.VectorSelector, s series, used map[string]bool) []string {
	if _, ok := prometheusSeries[n.Name]; ok {
		return nil
	}
	f := s[n.Name]
	if f == nil {
		return []string{fmt.Sprintf("selects %q, which the broker does not expose", n.Name)}
	}
	used[strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n.Name, "_bucket"), "_sum"), "_count")] = true
	var problems []string
	for _, m := range n.LabelMatchers {
		if m.Name == labels.MetricName || slices.Contains(targetLabels, m.Name) {
			continue
		}
		values, ok := f.labels[m.Name]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("%s has no label %q", n.Name, m.Name))
		case m.Type == labels.MatchEqual && slices.Contains(fixedValues, m.Name) && !values[m.Value]:
			problems = append(problems, fmt.Sprintf("%s{%s=%q}: the broker never sets that value (it sets %v)", n.Name, m.Name, m.Value, keys(values)))
		}
	}
	return problems
}

// selectedLabels are the label names of every series the expression selects.
func selectedLabels(e parser.Expr, s series) map[string]bool {
	have := map[string]bool{}
	parser.Inspect(e, func(node parser.Node, _ []parser.Node) error {
		if v, ok := node.(*parser.VectorSelector); ok {
			if f := s[v.Name]; f != nil {
				for l := range f.labels {
					have[l] = true
				}
			}
		}
		return nil
	})
	return have
}

func keys(m map[string]bool) []string {
	var k []string
	for v := range m {
		k = append(k, v)
	}
	slices.Sort(k)
	return k
}

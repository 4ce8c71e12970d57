// Package metricstest reads what a Prometheus registry gathers, for the tests of what the broker's
// metrics show.
package metricstest

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Family is the samples of the metric family named name that g gathers: none when it has no such
// family. A registry that does not gather (a collector's inconsistent output, say) fails t.
func Family(t testing.TB, g prometheus.Gatherer, name string) []*dto.Metric {
	t.Helper()
	fams, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == name {
			return f.GetMetric()
		}
	}
	return nil
}

// Value is s's value: a counter's, a gauge's or an untyped sample's; 0 for any other.
func Value(s *dto.Metric) float64 {
	switch {
	case s.Counter != nil:
		return s.Counter.GetValue()
	case s.Gauge != nil:
		return s.Gauge.GetValue()
	}
	return s.GetUntyped().GetValue()
}

// Labels are s's labels, by name.
func Labels(s *dto.Metric) map[string]string {
	l := make(map[string]string, len(s.GetLabel()))
	for _, p := range s.GetLabel() {
		l[p.GetName()] = p.GetValue()
	}
	return l
}

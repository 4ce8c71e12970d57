package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestNotificationsCountByDestination: outcomes and retries count under their destination; the
// registry still passes the linter; labels outside the configured set are not counted.
func TestNotificationsCountByDestination(t *testing.T) {
	m, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	n, err := m.Notifications("webhook", "slack")
	if err != nil {
		t.Fatal(err)
	}
	n.Notified("webhook", "sent")
	n.Notified("webhook", "sent")
	n.Notified("slack", "dropped")
	n.Retried("slack")
	n.Notified("pager", "sent")        // not configured
	n.Notified("webhook", "delivered") // not an outcome
	for _, tc := range []struct {
		sink, outcome string
		want          float64
	}{{"webhook", "sent", 2}, {"webhook", "failed", 0}, {"slack", "dropped", 1}, {"slack", "sent", 0}} {
		if got := testutil.ToFloat64(n.outcomes.WithLabelValues(tc.sink, tc.outcome)); got != tc.want {
			t.Errorf("%s %s = %v, want %v", tc.sink, tc.outcome, got, tc.want)
		}
	}
	if got := testutil.ToFloat64(n.retries.WithLabelValues("slack")); got != 1 {
		t.Errorf("slack retries = %v, want 1", got)
	}
	if got := testutil.CollectAndCount(n.outcomes); got != 6 {
		t.Errorf("%d outcome series, want 6 (2 destinations × 3 outcomes)", got)
	}
	problems, err := testutil.GatherAndLint(m.Registry())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("metric %s: %s", p.Metric, p.Text)
	}
	if _, err := m.Notifications("webhook"); err == nil {
		t.Error("registering the notification counters twice was accepted")
	}
	var off *Metrics
	nn, err := off.Notifications("webhook")
	if err != nil || nn != nil {
		t.Fatalf("nil Metrics: %v %v", nn, err)
	}
	nn.Notified("webhook", "sent") // does nothing, and does not panic
	nn.Retried("webhook")
}

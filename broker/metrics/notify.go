package metrics

import (
	"slices"

	"github.com/prometheus/client_golang/prometheus"
)

// NotificationOutcomes are the outcomes Notifications counts: an event sent to a destination, failed
// there (refused, or still failing after its retries), or dropped (its queue was full, or the broker
// was stopping).
var NotificationOutcomes = []string{"sent", "failed", "dropped"}

// Notifications counts approval notifications (broker/approval/notify) by destination and outcome.
// Its methods work on a nil *Notifications and do nothing.
type Notifications struct {
	sinks    []string
	outcomes *prometheus.CounterVec
	retries  *prometheus.CounterVec
}

// Notifications registers the counters of approval notifications for the destinations sinks (the
// configured ones, such as "webhook" and "slack": a fixed set), every outcome of each starting at
// zero. Call it once. On a nil m it returns nil.
func (m *Metrics) Notifications(sinks ...string) (*Notifications, error) {
	if m == nil {
		return nil, nil
	}
	n := &Notifications{
		sinks: slices.Clone(sinks),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "notifications_total",
			Help: "Approval notifications by destination and outcome: sent, failed (refused, or failing after its retries) or dropped (its queue full)."},
			[]string{"sink", "outcome"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "notification_retries_total",
			Help: "Approval notifications tried again after a network error, a 5xx or a 429 answer, by destination."}, []string{"sink"}),
	}
	for _, c := range []prometheus.Collector{n.outcomes, n.retries} {
		if err := m.reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, s := range sinks {
		for _, o := range NotificationOutcomes {
			n.outcomes.WithLabelValues(s, o)
		}
		n.retries.WithLabelValues(s)
	}
	return n, nil
}

// Notified counts one event's outcome at a destination. Destinations and outcomes not registered
// are not counted, so that the label set stays the configured one.
func (n *Notifications) Notified(sink, outcome string) {
	if n == nil || !slices.Contains(n.sinks, sink) || !slices.Contains(NotificationOutcomes, outcome) {
		return
	}
	n.outcomes.WithLabelValues(sink, outcome).Inc()
}

// Retried counts a retry of an event at a destination.
func (n *Notifications) Retried(sink string) {
	if n == nil || !slices.Contains(n.sinks, sink) {
		return
	}
	n.retries.WithLabelValues(sink).Inc()
}

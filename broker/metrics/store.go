package metrics

import (
	"crypto/x509"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// AuditAppend observes one write of a batch of audit records to the store; a failed one counts as a
// store error.
func (m *Metrics) AuditAppend(took time.Duration, err error) {
	if m == nil {
		return
	}
	m.auditAppend.Observe(took.Seconds())
	if err != nil {
		m.auditErrors.WithLabelValues("write").Inc()
	}
}

// AuditFlush observes one flush of written audit records to stable storage; a failed one counts as
// a store error.
func (m *Metrics) AuditFlush(took time.Duration, err error) {
	if m == nil {
		return
	}
	m.auditFlush.Observe(took.Seconds())
	if err != nil {
		m.auditErrors.WithLabelValues("flush").Inc()
	}
}

// AuditCheckpointFailed counts a checkpoint the store failed to sign or keep.
func (m *Metrics) AuditCheckpointFailed() {
	if m == nil {
		return
	}
	m.auditErrors.WithLabelValues("checkpoint").Inc()
}

// WatchAuditBacklog reports, at each scrape, the audit records written or queued but not yet durable
// (unflushed()).
func (m *Metrics) WatchAuditBacklog(unflushed func() uint64) error {
	if m == nil {
		return nil
	}
	return m.reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: "audit_unflushed_records",
		Help: "Audit records chained but not yet on stable storage."}, func() float64 { return float64(unflushed()) }))
}

// WatchSVID reports, at each scrape, the seconds until the broker's own X.509-SVID expires (negative
// once it has); svid returns its leaf certificate.
func (m *Metrics) WatchSVID(svid func() (*x509.Certificate, error)) error {
	if m == nil {
		return nil
	}
	return m.reg.Register(&expiry{
		desc: prometheus.NewDesc(namespace+"_svid_expiry_seconds", "Seconds until the broker's own X.509-SVID expires; absent while it holds none.", nil, nil),
		collect: func(emit func(float64, ...string)) {
			if c, err := svid(); err == nil && c != nil {
				emit(time.Until(c.NotAfter).Seconds())
			}
		}})
}

// WatchBundles reports, at each scrape, for each trusted trust domain, the seconds until the first of
// its bundle's X.509 authorities expires; bundles returns them by trust domain (a bounded set: the
// broker's own and its federated ones).
func (m *Metrics) WatchBundles(bundles func() map[string][]*x509.Certificate) error {
	if m == nil {
		return nil
	}
	return m.reg.Register(&expiry{
		desc: prometheus.NewDesc(namespace+"_trust_bundle_expiry_seconds",
			"Seconds until the first X.509 authority of a trust domain's bundle expires.", []string{"trust_domain"}, nil),
		collect: func(emit func(float64, ...string)) {
			for td, cas := range bundles() {
				var first time.Time
				for _, ca := range cas {
					if first.IsZero() || ca.NotAfter.Before(first) {
						first = ca.NotAfter
					}
				}
				if !first.IsZero() {
					emit(time.Until(first).Seconds(), td)
				}
			}
		}})
}

// expiry is a gauge computed at each scrape.
type expiry struct {
	desc    *prometheus.Desc
	collect func(emit func(v float64, labels ...string))
}

func (e *expiry) Describe(ch chan<- *prometheus.Desc) { ch <- e.desc }

func (e *expiry) Collect(ch chan<- prometheus.Metric) {
	e.collect(func(v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(e.desc, prometheus.GaugeValue, v, labels...)
	})
}

// WatchTraceExport reports, at each scrape, what tracing's exporter did with the spans that ended
// (stats: broker/tracing's Tracing.ExportStats): spans the collector took, spans dropped (the export
// queue was full, or tracing was shut down), and exports that failed, whose spans are lost.
func (m *Metrics) WatchTraceExport(stats func() (exported, dropped, failed int64)) error {
	if m == nil {
		return nil
	}
	for _, c := range []struct {
		name, help string
		value      func() float64
	}{
		{"trace_spans_exported_total", "Spans in exports the OTLP collector answered with success.", func() float64 { e, _, _ := stats(); return float64(e) }},
		{"trace_spans_dropped_total", "Spans dropped, not exported: the export queue was full (a slow or unreachable collector) or tracing was shut down.",
			func() float64 { _, d, _ := stats(); return float64(d) }},
		{"trace_exports_failed_total", "Exports of a batch of spans that failed; their spans are lost.", func() float64 { _, _, f := stats(); return float64(f) }},
	} {
		if err := m.reg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: namespace, Name: c.name, Help: c.help}, c.value)); err != nil {
			return err
		}
	}
	return nil
}

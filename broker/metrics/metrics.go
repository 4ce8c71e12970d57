package metrics

import (
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const namespace = "svidbroker"

// Config configures a Metrics.
type Config struct {
	// SPIFFEIDLabels adds the caller's SPIFFE ID as a label of sessions started and refused. Off by
	// default: a fleet of agents would make a series per agent.
	SPIFFEIDLabels bool
	// MaxSPIFFEIDs caps the distinct SPIFFE IDs labelled, when SPIFFEIDLabels is on; callers beyond
	// it are counted as "other". Default DefaultMaxSPIFFEIDs; at most MaxSPIFFEIDsLimit.
	MaxSPIFFEIDs int
}

// DefaultMaxSPIFFEIDs and MaxSPIFFEIDsLimit bound Config.MaxSPIFFEIDs.
const (
	DefaultMaxSPIFFEIDs = 50
	MaxSPIFFEIDsLimit   = 1000
)

// Other is the label value of every SPIFFE ID beyond the cap.
const Other = "other"

// Validate fills in defaults and rejects values that would make the label set unbounded.
func (c *Config) Validate() error {
	switch {
	case c.MaxSPIFFEIDs < 0:
		return fmt.Errorf("metrics: max_spiffe_ids is %d; it must be positive", c.MaxSPIFFEIDs)
	case c.MaxSPIFFEIDs > MaxSPIFFEIDsLimit:
		return fmt.Errorf("metrics: max_spiffe_ids is %d; at most %d SPIFFE IDs may be labels", c.MaxSPIFFEIDs, MaxSPIFFEIDsLimit)
	case c.MaxSPIFFEIDs > 0 && !c.SPIFFEIDLabels:
		return errors.New("metrics: max_spiffe_ids is set but spiffe_id_labels is not; set spiffe_id_labels = true or remove max_spiffe_ids")
	case c.MaxSPIFFEIDs == 0:
		c.MaxSPIFFEIDs = DefaultMaxSPIFFEIDs
	}
	return nil
}

// Metrics holds the broker's registry and its metrics.
type Metrics struct {
	cfg Config
	reg *prometheus.Registry

	sessionsActive   *prometheus.GaugeVec
	sessionsStarted  *prometheus.CounterVec
	sessionsRefused  *prometheus.CounterVec
	sessionsEnded    *prometheus.CounterVec
	decisions        *prometheus.CounterVec
	decisionTime     prometheus.Histogram
	approvalsPending prometheus.Gauge
	approvalWait     prometheus.Histogram
	approvals        *prometheus.CounterVec
	vaultLeases      *prometheus.CounterVec
	vaultFailures    *prometheus.CounterVec
	vaultTime        *prometheus.HistogramVec
	spireTime        *prometheus.HistogramVec
	auditAppend      prometheus.Histogram
	auditFlush       prometheus.Histogram
	auditErrors      *prometheus.CounterVec
	policyReloads    *prometheus.CounterVec
	policyInfo       *prometheus.GaugeVec

	mu        sync.Mutex
	ids       map[string]struct{} // the SPIFFE IDs given labels, at most cfg.MaxSPIFFEIDs
	policySet string              // the digest policyInfo shows
	ops       []*operations       // the targets' operations (Target), one per target and protocol
}

// Buckets of the latency histograms, in seconds: the broker's own work is measured in tens of
// microseconds to milliseconds, its calls to SPIRE, Vault and the audit store in milliseconds to
// seconds, and approvals in seconds to minutes.
var (
	fastBuckets     = [...]float64{0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1}
	callBuckets     = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}
	approvalBuckets = []float64{1, 5, 15, 30, 60, 120, 300, 600, 1800}
)

// New checks cfg and returns a Metrics with a registry of its own, which also holds the Go runtime's
// and the process's collectors.
func New(cfg Config) (*Metrics, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m := &Metrics{cfg: cfg, reg: prometheus.NewRegistry(), ids: map[string]struct{}{}}
	sessionLabels := []string{"target", "protocol"}
	if cfg.SPIFFEIDLabels {
		sessionLabels = append(sessionLabels, "spiffe_id")
	}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help}, labels)
	}
	histogram := func(name, help string, buckets []float64) prometheus.Histogram {
		return prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: namespace, Name: name, Help: help, Buckets: buckets})
	}
	m.sessionsActive = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "sessions_active",
		Help: "Sessions open now, by target and protocol."}, []string{"target", "protocol"})
	m.sessionsStarted = counter("sessions_started_total", "Sessions opened: identified, permitted, recorded and given their credential.",
		sessionLabels...)
	m.sessionsRefused = counter("sessions_refused_total", "Sessions refused before they opened, by reason.",
		append(sessionLabels, "reason")...)
	m.sessionsEnded = counter("sessions_ended_total", "Sessions ended, by outcome: client_ended, aborted, shutdown, svid_expired, lease_lost, revoked or error.",
		"target", "protocol", "outcome")
	m.decisions = counter("decisions_total", "Cedar decisions by action, effect and deciding policy ID; a decision several policies decide counts once under each, a default deny under policy_id=\"none\".",
		"action", "effect", "policy_id")
	m.decisionTime = histogram("decision_duration_seconds", "Time of one Cedar decision.", fastBuckets[:])
	m.approvalsPending = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: "approvals_pending",
		Help: "Operations held now, waiting for a person's approval."})
	m.approvalWait = histogram("approval_wait_seconds", "Time a held operation waited for its approval's outcome.", approvalBuckets)
	m.approvals = counter("approvals_total", "Approval requests ended, by outcome: approved, denied, expired, failed or withdrawn.", "outcome")
	m.vaultLeases = counter("vault_leases_total", "Vault lease events: acquired, renewed or revoked.", "event")
	m.vaultFailures = counter("vault_lease_failures_total", "Vault lease calls that failed, by operation: acquire, renew or revoke.", "operation")
	m.vaultTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "vault_request_duration_seconds",
		Help: "Time of a Vault call, by operation.", Buckets: callBuckets}, []string{"operation"})
	m.spireTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "spire_lookup_duration_seconds",
		Help: "Time to learn what SPIRE attested about a caller, by result: ok or error.", Buckets: callBuckets}, []string{"result"})
	m.auditAppend = histogram("audit_append_duration_seconds", "Time to write one batch of audit records to the store.", callBuckets)
	m.auditFlush = histogram("audit_flush_duration_seconds", "Time to make written audit records durable.", callBuckets)
	m.auditErrors = counter("audit_store_errors_total", "Audit store operations that failed, by operation: write, flush or checkpoint.", "operation")
	m.policyReloads = counter("policy_reloads_total", "Policy sets loaded (the first one included) or refused (each distinct refused set once).", "result")
	m.policyInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "policy_set_info",
		Help: "The policy set in force: its digest, the one decisions and audit records name."}, []string{"digest"})

	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.sessionsActive, m.sessionsStarted, m.sessionsRefused, m.sessionsEnded, newOperationsCollector(m),
		m.decisions, m.decisionTime, m.approvalsPending, m.approvalWait, m.approvals,
		m.vaultLeases, m.vaultFailures, m.vaultTime, m.spireTime,
		m.auditAppend, m.auditFlush, m.auditErrors, m.policyReloads, m.policyInfo)
	for _, r := range []string{"loaded", "refused"} {
		m.policyReloads.WithLabelValues(r)
	}
	for _, e := range []string{"acquired", "renewed", "revoked"} {
		m.vaultLeases.WithLabelValues(e)
	}
	for _, op := range []string{"acquire", "renew", "revoke"} {
		m.vaultFailures.WithLabelValues(op)
	}
	for _, op := range []string{"write", "flush", "checkpoint"} {
		m.auditErrors.WithLabelValues(op)
	}
	return m, nil
}

// Registry is the registry every metric is in.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in Prometheus' exposition formats. A nil *Metrics (metrics turned off)
// answers 404, saying so.
func (m *Metrics) Handler() http.Handler {
	if m == nil {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "metrics are off in this broker's configuration (metrics { enabled = false })", http.StatusNotFound)
		})
	}
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// spiffeIDLabel is id as a label value: id while fewer than MaxSPIFFEIDs distinct IDs were
// labelled, Other beyond; "none" for a caller without one, which takes no place under the cap.
func (m *Metrics) spiffeIDLabel(id string) string {
	if id == "" {
		return "none"
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.ids[id]; ok {
		return id
	}
	if len(m.ids) >= m.cfg.MaxSPIFFEIDs {
		return Other
	}
	m.ids[id] = struct{}{}
	return id
}

// Decision counts one Cedar decision of action: once under each deciding policy, "none" when none
// decided (a default deny), and observes how long it took.
func (m *Metrics) Decision(action string, allow bool, policies []string, took time.Duration) {
	if m == nil {
		return
	}
	effect := "deny"
	if allow {
		effect = "allow"
	}
	m.decisionTime.Observe(took.Seconds())
	if len(policies) == 0 {
		m.decisions.WithLabelValues(action, effect, "none").Inc()
		return
	}
	for _, p := range policies {
		m.decisions.WithLabelValues(action, effect, p).Inc()
	}
}

// PolicyLoaded records a policy set that came into force, with its digest.
func (m *Metrics) PolicyLoaded(digest string) {
	if m == nil {
		return
	}
	m.policyReloads.WithLabelValues("loaded").Inc()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.policySet != "" {
		m.policyInfo.DeleteLabelValues(m.policySet)
	}
	m.policySet = digest
	m.policyInfo.WithLabelValues(digest).Set(1)
}

// PolicyRefused records a policy set that was refused; the set in force stays.
func (m *Metrics) PolicyRefused() {
	if m == nil {
		return
	}
	m.policyReloads.WithLabelValues("refused").Inc()
}

// SPIRELookup observes one lookup of what SPIRE attested about a caller.
func (m *Metrics) SPIRELookup(took time.Duration, err error) {
	if m == nil {
		return
	}
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.spireTime.WithLabelValues(result).Observe(took.Seconds())
}

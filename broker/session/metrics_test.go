package session

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/broker/metrics"
	"github.com/svidbroker/svidbroker/broker/metrics/metricstest"
)

// metricValue is the value of the sample of metric name whose labels include labels; 0 when there is
// none.
func metricValue(t *testing.T, m *metrics.Metrics, name string, labels map[string]string) float64 {
	t.Helper()
samples:
	for _, s := range metricstest.Family(t, m.Registry(), name) {
		have := metricstest.Labels(s)
		for k, v := range labels {
			if have[k] != v {
				continue samples
			}
		}
		return metricstest.Value(s)
	}
	return 0
}

func newMetricsCore(t *testing.T, m *metrics.Metrics, authorize func(context.Context, authz.Connect) (authz.Decision, error), approve ApproveFunc) *Core {
	t.Helper()
	core, err := New(Config{Target: "shop", Protocol: "postgres", OperationKind: "sql", Metrics: m, Audit: &sink{},
		Logger: slog.New(slog.DiscardHandler), Authorize: authorize, Approve: approve, ApprovalTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return core
}

func TestMetricsCountSessionsAsTheyOpenAndEnd(t *testing.T) {
	allow := func(context.Context, authz.Connect) (authz.Decision, error) { return authz.Decision{}, nil }
	deny := func(context.Context, authz.Connect) (authz.Decision, error) {
		return authz.Decision{}, errors.New("not allowed")
	}
	target := map[string]string{"target": "shop", "protocol": "postgres"}
	with := func(k, v string) map[string]string {
		l := map[string]string{k: v}
		for tk, tv := range target {
			l[tk] = tv
		}
		return l
	}
	cases := []struct {
		name    string
		deny    bool
		end     func(*Session)
		started float64
		refused string
		outcome string
	}{
		{name: "ended by its client", end: func(s *Session) { s.End(nil, time.Now()) }, started: 1, outcome: "client_ended"},
		{name: "revoked", end: func(s *Session) { s.Closed(&Ended{Why: ErrRevoked}); s.Closed(nil) }, started: 1, outcome: "revoked"},
		{name: "SVID expired", end: func(s *Session) { s.End(&Ended{Why: ErrSVIDExpired}, time.Now()) }, started: 1, outcome: "svid_expired"},
		{name: "not established", end: func(s *Session) { s.Abort("backend unavailable") }, started: 1, outcome: "aborted"},
		{name: "denied", deny: true, refused: "denied"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := metrics.New(metrics.Config{})
			if err != nil {
				t.Fatal(err)
			}
			authorize := allow
			if c.deny {
				authorize = deny
			}
			core := newMetricsCore(t, m, authorize, nil)
			s, err := core.Open(t.Context(), OpenRequest{TLS: peerTLS(t, "spiffe://example.org/agent/a", time.Now().Add(time.Hour)), Remote: remote})
			if got := metricValue(t, m, "svidbroker_sessions_started_total", target); got != c.started {
				t.Errorf("sessions started = %v, want %v", got, c.started)
			}
			if c.refused != "" {
				if err == nil {
					t.Fatal("Open did not refuse")
				}
				if got := metricValue(t, m, "svidbroker_sessions_refused_total", with("reason", c.refused)); got != 1 {
					t.Errorf("sessions refused (%s) = %v, want 1", c.refused, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := metricValue(t, m, "svidbroker_sessions_active", target); got != 1 {
				t.Errorf("active sessions = %v once open, want 1", got)
			}
			c.end(s)
			if got := metricValue(t, m, "svidbroker_sessions_active", target); got != 0 {
				t.Errorf("active sessions = %v once ended, want 0", got)
			}
			if got := metricValue(t, m, "svidbroker_sessions_ended_total", with("outcome", c.outcome)); got != 1 {
				t.Errorf("sessions ended (%s) = %v, want 1", c.outcome, got)
			}
		})
	}
}

func TestMetricsCountOperationsAndApprovals(t *testing.T) {
	m, err := metrics.New(metrics.Config{})
	if err != nil {
		t.Fatal(err)
	}
	pendingWhileHeld := -1.0
	approved := func(context.Context, Approval) (authz.ApprovalState, error) {
		pendingWhileHeld = metricValue(t, m, "svidbroker_approvals_pending", nil)
		return authz.ApprovalState{State: "approved", Approver: "alice"}, nil
	}
	core := newMetricsCore(t, m, func(context.Context, authz.Connect) (authz.Decision, error) { return authz.Decision{}, nil }, approved)
	s, err := core.Open(t.Context(), OpenRequest{TLS: peerTLS(t, "spiffe://example.org/agent/a", time.Now().Add(time.Hour)), Remote: remote})
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	for _, kind := range []string{"allow", "deny", "deny", "mask", "hold"} {
		s.Decide(t.Context(), Operation{Action: "sql", Text: "SELECT 1", Decide: decider(kind, &calls)})
	}
	// Decided ahead of its run (a statement prepared): counted only when refused or held.
	s.Decide(t.Context(), Operation{Action: "sql", Text: "SELECT 1", Ahead: true, Decide: decider("allow", &calls)})
	s.Decide(t.Context(), Operation{Action: "sql", Text: "SELECT 1", Ahead: true, Decide: decider("deny", &calls)})
	for outcome, want := range map[string]float64{"allowed": 1, "refused": 3, "masked": 1, "held": 1} {
		l := map[string]string{"target": "shop", "protocol": "postgres", "kind": "sql", "outcome": outcome}
		if got := metricValue(t, m, "svidbroker_operations_total", l); got != want {
			t.Errorf("operations %s = %v, want %v", outcome, got, want)
		}
	}
	if got := metricValue(t, m, "svidbroker_approvals_total", map[string]string{"outcome": "approved"}); got != 1 {
		t.Errorf("approved approvals = %v, want 1", got)
	}
	if pendingWhileHeld != 1 {
		t.Errorf("approvals pending = %v while one waited, want 1", pendingWhileHeld)
	}
	if got := metricValue(t, m, "svidbroker_approvals_pending", nil); got != 0 {
		t.Errorf("approvals pending = %v after the outcome, want 0", got)
	}
	s.End(nil, time.Now())
}

// maskedPlan is a plan that masks what it lists.
type maskedPlan []string

func (p maskedPlan) Masked() []string { return p }

// TestMetricsCountMaskingPlansAsMasked: an allowed operation whose engine's plan masks some of what
// it returns (a MaskingPlan listing something: a masked column, an HTTP route's or MCP tool's masked
// field) is a Mask verdict, counted as masked; one whose plan masks nothing stays allowed, and a held
// one stays held.
func TestMetricsCountMaskingPlansAsMasked(t *testing.T) {
	m, err := metrics.New(metrics.Config{})
	if err != nil {
		t.Fatal(err)
	}
	approved := func(context.Context, Approval) (authz.ApprovalState, error) {
		return authz.ApprovalState{State: "approved", Approver: "alice"}, nil
	}
	core := newMetricsCore(t, m, func(context.Context, authz.Connect) (authz.Decision, error) { return authz.Decision{}, nil }, approved)
	s, err := core.Open(t.Context(), OpenRequest{TLS: peerTLS(t, "spiffe://example.org/agent/a", time.Now().Add(time.Hour)), Remote: remote})
	if err != nil {
		t.Fatal(err)
	}
	defer s.End(nil, time.Now())
	calls := 0
	for _, c := range []struct {
		decide string
		plan   maskedPlan
		want   Outcome
	}{
		{"allow", maskedPlan{"public.customers.email=hash"}, Mask},
		{"allow", maskedPlan{}, Allow},
		{"allow", nil, Allow},
		{"hold", maskedPlan{"$.ssn=partial"}, Held},
	} {
		v := s.Decide(t.Context(), Operation{Action: "sql", Text: "SELECT 1", Decide: decider(c.decide, &calls),
			Prepare: func(Verdict) (any, error) { return c.plan, nil }})
		if v.Outcome != c.want {
			t.Errorf("%s with plan %v: outcome %v, want %v", c.decide, c.plan, v.Outcome, c.want)
		}
	}
	for outcome, want := range map[string]float64{"allowed": 2, "masked": 1, "held": 1} {
		l := map[string]string{"target": "shop", "protocol": "postgres", "kind": "sql", "outcome": outcome}
		if got := metricValue(t, m, "svidbroker_operations_total", l); got != want {
			t.Errorf("operations %s = %v, want %v", outcome, got, want)
		}
	}
}

// TestMetricsCountAnUnrecordedOperationAsRefused: an allowed operation whose record cannot be written
// does not run, and is counted as refused, not allowed.
func TestMetricsCountAnUnrecordedOperationAsRefused(t *testing.T) {
	m, err := metrics.New(metrics.Config{})
	if err != nil {
		t.Fatal(err)
	}
	snk := &sink{}
	core, err := New(Config{Target: "api", Protocol: "http", OperationKind: "http", Metrics: m, Audit: snk,
		Logger: slog.New(slog.DiscardHandler), Authorize: func(context.Context, authz.Connect) (authz.Decision, error) { return authz.Decision{}, nil }})
	if err != nil {
		t.Fatal(err)
	}
	s, err := core.Open(t.Context(), OpenRequest{TLS: peerTLS(t, "spiffe://example.org/agent/a", time.Now().Add(time.Hour)), Remote: remote})
	if err != nil {
		t.Fatal(err)
	}
	snk.fail = errors.New("disk full")
	calls := 0
	v := s.Decide(t.Context(), Operation{Action: "http", Text: "GET /v1/orders", Decide: decider("allow", &calls),
		Record: &audit.Record{Kind: audit.KindStatement}, Durable: true})
	if v.Outcome != Block {
		t.Fatalf("an unrecorded operation got %v", v.Outcome)
	}
	l := func(outcome string) map[string]string {
		return map[string]string{"target": "api", "protocol": "http", "kind": "http", "outcome": outcome}
	}
	if got := metricValue(t, m, "svidbroker_operations_total", l("refused")); got != 1 {
		t.Errorf("refused = %v, want 1", got)
	}
	if got := metricValue(t, m, "svidbroker_operations_total", l("allowed")); got != 0 {
		t.Errorf("allowed = %v for an operation that did not run, want 0", got)
	}
}

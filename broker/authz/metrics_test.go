package authz

import (
	"testing"

	"github.com/svidbroker/svidbroker/broker/metrics"
	"github.com/svidbroker/svidbroker/broker/metrics/metricstest"
)

// sample is the value of metric name's sample whose labels are exactly labels (in any order); -1
// when there is none.
func sample(t *testing.T, m *metrics.Metrics, name string, labels map[string]string) float64 {
	t.Helper()
next:
	for _, s := range metricstest.Family(t, m.Registry(), name) {
		have := metricstest.Labels(s)
		if len(have) != len(labels) {
			continue
		}
		for k, v := range have {
			if labels[k] != v {
				continue next
			}
		}
		return metricstest.Value(s)
	}
	return -1
}

func TestMetricsCountDecisionsAndReloads(t *testing.T) {
	m, err := metrics.New(metrics.Config{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writePolicies(t, dir, map[string]string{"connect.cedar": permitAgents})
	e, err := New(Config{Dir: dir, Schema: testSchema(t), Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	first := e.Digest()
	e.Decide(connectReq("spiffe://example.org/agent/a", ""))
	e.Decide(connectReq("spiffe://example.org/agent/b", ""))
	e.Decide(connectReq("spiffe://example.org/intruder", ""))
	if got := sample(t, m, "svidbroker_decisions_total", map[string]string{"action": "connect", "effect": "allow", "policy_id": "agents-connect"}); got != 2 {
		t.Errorf("allowed connects under agents-connect = %v, want 2", got)
	}
	if got := sample(t, m, "svidbroker_decisions_total", map[string]string{"action": "connect", "effect": "deny", "policy_id": "none"}); got != 1 {
		t.Errorf("default denies = %v, want 1", got)
	}

	writePolicies(t, dir, map[string]string{"broken.cedar": "permit (principal, action, resource"})
	if err := e.Reload(); err == nil {
		t.Fatal("a broken set loaded")
	}
	if got := sample(t, m, "svidbroker_policy_reloads_total", map[string]string{"result": "refused"}); got != 1 {
		t.Errorf("refused reloads = %v, want 1", got)
	}
	if got := sample(t, m, "svidbroker_policy_set_info", map[string]string{"digest": first}); got != 1 {
		t.Errorf("policy_set_info{digest=%s} = %v while that set stays in force, want 1", first, got)
	}

	writePolicies(t, dir, map[string]string{"broken.cedar": "@id(\"agents-connect-2\")\npermit (principal in Group::\"agents\", action == Action::\"connect\", resource == Target::\"shop\");\n"})
	if err := e.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := sample(t, m, "svidbroker_policy_reloads_total", map[string]string{"result": "loaded"}); got != 2 {
		t.Errorf("loaded sets = %v (the first and the fixed one), want 2", got)
	}
	if got := sample(t, m, "svidbroker_policy_set_info", map[string]string{"digest": e.Digest()}); got != 1 || e.Digest() == first {
		t.Errorf("policy_set_info{digest=%s} = %v, want 1 for the new set", e.Digest(), got)
	}
	if got := sample(t, m, "svidbroker_policy_set_info", map[string]string{"digest": first}); got != -1 {
		t.Errorf("the old set's policy_set_info stays after a new set came into force")
	}
}

package e2e

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/svidbroker/svidbroker/test/stack"
)

// scrape reads broker b's /metrics: the raw exposition and its parsed families.
func scrape(t *testing.T, b *stack.Broker) (string, map[string]*dto.MetricFamily) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + b.AdminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d %v", resp.StatusCode, err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	return string(body), fams
}

// metricAt is the value of family name's sample whose labels include labels; 0 when there is none.
func metricAt(fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	f := fams[name]
	if f == nil {
		return 0
	}
	sum := 0.0
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range labels {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	return sum
}

// TestMetricsMoveWithPostgresOperations scrapes the shared broker's /metrics around Postgres work: a
// session opening raises the sessions started and active, a statement a policy denies raises the
// denied decisions under that policy's ID and the refused operations, and the SVID and trust bundle
// expiries are there. No statement text, canary or protected value reaches /metrics. A broker that
// leases its backend credentials from Vault shows the lease acquired, then revoked.
func TestMetricsMoveWithPostgresOperations(t *testing.T) {
	s, b := shared(t)
	shop := map[string]string{"target": "shop", "protocol": "postgres"}
	denied := map[string]string{"action": "sql:admin", "effect": "deny", "policy_id": "baseline-no-admin-sql"}
	refused := map[string]string{"target": "shop", "protocol": "postgres", "kind": "admin", "outcome": "refused"}
	selects := map[string]string{"target": "shop", "protocol": "postgres", "kind": "select"}
	unparsed := map[string]string{"target": "shop", "protocol": "postgres", "kind": "unparsed", "outcome": "refused"}
	_, before := scrape(t, b)

	conn := connect(t, s, b, stack.PersonaAnalyst)
	_, open := scrape(t, b)
	if d := metricAt(open, "svidbroker_sessions_started_total", shop) - metricAt(before, "svidbroker_sessions_started_total", shop); d < 1 {
		t.Errorf("sessions started rose by %v after a session opened", d)
	}
	if n := metricAt(open, "svidbroker_sessions_active", shop); n < 1 {
		t.Errorf("active sessions = %v while one is open", n)
	}

	canary := "canary-" + time.Now().Format("150405.000000")
	var echoed, email string
	if err := conn.QueryRow(t.Context(), "SELECT $1::text", canary).Scan(&echoed); err != nil || echoed != canary {
		t.Fatalf("an allowed statement: %q %v", echoed, err)
	}
	if err := conn.QueryRow(t.Context(), "SELECT email FROM customers WHERE id = 1").Scan(&email); err != nil || strings.HasSuffix(email, "@example.com") {
		t.Fatalf("the analyst's email column is not masked: %q %v", email, err)
	}
	if _, err := conn.Exec(t.Context(), "SET ROLE postgres"); err == nil || !strings.Contains(err.Error(), "baseline-no-admin-sql") {
		t.Fatalf("SET ROLE: %v, want a denial by baseline-no-admin-sql", err)
	}
	if _, err := conn.Exec(t.Context(), "SELEC 1"); err == nil {
		t.Fatal("a statement that does not parse ran")
	}
	body, after := scrape(t, b)
	if d := metricAt(after, "svidbroker_operations_total", unparsed) - metricAt(open, "svidbroker_operations_total", unparsed); d < 1 {
		t.Errorf("refused unparsed statements rose by %v after one was refused", d)
	}
	if d := metricAt(after, "svidbroker_decisions_total", denied) - metricAt(open, "svidbroker_decisions_total", denied); d < 1 {
		t.Errorf("denied sql:admin decisions under baseline-no-admin-sql rose by %v after one was denied", d)
	}
	if d := metricAt(after, "svidbroker_operations_total", refused) - metricAt(open, "svidbroker_operations_total", refused); d < 1 {
		t.Errorf("refused admin statements rose by %v after a refusal", d)
	}
	if d := metricAt(after, "svidbroker_operations_total", selects) - metricAt(open, "svidbroker_operations_total", selects); d < 2 {
		t.Errorf("SELECT statements decided rose by %v after two ran", d)
	}
	// The SELECT of the analyst's masked email column ran masked; the other, of no table, did not.
	for outcome, ran := range map[string]string{"masked": "SELECT email FROM customers", "allowed": "SELECT $1::text"} {
		l := map[string]string{"target": "shop", "protocol": "postgres", "kind": "select", "outcome": outcome}
		if d := metricAt(after, "svidbroker_operations_total", l) - metricAt(open, "svidbroker_operations_total", l); d < 1 {
			t.Errorf("SELECT statements %s rose by %v after %q ran", outcome, d, ran)
		}
	}
	if n := metricAt(after, "svidbroker_operation_added_seconds", map[string]string{"protocol": "postgres"}); n < 3 {
		t.Errorf("the broker's added time was observed for %v operations, want at least 3", n)
	}
	if v := metricAt(after, "svidbroker_svid_expiry_seconds", nil); v <= 0 {
		t.Errorf("svid_expiry_seconds = %v for a current SVID", v)
	}
	if v := metricAt(after, "svidbroker_trust_bundle_expiry_seconds", map[string]string{"trust_domain": "example.org"}); v <= 0 {
		t.Errorf("trust_bundle_expiry_seconds{trust_domain=example.org} = %v", v)
	}
	if f := after["svidbroker_policy_set_info"]; f == nil || len(f.GetMetric()) != 1 {
		t.Errorf("policy_set_info does not name the one set in force: %v", f)
	}
	for _, leak := range []string{canary, "@example.com", "SET ROLE", "SELECT", "spiffe://"} {
		if strings.Contains(body, leak) {
			t.Errorf("/metrics holds %q", leak)
		}
	}
	conn.Close(t.Context())

	// A broker whose sessions lease their credentials from Vault.
	v, root := startVault(t)
	configureVault(t, s, root, "30s", "1m")
	vb := vaultBroker(t, s, v, "svidbroker-metrics-vault", "metrics-vault-journal")
	defer vb.Stop()
	leased, err := pgx.ConnectConfig(t.Context(), pgxConfig(t, vb, clientFiles(t, s, stack.PersonaAnalyst)))
	if err != nil {
		t.Fatal(err)
	}
	user := currentUser(t, leased)
	body, fams := scrape(t, vb)
	if n := metricAt(fams, "svidbroker_vault_leases_total", map[string]string{"event": "acquired"}); n < 1 {
		t.Errorf("vault leases acquired = %v while a session holds one", n)
	}
	if n := metricAt(fams, "svidbroker_vault_request_duration_seconds", map[string]string{"operation": "acquire"}); n < 1 {
		t.Errorf("no Vault acquire call was timed")
	}
	if strings.Contains(body, user) || strings.Contains(body, "A1a-") {
		t.Errorf("/metrics holds the leased credential's user or password")
	}
	leased.Close(t.Context())
	var revoked float64
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		_, fams = scrape(t, vb)
		if revoked = metricAt(fams, "svidbroker_vault_leases_total", map[string]string{"event": "revoked"}); revoked >= 1 {
			break
		}
	}
	if revoked < 1 {
		t.Errorf("vault leases revoked = %v after the session ended", revoked)
	}
	if n := metricAt(fams, "svidbroker_sessions_ended_total", map[string]string{"target": "shop", "outcome": "client_ended"}); n < 1 {
		t.Errorf("sessions ended by their client = %v after the client left", n)
	}
}

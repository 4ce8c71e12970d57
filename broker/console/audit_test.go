package console

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/svidbroker/svidbroker/broker/audit"
)

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// newAuditLog opens a real signed audit chain in a temporary directory.
func (h *harness) newAuditLog() {
	t := h.t
	keys, dir := t.TempDir(), t.TempDir()
	if err := audit.GenerateKeys(keys, "console-test"); err != nil {
		t.Fatal(err)
	}
	mac, err := audit.LoadMACKey(filepath.Join(keys, audit.MACKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := audit.LoadSigner(filepath.Join(keys, audit.SigningKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := audit.LoadVerifier(filepath.Join(keys, audit.VerifierKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.Open(audit.Config{Dir: dir, Chain: "c", MACKey: mac, Signer: signer, Verifier: verifier,
		CheckpointInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	h.log, h.auditDir = l, dir
	h.read = audit.Files(dir, "c")
	h.verify = func(context.Context) (*audit.Report, error) { return audit.Verify(dir, "c", mac, verifier) }
}

// recordSession appends a session of the migrator on target: its start, an allowed statement with a
// masked column, a refused one, the held DDL's decision and, if ended, its end.
func (h *harness) recordSession(id, target string, ended bool) {
	h.t.Helper()
	const agent = "spiffe://example.org/agent/migrator"
	now := time.Now().UTC()
	recs := []audit.Record{
		{Kind: audit.KindSessionStart, Detail: map[string]string{"authenticated_by": "X.509-SVID", "svid_expires": now.Add(time.Hour).Format(time.RFC3339)},
			Decision: &audit.Decision{ID: "d0", Action: "connect", Resource: `Target::"` + target + `"`, Allow: true, Policies: []string{"migrator-connects"}}},
		{Kind: audit.KindStatement, Statement: &audit.Statement{Protocol: "simple", Text: "SELECT id, email FROM customers", Kinds: []string{"select"}, Masked: []string{"public.customers.email=hash"}},
			Decision: &audit.Decision{ID: "d1", Action: "sql:select", Resource: `Table::"public.customers"`, Allow: true, Policies: []string{"read-customers"}}},
		{Kind: audit.KindDenied, Statement: &audit.Statement{Protocol: "simple", Text: "DROP TABLE orders", Kinds: []string{"ddl"}},
			Decision: &audit.Decision{ID: "d2", Action: "sql:ddl", Resource: `Table::"public.orders"`, Allow: false}},
		{Kind: audit.KindDecision, Decision: &audit.Decision{ID: "d3", Action: "sql:ddl", Resource: `Table::"public.orders"`, Allow: true, Policies: []string{"ddl-needs-approval"}, Approval: "required"}},
	}
	if ended {
		recs = append(recs, audit.Record{Kind: audit.KindSessionEnd, Detail: map[string]string{"reason": "client closed"}})
	}
	for _, r := range recs {
		r.Time, r.Session, r.SPIFFEID, r.Target = time.Now().UTC(), id, agent, target
		if err := h.log.Append(r); err != nil {
			h.t.Fatal(err)
		}
	}
}

package e2e

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/test/stack"
)

// TestPolicyReloadRevokesOpenSessions: a reload that forbids the analyst's connect ends the analyst's
// open session, with a FATAL error that says why and a revoking decision and session end in the
// audit log; the support agent's session, which the new set still permits, keeps running (the
// control).
func TestPolicyReloadRevokesOpenSessions(t *testing.T) {
	s, _ := shared(t)
	b, err := s.StartBroker(t.Context(), stack.BrokerOptions{Name: "svidbroker-revoke", Binary: brokerBin})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Stop()
	analyst := connect(t, s, b, stack.PersonaAnalyst)
	support := connect(t, s, b, stack.PersonaSupport)
	for _, c := range []interface {
		Exec(context.Context, string, ...any) (pgconn.CommandTag, error)
	}{analyst, support} {
		if _, err := c.Exec(t.Context(), "SELECT 1"); err != nil {
			t.Fatal(err)
		}
	}

	path := filepath.Join(b.PolicyDir, "analyst", "analyst.cedar")
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(orig), `@id("analyst-connect")`+"\npermit", `@id("analyst-connect")`+"\nforbid", 1)
	if edited == string(orig) {
		t.Fatal("test setup: analyst-connect not found")
	}
	if err := os.WriteFile(path, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	defer os.WriteFile(path, orig, 0o644)

	// The analyst's idle session is ended by the broker: the FATAL error arrives unasked.
	wait, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	err = analyst.PgConn().WaitForNotification(wait)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "28000" || pgErr.Severity != "FATAL" ||
		!strings.Contains(pgErr.Message, "no longer permit") || !strings.Contains(pgErr.Message, "analyst-connect") {
		t.Fatalf("analyst's session: %v, want FATAL 28000 saying the policies no longer permit it (analyst-connect)", err)
	}

	// The control: support, still permitted, runs statements after the reload.
	if _, err := support.Exec(t.Context(), "SELECT 1"); err != nil {
		t.Fatalf("support's session after the reload: %v", err)
	}

	persona, err := s.Persona(stack.PersonaAnalyst)
	if err != nil {
		t.Fatal(err)
	}
	analystID := persona.ID.String()
	var revoked, ended bool
	for deadline := time.Now().Add(10 * time.Second); !(revoked && ended) && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		_ = audit.Read(b.AuditDir, b.Chain, func(e audit.Entry) error {
			r := e.Record
			if r.SPIFFEID != analystID {
				return nil
			}
			if r.Kind == audit.KindDecision && r.Decision != nil && !r.Decision.Allow && r.Decision.Action == "connect" &&
				strings.Contains(r.Detail["refused"], "policy reload") {
				revoked = true
			}
			if r.Kind == audit.KindSessionEnd && strings.Contains(r.Detail["reason"], "no longer permit") {
				ended = true
			}
			return nil
		})
	}
	if !revoked || !ended {
		t.Fatalf("audit log: revoking decision recorded %v, session end with the reason %v", revoked, ended)
	}
}

package postgres

import (
	"strings"
	"testing"

	sess "github.com/svidbroker/svidbroker/broker/session"
)

func TestStatementFingerprint(t *testing.T) {
	fp := func(text string) string { return statementFingerprint(sess.Operation{Text: text}) }
	a := fp("DELETE FROM orders WHERE id = 5")
	if !strings.HasPrefix(a, "sql:") || len(a) <= len("sql:") {
		t.Fatalf("fingerprint %q", a)
	}
	// libpg_query's fingerprint leaves constants out: a once approval binds the exact text besides.
	if b := fp("delete from orders where id = 6"); b != a {
		t.Errorf("the same statement with another constant: %q, %q", a, b)
	}
	for _, other := range []string{"DELETE FROM customers WHERE id = 5", "DELETE FROM orders", "ALTER TABLE orders ADD COLUMN note text"} {
		if fp(other) == a {
			t.Errorf("%q shares the fingerprint of the DELETE", other)
		}
	}
	if got := fp("SELEC 1"); got != "" {
		t.Errorf("an unparseable statement has fingerprint %q; it must bind nothing", got)
	}
	if got := statementFingerprint(sess.Operation{Text: "SELECT 1", Fingerprint: "set"}); got != "set" {
		t.Errorf("the engine's own fingerprint was replaced: %q", got)
	}
}

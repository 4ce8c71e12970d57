package sqlclass

import (
	"slices"
	"testing"
)

// TestExcludedHoldsTheInsertedValues: in INSERT ... ON CONFLICT DO UPDATE, EXCLUDED is the row
// proposed for insertion, so a test of excluded.col tests the values the INSERT's query read (a
// permitted write of a masked column must not make its values testable in the conflict's WHERE).
// The control: with literal values, EXCLUDED is only the target table's own columns.
func TestExcludedHoldsTheInsertedValues(t *testing.T) {
	for _, c := range []struct {
		sql       string
		want, not string
	}{
		{"INSERT INTO notes (id, body) SELECT id, email FROM customers ON CONFLICT (id) DO UPDATE SET body = 'x' WHERE excluded.body LIKE 'a%'", "where:customers.email", ""},
		{"INSERT INTO notes (id, body) SELECT id, email FROM customers ON CONFLICT (id) DO UPDATE SET body = lower(excluded.body)", "write:customers.email", ""},
		{"INSERT INTO notes (id, body) VALUES (1, 'x') ON CONFLICT (id) DO UPDATE SET body = 'y' WHERE excluded.body LIKE 'a%'", "where:notes.*", "where:customers.email"},
	} {
		t.Run(c.sql, func(t *testing.T) {
			st := classifyOne(t, c.sql)
			got := renderUses(st)
			if st.UsesUnknown || !slices.Contains(got, c.want) || c.not != "" && slices.Contains(got, c.not) {
				t.Errorf("uses %v (unknown %v), want %s and not %q", got, st.UsesUnknown, c.want, c.not)
			}
		})
	}
}

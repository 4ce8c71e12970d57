package sqlclass

import (
	"slices"
	"testing"
)

// TestQueriesIntoNewTablesWriteTheirColumns: CREATE TABLE ... AS and SELECT ... INTO copy a query's
// result into a table that later sessions see as an ordinary, unmasked relation (it keeps no
// dependency on the masked table), so each result column is a write of what it reads, as with INSERT
// ... SELECT. A materialized view depends on its tables and is masked as a view: its columns are not
// writes.
func TestQueriesIntoNewTablesWriteTheirColumns(t *testing.T) {
	for _, c := range []struct {
		sql  string
		want []string
	}{
		{"CREATE TABLE copies AS SELECT email FROM customers", []string{"write:customers.email"}},
		{"CREATE TABLE copies AS SELECT * FROM customers", []string{"write:customers.*"}},
		{"CREATE TEMP TABLE copies AS SELECT c.ssn AS s FROM customers c", []string{"write:customers.ssn"}},
		{"SELECT email INTO copies FROM customers", []string{"write:customers.email"}},
		{"CREATE TABLE copies AS WITH x AS (SELECT email AS e FROM customers) SELECT e FROM x", []string{"write:customers.email"}},
		// Controls: the write names the column copied, which the broker's catalog tells masked or
		// not; a materialized view is no write, and a plain query's columns are not writes.
		{"CREATE TABLE copies AS SELECT id FROM customers", []string{"write:customers.id"}},
		{"CREATE MATERIALIZED VIEW copies AS SELECT email FROM customers", nil},
		{"SELECT email FROM customers", nil},
	} {
		t.Run(c.sql, func(t *testing.T) {
			st := classifyOne(t, c.sql)
			if got := renderUses(st); st.UsesUnknown || !slices.Equal(got, c.want) {
				t.Errorf("uses %v (unknown %v), want %v", got, st.UsesUnknown, c.want)
			}
		})
	}
}

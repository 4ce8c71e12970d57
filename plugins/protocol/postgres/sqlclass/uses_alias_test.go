package sqlclass

import (
	"slices"
	"testing"
)

// TestColumnAliasesPastAStarNameNoTableColumn: an alias's column list renames a subquery's or CTE's
// columns by position. Past a star's columns the positions are unknown, so a new name that happens to
// be another column's name (s(email, id) over customers' id, email) must not be taken for that column:
// every such name may be any column of the star's table. Columns renamed before any star keep what
// they are.
func TestColumnAliasesPastAStarNameNoTableColumn(t *testing.T) {
	for _, c := range []struct {
		sql  string
		want string // a use the statement must report
		not  string // a use it must not report ("" for none)
	}{
		// Attacks: id is renamed onto customers' second column, email.
		{"SELECT 1 FROM (SELECT * FROM customers) s(email, id) WHERE id LIKE 'a%'", "where:customers.*", ""},
		{"SELECT s.email FROM (SELECT * FROM customers) s(email, id) WHERE s.id LIKE 'a%'", "where:customers.*", ""},
		{"WITH x(email, id) AS (SELECT * FROM customers) SELECT 1 FROM x WHERE id LIKE 'a%'", "where:customers.*", ""},
		{"WITH x AS (SELECT * FROM customers) SELECT 1 FROM x AS y(email, id) WHERE y.id LIKE 'a%'", "where:customers.*", ""},
		{"SELECT 1 FROM customers c, LATERAL (SELECT c.*) s(email, id) WHERE s.id LIKE 'a%'", "where:customers.*", ""},
		{"SELECT 1 FROM (SELECT id, * FROM customers) s(a, id) WHERE id LIKE 'a%'", "where:customers.*", ""},
		// Controls: named positions are known, and without an alias list a star's column keeps its name.
		{"SELECT 1 FROM (SELECT id, email FROM customers) s(email, id) WHERE id LIKE 'a%'", "where:customers.email", "where:customers.*"},
		{"SELECT 1 FROM (SELECT id, * FROM customers) s(key) WHERE key = 1", "where:customers.id", "where:customers.*"},
		{"SELECT 1 FROM (SELECT * FROM customers) s WHERE id = 1", "where:customers.id", "where:customers.*"},
		{"WITH x AS (SELECT * FROM customers) SELECT 1 FROM x WHERE id = 1", "where:customers.id", "where:customers.*"},
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

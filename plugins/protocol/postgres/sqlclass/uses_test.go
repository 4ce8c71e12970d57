package sqlclass

import (
	"slices"
	"strconv"
	"strings"
	"testing"
)

// renderUses writes st's uses as "clause:source" (and "=source" for the other side of an equality),
// sorted, with "?" for an unknown source and "fn:" before a function's result.
func renderUses(st Statement) []string {
	var out []string
	for _, u := range st.Uses {
		for _, s := range renderOrigin(u.Value) {
			line := u.Clause + ":" + s
			if u.EqualTo != nil {
				line += "=" + strings.Join(renderOrigin(*u.EqualTo), ",")
			}
			if !slices.Contains(out, line) {
				out = append(out, line)
			}
		}
	}
	slices.Sort(out)
	return out
}

func renderOrigin(o Origin) []string {
	var out []string
	for _, s := range o.Sources {
		if s.Function != "" {
			out = append(out, "fn:"+s.Function)
		} else {
			out = append(out, strings.TrimPrefix(s.Table, "public.")+"."+s.Column)
		}
	}
	if o.Unknown {
		out = append(out, "?")
	}
	slices.Sort(out)
	return out
}

func classifyOne(t *testing.T, sql string) Statement {
	t.Helper()
	sts, err := Classify(sql)
	if err != nil || len(sts) != 1 {
		t.Fatalf("%s: %v", sql, err)
	}
	return sts[0]
}

// TestUsesOfColumnsOutsideTheResult: each clause that can reveal a value reports the columns it uses,
// resolved through aliases, subqueries, CTEs and joins; plain result columns are not uses, and neither
// is calling a function in a result (its result is masked as derived when it may read masked data).
func TestUsesOfColumnsOutsideTheResult(t *testing.T) {
	for _, c := range []struct {
		sql  string
		want []string
	}{
		// Controls: plain result columns, and clauses on other columns, use nothing masked.
		{"SELECT email, ssn FROM customers", nil},
		// rel.name may be name(rel), a function call: its result ("fn:") is a source too, masked only if
		// the database defines such a function.
		{"SELECT c.email AS e FROM public.customers AS c WHERE c.id = 1", []string{"where:customers.id", "where:fn:id"}},
		{"SELECT * FROM customers", nil},
		{"SELECT count(email), count(*) FROM customers", nil},
		// Predicates, joins, ordering, grouping, windows, functions.
		{"SELECT id FROM customers WHERE email = 'a@b.c'", []string{"where:customers.email"}},
		{"SELECT id FROM customers c WHERE c.ssn > '5'", []string{"where:customers.ssn", "where:fn:ssn"}},
		{"SELECT id FROM customers ORDER BY email", []string{"order:customers.email"}},
		{"SELECT email AS e FROM customers ORDER BY e", []string{"order:customers.e", "order:customers.email"}},
		{"SELECT id, email FROM customers ORDER BY 2", []string{"order:customers.email", "order:customers.id"}},
		{"SELECT * FROM customers ORDER BY id", []string{"order:customers.id"}},
		{"SELECT * FROM customers UNION SELECT * FROM customers ORDER BY id", []string{"order:customers.*", "set-operation:customers.*"}},
		{"SELECT count(*) FROM customers GROUP BY email", []string{"group:customers.email"}},
		{"SELECT email FROM customers GROUP BY ROLLUP (1)", []string{"group:customers.email"}},
		{"SELECT id, email FROM customers GROUP BY GROUPING SETS ((id), (1, 2))", []string{"group:customers.email", "group:customers.id"}},
		{"SELECT count(*) FROM customers GROUP BY 1 HAVING max(ssn) > '5'", []string{"group:fn:count", "having:customers.ssn", "having:fn:max"}},
		{"SELECT rank() OVER (PARTITION BY email) FROM customers", []string{"window:customers.email"}},
		{"SELECT upper(email) FROM customers", []string{"function:customers.email"}},
		{"SELECT CASE WHEN ssn LIKE '1%' THEN 1 END FROM customers", []string{"function:customers.ssn"}},
		{"SELECT DISTINCT email FROM customers", []string{"group:customers.email"}},
		{"SELECT email FROM customers INTERSECT SELECT 'x'", []string{"set-operation:customers.email"}},
		{"SELECT email FROM customers UNION ALL SELECT 'x'", nil},
		// Equality joins name the other side.
		{"SELECT c.id FROM customers c JOIN customers d ON c.email = d.email",
			[]string{"join:customers.email=customers.email", "join:fn:email=customers.email"}},
		{"SELECT o.id FROM orders o JOIN customers c ON o.customer_id = c.id AND c.email LIKE 'a%'",
			[]string{"join:customers.email", "join:customers.id=orders.customer_id", "join:fn:customer_id=customers.id", "join:fn:email", "join:fn:id=orders.customer_id", "join:orders.customer_id=customers.id"}},
		{"SELECT id FROM customers JOIN orders USING (id)", []string{"join:customers.id=orders.id", "join:orders.id=customers.id"}},
		{"SELECT 1 FROM customers c JOIN (SELECT 'guess' AS x) g ON c.email = g.x", []string{"join:customers.email=", "join:fn:email="}},
		// A recursive WITH: a CTE may read a later one, and itself.
		{"WITH RECURSIVE a AS (SELECT x FROM b), b(x) AS (SELECT ssn FROM customers) SELECT 1 FROM a WHERE x = '1'",
			[]string{"where:customers.ssn"}},
		{"WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < 5) SELECT n FROM t ORDER BY n", nil},
		{"WITH RECURSIVE t(e) AS (SELECT email FROM customers UNION SELECT e FROM t) SELECT 1 FROM t WHERE e = 'x'",
			[]string{"set-operation:customers.email", "where:customers.email"}},
		// Subqueries, CTEs and aliases are resolved to the table column.
		{"SELECT e FROM (SELECT email AS e FROM customers) s WHERE e LIKE 'a%'", []string{"where:customers.email"}},
		{"SELECT x.id FROM (SELECT * FROM customers) x WHERE x.id = 1", []string{"where:customers.id"}},
		{"SELECT 1 FROM (SELECT * FROM customers) x WHERE x.ssn = '1'", []string{"where:customers.ssn"}},
		{"WITH x AS (TABLE customers) SELECT 1 FROM x WHERE email = 'a'", []string{"where:customers.email"}},
		{"WITH x AS (SELECT ssn FROM customers) SELECT 1 FROM x WHERE x.ssn = '1'", []string{"where:customers.ssn"}},
		{"WITH x(s) AS (SELECT ssn FROM customers) SELECT 1 FROM x WHERE s = '1'", []string{"where:customers.ssn"}},
		{"SELECT 1 FROM customers AS c(i, n, e) WHERE e = 'x'", []string{"where:customers.*"}},
		{"SELECT 1 FROM orders WHERE customer_id IN (SELECT id FROM customers WHERE ssn = '1')",
			// An unqualified name in a subquery may be an enclosing relation's: orders.id and orders.ssn
			// are included, and the catalog tells later that they are not masked.
			[]string{"where:customers.id", "where:customers.ssn", "where:orders.customer_id", "where:orders.id", "where:orders.ssn"}},
		{"SELECT 1 FROM orders WHERE 'x' = (SELECT email FROM customers LIMIT 1)", []string{"where:customers.email", "where:orders.email"}},
		// An unqualified name in a subquery may be any enclosing relation's.
		{"SELECT 1 FROM customers WHERE EXISTS (SELECT 1 FROM orders WHERE email = 'x')",
			[]string{"where:customers.email", "where:orders.email"}},
		// A whole row, attribute notation, a star in a predicate.
		// c is the whole row, or a column c of customers (which it has not: the catalog tells).
		{"SELECT 1 FROM customers c WHERE c::text LIKE '%@%'", []string{"where:customers.*", "where:customers.c"}},
		{"SELECT 1 FROM (SELECT email FROM customers) s WHERE s.upper = 'X'", []string{"where:customers.email", "where:fn:upper"}},
		// Writes and their predicates.
		{"UPDATE customers SET name = email WHERE ssn = '1'", []string{"where:customers.ssn", "write:customers.email"}},
		{"DELETE FROM customers WHERE email = 'x'", []string{"where:customers.email"}},
		{"INSERT INTO orders (total) SELECT length(ssn) FROM customers", []string{"function:customers.ssn", "write:customers.ssn", "write:fn:length"}},
		// Under EXPLAIN, cursors and COPY, the query is analysed the same way.
		{"EXPLAIN ANALYZE SELECT 1 FROM customers WHERE ssn = '1'", []string{"where:customers.ssn"}},
		{"DECLARE c CURSOR FOR SELECT 1 FROM customers ORDER BY ssn", []string{"order:customers.ssn"}},
		{"COPY (SELECT id FROM customers WHERE email = 'x') TO STDOUT", []string{"where:customers.email"}},
		// Functions in FROM: their arguments are used, their columns come from them.
		{"SELECT 1 FROM customers c, unnest(ARRAY[c.email]) AS e WHERE e = 'x'",
			[]string{"function:customers.email", "function:fn:email", "where:customers.e", "where:customers.email", "where:fn:email", "where:fn:unnest"}},
	} {
		got := renderUses(classifyOne(t, c.sql))
		if !slices.Equal(got, c.want) {
			t.Errorf("%s:\n got  %q\n want %q", c.sql, got, c.want)
		}
	}
}

// TestUntracedResultColumns: result columns the server does not trace to a table column carry their
// sources in Untraced; traced ones do not.
func TestUntracedResultColumns(t *testing.T) {
	for _, c := range []struct {
		sql      string
		untraced []string
	}{
		{"SELECT email FROM customers", nil},
		{"SELECT x FROM (SELECT email AS x FROM customers) s", nil},
		{"SELECT count(email) FROM customers", []string{"fn:count"}}, // masked only if the database defines a count
		{"SELECT upper(email) FROM customers", []string{"customers.email", "fn:upper"}},
		{"SELECT email FROM customers UNION ALL SELECT ssn FROM customers", []string{"customers.email", "customers.ssn"}},
		{"SELECT (SELECT ssn FROM customers LIMIT 1)", []string{"customers.ssn"}},
		{"SELECT s FROM (SELECT email FROM customers) s", []string{"customers.email"}},
		{"SELECT email FROM customers FULL JOIN customers c2 USING (email)", []string{"customers.email"}},
		{"SELECT e FROM (VALUES ('x')) v(e)", nil},
		{"COPY (SELECT email FROM customers) TO STDOUT", []string{"customers.email"}},
	} {
		got := renderOrigin(classifyOne(t, c.sql).Untraced)
		if !slices.Equal(got, c.untraced) {
			t.Errorf("%s: untraced %q, want %q", c.sql, got, c.untraced)
		}
	}
}

// TestUsesDoNotDependOnLiterals: the cache shares one classification between statements that differ in
// literals only, so a position in ORDER BY stands for every result column.
func TestUsesDoNotDependOnLiterals(t *testing.T) {
	a := renderUses(classifyOne(t, "SELECT id, email FROM customers ORDER BY 1"))
	b := renderUses(classifyOne(t, "SELECT id, email FROM customers ORDER BY 2"))
	if !slices.Equal(a, b) || !slices.Contains(a, "order:customers.email") {
		t.Errorf("ORDER BY 1: %q; ORDER BY 2: %q", a, b)
	}
}

// TestTooManyUsesAreUnknown: beyond maxUses the analysis gives up, and says so.
func TestTooManyUsesAreUnknown(t *testing.T) {
	var preds []string
	for i := range maxUses + 10 {
		preds = append(preds, "c"+strconv.Itoa(i)+" = 1")
	}
	st := classifyOne(t, "SELECT 1 FROM customers WHERE "+strings.Join(preds, " AND "))
	if !st.UsesUnknown {
		t.Errorf("%d uses, not unknown", len(st.Uses))
	}
	if st := classifyOne(t, "SELECT 1 FROM customers WHERE "+strings.Join(preds[:10], " AND ")); st.UsesUnknown {
		t.Error("ten uses are unknown")
	}
}

package e2e

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/svidbroker/svidbroker/test/stack"
)

// maskedUseCases: a masked column used anywhere but as a plain result column is refused, naming the
// column, the clause and the action that could permit it; each has a control that still runs. The
// analyst's pack permits equality joins on personal data, and those give correct results.
var maskedUseCases = []inspectCase{
	// Predicates are oracles: equality tests and binary search.
	{stack.PersonaAnalyst, "SELECT id FROM customers WHERE email = 'alice@example.com'",
		denied("public.customers.email", "WHERE", "column:use-masked", "plain result column")},
	{stack.PersonaAnalyst, "SELECT count(*) FROM customers WHERE ssn > '5'", denied("public.customers.ssn", "WHERE")},
	{stack.PersonaAnalyst, "SELECT id FROM customers c WHERE EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = c.id AND c.ssn LIKE '1%')",
		denied("public.customers.ssn", "WHERE")},
	{stack.PersonaAnalyst, "SELECT x FROM (SELECT email AS x, id FROM customers) s WHERE x LIKE 'a%'", denied("public.customers.email", "WHERE")},
	{stack.PersonaAnalyst, "WITH c AS (SELECT ssn AS s FROM customers) SELECT count(*) FROM c WHERE s = '123-45-6789'", denied("public.customers.ssn")},
	{stack.PersonaAnalyst, "SELECT id FROM customers WHERE email = 'x' AND id = 1", denied("public.customers.email")},
	{stack.PersonaAnalyst, "SELECT id FROM customers WHERE id = 1", gives("1")}, // control
	// Ordering, grouping, windows, set operations.
	{stack.PersonaAnalyst, "SELECT id FROM customers ORDER BY ssn", denied("public.customers.ssn", "ORDER")},
	{stack.PersonaAnalyst, "SELECT id, ssn FROM customers ORDER BY 2", denied("public.customers.ssn", "ORDER")},
	{stack.PersonaAnalyst, "SELECT count(*) FROM customers GROUP BY email", denied("public.customers.email", "GROUP")},
	{stack.PersonaAnalyst, "SELECT count(*) FROM customers GROUP BY id HAVING min(ssn) < '2'", denied("public.customers.ssn", "HAVING")},
	{stack.PersonaAnalyst, "SELECT rank() OVER (ORDER BY email) FROM customers", denied("public.customers.email", "WINDOW")},
	{stack.PersonaAnalyst, "SELECT email FROM customers INTERSECT SELECT 'alice@example.com'", denied("public.customers.email", "SET-OPERATION")},
	{stack.PersonaAnalyst, "SELECT id FROM customers ORDER BY id LIMIT 1", gives("1")}, // control
	{stack.PersonaAnalyst, "SELECT * FROM customers ORDER BY id LIMIT 1", hidden(func(l string) bool { // control
		f := strings.Split(l, "|")
		return len(f) == 4 && f[0] == "1" && f[1] == "Alice" && isHash(f[2]) && isHash(f[3])
	})},
	// Joins: an equality with another stored column is permitted by the analyst's pack, and gives a
	// correct count; a join on a value of the caller's choosing, or on anything but equality, is not.
	{stack.PersonaAnalyst, "SELECT count(*) FROM customers c JOIN customers d ON c.email = d.email", gives(strconv.Itoa(stack.SeedCustomers))},
	{stack.PersonaAnalyst, "SELECT count(*) FROM customers c JOIN customers d USING (ssn)", gives(strconv.Itoa(stack.SeedCustomers))},
	{stack.PersonaAnalyst, "SELECT c.id FROM customers c JOIN (SELECT 'alice@example.com' AS x) g ON c.email = g.x", denied("public.customers.email", "JOIN")},
	{stack.PersonaAnalyst, "SELECT c.id FROM customers c JOIN (VALUES ('alice@example.com')) g(x) ON c.email = g.x", denied("public.customers.email", "JOIN")},
	{stack.PersonaAnalyst, "SELECT c.id FROM customers c JOIN customers d ON c.email < d.email", denied("public.customers.email", "JOIN")},
	// An equality with a column the analyst reads in clear would test the hidden values against a list.
	{stack.PersonaAnalyst, "SELECT c.id FROM customers c JOIN customers d ON c.email = d.name", denied("public.customers.email", "JOIN")},
	{stack.PersonaAnalyst, "SELECT c.id FROM customers c JOIN orders o ON c.ssn = o.id::text", denied("public.customers.ssn", "JOIN")},
	{stack.PersonaAnalyst, "SELECT c.id FROM customers c, customers d WHERE c.email = d.email AND c.id = 1", denied("public.customers.email", "WHERE")},
	// Aggregates: a count is correct (a masked column's NULLs show anyway); anything that computes with
	// the value is refused, never a silent NULL.
	{stack.PersonaAnalyst, "SELECT count(email), count(*) FROM customers", gives(strconv.Itoa(stack.SeedCustomers) + "|" + strconv.Itoa(stack.SeedCustomers))},
	{stack.PersonaAnalyst, "SELECT max(email) FROM customers", denied("public.customers.email", "FUNCTION")},
	{stack.PersonaAnalyst, "SELECT sum(length(ssn)) FROM customers", denied("public.customers.ssn", "FUNCTION")},
	{stack.PersonaAnalyst, "SELECT count(DISTINCT email) FROM customers", denied("public.customers.email")},
	// A chosen value is never hashed with the column's key: a computed or untraced column is redacted.
	{stack.PersonaAnalyst, "SELECT email FROM customers WHERE id = 1 UNION ALL SELECT 'alice@example.com'", gives("***\n***")},
	{stack.PersonaAnalyst, "SELECT email FROM customers WHERE id = 1", hidden(isHash)},                            // control: the plain column
	{stack.PersonaAnalyst, "SELECT 'x@example.com' AS email FROM customers WHERE id = 1", gives("x@example.com")}, // a literal is not data
	// Partial masks cannot be steered: the value made to look like an email address is not shown.
	{stack.PersonaSupport, "SELECT 'x@' || ssn || '.io' FROM customers WHERE id = 1", denied("public.customers.ssn", "FUNCTION")},
	{stack.PersonaSupport, "SELECT reverse(email) FROM customers WHERE id = 1", denied("public.customers.email", "FUNCTION")},
	{stack.PersonaSupport, "SELECT ssn FROM customers WHERE id = 1 UNION ALL SELECT 'x@123-45-6789.io'", gives("***\n***")},
	{stack.PersonaSupport, "SELECT email, ssn FROM customers WHERE id = 1", gives("a***@example.com|***-**-6789")}, // control
	{stack.PersonaSupport, "SELECT name FROM customers WHERE name = 'Alice'", gives("Alice")},                      // control
}

// TestMaskedUsesThroughPsql runs maskedUseCases through psql (the simple protocol).
func TestMaskedUsesThroughPsql(t *testing.T) {
	s, b := shared(t)
	files := map[string]*stack.ClientFiles{}
	for _, c := range maskedUseCases {
		f := files[c.persona]
		if f == nil {
			f = clientFiles(t, s, c.persona)
			files[c.persona] = f
		}
		out, err := psql(t, b, f, nil, c.sql+";\nSELECT 'still usable'")
		if err == nil {
			out = strings.TrimSuffix(strings.TrimSuffix(out, "still usable"), "\n")
		}
		if e := c.want(out, err); e != nil {
			t.Errorf("%s: %s: %v", c.persona, c.sql, e)
		}
	}
}

// TestMaskedUsesThroughPgx runs maskedUseCases through pgx (the extended protocol: Parse, Bind,
// Execute), each twice, so that a kept verdict is exercised as well.
func TestMaskedUsesThroughPgx(t *testing.T) {
	s, b := shared(t)
	conns := map[string]*pgx.Conn{}
	for _, c := range maskedUseCases {
		conn := conns[c.persona]
		if conn == nil {
			var err error
			conn, err = pgx.ConnectConfig(t.Context(), pgxConfig(t, b, clientFiles(t, s, c.persona)))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(context.Background())
			conns[c.persona] = conn
		}
		for range 2 {
			out, err := pgxText(t.Context(), conn, c.sql, pgx.TextFormatCode)
			if e := c.want(out, err); e != nil {
				t.Errorf("%s: %s: %v", c.persona, c.sql, e)
			}
		}
		if _, err := pgxText(t.Context(), conn, "SELECT 1", pgx.TextFormatCode); err != nil {
			t.Fatalf("%s: session unusable after %q: %v", c.persona, c.sql, err)
		}
	}
}

// TestRedactedComputedColumnsAreNoticed: a result column redacted because it passes masked data
// untraced comes with a notice that names the masked column and says why; a plain masked column, and a
// count, come without one.
func TestRedactedComputedColumnsAreNoticed(t *testing.T) {
	s, b := shared(t)
	var notices []string
	cfg := pgxConfig(t, b, clientFiles(t, s, stack.PersonaAnalyst))
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { notices = append(notices, n.Message) }
	conn, err := pgx.ConnectConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for _, c := range []struct {
		sql    string
		notice bool
	}{
		{"SELECT email FROM customers WHERE id = 1 UNION ALL SELECT 'alice@example.com'", true},
		{"SELECT (SELECT ssn FROM customers WHERE id = 1)", true},
		{"SELECT email FROM customers WHERE id = 1", false},
		{"SELECT count(email) FROM customers", false},
	} {
		notices = nil
		if _, err := pgxText(t.Context(), conn, c.sql, pgx.TextFormatCode); err != nil {
			t.Fatalf("%s: %v", c.sql, err)
		}
		got := strings.Join(notices, "\n")
		switch {
		case c.notice && (!strings.Contains(got, "public.customers.") || !strings.Contains(got, "redacted")):
			t.Errorf("%s: notice %q, want one naming the masked column and saying it is redacted", c.sql, got)
		case !c.notice && got != "":
			t.Errorf("%s: unexpected notice %q", c.sql, got)
		}
		if strings.Contains(got, aliceEmail) || strings.Contains(got, aliceSSN) {
			t.Errorf("%s: the notice quotes data: %q", c.sql, got)
		}
	}
}

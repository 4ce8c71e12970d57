package postgres

import (
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/svidbroker/svidbroker/broker/inspect"
	"github.com/svidbroker/svidbroker/plugins/protocol/postgres/sqlclass"
)

// The tests in this file come from a security review of classification and masking. Each guards
// against a bypass the review found and that is fixed; its comment tells the attack as it worked before
// the fix, and the fix.

// The demo database as the broker knows it after loadMeta: public.customers with email and ssn masked
// (hash, as for the analyst), the DBA's view customers_contacts (email, ssn AS reference, id) over it,
// and the DBA's function customer_contacts().
const (
	reviewCustomers = 16384
	reviewEmail     = 3
	reviewSSN       = 4
	reviewContacts  = 16390 // customers_contacts
	reviewMaxOID    = 20000
)

func reviewPlan(t *testing.T, sql string) (*plan, []sqlclass.Statement) {
	t.Helper()
	sts, err := sqlclass.Classify(sql)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	customers := metaTable{name: "public.customers", columns: map[int16]string{reviewEmail: "email", reviewSSN: "ssn"},
		all: map[string]bool{"id": true, "name": true, "email": true, "ssn": true}}
	meta := &dbMeta{
		tables:    map[uint32]metaTable{reviewCustomers: customers},
		byName:    map[string]metaTable{"public.customers": customers},
		views:     map[uint32][]uint32{reviewContacts: {reviewCustomers}},
		maxOID:    reviewMaxOID,
		catalog:   map[string]bool{"public.customers": true, "public.orders": true},
		functions: map[string]bool{"customer_contacts": true},
	}
	p := &plan{meta: meta, cols: map[colKey]inspect.Strategy{}, tables: map[uint32]inspect.Strategy{}}
	p.addColumn(reviewCustomers, reviewEmail, "email", inspect.Hash)
	p.addColumn(reviewCustomers, reviewSSN, "ssn", inspect.Hash)
	p.finish(sts)
	return p, sts
}

// computed is a result column the backend cannot trace (RowDescription table OID 0).
var computed = pgproto3.FieldDescription{Name: []byte("x"), DataTypeOID: 25}

// TestReviewHandledMasking documents computed columns, scrubbing and COPY decisions that are right.
func TestReviewHandledMasking(t *testing.T) {
	for _, sql := range []string{
		"SELECT upper(email) FROM customers",
		"SELECT to_json(c)::text FROM customers c",
		"SELECT (c).email || '' FROM customers c",
		"SELECT x FROM (SELECT email || '' AS x FROM customers) s",
		"SELECT upper(x) FROM customer_contacts() AS x",
		"SELECT v FROM customers c, jsonb_each_text(to_jsonb(c)) AS t(k, v)",
		"SELECT email FROM customers FULL JOIN customers c2 USING (email)", // COALESCE(customers.email, c2.email)
		"FETCH 1 FROM cur",
	} {
		p, _ := reviewPlan(t, sql)
		if p.strategy(computed, 0) == "" {
			t.Errorf("%s: a computed column is not masked", sql)
		}
	}
	// No over-masking where nothing masked is read.
	for _, sql := range []string{"SELECT count(*) FROM orders", "SELECT now()"} {
		p, _ := reviewPlan(t, sql)
		if s := p.strategy(computed, 0); s != "" {
			t.Errorf("%s: computed column masked with %q", sql, s)
		}
	}
	// Traced columns are masked by OID whatever the SQL calls them.
	p, _ := reviewPlan(t, "SELECT e FROM customers AS c(i, n, e)")
	if p.strategy(pgproto3.FieldDescription{TableOID: reviewCustomers, TableAttributeNumber: reviewEmail}, 0) == "" ||
		p.strategy(pgproto3.FieldDescription{TableOID: reviewContacts, TableAttributeNumber: 3}, 0) == "" ||
		p.strategy(pgproto3.FieldDescription{TableOID: reviewCustomers, TableAttributeNumber: 0}, 0) == "" ||
		p.strategy(pgproto3.FieldDescription{TableOID: reviewMaxOID + 1, TableAttributeNumber: 1}, 0) == "" {
		t.Error("a traced masked column is not masked")
	}
	// Errors of statements over masked tables are scrubbed.
	for _, sql := range []string{
		"SELECT 1 FROM customers WHERE email::int = 0",
		"SELECT 1 FROM customers_contacts WHERE reference::int = 0",
		"SELECT 1 FROM orders o WHERE EXISTS (SELECT 1 FROM customers c WHERE c.ssn::int = o.id)",
	} {
		if p, _ := reviewPlan(t, sql); !p.scrub {
			t.Errorf("%s: errors not scrubbed", sql)
		}
	}
	// COPY TO STDOUT that could carry a masked value is refused; one of plain unmasked columns is not.
	for _, c := range []struct {
		sql  string
		deny bool
	}{
		{"COPY customers TO STDOUT", true},
		{"COPY customers (id, email) TO STDOUT", true},
		{"COPY (SELECT * FROM customers) TO STDOUT", true},
		{"COPY (TABLE customers) TO STDOUT", true},
		{"COPY (SELECT reference FROM customers_contacts) TO STDOUT", true},
		{"COPY (SELECT upper(email) FROM customers) TO STDOUT", true},
		{"COPY (SELECT id, name FROM customers) TO STDOUT", false},
		{"COPY orders TO STDOUT", true}, // a star: refused, conservatively
		{"COPY (SELECT histogram_bounds FROM pg_stats) TO STDOUT", true},
	} {
		p, sts := reviewPlan(t, c.sql)
		if got := copyOutDenied(sts, p) != nil; got != c.deny {
			t.Errorf("%s: denied %v, want %v", c.sql, got, c.deny)
		}
	}
}

// TestReviewComputedColumnsEscapeMasking: statements whose computed result columns carry email or ssn
// in clear, because the statement never mentions a masked column's name, a star or a relation's whole
// row as the classifier recognizes them. Each verified against PostgreSQL 15 as a SELECT-only role.
func TestReviewComputedColumnsEscapeMasking(t *testing.T) {
	for _, c := range []struct{ sql, why string }{
		{"SELECT c.row_to_json FROM customers c",
			"attribute notation: row_to_json(c), the whole row as JSON (fix in sqlclass: walker.columnRef/walkSelect)"},
		{"SELECT customers.to_jsonb FROM customers", "attribute notation: to_jsonb(customers)"},
		{"SELECT c.quote_literal FROM customers c", "attribute notation: quote_literal(c), the row as text"},
		{"SELECT upper(e) FROM customers AS c(i, n, e)",
			"a table alias's column list renames email (fix in sqlclass: walker.table, Alias.Colnames -> \"*\")"},
		{"SELECT email FROM customers NATURAL FULL JOIN (SELECT NULL::text AS email WHERE false) s",
			"the merged column of a FULL JOIN is COALESCE(customers.email, s.email) (fix in sqlclass: JoinExpr)"},
		{"SELECT email FROM customers FULL JOIN (SELECT NULL::text AS email WHERE false) s USING (email)",
			"as above, with USING"},
		{"SELECT j FROM (customers c CROSS JOIN (SELECT 1) o) AS j", "a join alias's whole row (fix in sqlclass: JoinExpr alias)"},
		{"SELECT upper(reference) FROM customers_contacts",
			"a view over masked data renames ssn to reference; its traced columns are masked, computed ones are not " +
				"(fix in plan.finish: set derivedAt[i] when an access is a view over masked data, or any relation outside the catalog)"},
		{"SELECT histogram_bounds::text FROM pg_stats WHERE tablename = 'customers' AND attname = 'email'",
			"pg_stats exposes sampled column values (histogram_bounds, most_common_vals) of tables the role may read " +
				"(fix: mask or refuse pg_stats/pg_stats_ext/pg_stats_ext_exprs, and plan.finish as above)"},
	} {
		p, sts := reviewPlan(t, c.sql)
		if p.strategy(computed, 0) == "" {
			t.Errorf("%s: computed column in clear (refs %q): %s", c.sql, sts[0].Refs, c.why)
		}
	}
}

// TestReviewCopyOutEscapesMasking: COPY data is never masked, and copyOutDenied looks only at masked
// names, stars and derived columns, so a renamed column goes out in clear.
//
//	COPY (SELECT e FROM customers AS c(i, n, e)) TO STDOUT   -- every email in clear
func TestReviewCopyOutEscapesMasking(t *testing.T) {
	for _, sql := range []string{
		"COPY (SELECT e FROM customers AS c(i, n, e)) TO STDOUT",
		"COPY (SELECT c.row_to_json FROM customers c) TO STDOUT",
		"COPY (SELECT j FROM (customers c CROSS JOIN (SELECT 1) o) AS j) TO STDOUT",
	} {
		p, sts := reviewPlan(t, sql)
		if copyOutDenied(sts, p) == nil {
			t.Errorf("%s: COPY TO STDOUT allowed, and its data is not masked", sql)
		}
	}
}

// TestReviewNotificationsCarryMaskedValues: pg_notify is an ordinary function to the classifier, and
// NotificationResponse is forwarded as it is, so
//
//	LISTEN x; SELECT pg_notify('x', email) FROM customers
//
// delivers every email in clear as a notification payload (verified on PostgreSQL 15).
// Fix: add "pg_notify" to sqlclass.adminFunctions (simplest), or withhold payloads in session.answer
// while a masking plan is in force.
func TestReviewNotificationsCarryMaskedValues(t *testing.T) {
	const sql = "SELECT pg_notify('x', email) FROM customers"
	p, sts := reviewPlan(t, sql)
	if sts[0].Kind == sqlclass.KindAdmin {
		return
	}
	s := newRelaySession(t, relayIO{})
	out := s.answer(&item{kind: itQuery, plan: p}, &pgproto3.NotificationResponse{PID: 1, Channel: "x", Payload: "alice@example.com"})
	if n, ok := out.(*pgproto3.NotificationResponse); ok && n.Payload == "alice@example.com" {
		t.Errorf("%s: runs, and its notification reaches the client in clear", sql)
	}
}

// TestReviewDynamicSQLErrorsAreNotScrubbed: a statement that names no table but runs SQL from a string
// (ts_stat through attribute notation) is neither refused nor scrubbed, so the inner query's errors
// quote values: SELECT ('select ssn::int::text::tsvector from customers'::text).ts_stat.
func TestReviewDynamicSQLErrorsAreNotScrubbed(t *testing.T) {
	const sql = "SELECT ('select ssn::int::text::tsvector from customers'::text).ts_stat"
	p, sts := reviewPlan(t, sql)
	if sts[0].Kind != sqlclass.KindAdmin && !p.scrub {
		t.Errorf("%s: allowed as %q and its errors are not scrubbed", sql, sts[0].Kind)
	}
}

// TestReviewDatabaseFunctionNamesKeepTheirCase: loadMeta keeps proname as the database spells it, but
// the classifier lower-cases every function name, quoted ones included, so a DBA's function with an
// upper-case letter in its name is never recognized as one of the database's own:
//
//	SELECT upper("CustomerEmails"())   -- computed column in clear
//
// Fix (sqlclass.walker.function): keep the parser's spelling (it already folds unquoted names), or
// compare case-insensitively in plan.finish.
func TestReviewDatabaseFunctionNamesKeepTheirCase(t *testing.T) {
	const sql = `SELECT upper("CustomerEmails"())`
	p, sts := reviewPlan(t, sql)
	p.meta.functions["CustomerEmails"] = true // as loadMeta reads it from pg_proc
	p.derived, p.derivedAt, p.scrub = "", nil, false
	p.finish(sts)
	if p.strategy(computed, 0) == "" {
		t.Errorf("%s: computed column in clear (functions %q, database functions %v)", sql, sts[0].Functions, p.meta.functions)
	}
}

package sqlclass

import (
	"slices"
	"testing"
)

// The tests in this file come from a security review of classification and masking. Each guards
// against a bypass the review found and that is fixed; its comment tells the attack as it worked before
// the fix, and the fix.

// reviewCase is one statement and what its classification must say for the broker to decide and mask
// it as PostgreSQL will run it. Empty fields are not checked.
type reviewCase struct {
	sql string
	// kind the statement must have.
	kind string
	// refsHave are names Refs must contain: the masked column (or "*" for a whole row) a computed
	// result column may derive from.
	refsHave []string
	// possibleHave are qualified references (table, name) Possible must contain: rel.name that the
	// server may read as name(rel), a function of the whole row (the plan masks computed columns when
	// name is not a column of a table with masked columns).
	possibleHave []QualifiedRef
	// access the statement must list ("action table").
	access string
	// notCopyOut: the statement must not be taken for COPY TO STDOUT.
	notCopyOut bool
	// why it matters, for the failure message.
	why string
}

func checkReviewCase(t *testing.T, c reviewCase) {
	t.Helper()
	sts, err := Classify(c.sql)
	if err != nil {
		t.Errorf("%s: %v", c.sql, err)
		return
	}
	if len(sts) != 1 {
		t.Errorf("%s: %d statements", c.sql, len(sts))
		return
	}
	st := sts[0]
	if c.kind != "" && st.Kind != c.kind {
		t.Errorf("%s: kind %q, want %q (%s)", c.sql, st.Kind, c.kind, c.why)
	}
	for _, r := range c.refsHave {
		if !slices.Contains(st.Refs, r) {
			t.Errorf("%s: refs %q lack %q (%s)", c.sql, st.Refs, r, c.why)
		}
	}
	for _, q := range c.possibleHave {
		if !slices.Contains(st.Possible, q) {
			t.Errorf("%s: possible calls %+v lack %+v (%s)", c.sql, st.Possible, q, c.why)
		}
	}
	if c.access != "" {
		var acc []string
		for _, a := range st.Accesses {
			acc = append(acc, a.Action+" "+a.Table)
		}
		if !slices.Contains(acc, c.access) {
			t.Errorf("%s: accesses %q lack %q (%s)", c.sql, acc, c.access, c.why)
		}
	}
	if c.notCopyOut && st.CopyOut {
		t.Errorf("%s: taken for COPY TO STDOUT (%s)", c.sql, c.why)
	}
}

// TestReviewHandled documents constructs the classifier gets right.
func TestReviewHandled(t *testing.T) {
	for _, c := range []reviewCase{
		// Admin constructs in every position.
		{sql: "SELECT * FROM ROWS FROM (pg_catalog.pg_read_file('/etc/passwd')) AS t(x)", kind: KindAdmin},
		{sql: "SELECT * FROM customers WHERE id = (SELECT lo_get(1)::text::int)", kind: KindAdmin},
		{sql: "SELECT pg_catalog.set_config('search_path', 'evil', false)", kind: KindAdmin},
		{sql: "SET SCHEMA 'evil'", kind: KindAdmin, why: "SET SCHEMA is search_path"},
		{sql: "SET NAMES 'SJIS'", kind: KindAdmin, why: "SET NAMES is client_encoding"},
		{sql: `SET "Search_Path" = evil`, kind: KindAdmin},
		{sql: "SET LOCAL ROLE postgres", kind: KindAdmin},
		{sql: "RESET ROLE", kind: KindAdmin},
		{sql: "RESET ALL", kind: KindUtility},
		{sql: "SET TIME ZONE 'UTC'", kind: KindUtility},
		{sql: "EXPLAIN ANALYZE EXECUTE p", kind: KindAdmin},
		{sql: "EXPLAIN (ANALYZE) WITH d AS (DELETE FROM orders RETURNING 1) SELECT * FROM d", access: "delete public.orders"},
		{sql: "PREPARE p AS DELETE FROM orders", kind: KindDelete},
		{sql: "SELECT * INTO TEMP t FROM customers", kind: KindDDL},
		{sql: "CREATE TEMP TABLE t AS SELECT email FROM customers", kind: KindDDL},
		{sql: "CREATE MATERIALIZED VIEW mv AS SELECT email FROM customers", kind: KindDDL},
		{sql: "MERGE INTO orders o USING customers c ON o.customer_id = c.id WHEN MATCHED THEN UPDATE SET total = 0", kind: KindUpdate},
		{sql: "INSERT INTO orders SELECT * FROM orders RETURNING *", kind: KindInsert},
		{sql: "COPY (DELETE FROM orders RETURNING *) TO STDOUT", access: "delete public.orders"},
		{sql: "DECLARE c CURSOR WITH HOLD FOR SELECT email FROM customers", kind: KindSelect, access: "select public.customers"},
		{sql: "CREATE TRIGGER t BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION f()", kind: KindAdmin},
		{sql: "CREATE CAST (text AS int) WITH INOUT", kind: KindAdmin},
		// Computed columns over masked data: the masked column or the whole row is in Refs.
		{sql: "SELECT (c).email FROM customers c", refsHave: []string{"*"}},
		{sql: "SELECT x FROM customers c, LATERAL row_to_json(c) AS x", refsHave: []string{"*"}},
		{sql: "SELECT v FROM customers c, jsonb_each_text(to_jsonb(c)) AS t(k, v)", refsHave: []string{"*"}},
		{sql: "SELECT r.e FROM customers c, json_to_record(row_to_json(c)) AS r(e text)", refsHave: []string{"*"}},
		{sql: "SELECT x FROM customers c, XMLTABLE('/a' PASSING xmlelement(name a, c.email) COLUMNS x text PATH '.') AS t", refsHave: []string{"email"}},
		{sql: "SELECT (SELECT c FROM customers c LIMIT 1)::text", refsHave: []string{"*"}},
		{sql: "SELECT lag(email) OVER (ORDER BY id) FROM customers", refsHave: []string{"email"}},
		{sql: "SELECT count(*) FROM customers GROUP BY GROUPING SETS ((email), ())", refsHave: []string{"email"}},
		{sql: "SELECT ROW(id, ssn) FROM customers", refsHave: []string{"ssn"}},
		{sql: "SELECT (ARRAY[email, ssn])[2] FROM customers", refsHave: []string{"ssn"}},
		{sql: "SELECT (1, 'a') IN (SELECT id, email FROM customers)", refsHave: []string{"email"}},
		{sql: "VALUES ((SELECT email FROM customers LIMIT 1))", refsHave: []string{"email"}},
		{sql: "SELECT email FROM customers UNION SELECT 'x'", refsHave: []string{"email"}},
		{sql: "WITH customers AS (SELECT email AS e FROM public.customers) SELECT upper(e) FROM customers", refsHave: []string{"email"}},
		{sql: "SELECT upper(e) FROM (SELECT email FROM customers) AS s(e)", refsHave: []string{"email"}},
		{sql: "SELECT to_json(public.customers) FROM public.customers", refsHave: []string{"*"}},
		{sql: "SELECT email FROM customers JOIN orders o USING (id) AS u", kind: KindSelect},
		{sql: `SELECT upper("email") FROM "customers"`, refsHave: []string{"email"}},
		{sql: `SELECT upper(U&"\0065mail") FROM customers`, refsHave: []string{"email"}},
	} {
		checkReviewCase(t, c)
	}
}

// TestReviewAttributeNotationCallsFunctions: PostgreSQL reads x.f and (expr).f as the call f(x) when f
// is not a column (ParseFuncOrColumn with is_column). The classifier sees a column reference, so
// neither the admin-function list nor the database-function check applies, and a whole row turned
// into JSON or text by c.row_to_json is not marked as one.
//
// Verified on PostgreSQL 15 as a role with only SELECT on customers:
//
//	SELECT ('select to_tsvector(email) from customers'::text).ts_stat  -- every email in clear
//	SELECT (4242::oid).lo_create; SELECT (4242::oid).lo_unlink          -- large-object writes
//	SELECT c.row_to_json FROM customers c                               -- whole rows as JSON
//
// Fix (classify.go): in walker.walk, for a *pg.A_Indirection, call a check like function() on each
// String element of Indirection; in walker.columnRef, for a ColumnRef of 2 or more fields whose last
// field is a String, record that name as a possible function (Functions, adminFunctions) and add the
// qualifier to refs so that classify turns it into "*" when it names a relation (in walkSelect, do the
// same for top-level qualified column references instead of only recording them in Columns).
func TestReviewAttributeNotationCallsFunctions(t *testing.T) {
	for _, c := range []reviewCase{
		{sql: "SELECT ('select to_tsvector(email) from customers'::text).ts_stat", kind: KindAdmin,
			why: "ts_stat(text) runs the query in the string: dynamic SQL that reads masked columns in clear"},
		{sql: "SELECT (4242::oid).lo_create", kind: KindAdmin, why: "lo_create(oid) creates a large object"},
		{sql: "SELECT (4242::oid).lo_unlink", kind: KindAdmin, why: "lo_unlink(oid) deletes a large object"},
		{sql: "SELECT (12345).pg_terminate_backend", kind: KindAdmin, why: "ends another session of the broker's role"},
		{sql: "SELECT x FROM (SELECT ('select 1'::text).ts_stat AS x) s", kind: KindAdmin},
		{sql: "SELECT c.row_to_json FROM customers c", possibleHave: []QualifiedRef{{"public.customers", "row_to_json"}},
			why: "row_to_json(c): the whole row, email and ssn in clear, in a column the backend cannot trace"},
		{sql: "SELECT public.customers.to_jsonb FROM public.customers", possibleHave: []QualifiedRef{{"public.customers", "to_jsonb"}}, why: "to_jsonb(customers)"},
		{sql: "SELECT c.quote_literal FROM customers c", possibleHave: []QualifiedRef{{"public.customers", "quote_literal"}}, why: "quote_literal(c): the row as text"},
		{sql: "SELECT (c).concat FROM customers c", refsHave: []string{"*"}, why: "concat(c): the row as text"},
		{sql: "SELECT id FROM customers c WHERE c.to_json::text LIKE '%@%'", possibleHave: []QualifiedRef{{"public.customers", "to_json"}}},
	} {
		checkReviewCase(t, c)
	}
}

// TestReviewRenamedColumnsAreNotMasked: a table alias with a column list renames a masked column, so a
// computed column over it mentions only the new name, which is not a masked column's name; COPY of
// the renamed plain column is not refused either, and COPY data is never masked.
//
//	SELECT upper(e) FROM customers AS c(i, n, e)             -- emails in clear (upper case)
//	COPY (SELECT e FROM customers AS c(i, n, e)) TO STDOUT   -- emails in clear
//
// Fix (classify.go, walker.table): when rv.Alias has Colnames, the statement can reach the table's
// columns under other names: append "*" to w.refs (as for a whole-row reference).
func TestReviewRenamedColumnsAreNotMasked(t *testing.T) {
	for _, c := range []reviewCase{
		{sql: "SELECT upper(e) FROM customers AS c(i, n, e)", refsHave: []string{"*"}},
		{sql: "SELECT e || '' FROM public.customers c(i, n, e, s) WHERE i = 1", refsHave: []string{"*"}},
		{sql: "COPY (SELECT e FROM customers AS c(i, n, e)) TO STDOUT", refsHave: []string{"*"}},
	} {
		checkReviewCase(t, c)
	}
}

// TestReviewJoinsHideColumns: the merged column of a FULL JOIN with USING or NATURAL is
// COALESCE(left, right), which the backend cannot trace (table OID 0), yet in the result it is a plain
// column and the join names it only in a list of strings, not a column reference. A join's alias names
// its whole row, which is no relation the classifier knows as one.
//
//	SELECT email FROM customers NATURAL FULL JOIN (SELECT NULL::text AS email WHERE false) s
//	SELECT j FROM (customers c CROSS JOIN (SELECT 1) o) AS j
//
// Fix (classify.go, walker.walk): for a *pg.JoinExpr, append each UsingClause name to w.refs and "*"
// when IsNatural; append Alias.Aliasname (and JoinUsingAlias) to w.aliases.
func TestReviewJoinsHideColumns(t *testing.T) {
	for _, c := range []reviewCase{
		{sql: "SELECT email FROM customers NATURAL FULL JOIN (SELECT NULL::text AS email WHERE false) s", refsHave: []string{"*"}},
		{sql: "SELECT email FROM customers FULL JOIN (SELECT NULL::text AS email WHERE false) s USING (email)", refsHave: []string{"email"}},
		{sql: "SELECT j FROM (customers c CROSS JOIN (SELECT 1) o) AS j", refsHave: []string{"*"}},
		{sql: "SELECT to_json(j) FROM (customers c JOIN orders o ON o.customer_id = c.id) j", refsHave: []string{"*"}},
	} {
		checkReviewCase(t, c)
	}
}

// TestReviewCacheKeyIgnoresUESCAPE: the cache key blanks every literal, but the literal after UESCAPE
// decides what a U&"..." identifier means. Two statements with one key classify differently, and the
// second is answered from the cache with the first's classification:
//
//	SELECT U&"!0071uery_to_xml" UESCAPE '#'('select email from customers', true, false, '')  -- select
//	SELECT U&"!0071uery_to_xml" UESCAPE '!'('select email from customers', true, false, '')  -- query_to_xml: admin
//
// Sent in this order, the second runs query_to_xml (verified on PostgreSQL 15: emails in clear).
//
// Fix (cache.go, literalFreeKey): keep the text of the SCONST that follows a UESCAPE keyword in the key
// (or do not cache statements with a UESCAPE token at all).
func TestReviewCacheKeyIgnoresUESCAPE(t *testing.T) {
	pairs := [][2]string{
		{`SELECT U&"!0071uery_to_xml" UESCAPE '#'('select email from customers', true, false, '')`,
			`SELECT U&"!0071uery_to_xml" UESCAPE '!'('select email from customers', true, false, '')`},
		{`SELECT upper(U&"!0065mail" UESCAPE '#') FROM customers`,
			`SELECT upper(U&"!0065mail" UESCAPE '!') FROM customers`},
	}
	for _, p := range pairs {
		c := NewCache(16)
		if _, err := c.Classify(p[0]); err != nil {
			t.Fatal(err)
		}
		got, err := c.Classify(p[1])
		if err != nil {
			t.Fatal(err)
		}
		want, err := Classify(p[1])
		if err != nil {
			t.Fatal(err)
		}
		if got[0].Kind != want[0].Kind || !slices.Equal(got[0].Refs, want[0].Refs) || !slices.Equal(got[0].Functions, want[0].Functions) {
			t.Errorf("after %s\nthe cache classifies %s\nas %+v,\nnot as %+v", p[0], p[1], got[0], want[0])
		}
	}
	// Handled: literal variants share an entry, and distinct identifiers do not.
	c := NewCache(16)
	a, _ := c.Classify(`SELECT $q$x$q$, E'\'', U&'\0041' FROM orders`)
	b, _ := c.Classify(`SELECT 'y', 'z', 'w' FROM orders`)
	if a[0].Kind != b[0].Kind {
		t.Errorf("literal variants: %+v vs %+v", a, b)
	}
	st, _ := c.Classify(`SELECT upper(U&"\0065mail") FROM customers`)
	if !slices.Contains(st[0].Refs, "email") {
		t.Errorf("U&\"\\0065mail\": refs %q", st[0].Refs)
	}
}

// TestReviewOtherDisagreements: constructs whose classification is not what PostgreSQL runs.
func TestReviewOtherDisagreements(t *testing.T) {
	for _, c := range []reviewCase{
		// GRANT inside CREATE SCHEMA is a privilege change (admin), classified as DDL.
		// Fix (classify.go, walker.top): for *pg.Node_CreateSchemaStmt, classify each SchemaElts element
		// with top() and take admin if any is admin.
		{sql: "CREATE SCHEMA s GRANT SELECT ON public.customers TO PUBLIC", kind: KindAdmin,
			why: "a GRANT as a schema element (verified: it changes customers' ACL)"},
		{sql: "CREATE SCHEMA s CREATE TRIGGER t BEFORE INSERT ON s.x FOR EACH ROW EXECUTE FUNCTION f()", kind: KindAdmin},
		// CREATE TABLE AS EXECUTE runs an SQL-level prepared statement, which the README makes admin.
		// Fix (classify.go, walker.top, Node_CreateTableAsStmt): classify Query with top() (EXECUTE is admin).
		{sql: "CREATE TABLE t AS EXECUTE p", kind: KindAdmin, why: "SQL-level EXECUTE"},
		// COPY TO '' is a server-side file for PostgreSQL (filename "" is not NULL), but the protobuf
		// tree has Filename "" for STDOUT too. Harmless today (the server needs
		// pg_write_server_files), but it is not STDOUT.
		// Fix: tell STDIN/STDOUT from a file by the tokens (pg.Scan: a STDOUT/STDIN keyword token).
		{sql: "COPY orders TO ''", notCopyOut: true, why: "a server file, not STDOUT"},
		// pg_catalog is searched before public, so unqualified catalog relations are pg_catalog's;
		// a policy on Table::"target/pg_catalog.pg_stats" never sees "public.pg_stats".
		// Fix (walker.table): resolve unqualified names of pg_catalog relations (a list loaded at
		// session start, or at least pg_* names) to pg_catalog.
		// Statistics views show sampled values of masked columns: refused as admin.
		{sql: "SELECT histogram_bounds FROM pg_stats", kind: KindAdmin, access: "admin pg_catalog.pg_stats"},
	} {
		checkReviewCase(t, c)
	}
}

// TestReviewSequenceWritesAreSelects: nextval and setval change a sequence, yet a SELECT calling them
// is a plain select, which a read-only policy allows. (The demo schema has no sequence; any serial or
// identity column brings one.)
// Fix: classify calls of nextval/setval as a write (e.g. KindUpdate against the target) or admin.
func TestReviewSequenceWritesAreSelects(t *testing.T) {
	for _, c := range []reviewCase{
		{sql: "SELECT setval('orders_id_seq', 1)", why: "resets a sequence: later inserts collide"},
		{sql: "SELECT nextval('orders_id_seq') FROM generate_series(1, 1000000)", why: "burns a sequence"},
	} {
		sts, err := Classify(c.sql)
		if err != nil {
			t.Fatal(err)
		}
		if sts[0].Kind == KindSelect {
			t.Errorf("%s: kind select (%s)", c.sql, c.why)
		}
	}
}

// TestReviewWriteTargetIsNeverACTE: the target of INSERT, UPDATE, DELETE and MERGE is always a table;
// PostgreSQL does not look it up among the WITH clause's names (verified: WITH customers AS (SELECT 1)
// UPDATE customers ... updates the table). The classifier takes it for the CTE and drops the access,
// so the write is decided only against the Target: a policy that permits writes on the target but
// forbids them on Table::"shop/public.customers" lets it through.
// Fix (classify.go, walkWrite): record the target with w.table(rel, k, nil), outside the CTE scope.
func TestReviewWriteTargetIsNeverACTE(t *testing.T) {
	for _, c := range []reviewCase{
		{sql: "WITH customers AS (SELECT 1) UPDATE customers SET name = 'x'", access: "update public.customers"},
		{sql: "WITH orders AS (SELECT 1 AS id) DELETE FROM orders WHERE id = 1", access: "delete public.orders"},
		{sql: "WITH customers AS (SELECT 1) INSERT INTO customers VALUES (9, 'n', 'e', 's')", access: "insert public.customers"},
		{sql: "WITH orders AS (SELECT 1 AS id) MERGE INTO orders o USING orders s ON o.id = s.id WHEN MATCHED THEN DELETE", access: "delete public.orders"},
		// Handled: a CTE read by name is not the table.
		{sql: "WITH customers AS (SELECT 1) SELECT * FROM customers", kind: KindSelect},
	} {
		checkReviewCase(t, c)
	}
}

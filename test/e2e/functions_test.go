package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/svidbroker/svidbroker/plugins/protocol/postgres/sqlclass"
	"github.com/svidbroker/svidbroker/test/stack"
)

// prepareFunctions creates, as a DBA would, functions of the kinds a read-only agent must not get to
// run: a SECURITY DEFINER function that deletes rows, a volatile overload of a built-in on the search
// path (initcap(varchar), which the server picks over pg_catalog's initcap(text) for a varchar
// argument), a stable SECURITY DEFINER function; and a stable function that only reads, which readers
// may call. fn_canary holds the rows the functions would delete.
func prepareFunctions(t *testing.T, s *stack.Stack) {
	admin, err := s.Postgres.Connect(t.Context(), "shop")
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	for _, q := range []string{
		"CREATE TABLE IF NOT EXISTS fn_canary (id int)",
		"TRUNCATE fn_canary",
		"INSERT INTO fn_canary SELECT generate_series(1, 5)",
		"GRANT SELECT ON fn_canary TO " + stack.BrokerDBRole,
		"CREATE OR REPLACE FUNCTION delete_canaries() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'WITH d AS (DELETE FROM fn_canary RETURNING 1) SELECT count(*)::int FROM d'",
		"CREATE OR REPLACE FUNCTION public.initcap(varchar) RETURNS text LANGUAGE sql SECURITY DEFINER AS 'DELETE FROM fn_canary; SELECT $1::text'",
		"CREATE OR REPLACE FUNCTION canary_count_as_owner() RETURNS bigint LANGUAGE sql STABLE SECURITY DEFINER AS 'SELECT count(*) FROM fn_canary'",
		"CREATE OR REPLACE FUNCTION canary_count() RETURNS bigint LANGUAGE sql STABLE AS 'SELECT count(*) FROM fn_canary'",
		// Views whose rules call them: reading the view runs the function.
		"CREATE OR REPLACE VIEW canary_purge AS SELECT delete_canaries() AS n",
		"CREATE OR REPLACE VIEW canary_purge_again AS SELECT n FROM canary_purge",
		"CREATE OR REPLACE VIEW canary_counted AS SELECT canary_count() AS n",
		"GRANT SELECT ON canary_purge, canary_purge_again, canary_counted TO " + stack.BrokerDBRole,
	} {
		if _, err := admin.Exec(t.Context(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// functionCases: database functions are decided by Cedar (sql:call-function) on what the catalog says
// of them; a volatile or SECURITY DEFINER one is a write that the baseline refuses to every pack.
var functionCases = []inspectCase{
	{stack.PersonaAnalyst, "SELECT delete_canaries()", denied("public.delete_canaries()", "SECURITY DEFINER", "baseline-no-writing-functions")},
	{stack.PersonaAnalyst, "SELECT * FROM public.delete_canaries()", denied("baseline-no-writing-functions")},
	{stack.PersonaAnalyst, "SELECT n FROM orders, LATERAL delete_canaries() AS n LIMIT 1", denied("baseline-no-writing-functions")},
	{stack.PersonaAnalyst, "SELECT shop.public.delete_canaries()", denied("baseline-no-writing-functions")},
	{stack.PersonaSupport, "SELECT delete_canaries()", denied("baseline-no-writing-functions")},
	{stack.PersonaMigrator, "SELECT delete_canaries()", denied("baseline-no-writing-functions")},
	// A built-in's name on the read-only list, shadowed by a database overload on the search path.
	{stack.PersonaAnalyst, "SELECT initcap(name::varchar) FROM customers WHERE id = 1", denied("public.initcap(character varying)", "baseline-no-writing-functions")},
	// Unqualified, the call may resolve to either: the broker decides the database's candidate.
	{stack.PersonaAnalyst, "SELECT initcap('abc')", denied("public.initcap")},
	{stack.PersonaAnalyst, "SELECT canary_count_as_owner()", denied("SECURITY DEFINER", "baseline-no-writing-functions")},
	// A view that calls one, directly or through another view.
	{stack.PersonaAnalyst, "SELECT n FROM canary_purge", denied("public.delete_canaries()", "baseline-no-writing-functions")},
	{stack.PersonaAnalyst, "SELECT count(*) FROM canary_purge_again", denied("public.delete_canaries()", "baseline-no-writing-functions")},
	// Unknown to the session's catalog: refused, not passed to the server.
	{stack.PersonaAnalyst, "SELECT no_such_function()", denied("no_such_function", "no function of that name")},
	{stack.PersonaAnalyst, "SELECT other_schema.canary_count()", denied("other_schema.canary_count", "no function of that name")},
	// Controls: a stable function that runs with the caller's privileges reads; built-ins, qualified
	// with pg_catalog, are not database functions. (Their results are masked for these personas: a
	// statement that may call a database function's name is taken to derive from masked data.)
	{stack.PersonaAnalyst, "SELECT canary_count()", runs},
	{stack.PersonaSupport, "SELECT public.canary_count()", runs},
	{stack.PersonaMigrator, "SELECT canary_count()", runs},
	{stack.PersonaAnalyst, "SELECT n FROM canary_counted", runs},
	{stack.PersonaAnalyst, "SELECT pg_catalog.initcap('abc')", runs},
	{stack.PersonaAnalyst, "SELECT upper('abc'), count(*) FROM orders WHERE customer_id = 1", gives("ABC|2")},
}

// TestDatabaseFunctionsAreDecided runs functionCases through psql and pgx, and checks that no call
// deleted a row.
func TestDatabaseFunctionsAreDecided(t *testing.T) {
	s, b := shared(t)
	prepareFunctions(t, s)
	runCases(t, s, b, functionCases)
	admin, err := s.Postgres.Connect(t.Context(), "shop")
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	var n int
	if err := admin.QueryRow(t.Context(), "SELECT count(*) FROM fn_canary").Scan(&n); err != nil || n != 5 {
		t.Fatalf("fn_canary has %d rows (%v); a refused function ran", n, err)
	}
}

// runs wants the statement to run.
func runs(out string, err error) error {
	if err != nil {
		return fmt.Errorf("failed: %v (%s)", err, out)
	}
	return nil
}

// runCases runs each case through psql (the simple protocol) and, unless it holds several statements,
// through pgx (the extended protocol), each on a session of its own persona.
func runCases(t *testing.T, s *stack.Stack, b *stack.Broker, cases []inspectCase) {
	t.Helper()
	files := map[string]*stack.ClientFiles{}
	for _, c := range cases {
		f := files[c.persona]
		if f == nil {
			f = clientFiles(t, s, c.persona)
			files[c.persona] = f
		}
		out, err := psql(t, b, f, nil, c.sql)
		if e := c.want(out, err); e != nil {
			t.Errorf("psql: %s: %s: %v", c.persona, c.sql, e)
		}
		if strings.Contains(c.sql, ";") {
			continue
		}
		conn := connect(t, s, b, c.persona)
		out, err = pgxText(t.Context(), conn, c.sql, 0)
		if e := c.want(out, err); e != nil {
			t.Errorf("pgx: %s: %s: %v", c.persona, c.sql, e)
		}
	}
}

// TestFunctionsBehindRefusedViewsAreRefused: every function a refused statistics view takes its rows
// from is refused when called directly, as the view is.
func TestFunctionsBehindRefusedViewsAreRefused(t *testing.T) {
	s, b := shared(t)
	var cases []inspectCase
	for view, fns := range sqlclass.BlockedViewFunctions() {
		cases = append(cases, inspectCase{stack.PersonaAnalyst, "SELECT * FROM " + view, denied("baseline-no-admin-sql")})
		for _, fn := range fns {
			cases = append(cases, inspectCase{stack.PersonaAnalyst, "SELECT * FROM " + fn + "(NULL)", denied("baseline-no-admin-sql", fn, view)})
		}
	}
	cases = append(cases,
		inspectCase{stack.PersonaAnalyst, "SELECT pid, query FROM pg_catalog.pg_stat_get_activity(NULL)", denied("baseline-no-admin-sql", "pg_stat_activity")},
		inspectCase{stack.PersonaAnalyst, "SELECT pg_stat_get_backend_activity(b) FROM pg_stat_get_backend_idset() b", denied("baseline-no-admin-sql", "pg_stat_activity")},
		// Control: the session's own backend is no one else's.
		inspectCase{stack.PersonaAnalyst, "SELECT (pg_backend_pid() > 0)::text", gives("true")},
	)
	runCases(t, s, b, cases)
}

// TestBlockedViewFunctionsAreTheServers derives the functions behind the refused statistics views from
// the test cluster's own view definitions (PostgreSQL 15) and compares them with the broker's table
// (blockedviews_gen.go). With SVIDBROKER_REGENERATE=1 it writes that table instead.
func TestBlockedViewFunctionsAreTheServers(t *testing.T) {
	s, _ := shared(t)
	admin, err := s.Postgres.Connect(t.Context(), "shop")
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	derived := map[string][]string{}
	for _, rel := range sqlclass.RefusedRelations() {
		var kind, def string
		if err := admin.QueryRow(t.Context(), `SELECT c.relkind::text, CASE WHEN c.relkind = 'v' THEN pg_catalog.pg_get_viewdef(c.oid) ELSE '' END
			FROM pg_catalog.pg_class c WHERE c.oid = ('pg_catalog.' || $1)::regclass`, rel).Scan(&kind, &def); err != nil {
			t.Fatalf("%s: %v", rel, err)
		}
		if kind != "v" {
			continue // a table, refused by name
		}
		fns, err := sqlclass.ViewFunctions(def)
		if err != nil {
			t.Fatalf("%s: %v", rel, err)
		}
		derived[rel] = fns
	}
	table := genTable(derived)
	if os.Getenv("SVIDBROKER_REGENERATE") == "1" {
		root, err := stack.RepoRoot()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "plugins/protocol/postgres/sqlclass/blockedviews_gen.go"), []byte(table), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	have := sqlclass.BlockedViewFunctions()
	same := len(have) == len(derived)
	for v, fns := range derived {
		same = same && slices.Equal(have[v], fns)
	}
	if !same {
		t.Fatalf("the server's views take rows from other functions than the broker refuses: have %v, derived %v; run with SVIDBROKER_REGENERATE=1 to write:\n%s", have, derived, table)
	}
	if len(derived["pg_stat_activity"]) == 0 {
		t.Fatal("nothing derived for pg_stat_activity")
	}
}

// genTable is blockedviews_gen.go for derived.
func genTable(derived map[string][]string) string {
	views := make([]string, 0, len(derived))
	for v := range derived {
		views = append(views, v)
	}
	sort.Strings(views)
	var b strings.Builder
	b.WriteString(`// Code generated by TestBlockedViewFunctionsAreTheServers (test/e2e) from PostgreSQL 15's view
// definitions; DO NOT EDIT. Run that test with SVIDBROKER_REGENERATE=1 to write it again.

package sqlclass

// blockedViewCalls are the functions each refused statistics view takes rows from, less the read-only
// ones (see ViewFunctions). A view with none reads only tables, which are refused by name.
var blockedViewCalls = map[string][]string{
`)
	width := 0
	for _, v := range views {
		width = max(width, len(v)+3)
	}
	for _, v := range views {
		quoted := make([]string, len(derived[v]))
		for i, f := range derived[v] {
			quoted[i] = fmt.Sprintf("%q", f)
		}
		fmt.Fprintf(&b, "\t%-*s{%s},\n", width, fmt.Sprintf("%q:", v), strings.Join(quoted, ", "))
	}
	b.WriteString("}\n")
	return b.String()
}

package e2e

import (
	"context"
	"testing"

	"github.com/svidbroker/svidbroker/test/stack"
)

// prepareOperatorsAndViews creates, as a DBA would, an operator backed by a SECURITY DEFINER function
// that deletes fn_canary's rows, a domain whose CHECK calls such a function (and a domain over it), an
// aggregate whose state function is one, a view over pg_stat_activity and a view that takes an
// advisory lock.
func prepareOperatorsAndViews(t *testing.T, s *stack.Stack) {
	prepareFunctions(t, s)
	admin, err := s.Postgres.Connect(t.Context(), "shop")
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	for _, q := range []string{
		"CREATE OR REPLACE FUNCTION canary_eq(int, int) RETURNS bool LANGUAGE sql SECURITY DEFINER AS 'WITH d AS (DELETE FROM fn_canary RETURNING 1) SELECT $1 = $2'",
		"DROP OPERATOR IF EXISTS === (int, int)",
		"CREATE OPERATOR === (LEFTARG = int, RIGHTARG = int, FUNCTION = canary_eq)",
		"CREATE OR REPLACE VIEW activity_seen AS SELECT pid, query FROM pg_stat_activity",
		"CREATE OR REPLACE VIEW lock_held AS SELECT pg_try_advisory_lock(42) AS held",
		"GRANT SELECT ON activity_seen, lock_held TO " + stack.BrokerDBRole,
		"CREATE OR REPLACE FUNCTION canary_check(int) RETURNS bool LANGUAGE sql SECURITY DEFINER AS 'WITH d AS (DELETE FROM fn_canary RETURNING 1) SELECT true'",
		"DROP DOMAIN IF EXISTS canary_checked_again, canary_checked",
		"CREATE DOMAIN canary_checked AS int CHECK (canary_check(VALUE))",
		"CREATE DOMAIN canary_checked_again AS canary_checked",
		"CREATE OR REPLACE FUNCTION canary_step(int, int) RETURNS int LANGUAGE sql SECURITY DEFINER AS 'WITH d AS (DELETE FROM fn_canary RETURNING 1) SELECT coalesce($1, 0) + 1'",
		"CREATE OR REPLACE AGGREGATE canary_agg(int) (SFUNC = canary_step, STYPE = int)",
	} {
		if _, err := admin.Exec(t.Context(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// operatorAndViewCases: an operator is a call of its function, and a view is what its query does;
// and a subquery's columns renamed past a star do not hide a masked column under an unmasked name.
var operatorAndViewCases = []inspectCase{
	{stack.PersonaAnalyst, "SELECT 1 === 1", denied("public.canary_eq(integer, integer)", "SECURITY DEFINER", "baseline-no-writing-functions")},
	{stack.PersonaAnalyst, "SELECT count(*) FROM orders WHERE id === 1", denied("public.canary_eq", "baseline-no-writing-functions")},
	{stack.PersonaAnalyst, "SELECT CASE WHEN 1 = 1 THEN 'yes' END", gives("yes")}, // control: the built-in operator
	{stack.PersonaAnalyst, "SELECT query FROM activity_seen", denied("view public.activity_seen", "pg_stat_activity", "baseline-no-admin-sql")},
	{stack.PersonaSupport, "SELECT count(*) FROM activity_seen", denied("view public.activity_seen", "baseline-no-admin-sql")},
	{stack.PersonaAnalyst, "SELECT held FROM lock_held", denied("LOCK")},
	{stack.PersonaAnalyst, "SELECT n FROM canary_counted", runs}, // control: a view that only reads
	{stack.PersonaAnalyst, "SELECT 1::canary_checked", denied("public.canary_check(integer)", "baseline-no-writing-functions")},
	{stack.PersonaAnalyst, "SELECT CAST(id AS canary_checked_again) FROM orders", denied("public.canary_check(integer)")},
	{stack.PersonaAnalyst, "SELECT 2::int + 1", gives("3")}, // control: a built-in type
	// PostgreSQL records every aggregate as immutable: its support functions say what it does.
	{stack.PersonaAnalyst, "SELECT canary_agg(id) FROM orders", denied("public.canary_step(integer, integer)", "SECURITY DEFINER", "baseline-no-writing-functions")},
	{stack.PersonaAnalyst, "SELECT sum(id) > 0 FROM orders", runs}, // control: a built-in aggregate
	// customers is (id, name, email, ssn): s(id, email, name) calls the third column, email, "name".
	{stack.PersonaAnalyst, "SELECT count(*) FROM (SELECT * FROM customers) s(id, email, name) WHERE name LIKE 'a%'", denied("WHERE", "column:use-masked")},
	{stack.PersonaAnalyst, "WITH s(id, email, name) AS (SELECT * FROM customers) SELECT count(*) FROM s WHERE name LIKE 'a%'", denied("WHERE", "column:use-masked")},
	{stack.PersonaAnalyst, "SELECT count(*) FROM (SELECT * FROM customers) s WHERE name = 'Alice'", gives("1")}, // control
}

// TestOperatorsAndViewsAreWhatTheyRun runs operatorAndViewCases through psql and pgx, and checks that
// no operator deleted a row.
func TestOperatorsAndViewsAreWhatTheyRun(t *testing.T) {
	s, b := shared(t)
	prepareOperatorsAndViews(t, s)
	runCases(t, s, b, operatorAndViewCases)
	admin, err := s.Postgres.Connect(t.Context(), "shop")
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	var n int
	if err := admin.QueryRow(t.Context(), "SELECT count(*) FROM fn_canary").Scan(&n); err != nil || n != 5 {
		t.Fatalf("fn_canary has %d rows (%v); a refused operator, cast or aggregate ran", n, err)
	}
}

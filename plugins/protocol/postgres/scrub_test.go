package postgres

import (
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// TestErrorsAreWithheldOnlyWhenTheyCanQuoteData: in a statement that reads masked columns, an error
// whose SQLSTATE class can quote the data read (a data exception, a constraint violation, a raised
// exception, ...) is withheld, and so is a syntax or access error the server raised while running the
// statement (no position in it: a value cast to regclass); an undefined table or column or a syntax
// error in the statement's text, and a permission error, reach the client as the backend sent them. A
// statement over tables outside the catalog, which hold no masked data, has nothing withheld, its
// notices included.
func TestErrorsAreWithheldOnlyWhenTheyCanQuoteData(t *testing.T) {
	const secret = "alice@example.org"
	const masked, outside = "SELECT email FROM customers", "SELECT abalance FROM pgbench_accounts"
	for _, c := range []struct {
		name     string
		sql      string
		code     string
		position int32  // where the server points into the statement; 0 for nowhere
		where    string // the error's context
		withheld bool
	}{
		{"undefined table", masked, "42P01", 19, "", false},
		{"undefined column", masked, "42703", 8, "", false},
		{"syntax error", masked, "42601", 1, "", false},
		{"permission denied", masked, "42501", 0, "", false},
		{"serialization failure", masked, "40001", 0, "", false},
		{"a value cast to regclass", masked, "42P01", 0, "", true}, // relation "<value>" does not exist
		{"a value cast to regnamespace", masked, "3F000", 0, "", true},
		{"a value cast to regtype", masked, "42704", 0, "", true},
		{"a value parsed as a type name", masked, "42601", 1, `invalid type name "` + secret + `"`, true},
		{"invalid input syntax", masked, "22P02", 0, "", true},
		{"unique violation", masked, "23505", 0, "", true},
		{"check violation", masked, "23514", 0, "", true},
		{"WITH CHECK OPTION", masked, "44000", 0, "", true},
		{"RAISE EXCEPTION", masked, "P0001", 0, "", true},
		{"internal error", masked, "XX000", 0, "", true},
		{"no SQLSTATE", masked, "", 0, "", true},
		{"not a SQLSTATE", masked, "2201", 0, "", true},
		{"a class no rule names", masked, "F0000", 0, "", true},
		{"snapshot too old", masked, "72000", 0, "", true},
		{"deadlock", masked, "40P01", 0, "", false},
		{"cancelled", masked, "57014", 0, "", false},
		{"outside the catalog: invalid input", outside, "22P02", 0, "", false},
		{"outside the catalog: unique violation", outside, "23505", 0, "", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newRelaySession(t, relayIO{})
			p := existingPlan(t, c.sql)
			h := &item{kind: itQuery, plan: p}
			in := &pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: c.code, Position: c.position, Where: c.where,
				Message: "message quoting " + secret, Detail: "Key (email)=(" + secret + ")"}
			out, ok := s.answer(h, in).(*pgproto3.ErrorResponse)
			if !ok {
				t.Fatal("no error for the client")
			}
			quoted := strings.Contains(out.Message+out.Detail, secret)
			switch {
			case c.withheld && (quoted || out.Code != c.code || !strings.Contains(out.Message, "details withheld")):
				t.Errorf("not withheld: %+v", out)
			case !c.withheld && (out != in):
				t.Errorf("changed: %+v", out)
			}
		})
	}
	t.Run("notice outside the catalog", func(t *testing.T) {
		s := newRelaySession(t, relayIO{})
		p := existingPlan(t, "DROP TABLE IF EXISTS pgbench_history")
		in := &pgproto3.NoticeResponse{Severity: "NOTICE", Code: "00000", Message: `table "pgbench_history" does not exist, skipping`}
		if out := s.answer(&item{kind: itQuery, plan: p}, in); out != in {
			t.Errorf("notice changed: %+v", out)
		}
	})
}

// existingPlan is reviewPlan's plan in a database that holds pgbench's tables, outside the catalog,
// since before the session began.
func existingPlan(t *testing.T, sql string) *plan {
	t.Helper()
	p, sts := reviewPlan(t, sql)
	meta := *p.meta
	meta.existing = map[string]bool{"public.customers": true, "public.orders": true,
		"public.pgbench_accounts": true, "public.pgbench_history": true}
	p.meta, p.derived, p.derivedAt, p.scrub = &meta, "", nil, false
	p.finish(sts)
	return p
}

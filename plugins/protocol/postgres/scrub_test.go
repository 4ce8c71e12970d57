package postgres

import (
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// TestErrorsAreWithheldOnlyWhenTheyCanQuoteData: in a statement that reads masked columns, an error
// whose SQLSTATE class can quote the data read (a data exception, a constraint violation, a raised
// exception, ...) is withheld; an undefined table or column, a syntax or permission error reaches the
// client as the backend sent it. A statement over tables outside the catalog, which hold no masked
// data, has nothing withheld, its notices included. The class decides: the same message passes under
// one code and is withheld under another.
func TestErrorsAreWithheldOnlyWhenTheyCanQuoteData(t *testing.T) {
	const secret = "alice@example.org"
	for _, c := range []struct {
		sql      string
		code     string
		withheld bool
	}{
		{"SELECT email FROM customers", "42P01", false}, // undefined table
		{"SELECT email FROM customers", "42703", false}, // undefined column
		{"SELECT email FROM customers", "42501", false}, // permission denied
		{"SELECT email FROM customers", "42601", false}, // syntax error
		{"SELECT email FROM customers", "40001", false}, // serialization failure
		{"SELECT email FROM customers", "22P02", true},  // invalid input syntax: quotes the value
		{"SELECT email FROM customers", "23505", true},  // unique violation: Key (email)=(...)
		{"SELECT email FROM customers", "23514", true},  // check violation: Failing row contains
		{"SELECT email FROM customers", "44000", true},  // WITH CHECK OPTION: Failing row contains
		{"SELECT email FROM customers", "P0001", true},  // RAISE EXCEPTION
		{"SELECT email FROM customers", "XX000", true},  // internal error
		{"SELECT email FROM customers", "", true},       // no SQLSTATE
		{"SELECT email FROM customers", "2201", true},   // not a SQLSTATE
		{"SELECT abalance FROM pgbench_accounts", "22P02", false},
		{"SELECT abalance FROM pgbench_accounts", "23505", false},
	} {
		t.Run(c.sql+"/"+c.code, func(t *testing.T) {
			s := newRelaySession(t, relayIO{})
			p := existingPlan(t, c.sql)
			h := &item{kind: itQuery, plan: p}
			in := &pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: c.code,
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

package postgres

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/plugins/protocol/postgres/sqlclass"
)

// testOperatorCatalog is testFuncCatalog with operators the database defines: === runs the SECURITY
// DEFINER purge(), a public = on a type of its own runs order_total(text), and an === in a schema off
// the search path runs audit.order_total.
func testOperatorCatalog() *funcCatalog {
	fc := testFuncCatalog()
	purge, totalText, hidden := fc.byName["purge"][0], fc.byName["order_total"][1], fc.byName["order_total"][2]
	fc.operators = map[string][]dbOperator{
		"===": {{schema: "public", fn: purge}, {schema: "audit", fn: hidden}},
		"=":   {{schema: "public", fn: totalText}},
	}
	fc.operatorNames = map[string]bool{"===": true, "=": true, "<>": true, "+": true, "||": true, ">": true, "<": true, ">=": true, "<=": true}
	return fc
}

// TestOperatorsMadeSinceTheSessionBeganAreRefused: an operator name the session's catalog did not have
// (CREATE OPERATOR since, in this session or another) is refused as unknown, since its function could
// not be decided; a known name is not.
func TestOperatorsMadeSinceTheSessionBeganAreRefused(t *testing.T) {
	fc := testOperatorCatalog()
	for sql, unknown := range map[string]bool{
		"SELECT 1 #### 2":                              true,
		"SELECT 1 OPERATOR(public.####) 2":             true,
		"SELECT id FROM orders ORDER BY id USING ####": true,
		"SELECT 1 + 2":                                 false,
		"SELECT 1 OPERATOR(public.===) 2":              false,
	} {
		sts, err := sqlclass.Classify(sql)
		if err != nil {
			t.Fatal(err)
		}
		_, err = fc.calls(sts[0])
		if got := errors.Is(err, errUnknownFunction); got != unknown {
			t.Errorf("%s: refused as unknown %t (%v), want %t", sql, got, err, unknown)
		}
	}
}

// TestOperatorsCallTheirFunctions: using an operator the database defines calls the function behind
// it, whether the statement names it (a op b, OPERATOR(schema.op), ANY, ORDER BY ... USING) or a
// construct applies it (IN, NULLIF, IS DISTINCT FROM, CASE x WHEN, USING joins use =); an unqualified
// operator may be one of any schema on the search path, a qualified one only its schema's. Built-in
// operators call nothing the database defines.
func TestOperatorsCallTheirFunctions(t *testing.T) {
	fc := testOperatorCatalog()
	const purge, total = "public.purge()", "public.order_total(text)"
	for _, c := range []struct {
		sql  string
		want []string
	}{
		{"SELECT 1 FROM orders WHERE id === 1", []string{purge}},
		{"SELECT id === 1 FROM orders", []string{purge}},
		{"SELECT 1 OPERATOR(public.===) 1", []string{purge}},
		{"SELECT 1 OPERATOR(shop.public.===) 1", []string{purge}},
		{"SELECT 1 OPERATOR(audit.===) 1", []string{"audit.order_total(integer)"}},
		{"SELECT 1 FROM orders WHERE id === ANY (ARRAY[1])", []string{purge}},
		{"SELECT 1 FROM orders WHERE id === ANY (SELECT 1)", []string{purge}},
		{"SELECT id FROM orders ORDER BY id USING ===", []string{purge}},
		{"SELECT 1 FROM orders WHERE (SELECT id === 1)", []string{purge}},
		{"SELECT 1 FROM orders WHERE id IN (1, 2)", []string{total}},
		{"SELECT nullif(id, 1) FROM orders", []string{total}},
		{"SELECT 1 FROM orders WHERE id IS DISTINCT FROM 1", []string{total}},
		{"SELECT CASE id WHEN 1 THEN 'a' END FROM orders", []string{total}},
		{"SELECT 1 FROM orders JOIN items USING (id)", []string{total}},
		// Controls: built-in operators only.
		{"SELECT 1 + 1, 'a' || 'b'", nil},
		{"SELECT 1 FROM orders WHERE id > 1 AND id BETWEEN 1 AND 5", nil},
		{"SELECT 1 OPERATOR(pg_catalog.===) 1", nil},
		{"SELECT id FROM orders ORDER BY id", nil},
	} {
		t.Run(c.sql, func(t *testing.T) {
			sts, err := sqlclass.Classify(c.sql)
			if err != nil {
				t.Fatal(err)
			}
			fns, err := fc.calls(sts[0])
			if err != nil {
				t.Fatal(err)
			}
			got := functionKeys(fns)
			if !slices.Equal(got, c.want) {
				t.Errorf("got %q, want %q (operators %q)", got, c.want, sts[0].Operators)
			}
		})
	}
}

// TestOperatorOfAWritingFunctionIsRefused: a read-only caller's use of an operator backed by a
// SECURITY DEFINER function is refused by default like a call of the function, naming it, and makes
// the statement a change; a built-in operator runs.
func TestOperatorOfAWritingFunctionIsRefused(t *testing.T) {
	for _, c := range []struct {
		sql, refused string
	}{
		{"SELECT 1 FROM orders WHERE id === 1", refusedDefault},
		{"SELECT count(*) FROM orders WHERE id = 1", ""},
	} {
		t.Run(c.sql, func(t *testing.T) {
			s, _, _ := newVerdictSession(t)
			fc := testOperatorCatalog()
			delete(fc.operators, "=") // the control's = is the built-in one
			s.insp.meta = &dbMeta{funcs: fc}
			rec := queryRecord(t, s, c.sql)
			if c.refused == "" {
				if rec.Kind != audit.KindStatement {
					t.Fatalf("recorded as %s %v", rec.Kind, rec.Detail)
				}
				return
			}
			if rec.Kind != audit.KindDenied || rec.Detail["refused"] != c.refused {
				t.Fatalf("recorded as %s %q, want refused %q", rec.Kind, rec.Detail["refused"], c.refused)
			}
			it := s.queue.head()
			if it == nil || it.kind != itDenied || !strings.Contains(it.denial.Message, "public.purge() (volatile, SECURITY DEFINER)") {
				t.Fatalf("the client's error does not name the operator's function: %+v", it)
			}
			sts, err := sqlclass.Classify(c.sql)
			if err != nil {
				t.Fatal(err)
			}
			if !s.callsWritingFunction(sts) {
				t.Error("the statement is not taken for one that may write")
			}
		})
	}
}

// FuzzOperatorCalls: every function an operator use resolves to is one the catalog holds behind an
// operator of the name the statement uses.
func FuzzOperatorCalls(f *testing.F) {
	for _, s := range []string{"SELECT 1 === 1", "SELECT 1 OPERATOR(audit.===) 2", "SELECT a FROM t WHERE a IN (1)",
		"SELECT a FROM t ORDER BY a USING ===", "SELECT 1 + 1"} {
		f.Add(s)
	}
	fc := testOperatorCatalog()
	f.Fuzz(func(t *testing.T, sql string) {
		sts, err := sqlclass.Classify(sql)
		if err != nil {
			return
		}
		for _, st := range sts {
			for _, op := range st.Operators {
				name := op[strings.LastIndexByte(op, '.')+1:]
				fns, _ := fc.operatorCalls(op)
				for _, fn := range fns {
					held := false
					for _, o := range fc.operators[name] {
						held = held || o.fn == fn
					}
					if !held && op != sqlclass.AnyOperator {
						t.Fatalf("%q: operator %s resolved to %+v", sql, op, fn)
					}
				}
			}
		}
	})
}

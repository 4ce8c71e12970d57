package postgres

import (
	"slices"
	"testing"

	"github.com/svidbroker/svidbroker/plugins/protocol/postgres/sqlclass"
)

// testTypeCatalog is testFuncCatalog with a domain whose CHECK runs the SECURITY DEFINER purge(), a
// domain over it, and a type whose cast runs order_total(text); audit.checked is a domain of a schema
// off the path.
func testTypeCatalog() *funcCatalog {
	fc := testFuncCatalog()
	purge, totalText, hidden := fc.byName["purge"][0], fc.byName["order_total"][1], fc.byName["order_total"][2]
	fc.typeCalls = map[string][]typeCall{
		"checked":       {{schema: "public", fn: purge}, {schema: "audit", fn: hidden}},
		"checked_again": {{schema: "public", fn: purge}},
		"money_text":    {{schema: "public", fn: totalText}},
	}
	fc.builtin["json_to_record"] = true
	return fc
}

// TestCastsRunTheirTypesFunctions: a cast to a domain runs its CHECK constraints' functions, and a cast
// to a type with a cast function runs that function, whether written x::t, CAST(x AS t), t 'literal',
// an array of t, or a column definition list; a qualified type only its schema's. Casts to built-in
// types call nothing the database defines.
func TestCastsRunTheirTypesFunctions(t *testing.T) {
	fc := testTypeCatalog()
	const purge = "public.purge()"
	for _, c := range []struct {
		sql  string
		want []string
	}{
		{"SELECT 1::checked", []string{purge}},
		{"SELECT CAST(1 AS public.checked)", []string{purge}},
		{"SELECT checked '1'", []string{purge}},
		{"SELECT ARRAY[1]::checked[]", []string{purge}},
		{"SELECT 1::checked_again", []string{purge}},
		{"SELECT * FROM json_to_record('{}') AS r(a checked)", []string{purge}},
		{"SELECT 1 FROM orders WHERE id::checked = 1", []string{purge}},
		{"SELECT 1::audit.checked", []string{"audit.order_total(integer)"}},
		{"SELECT 1::money_text", []string{"public.order_total(text)"}},
		// Controls.
		{"SELECT 1::int, 'a'::text, now()::date", nil},
		{"SELECT 1::pg_catalog.int4", nil},
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
				t.Errorf("got %q, want %q (types %q)", got, c.want, sts[0].Types)
			}
		})
	}
}

// FuzzTypeCalls: every function a cast resolves to is one the catalog holds for a type of the name the
// statement uses.
func FuzzTypeCalls(f *testing.F) {
	for _, s := range []string{"SELECT 1::checked", "SELECT CAST(1 AS audit.checked)", "SELECT checked '1'", "SELECT 1::int"} {
		f.Add(s)
	}
	fc := testTypeCatalog()
	f.Fuzz(func(t *testing.T, sql string) {
		sts, err := sqlclass.Classify(sql)
		if err != nil {
			return
		}
		for _, st := range sts {
			for _, typ := range st.Types {
				name := typ[lastDot(typ):]
				for _, fn := range fc.typeFunctions(typ) {
					held := false
					for _, c := range fc.typeCalls[name] {
						held = held || c.fn == fn
					}
					if !held && typ != sqlclass.AnyType {
						t.Fatalf("%q: type %s resolved to %+v", sql, typ, fn)
					}
				}
			}
		}
	})
}

func lastDot(s string) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '.' {
			return i + 1
		}
	}
	return 0
}

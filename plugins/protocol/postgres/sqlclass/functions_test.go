package sqlclass

import (
	"slices"
	"strings"
	"testing"
)

// TestBlockedViewFunctionsAreRefused: each refused statistics view's functions are refused when called
// directly, as the views are, in every position a call can take; the functions beside them are not.
func TestBlockedViewFunctionsAreRefused(t *testing.T) {
	calls := map[string][]string{}
	for view, fns := range BlockedViewFunctions() {
		for _, f := range fns {
			calls[view] = append(calls[view], "SELECT * FROM "+f+"(NULL)", "SELECT pg_catalog."+f+"(NULL)",
				"SELECT x FROM orders, LATERAL "+strings.ToUpper(f)+"(NULL) x")
		}
	}
	if len(calls["pg_stat_activity"]) == 0 {
		t.Fatal("no function behind pg_stat_activity is refused")
	}
	calls["pg_stat_activity"] = append(calls["pg_stat_activity"], "SELECT pg_stat_get_backend_activity(s) FROM pg_stat_get_backend_idset() s")
	for view, sqls := range calls {
		for _, sql := range append(sqls, "SELECT * FROM "+view) {
			sts, err := Classify(sql)
			if err != nil {
				t.Fatal(err)
			}
			if sts[0].Kind != KindAdmin {
				t.Errorf("%s: kind %q, want admin (it returns what %s shows)", sql, sts[0].Kind, view)
			}
		}
	}
	for _, sql := range []string{"SELECT has_column_privilege('orders', 'id', 'select')", "SELECT * FROM unnest(ARRAY[1])", "SELECT pg_backend_pid()"} {
		sts, err := Classify(sql)
		if err != nil {
			t.Fatal(err)
		}
		if sts[0].Kind != KindSelect {
			t.Errorf("%s: kind %q, want select", sql, sts[0].Kind)
		}
	}
}

// TestViewFunctionsTakesFunctionsInFrom: the functions a view takes rows from, not those it calls on
// values.
func TestViewFunctionsTakesFunctionsInFrom(t *testing.T) {
	got, err := ViewFunctions(`SELECT s.pid, pg_get_userbyid(s.usesysid) FROM pg_stat_get_activity(NULL::integer) s(pid, usesysid)
		LEFT JOIN LATERAL (SELECT array_agg(i.v) AS v FROM pg_mcv_list_items(NULL) i(v)) m ON true
		WHERE has_column_privilege(1, 1, 'select') AND NOT row_security_active(1) AND s.pid IN (SELECT x FROM unnest(ARRAY[1]) x)`)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"pg_mcv_list_items", "pg_stat_get_activity"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

// FuzzViewFunctions: any definition either parses and gives sorted, distinct, lower-case names none of
// which is on the read-only list, or is ErrParse.
func FuzzViewFunctions(f *testing.F) {
	for _, s := range []string{"SELECT * FROM pg_stat_get_activity(NULL) s", "SELECT 1", "SELECT x FROM unnest(ARRAY[1]) x, LATERAL F(x) y",
		"SELECT (SELECT a FROM g() a) FROM h()"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, def string) {
		fns, err := ViewFunctions(def)
		if err != nil {
			return
		}
		if !slices.IsSorted(fns) || len(slices.Compact(slices.Clone(fns))) != len(fns) {
			t.Fatalf("not sorted and distinct: %q", fns)
		}
		for _, fn := range fns {
			if fn != strings.ToLower(fn) || ReadOnlyFunction(fn) {
				t.Fatalf("%q in %q", fn, fns)
			}
		}
	})
}

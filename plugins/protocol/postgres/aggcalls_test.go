package postgres

import (
	"slices"
	"testing"

	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/plugins/protocol/postgres/sqlclass"
)

// TestAggregatesCallTheirSupportFunctions: PostgreSQL records an aggregate as immutable and not
// SECURITY DEFINER, so a call of one is also a call of its database support functions, decided (and
// taken for a write) on their own attributes; an aggregate of built-in support functions calls only
// itself.
func TestAggregatesCallTheirSupportFunctions(t *testing.T) {
	fc := testFuncCatalog()
	purge := fc.byName["purge"][0]
	secagg := authz.Function{Schema: "public", Name: "secagg", Arguments: "integer", Volatility: "immutable", Language: "internal", Owner: "shop"}
	plainagg := authz.Function{Schema: "public", Name: "plainagg", Arguments: "integer", Volatility: "immutable", Language: "internal", Owner: "shop"}
	fc.byName["secagg"], fc.byName["plainagg"] = []authz.Function{secagg}, []authz.Function{plainagg}
	fc.support = map[string][]authz.Function{functionKey("public", "secagg", "integer"): {purge}}
	s, _, _ := newVerdictSession(t)
	s.insp.meta = &dbMeta{funcs: fc}
	for _, c := range []struct {
		sql    string
		want   []string
		writes bool
	}{
		{"SELECT secagg(id) FROM orders", []string{"public.purge()", "public.secagg(integer)"}, true},
		{"SELECT 1 FROM orders GROUP BY id HAVING public.secagg(id) > 1", []string{"public.purge()", "public.secagg(integer)"}, true},
		{"SELECT plainagg(id) FROM orders", []string{"public.plainagg(integer)"}, false}, // control
	} {
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
			t.Errorf("%s: got %q, want %q", c.sql, got, c.want)
		}
		if w := s.callsWritingFunction(sts); w != c.writes {
			t.Errorf("%s: taken for a write %t, want %t", c.sql, w, c.writes)
		}
	}
}

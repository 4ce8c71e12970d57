package postgres

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/plugins/protocol/postgres/sqlclass"
)

func testFuncCatalog() *funcCatalog {
	definer := authz.Function{Schema: "public", Name: "purge", Volatility: "volatile", SecurityDefiner: true, Language: "plpgsql", Owner: "shop"}
	total := authz.Function{Schema: "public", Name: "order_total", Arguments: "integer", Volatility: "stable", Language: "sql", Owner: "shop"}
	totalText := authz.Function{Schema: "public", Name: "order_total", Arguments: "text", Volatility: "volatile", Language: "sql", Owner: "shop"}
	lower := authz.Function{Schema: "public", Name: "lower", Arguments: "text", Volatility: "volatile", Language: "sql", Owner: "shop"}
	hidden := authz.Function{Schema: "audit", Name: "order_total", Arguments: "integer", Volatility: "volatile", Language: "sql", Owner: "shop"}
	dotted := authz.Function{Schema: "public", Name: "public.purge", Volatility: "volatile", Language: "sql", Owner: "shop"}
	return &funcCatalog{
		path: []string{"pg_catalog", "public"},
		byName: map[string][]authz.Function{"purge": {definer}, "order_total": {total, totalText, hidden},
			"lower": {lower}, "public.purge": {dotted}},
		builtin: map[string]bool{"lower": true, "count": true, "now": true},
		views:   map[string][]authz.Function{"public.purge_view": {definer}, "public.totals": {total}},
	}
}

// TestCallsResolveAlongTheSearchPath: an unqualified call may run any overload of its name on the
// search path, a built-in name shadowed there included; a qualified one only its schema's; a call of
// nothing the catalog knows is refused; built-ins alone are not database functions.
func TestCallsResolveAlongTheSearchPath(t *testing.T) {
	fc := testFuncCatalog()
	for _, c := range []struct {
		sql     string
		want    []string // schema.name(arguments)
		unknown bool
	}{
		{"SELECT purge()", []string{"public.purge()"}, false},
		{"SELECT order_total(1)", []string{"public.order_total(integer)", "public.order_total(text)"}, false},
		{"SELECT audit.order_total(1)", []string{"audit.order_total(integer)"}, false},
		{"SELECT lower('x')", []string{"public.lower(text)"}, false},
		{"SELECT pg_catalog.lower('x')", nil, false},
		{"SELECT count(*), now()", nil, false},
		{`SELECT "public.purge"()`, []string{"public.public.purge()", "public.purge()"}, false},
		{"SELECT shop.public.purge()", []string{"public.purge()"}, false},
		{"SELECT c.purge FROM orders c", []string{"public.purge()"}, false},
		{"SELECT made_later()", nil, true},
		{"SELECT other.purge()", nil, true},
		// Reading a view runs the functions its rules call.
		{"SELECT * FROM purge_view", []string{"public.purge()"}, false},
		{"SELECT count(*) FROM orders o JOIN public.totals t ON true", []string{"public.order_total(integer)"}, false},
		{"SELECT * FROM orders", nil, false},
	} {
		t.Run(c.sql, func(t *testing.T) {
			sts, err := sqlclass.Classify(c.sql)
			if err != nil {
				t.Fatal(err)
			}
			fns, err := fc.calls(sts[0])
			if c.unknown {
				if !errors.Is(err, errUnknownFunction) {
					t.Fatalf("got %v, %v; want it refused as unknown", fns, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := functionKeys(fns)
			if !slices.Equal(got, c.want) {
				t.Errorf("got %q, want %q", got, c.want)
			}
		})
	}
}

// FuzzCallResolution: for any statement, every database function a call resolves to is one the catalog
// holds under a reading of a name the statement calls, and resolution never fails for a statement that
// calls only built-ins.
func FuzzCallResolution(f *testing.F) {
	for _, s := range []string{"SELECT purge()", "SELECT order_total(1)", `SELECT "public.purge"()`, "SELECT a.b.c.d()",
		"SELECT c.purge FROM t c", "SELECT count(*), lower('x') FROM t", "SELECT made_later()", "SELECT pg_catalog.now()",
		"SELECT * FROM purge_view v JOIN totals t ON true"} {
		f.Add(s)
	}
	fc := testFuncCatalog()
	f.Fuzz(func(t *testing.T, sql string) {
		sts, err := sqlclass.Classify(sql)
		if err != nil {
			return
		}
		for _, st := range sts {
			fns, err := fc.calls(st)
			if err != nil {
				if !errors.Is(err, errUnknownFunction) {
					t.Fatalf("%q: %v", sql, err)
				}
				continue
			}
			for _, fn := range fns {
				held := false
				for _, c := range fc.byName[fn.Name] {
					held = held || c == fn
				}
				named := false
				for _, name := range append(slices.Clone(st.Functions), st.PossibleFunctions...) {
					named = named || name == fn.Name || strings.HasSuffix(name, "."+fn.Name)
				}
				for _, a := range st.Accesses {
					named = named || slices.Contains(fc.views[a.Table], fn)
				}
				if !held || !named {
					t.Fatalf("%q resolved to %+v (held %t, named %t)", sql, fn, held, named)
				}
			}
		}
	})
}

// TestFunctionRefusalsAreRecordedAsWhatTheyWere: a call of a database function no policy permits is
// refused by default, naming the function; a call of a name the session's catalog does not know is
// refused as unknown; a statement that calls only built-ins runs. A call that may write makes the
// statement a change, whatever the classifier made of the name.
func TestFunctionRefusalsAreRecordedAsWhatTheyWere(t *testing.T) {
	for _, c := range []struct {
		sql, refused, says string
	}{
		{"SELECT purge()", refusedDefault, "public.purge() (volatile, SECURITY DEFINER)"},
		{"SELECT lower(name) FROM orders", refusedDefault, "public.lower(text)"},
		{"SELECT made_later()", refusedUnknownFunction, "made_later"},
		{"SELECT count(*) FROM orders", "", ""},
	} {
		t.Run(c.sql, func(t *testing.T) {
			s, _, _ := newVerdictSession(t)
			s.insp.meta = &dbMeta{funcs: testFuncCatalog()}
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
			if it == nil || it.kind != itDenied || !strings.Contains(it.denial.Message, c.says) {
				t.Fatalf("the client's error does not name %q: %+v", c.says, it)
			}
		})
	}
	s, _, _ := newVerdictSession(t)
	s.insp.meta = &dbMeta{funcs: testFuncCatalog()}
	for sql, writes := range map[string]bool{"SELECT lower('x')": true, "SELECT * FROM purge_view": true,
		"SELECT pg_catalog.lower('x')": false, "SELECT * FROM totals": false} {
		sts, err := sqlclass.Classify(sql)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.callsWritingFunction(sts); got != writes {
			t.Errorf("%s: calls a writing function %t, want %t", sql, got, writes)
		}
	}
}

// functionKeys returns the keys (schema.name(args)) of fns, sorted, for comparing a resolution with
// what a test wants.
func functionKeys(fns []authz.Function) []string {
	var keys []string
	for _, f := range fns {
		keys = append(keys, functionKey(f.Schema, f.Name, f.Arguments))
	}
	slices.Sort(keys)
	return keys
}

// queryRecord runs sql as a simple query on s and returns the record of the statement, run or refused,
// failing the test when there is none.
func queryRecord(t *testing.T, s *session, sql string) *audit.Record {
	t.Helper()
	sink := &recordingSink{}
	s.rec = recorder{sink: sink, session: "s1", target: "shop"}
	if err := s.onQuery(&pgproto3.Query{String: sql}); err != nil {
		t.Fatal(err)
	}
	var rec *audit.Record
	for i := range sink.recs {
		if k := sink.recs[i].Kind; k == audit.KindStatement || k == audit.KindDenied {
			rec = &sink.recs[i]
		}
	}
	if rec == nil {
		t.Fatal("no statement record")
	}
	return rec
}

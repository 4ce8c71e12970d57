package postgres

import (
	"strings"
	"testing"

	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/plugins/protocol/postgres/sqlclass"
)

// testViewDefs are views as pg_get_viewdef gives them (PostgreSQL 15): over pg_stat_activity, over
// that view, over pg_stat_get_activity, calling an advisory lock and a sequence, and a plain one.
var testViewDefs = map[string]string{
	"public.active_queries": "SELECT pg_stat_activity.pid,\n    pg_stat_activity.query\n   FROM pg_stat_activity;",
	"public.over_active":    "SELECT active_queries.pid,\n    active_queries.query\n   FROM active_queries;",
	"public.actf":           "SELECT pg_stat_get_activity.pid,\n    pg_stat_get_activity.query\n   FROM pg_stat_get_activity(NULL::integer) pg_stat_get_activity(datid, pid, query);",
	"public.lockv":          "SELECT pg_try_advisory_lock((1)::bigint) AS pg_try_advisory_lock;",
	"public.seqv":           "SELECT nextval('s'::regclass) AS nextval;",
	"public.plain":          "SELECT customers.id\n   FROM customers;",
	"public.broken":         "SELECT FROM WHERE;",
}

// TestViewsAreWhatTheirQueriesDo: a view whose query the classifier makes admin (a statistics view,
// a function that returns another session's statements), a lock or a sequence write makes reading it
// that, through other views too, naming the view; a view that only reads stays a read, and a query
// the broker cannot read is admin.
func TestViewsAreWhatTheirQueriesDo(t *testing.T) {
	kinds := classifyViews(testViewDefs, sqlclass.Classify)
	for view, want := range map[string]string{
		"public.active_queries": sqlclass.KindAdmin, "public.over_active": sqlclass.KindAdmin, "public.actf": sqlclass.KindAdmin,
		"public.lockv": sqlclass.KindLock, "public.seqv": sqlclass.KindUpdate, "public.broken": sqlclass.KindAdmin,
		"public.plain": "",
	} {
		if got := kinds[view].kind; got != want {
			t.Errorf("%s: kind %q, want %q", view, got, want)
		}
	}
	if r := strings.Join(kinds["public.over_active"].reasons, "; "); !strings.Contains(r, "view public.active_queries") || !strings.Contains(r, "pg_stat_activity") {
		t.Errorf("over_active's reasons do not say which view does what: %q", r)
	}
	fc := &funcCatalog{viewKinds: kinds}
	for sql, want := range map[string]string{
		"SELECT query FROM active_queries":                              sqlclass.KindAdmin,
		"SELECT * FROM orders o JOIN over_active a ON true":             sqlclass.KindAdmin,
		"SELECT * FROM lockv":                                           sqlclass.KindLock,
		"SELECT * FROM public.seqv":                                     sqlclass.KindUpdate,
		"SELECT * FROM plain":                                           sqlclass.KindSelect,
		"SELECT * FROM orders":                                          sqlclass.KindSelect,
		"UPDATE orders SET total = 1 WHERE id IN (SELECT 1 FROM lockv)": sqlclass.KindUpdate,
	} {
		sts, err := sqlclass.Classify(sql)
		if err != nil {
			t.Fatal(err)
		}
		if got := fc.throughViews(sts[0]); got.Kind != want {
			t.Errorf("%s: kind %q, want %q", sql, got.Kind, want)
		}
		if sts[0].Kind == sqlclass.KindAdmin {
			t.Errorf("%s: the shared classification was modified", sql)
		}
	}
}

// TestReadingAnAdminViewIsRefused: a read-only caller reading a view over pg_stat_activity is refused
// as an admin action, told which view does what; reading a plain view runs.
func TestReadingAnAdminViewIsRefused(t *testing.T) {
	s, _, _ := newVerdictSession(t)
	s.insp.meta = &dbMeta{funcs: &funcCatalog{viewKinds: classifyViews(testViewDefs, sqlclass.Classify)}}
	for sql, refused := range map[string]bool{"SELECT query FROM active_queries": true, "SELECT * FROM lockv": true, "SELECT id FROM plain": false} {
		sts, resp := s.classify(sql)
		if resp != nil {
			t.Fatalf("%s: %s", sql, resp.Message)
		}
		_, _, _, r := s.decideAndPlan(sql, sts, authz.ApprovalState{}, false)
		switch {
		case !refused && r != nil:
			t.Errorf("%s: refused: %s", sql, r.resp.Message)
		case refused && r == nil:
			t.Errorf("%s: allowed", sql)
		case refused && sql == "SELECT query FROM active_queries" && !strings.Contains(r.resp.Message, "view public.active_queries"):
			t.Errorf("%s: the error does not name the view: %s", sql, r.resp.Message)
		}
	}
}

// FuzzViewKinds: classifying any set of view queries, reading each other or themselves, ends, and marks
// views only with kinds the classifier gives, never as a plain read.
func FuzzViewKinds(f *testing.F) {
	for _, d := range testViewDefs {
		f.Add(d, "SELECT * FROM v1;")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		kinds := classifyViews(map[string]string{"public.v1": a, "public.v2": b}, sqlclass.Classify)
		for name, k := range kinds {
			switch k.kind {
			case sqlclass.KindAdmin, sqlclass.KindLock, sqlclass.KindUpdate, sqlclass.KindDDL, sqlclass.KindInsert, sqlclass.KindDelete, sqlclass.KindUtility, sqlclass.KindTransaction:
			default:
				t.Fatalf("%s: kind %q", name, k.kind)
			}
		}
	})
}

package postgres

import (
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/svidbroker/svidbroker/plugins/protocol/postgres/sqlclass"
)

// A view is what its query does, for whoever reads it: the functions it calls run as the reader, and
// the statistics views it reads show what they show the reader. A database's own view over
// pg_stat_activity, or one that calls pg_advisory_lock, set_config or pg_read_file, would otherwise
// pass as a read of a table while doing what the classifier refuses when it is written out. So the
// broker classifies each view's query (pg_get_viewdef) when the session begins, and a statement that
// reads a view takes the view's kind when that is more than a read: admin, with the view's reasons, or
// a lock or a sequence write.

// viewKind is what reading one view does beyond a read.
type viewKind struct {
	kind    string   // sqlclass's kind of the view's query: KindAdmin, KindLock or KindUpdate
	reasons []string // for KindAdmin: why
}

// viewDefsSQL lists the views outside the system schemas, with their queries.
const viewDefsSQL = `SELECT n.nspname || '.' || c.relname, pg_catalog.pg_get_viewdef(c.oid)
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'v' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
LIMIT 100001`

// classifier classifies a query: sqlclass.Classify, or an engine's cache of it, which a session's
// view definitions go through as its statements do (each session reads every view's definition, and
// they seldom change).
type classifier func(sql string) ([]sqlclass.Statement, error)

// readViewKinds classifies the database's views, from res (viewDefsSQL), into fc.viewKinds.
func (fc *funcCatalog) readViewKinds(res *pgconn.Result, classify classifier) error {
	if len(res.Rows) > maxFunctions {
		return fmt.Errorf("postgres: the database defines more than %d views, more than the broker reads", maxFunctions)
	}
	defs := make(map[string]string, len(res.Rows))
	for _, row := range res.Rows {
		defs[string(row[0])] = string(row[1])
	}
	fc.viewKinds = classifyViews(defs, classify)
	return nil
}

// classifyViews returns the kinds of the views (by "schema.name") whose queries, defs, do more than
// read, directly or through the views they read. A query the classifier cannot read is admin.
func classifyViews(defs map[string]string, classify classifier) map[string]viewKind {
	out := map[string]viewKind{}
	reads := map[string][]string{} // view -> the relations its query reads
	for name, def := range defs {
		sts, err := classify(def)
		if err != nil || len(sts) != 1 {
			out[name] = viewKind{kind: sqlclass.KindAdmin, reasons: []string{"view " + name + ", whose query the broker cannot read"}}
			continue
		}
		st := sts[0]
		reads[name] = st.Tables()
		switch st.Kind {
		case sqlclass.KindSelect:
		case sqlclass.KindAdmin:
			out[name] = viewKind{kind: st.Kind, reasons: viewReasons(name, st.AdminReasons)}
		default:
			out[name] = viewKind{kind: st.Kind}
		}
	}
	// A view over such a view does what it does: widen until nothing changes (each pass adds a view,
	// or stops).
	for changed := true; changed; {
		changed = false
		for name, tables := range reads {
			for _, t := range tables {
				k, ok := out[t]
				if !ok || t == name {
					continue
				}
				if have, ok := out[name]; !ok || have.kind != sqlclass.KindAdmin && k.kind == sqlclass.KindAdmin {
					out[name] = viewKind{kind: k.kind, reasons: viewReasons(name, k.reasons)}
					changed = true
				}
			}
		}
	}
	return out
}

func viewReasons(view string, reasons []string) []string {
	out := make([]string, 0, len(reasons))
	for _, r := range reasons {
		if strings.HasPrefix(r, "view ") {
			out = append(out, r) // already says which view
			continue
		}
		out = append(out, "view "+view+" runs "+r)
	}
	return out
}

// throughViews returns st as reading its views makes it: of the kind of a view it reads when that is
// admin, or more than st's own read. st itself, shared by the classification cache, is not modified.
func (fc *funcCatalog) throughViews(st sqlclass.Statement) sqlclass.Statement {
	if fc == nil || len(fc.viewKinds) == 0 {
		return st
	}
	for _, a := range st.Accesses {
		k, ok := fc.viewKinds[a.Table]
		if !ok {
			continue
		}
		switch {
		case k.kind == sqlclass.KindAdmin:
			st.Kind = sqlclass.KindAdmin
			reasons := slices.Clone(st.AdminReasons)
			for _, r := range k.reasons {
				if !slices.Contains(reasons, r) {
					reasons = append(reasons, r)
				}
			}
			st.AdminReasons = reasons
		case st.Kind == sqlclass.KindSelect:
			st.Kind = k.kind
		}
	}
	return st
}

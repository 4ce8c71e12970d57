package sqlclass

import (
	"fmt"
	"slices"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Functions behind refused views. The statistics views the classifier refuses (statisticsRelations)
// are views over functions: pg_stat_activity is pg_stat_get_activity(NULL) joined to two catalogs, and
// pg_stats_ext decodes its sampled values with pg_mcv_list_items. Calling those functions directly gives
// the same rows, so they are refused with the views. The set is the functions the views' definitions
// take rows from (see ViewFunctions), less those on the read-only list (which compute from their
// arguments alone, as unnest does): blockedviews_gen.go holds it, derived from PostgreSQL 15's
// definitions, and the e2e test TestBlockedViewFunctionsAreTheServers derives it again from the test
// cluster's pg_get_viewdef and fails, printing the table, when the server's views differ.
//
// The table is built in rather than derived at each session's start: the views are the server's own,
// fixed by its major version, and the classifier needs the set before any session (the cache shares
// classifications across sessions and targets). A server whose views differ fails that test, which
// prints the table to build in.
//
// Functions that show other sessions' statements outside those views are listed by hand in
// otherSessionsFunctions.

// RefusedRelations are the statistics relations the classifier refuses by name (tables and views).
func RefusedRelations() []string { return slices.Clone(statisticsRelations) }

// BlockedViews are the refused relations that are views.
func BlockedViews() []string {
	var out []string
	for _, r := range statisticsRelations {
		if _, ok := blockedViewCalls[r]; ok {
			out = append(out, r)
		}
	}
	return out
}

// BlockedViewFunctions returns, by view, the functions refused because the view takes rows from them.
func BlockedViewFunctions() map[string][]string {
	out := map[string][]string{}
	for v, fs := range blockedViewCalls {
		out[v] = slices.Clone(fs)
	}
	return out
}

// ViewFunctions returns the functions a view's definition (the SELECT pg_get_viewdef gives) takes
// rows from, in a FROM clause at any depth, that are not on the read-only list: by their last name
// part, lower case, sorted. Functions it calls elsewhere (privilege checks in WHERE, the owner's name
// in the target list) return no rows of the view.
func ViewFunctions(def string) ([]string, error) {
	tree, err := pg.Parse(def)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrParse, err)
	}
	var out []string
	var visit func(m protoreflect.Message, inRange bool)
	visit = func(m protoreflect.Message, inRange bool) {
		switch n := m.Interface().(type) {
		case *pg.RangeFunction:
			inRange = true
		case *pg.FuncCall:
			if len(n.Funcname) > 0 {
				name := strings.ToLower(n.Funcname[len(n.Funcname)-1].GetString_().GetSval())
				if inRange && !ReadOnlyFunction(name) && !slices.Contains(out, name) {
					out = append(out, name)
				}
			}
			inRange = false // its arguments are values, not rows
		case *pg.SelectStmt:
			inRange = false // a subquery's own FROM clause says what it takes rows from
		}
		eachChild(m, func(c protoreflect.Message) { visit(c, inRange) })
	}
	for _, st := range tree.Stmts {
		visit(st.ProtoReflect(), false)
	}
	slices.Sort(out)
	return out, nil
}

// otherSessionsFunctions return another session's current statement by backend number, as
// pg_stat_activity's query column does.
var otherSessionsFunctions = []string{"pg_stat_get_backend_activity"}

// blockedViewFunctions maps each refused function to the view whose rows it returns.
var blockedViewFunctions = func() map[string]string {
	m := map[string]string{}
	for _, v := range BlockedViews() {
		for _, f := range blockedViewCalls[v] {
			if _, ok := m[f]; !ok {
				m[f] = v
			}
		}
	}
	for _, f := range otherSessionsFunctions {
		m[f] = "pg_stat_activity"
	}
	return m
}()

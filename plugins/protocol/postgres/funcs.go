package postgres

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/plugins/protocol/postgres/sqlclass"
)

// funcCatalog is what a session's backend says about functions when the session begins: every
// function defined outside pg_catalog and information_schema (its volatility, SECURITY DEFINER, language
// and owner), the names of the system schemas' functions, and the schemas an unqualified name is looked
// up in (search_path, as current_schemas(true) resolves it). A statement's calls are resolved by name,
// as the parse tree gives them; an unqualified name may resolve to a function of any schema on the
// path, since the server picks among overloads by argument types, which the broker does not know, so
// every such candidate is decided. search_path cannot change within a session: SET search_path and
// set_config are admin actions.
type funcCatalog struct {
	path    []string                    // schemas on the search path, in order
	byName  map[string][]authz.Function // database functions by name
	builtin map[string]bool             // names of pg_catalog's and information_schema's functions
	// views are the database functions each view ("schema.name") runs when read, directly or through
	// the views it reads.
	views map[string][]authz.Function
	// operators are the operators implemented by database functions, by name, and operatorNames the
	// names of all operators (funcops.go).
	operators     map[string][]dbOperator
	operatorNames map[string]bool
	// viewKinds are the views ("schema.name") whose reading does more than read (viewkinds.go).
	viewKinds map[string]viewKind
	// typeCalls are the database functions casts to a type run, by type name (typecalls.go).
	typeCalls map[string][]typeCall
	// support are the database support functions of aggregates, by the aggregate's functionKey
	// (aggcalls.go).
	support map[string][]authz.Function
}

// maxFunctions bounds the database functions, and the built-in names, a session reads.
const maxFunctions = 100000

const funcCatalogSQL = `SELECT n.nspname, p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid), p.provolatile,
  p.prosecdef::text, l.lanname, pg_catalog.pg_get_userbyid(p.proowner)
FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
JOIN pg_catalog.pg_language l ON l.oid = p.prolang
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND p.prokind <> 'p'
LIMIT 100001`

const builtinNamesSQL = `SELECT DISTINCT p.proname FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname IN ('pg_catalog', 'information_schema')
LIMIT 100001`

// viewCallsSQL lists, for each view, the database functions its rules call, directly or through the
// views it reads (recursively).
const viewCallsSQL = `WITH RECURSIVE calls(view, fn) AS (
  SELECT r.ev_class, d.refobjid FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid
  WHERE d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.refclassid = 'pg_catalog.pg_proc'::regclass
  UNION
  SELECT r.ev_class, c.fn FROM calls c
  JOIN pg_catalog.pg_depend d ON d.refobjid = c.view AND d.refclassid = 'pg_catalog.pg_class'::regclass
    AND d.classid = 'pg_catalog.pg_rewrite'::regclass
  JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid
  WHERE r.ev_class <> c.view)
SELECT vn.nspname || '.' || v.relname, n.nspname, p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid)
FROM calls c
JOIN pg_catalog.pg_class v ON v.oid = c.view
JOIN pg_catalog.pg_namespace vn ON vn.oid = v.relnamespace
JOIN pg_catalog.pg_proc p ON p.oid = c.fn
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE v.relkind = 'v' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
LIMIT 100001`

const searchPathSQL = `SELECT s FROM pg_catalog.unnest(pg_catalog.current_schemas(true)) WITH ORDINALITY AS u(s, i) ORDER BY i`

// funcCatalogQueries are the queries a function catalog is read from (newFuncCatalog), in the order
// it takes their results.
func funcCatalogQueries() []catalogQuery {
	return []catalogQuery{
		{sql: funcCatalogSQL, what: "reading the database's functions"},
		{sql: builtinNamesSQL, what: "reading the built-in functions' names"},
		{sql: viewCallsSQL, what: "reading the functions views call"},
		{sql: operatorNamesSQL, what: "reading the database's operators"},
		{sql: operatorsSQL, what: "reading the database's operators"},
		{sql: viewDefsSQL, what: "reading the database's views"},
		{sql: typeCallsSQL, what: "reading the functions of casts and domains"},
		{sql: aggregateSupportSQL, what: "reading the aggregates' support functions"},
		{sql: searchPathSQL, what: "reading search_path"},
	}
}

// newFuncCatalog builds the function catalog from the results of funcCatalogQueries, read on the
// backend connection before it is handed over. A failure refuses the session: calls could not be
// decided without it.
func newFuncCatalog(res []*pgconn.Result, classify classifier) (*funcCatalog, error) {
	if len(res) != len(funcCatalogQueries()) {
		return nil, fmt.Errorf("postgres: reading the function catalog: %d results to %d queries", len(res), len(funcCatalogQueries()))
	}
	fc := &funcCatalog{byName: map[string][]authz.Function{}, builtin: map[string]bool{}}
	if len(res[0].Rows) > maxFunctions {
		return nil, fmt.Errorf("postgres: the database defines more than %d functions, more than the broker reads", maxFunctions)
	}
	for _, row := range res[0].Rows {
		f := authz.Function{Schema: string(row[0]), Name: string(row[1]), Arguments: string(row[2]),
			SecurityDefiner: string(row[4]) == "true", Language: string(row[5]), Owner: string(row[6])}
		switch string(row[3]) {
		case "i":
			f.Volatility = "immutable"
		case "s":
			f.Volatility = "stable"
		default:
			f.Volatility = "volatile"
		}
		fc.byName[f.Name] = append(fc.byName[f.Name], f)
	}
	if len(res[1].Rows) > maxFunctions {
		return nil, fmt.Errorf("postgres: more than %d built-in function names", maxFunctions)
	}
	for _, row := range res[1].Rows {
		fc.builtin[string(row[0])] = true
	}
	if len(res[2].Rows) > maxFunctions {
		return nil, fmt.Errorf("postgres: views call more than %d functions", maxFunctions)
	}
	for _, row := range res[2].Rows {
		view, schema, name, args := string(row[0]), string(row[1]), string(row[2]), string(row[3])
		for _, f := range fc.exact(schema, name, args) {
			if fc.views == nil {
				fc.views = map[string][]authz.Function{}
			}
			fc.views[view] = appendNew(fc.views[view], []authz.Function{f})
		}
	}
	if err := fc.readOperators(res[3], res[4]); err != nil {
		return nil, err
	}
	if err := fc.readViewKinds(res[5], classify); err != nil {
		return nil, err
	}
	if err := fc.readTypeCalls(res[6]); err != nil {
		return nil, err
	}
	if err := fc.readAggregateSupport(res[7]); err != nil {
		return nil, err
	}
	for _, row := range res[8].Rows {
		fc.path = append(fc.path, string(row[0]))
	}
	if err := checkSearchPath(fc.path); err != nil {
		return nil, err
	}
	return fc, nil
}

// exact returns the database functions of the catalog with this schema, name and identity arguments,
// as the catalog queries name the function a view, operator, cast or aggregate calls.
func (fc *funcCatalog) exact(schema, name, args string) []authz.Function {
	var out []authz.Function
	for _, f := range fc.byName[name] {
		if f.Schema == schema && f.Arguments == args {
			out = append(out, f)
		}
	}
	return out
}

// errUnknownFunction refuses a call the catalog cannot resolve; refusedUnknownFunction says so in the
// audit log.
var errUnknownFunction = errors.New("unknown function")

const refusedUnknownFunction = "it calls a function the database did not have when the session began"

// resolve returns the database functions a call of name (as sqlclass gives it: its parts joined by
// ".") may run. A quoted part may itself hold a dot, so every reading of the name is tried. known is
// false when no reading names a function the session's catalog has, database or built-in: one made
// since the session began, or none at all.
func (fc *funcCatalog) resolve(name string) (fns []authz.Function, known bool) {
	add := func(schema, fn string) {
		for _, f := range fc.byName[fn] {
			if (schema == "" && slices.Contains(fc.path, f.Schema) || f.Schema == schema) && !slices.Contains(fns, f) {
				fns = append(fns, f)
			}
		}
		if fc.builtin[fn] && (schema == "" || schema == "pg_catalog" || schema == "information_schema") {
			known = true
		}
	}
	add("", name)
	parts := strings.Split(name, ".")
	for i := 1; i < len(parts); i++ {
		fn := strings.Join(parts[i:], ".")
		add(strings.Join(parts[:i], "."), fn)
		if i >= 2 {
			add(strings.Join(parts[1:i], "."), fn) // database.schema.name
		}
	}
	return fns, known || len(fns) > 0
}

// calls returns the database functions st may call: by its calls, by the names it may call in
// attribute notation (rel.name), which are calls only when such a function exists, and by the views it
// reads, whose rules call them. A call that resolves to nothing the catalog knows is an error naming
// it.
func (fc *funcCatalog) calls(st sqlclass.Statement) ([]authz.Function, error) {
	var out []authz.Function
	for _, name := range st.Functions {
		fns, known := fc.resolve(name)
		if !known {
			return nil, fmt.Errorf("call of function %s denied: %w: the database had no function of that name when the session began (reconnect if it was created since)", name, errUnknownFunction)
		}
		out = appendNew(out, fns)
	}
	for _, name := range st.PossibleFunctions {
		fns, _ := fc.resolve(name)
		out = appendNew(out, fns)
	}
	for _, a := range st.Accesses {
		out = appendNew(out, fc.views[a.Table])
	}
	for _, op := range st.Operators {
		fns, known := fc.operatorCalls(op)
		if !known {
			return nil, fmt.Errorf("use of operator %s denied: %w: the database had no operator of that name when the session began (reconnect if it was created since)", op, errUnknownFunction)
		}
		out = appendNew(out, fns)
	}
	for _, typ := range st.Types {
		out = appendNew(out, fc.typeFunctions(typ))
	}
	return fc.withSupport(out), nil
}

func appendNew(out, fns []authz.Function) []authz.Function {
	for _, f := range fns {
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out
}

// decideFunctions decides the database functions st may call, after its own decision d allowed it.
func (s *session) decideFunctions(st sqlclass.Statement, ast authz.Statement, ap authz.ApprovalState, d authz.Decision) (authz.Decision, error) {
	fc := s.insp.funcs()
	if fc == nil || len(st.Functions) == 0 && len(st.PossibleFunctions) == 0 && len(fc.views) == 0 && len(st.Operators) == 0 && len(fc.typeCalls) == 0 {
		return d, nil
	}
	fns, err := fc.calls(st)
	if err != nil {
		return authz.Decision{}, err
	}
	return s.insp.authz.Functions(s.insp.connect, ast, fns, ap, d, &s.memo)
}

// callsWritingFunction reports whether a statement of sts may call a database function that writes
// (volatile or SECURITY DEFINER): its effect is then a change, whatever the classifier, which knows
// only built-in names, made of it.
func (s *session) callsWritingFunction(sts []sqlclass.Statement) bool {
	fc := s.insp.funcs()
	if fc == nil {
		return false
	}
	for _, st := range sts {
		fns, err := fc.calls(st)
		if err != nil {
			return true
		}
		for _, f := range fns {
			if f.Writes() {
				return true
			}
		}
	}
	return false
}

// funcs is the session's function catalog, nil without one (a target without policies).
func (i *inspection) funcs() *funcCatalog {
	if i.meta == nil {
		return nil
	}
	return i.meta.funcs
}

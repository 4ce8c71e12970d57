package postgres

import (
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/plugins/protocol/postgres/sqlclass"
)

// typeCall is a database function that runs when a value is cast to a type: the type's schema and the
// function.
type typeCall struct {
	schema string
	fn     authz.Function
}

// typeCallsSQL lists, by type, the functions outside the system schemas that a value cast to it runs:
// a cast's function (by its target type) and a domain's CHECK constraints, a domain over a domain
// running its base's as well.
const typeCallsSQL = `WITH RECURSIVE dom(typ, base) AS (
  SELECT t.oid, t.oid FROM pg_catalog.pg_type t WHERE t.typtype = 'd'
  UNION
  SELECT dom.typ, t.typbasetype FROM dom JOIN pg_catalog.pg_type t ON t.oid = dom.base WHERE t.typtype = 'd' AND t.typbasetype <> 0
), runs(typ, fn) AS (
  SELECT dom.typ, d.refobjid FROM dom
  JOIN pg_catalog.pg_constraint con ON con.contypid = dom.base
  JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_constraint'::regclass AND d.objid = con.oid
    AND d.refclassid = 'pg_catalog.pg_proc'::regclass
  UNION
  SELECT c.casttarget, c.castfunc FROM pg_catalog.pg_cast c WHERE c.castfunc <> 0
)
SELECT tn.nspname, t.typname, n.nspname, p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid)
FROM runs
JOIN pg_catalog.pg_type t ON t.oid = runs.typ
JOIN pg_catalog.pg_namespace tn ON tn.oid = t.typnamespace
JOIN pg_catalog.pg_proc p ON p.oid = runs.fn
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
LIMIT 100001`

// readTypeCalls reads into fc the database functions casts to each type run, from res (typeCallsSQL).
func (fc *funcCatalog) readTypeCalls(res *pgconn.Result) error {
	if len(res.Rows) > maxFunctions {
		return fmt.Errorf("postgres: casts and domains run more than %d functions", maxFunctions)
	}
	for _, row := range res.Rows {
		typSchema, typ, schema, name, args := string(row[0]), string(row[1]), string(row[2]), string(row[3]), string(row[4])
		for _, f := range fc.exact(schema, name, args) {
			if fc.typeCalls == nil {
				fc.typeCalls = map[string][]typeCall{}
			}
			fc.typeCalls[typ] = append(fc.typeCalls[typ], typeCall{schema: typSchema, fn: f})
		}
	}
	return nil
}

// typeFunctions returns the database functions a cast to typ (as sqlclass gives it: "name",
// "schema.name", AnyType) may run. An unqualified type is one of the schemas on the path (or the
// session's temporary schema, which the server searches for types first).
func (fc *funcCatalog) typeFunctions(typ string) []authz.Function {
	var out []authz.Function
	if typ == sqlclass.AnyType {
		for _, calls := range fc.typeCalls {
			for _, c := range calls {
				out = appendNew(out, []authz.Function{c.fn})
			}
		}
		return out
	}
	schema, typ := splitSchema(typ)
	for _, c := range fc.typeCalls[typ] {
		onPath := slices.Contains(fc.path, c.schema) || strings.HasPrefix(c.schema, "pg_temp_")
		if schema == "" && onPath || c.schema == schema {
			out = appendNew(out, []authz.Function{c.fn})
		}
	}
	return out
}

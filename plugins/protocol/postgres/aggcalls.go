package postgres

import (
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/svidbroker/svidbroker/broker/authz"
)

// An aggregate's own catalog entry says little: PostgreSQL records every aggregate as immutable and not
// SECURITY DEFINER, whatever its support functions are. Calling it calls them (its state transition,
// final, combine, serialization and moving-aggregate functions), so a call of an aggregate is also a
// call of each support function the database defines, decided with their own attributes.

// aggregateSupportSQL lists the support functions outside the system schemas of every aggregate.
const aggregateSupportSQL = `SELECT an.nspname, a.proname, pg_catalog.pg_get_function_identity_arguments(a.oid),
  sn.nspname, s.proname, pg_catalog.pg_get_function_identity_arguments(s.oid)
FROM pg_catalog.pg_aggregate g
JOIN pg_catalog.pg_proc a ON a.oid = g.aggfnoid
JOIN pg_catalog.pg_namespace an ON an.oid = a.pronamespace
JOIN pg_catalog.pg_proc s ON s.oid IN (g.aggtransfn::oid, g.aggfinalfn::oid, g.aggcombinefn::oid, g.aggserialfn::oid,
  g.aggdeserialfn::oid, g.aggmtransfn::oid, g.aggminvtransfn::oid, g.aggmfinalfn::oid)
JOIN pg_catalog.pg_namespace sn ON sn.oid = s.pronamespace
WHERE sn.nspname NOT IN ('pg_catalog', 'information_schema')
LIMIT 100001`

func functionKey(schema, name, args string) string { return schema + "." + name + "(" + args + ")" }

// readAggregateSupport reads into fc the database support functions of each aggregate, from res
// (aggregateSupportSQL).
func (fc *funcCatalog) readAggregateSupport(res *pgconn.Result) error {
	if len(res.Rows) > maxFunctions {
		return fmt.Errorf("postgres: aggregates have more than %d support functions", maxFunctions)
	}
	for _, row := range res.Rows {
		agg := functionKey(string(row[0]), string(row[1]), string(row[2]))
		schema, name, args := string(row[3]), string(row[4]), string(row[5])
		for _, f := range fc.exact(schema, name, args) {
			if fc.support == nil {
				fc.support = map[string][]authz.Function{}
			}
			fc.support[agg] = appendNew(fc.support[agg], []authz.Function{f})
		}
	}
	return nil
}

// withSupport returns fns with the support functions of the aggregates among them.
func (fc *funcCatalog) withSupport(fns []authz.Function) []authz.Function {
	if len(fc.support) == 0 {
		return fns
	}
	out := fns
	for _, f := range fns {
		out = appendNew(out, fc.support[functionKey(f.Schema, f.Name, f.Arguments)])
	}
	return out
}

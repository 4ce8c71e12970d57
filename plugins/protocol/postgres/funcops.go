package postgres

import (
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/plugins/protocol/postgres/sqlclass"
)

// dbOperator is an operator whose function the database defines: using the operator calls it.
type dbOperator struct {
	schema string // the operator's schema
	fn     authz.Function
}

// operatorsSQL lists the operators, of any schema, implemented by a function outside pg_catalog and
// information_schema.
const operatorsSQL = `SELECT n.nspname, o.oprname, pn.nspname, p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid)
FROM pg_catalog.pg_operator o
JOIN pg_catalog.pg_namespace n ON n.oid = o.oprnamespace
JOIN pg_catalog.pg_proc p ON p.oid = o.oprcode
JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace
WHERE pn.nspname NOT IN ('pg_catalog', 'information_schema')
LIMIT 100001`

// operatorNamesSQL lists the names of every operator, built-in or not.
const operatorNamesSQL = `SELECT DISTINCT oprname FROM pg_catalog.pg_operator LIMIT 100001`

// readOperators reads into fc the operators backed by the database's functions (fc.byName), from
// ops (operatorsSQL), and the names of all operators, from names (operatorNamesSQL).
func (fc *funcCatalog) readOperators(names, ops *pgconn.Result) error {
	res := names
	if len(res.Rows) > maxFunctions {
		return fmt.Errorf("postgres: more than %d operator names", maxFunctions)
	}
	for _, row := range res.Rows {
		if fc.operatorNames == nil {
			fc.operatorNames = map[string]bool{}
		}
		fc.operatorNames[string(row[0])] = true
	}
	res = ops
	if len(res.Rows) > maxFunctions {
		return fmt.Errorf("postgres: more than %d operators run database functions", maxFunctions)
	}
	for _, row := range res.Rows {
		opSchema, op, schema, name, args := string(row[0]), string(row[1]), string(row[2]), string(row[3]), string(row[4])
		for _, f := range fc.exact(schema, name, args) {
			if fc.operators == nil {
				fc.operators = map[string][]dbOperator{}
			}
			fc.operators[op] = append(fc.operators[op], dbOperator{schema: opSchema, fn: f})
		}
	}
	return nil
}

// splitSchema splits a name as sqlclass gives an operator or type ("name", "schema.name" or
// "database.schema.name") into its schema ("" when unqualified) and its last part.
func splitSchema(qualified string) (schema, name string) {
	i := strings.LastIndexByte(qualified, '.')
	if i < 0 {
		return "", qualified
	}
	schema, name = qualified[:i], qualified[i+1:]
	if j := strings.IndexByte(schema, '.'); j >= 0 {
		schema = schema[j+1:] // database.schema
	}
	return schema, name
}

// operatorCalls returns the database functions the use of operator op (as sqlclass gives it: "op", or
// "schema.op") may call. An unqualified operator may be one of any schema on the path, since the server
// picks among them by operand types, which the broker does not know. AnyOperator may be any of them.
// known is false for an operator name the session's catalog did not have (one made since it began,
// whose function the broker could not decide), when it read the names at all.
func (fc *funcCatalog) operatorCalls(op string) (out []authz.Function, known bool) {
	if op == sqlclass.AnyOperator {
		for _, ops := range fc.operators {
			for _, o := range ops {
				out = appendNew(out, []authz.Function{o.fn})
			}
		}
		return out, true
	}
	schema, op := splitSchema(op)
	for _, o := range fc.operators[op] {
		if schema == "" && slices.Contains(fc.path, o.schema) || o.schema == schema {
			out = appendNew(out, []authz.Function{o.fn})
		}
	}
	return out, fc.operatorNames == nil || fc.operatorNames[op]
}

package sqlclass

import (
	"slices"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// An operator is a call of the function behind it. The broker decides calls of the database's own
// functions by name, and an operator the database defines (CREATE OPERATOR === (FUNCTION = f)) runs
// such a function under a name that is no function's: operatorNames gives the operators a statement
// names, so that the broker can decide the functions behind them as calls.

// AnyOperator stands for every operator, in a statement whose operators the broker could not list.
const AnyOperator = "*"

// maxOperatorDepth bounds the walk over a statement's tree; a tree deeper than this (which the
// classifier refuses anyway) names AnyOperator.
const maxOperatorDepth = 8 * MaxDepth

// operatorNames returns the operators n names, as written ("op", or "schema.op" for OPERATOR(schema.op)),
// including those a construct applies without naming them: = for IN, IS DISTINCT FROM, NULLIF, a CASE
// with an operand and a join's USING or NATURAL columns; <= and >= (or < and >) for BETWEEN.
func operatorNames(n *pg.Node) []string {
	var out []string
	add := func(names ...string) {
		for _, name := range names {
			if !slices.Contains(out, name) {
				out = append(out, name)
			}
		}
	}
	qualified := func(parts []*pg.Node) {
		if len(parts) > 0 {
			add(dotted(parts))
		}
	}
	var visit func(m protoreflect.Message, depth int)
	visit = func(m protoreflect.Message, depth int) {
		if depth > maxOperatorDepth {
			add(AnyOperator)
			return
		}
		switch v := m.Interface().(type) {
		case *pg.A_Expr:
			switch v.Kind {
			case pg.A_Expr_Kind_AEXPR_BETWEEN, pg.A_Expr_Kind_AEXPR_BETWEEN_SYM:
				add("<=", ">=")
			case pg.A_Expr_Kind_AEXPR_NOT_BETWEEN, pg.A_Expr_Kind_AEXPR_NOT_BETWEEN_SYM:
				add("<", ">")
			default:
				qualified(v.Name)
			}
		case *pg.SortBy:
			qualified(v.UseOp)
		case *pg.SubLink:
			qualified(v.OperName)
		case *pg.CaseExpr:
			if v.Arg != nil {
				add("=")
			}
		case *pg.JoinExpr:
			if len(v.UsingClause) > 0 || v.IsNatural {
				add("=")
			}
		}
		eachChild(m, func(c protoreflect.Message) { visit(c, depth+1) })
	}
	visit(n.ProtoReflect(), 0)
	slices.Sort(out)
	return out
}

package sqlclass

import (
	"slices"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// A value cast to a type may run functions the database defines: the function of a cast (CREATE CAST
// ... WITH FUNCTION f), and a domain's CHECK constraints. typeNames gives the types a statement names
// (in casts, typed literals, column definition lists), so that the broker can decide those functions
// as calls.

// AnyType stands for every type, in a statement whose types the broker could not list.
const AnyType = "*"

// typeNames returns the types n names, as written ("name", "schema.name"), lower case as the parser
// gives them.
func typeNames(n *pg.Node) []string {
	var out []string
	var visit func(m protoreflect.Message, depth int)
	visit = func(m protoreflect.Message, depth int) {
		if depth > maxOperatorDepth {
			if !slices.Contains(out, AnyType) {
				out = append(out, AnyType)
			}
			return
		}
		if tn, ok := m.Interface().(*pg.TypeName); ok && len(tn.Names) > 0 {
			if name := dotted(tn.Names); !slices.Contains(out, name) {
				out = append(out, name)
			}
		}
		eachChild(m, func(c protoreflect.Message) { visit(c, depth+1) })
	}
	visit(n.ProtoReflect(), 0)
	slices.Sort(out)
	return out
}

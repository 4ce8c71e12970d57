package sqlclass

import (
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// eachChild calls fn with each message m holds in its fields, one by one and in list order: the
// step of a walk over a parse tree that looks at every node.
func eachChild(m protoreflect.Message, fn func(protoreflect.Message)) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() != protoreflect.MessageKind {
			return true
		}
		if fd.IsList() {
			l := v.List()
			for i := range l.Len() {
				fn(l.Get(i).Message())
			}
			return true
		}
		fn(v.Message())
		return true
	})
}

// dotted is a name the parser gives as a list of String nodes, joined with dots as written
// ("schema.name").
func dotted(parts []*pg.Node) string {
	s := make([]string, 0, len(parts))
	for _, p := range parts {
		s = append(s, p.GetString_().GetSval())
	}
	return strings.Join(s, ".")
}

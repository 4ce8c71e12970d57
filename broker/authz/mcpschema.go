package authz

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/cedar-policy/cedar-go"
	xast "github.com/cedar-policy/cedar-go/x/exp/ast"
)

// Limits on the tool input schemas MCPArgs is generated from.
const (
	// maxArgDepth is how deep records nest in MCPArgs: context.args.a.b.c.d at most.
	maxArgDepth = 4
	// maxArgNames bounds the attributes of MCPArgs, all levels together.
	maxArgNames = 10000
	// maxInputSchemaBytes bounds one tool's input schema.
	maxInputSchemaBytes = 1 << 20
)

// argType is the Cedar type MCPArgs gives an argument: "String", "Long", "Bool", "Set<String>", or
// "Record" with attrs.
type argType struct {
	kind     string
	attrs    map[string]*argType // kind "Record"
	nullable bool                // the schema also allows null, which leaves the argument out
	from     string              // the first tool that declared it: `tool "refund" of target "tools"`
}

// mcpArgs is MCPArgs as a tree: the top-level arguments, and the properties left out of it.
type mcpArgs struct {
	attrs   map[string]*argType
	leftOut []string // "tools/summarize .ratio: a number that may be fractional", sorted
	names   int
}

// jsonSchema is what MCPArgs reads of a JSON Schema: the type and what decides a number's integrality.
type jsonSchema struct {
	Type       json.RawMessage            `json:"type"`
	Properties map[string]json.RawMessage `json:"properties"`
	Items      json.RawMessage            `json:"items"`
	Enum       []json.RawMessage          `json:"enum"`
	Const      json.RawMessage            `json:"const"`
	MultipleOf json.Number                `json:"multipleOf"`
}

// types are the JSON types a schema names: "string" or ["integer", "null"].
func (s *jsonSchema) types() ([]string, error) {
	if len(s.Type) == 0 {
		return nil, nil
	}
	var one string
	if err := json.Unmarshal(s.Type, &one); err == nil {
		return []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(s.Type, &many); err != nil {
		return nil, fmt.Errorf("\"type\" is neither a string nor a list of strings")
	}
	return many, nil
}

// MCPArgsSchema renders the Cedar schema fragment `type MCPArgs = {...};` for the given tools' input
// schemas (target -> tool -> inputSchema): every property of every tool, each optional, typed
// String (string), Long (integer, or a number every allowed value of which is integral), Bool
// (boolean), Set<String> (array of strings), or a nested record (object with properties, at most
// maxArgDepth deep). Properties of other types are left out, and listed in a comment. A name given
// two types by two tools is an error naming both.
func MCPArgsSchema(tools map[string]map[string]json.RawMessage) (string, error) {
	args, err := buildMCPArgs(tools)
	if err != nil {
		return "", err
	}
	return args.render(), nil
}

// catalogTools gathers the input schemas of the catalog's mcp targets.
func catalogTools(c *Catalog) map[string]map[string]json.RawMessage {
	out := map[string]map[string]json.RawMessage{}
	if c == nil {
		return out
	}
	for _, t := range c.Targets {
		if len(t.ToolSchemas) > 0 {
			out[t.Name] = t.ToolSchemas
		}
	}
	return out
}

func buildMCPArgs(tools map[string]map[string]json.RawMessage) (*mcpArgs, error) {
	args := &mcpArgs{attrs: map[string]*argType{}}
	for _, target := range slices.Sorted(maps.Keys(tools)) {
		for _, tool := range slices.Sorted(maps.Keys(tools[target])) {
			from := fmt.Sprintf("tool %q of target %q", tool, target)
			raw := tools[target][tool]
			if len(raw) > maxInputSchemaBytes {
				return nil, fmt.Errorf("authz: %s: input schema larger than %d bytes", from, maxInputSchemaBytes)
			}
			var s jsonSchema
			if err := json.Unmarshal(raw, &s); err != nil {
				args.leftOut = append(args.leftOut, fmt.Sprintf("%s/%s: its input schema is not a JSON Schema object", target, tool))
				continue
			}
			typ, err := args.typeOf(&s, from, target+"/"+tool, 0)
			if err != nil {
				return nil, err
			}
			if typ == nil || typ.kind != "Record" {
				if len(s.Properties) > 0 || len(s.Type) > 0 {
					args.leftOut = append(args.leftOut, fmt.Sprintf("%s/%s: its input schema is not an object with properties", target, tool))
				}
				continue
			}
			if err := mergeAttrs(args.attrs, typ.attrs, ""); err != nil {
				return nil, err
			}
		}
	}
	slices.Sort(args.leftOut)
	return args, nil
}

// typeOf is the Cedar type of schema s at depth (0: the input schema itself), or nil when it has none;
// where names the property for the left-out list ("tools/refund .amount").
func (args *mcpArgs) typeOf(s *jsonSchema, from, where string, depth int) (*argType, error) {
	ts, err := s.types()
	if err != nil {
		args.leftOut = append(args.leftOut, where+": "+err.Error())
		return nil, nil
	}
	nullable := false
	if i := slices.Index(ts, "null"); i >= 0 && len(ts) == 2 {
		nullable, ts = true, slices.Delete(slices.Clone(ts), i, i+1)
	}
	if len(ts) != 1 {
		if depth > 0 {
			args.leftOut = append(args.leftOut, where+": no single JSON type")
		}
		return nil, nil
	}
	leave := func(why string) (*argType, error) {
		args.leftOut = append(args.leftOut, where+": "+why)
		return nil, nil
	}
	t := &argType{nullable: nullable, from: from}
	switch ts[0] {
	case "string":
		t.kind = "String"
	case "integer":
		t.kind = "Long"
	case "boolean":
		t.kind = "Bool"
	case "number":
		if !s.integral() {
			return leave("a number that may be fractional (no Cedar decimal is offered)")
		}
		t.kind = "Long"
	case "array":
		var items jsonSchema
		if len(s.Items) == 0 || json.Unmarshal(s.Items, &items) != nil {
			return leave("an array without an items schema")
		}
		its, _ := items.types()
		if !slices.Equal(its, []string{"string"}) {
			return leave("an array of other than strings")
		}
		t.kind = "Set<String>"
	case "object":
		if depth > maxArgDepth {
			return leave(fmt.Sprintf("an object nested deeper than %d levels", maxArgDepth))
		}
		if len(s.Properties) == 0 && depth > 0 {
			return leave("an object without properties")
		}
		t.kind, t.attrs = "Record", map[string]*argType{}
		for _, name := range slices.Sorted(maps.Keys(s.Properties)) {
			sub := where + " ." + name
			if !attributeName(name) {
				args.leftOut = append(args.leftOut, where+": a property whose name is not letters, digits, \"_\", \"-\" and \".\"")
				continue
			}
			if args.names++; args.names > maxArgNames {
				return nil, fmt.Errorf("authz: the tools' input schemas declare more than %d arguments", maxArgNames)
			}
			var ps jsonSchema
			if err := json.Unmarshal(s.Properties[name], &ps); err != nil {
				args.leftOut = append(args.leftOut, sub+": not a JSON Schema object")
				continue
			}
			pt, err := args.typeOf(&ps, from, sub, depth+1)
			if err != nil {
				return nil, err
			}
			if pt != nil {
				t.attrs[name] = pt
			}
		}
	default:
		return leave(fmt.Sprintf("JSON type %q", ts[0]))
	}
	return t, nil
}

// integral reports whether every number s allows is an integer: a multipleOf that is a whole
// number (not zero), or an enum or const of whole numbers only.
func (s *jsonSchema) integral() bool {
	if f, ok := parseNumber(string(s.MultipleOf)); ok && f.IsInt() && f.Sign() != 0 {
		return true
	}
	values := s.Enum
	if len(s.Const) > 0 {
		values = append(values[:len(values):len(values)], s.Const)
	}
	if len(values) == 0 {
		return false
	}
	for _, v := range values {
		if !wholeNumber(string(bytes.TrimSpace(v))) {
			return false
		}
	}
	return true
}

// wholeNumber reports whether s is a JSON number with an integral value.
func wholeNumber(s string) bool {
	f, ok := parseNumber(s)
	return ok && f.IsInt()
}

// mergeAttrs adds the attributes of src to dst; a name with another type in dst is an error naming
// both tools. at is the path of the record ("" for MCPArgs itself).
func mergeAttrs(dst, src map[string]*argType, at string) error {
	for _, name := range slices.Sorted(maps.Keys(src)) {
		s := src[name]
		d, ok := dst[name]
		if !ok {
			dst[name] = s.clone()
			continue
		}
		if d.kind != s.kind {
			return fmt.Errorf("authz: argument %q is %s in %s and %s in %s: context.args has one type per name; MCPArgs cannot hold both",
				at+name, d.kind, d.from, s.kind, s.from)
		}
		d.nullable = d.nullable || s.nullable
		if d.kind == "Record" {
			if err := mergeAttrs(d.attrs, s.attrs, at+name+"."); err != nil {
				return err
			}
		}
	}
	return nil
}

func (t *argType) clone() *argType {
	c := *t
	if t.attrs != nil {
		c.attrs = map[string]*argType{}
		for k, v := range t.attrs {
			c.attrs[k] = v.clone()
		}
	}
	return &c
}

// render writes MCPArgs in Cedar's schema syntax.
func (args *mcpArgs) render() string {
	var b strings.Builder
	b.WriteString("// Generated from the input schemas of the mcp targets' pinned tools.\n")
	if len(args.leftOut) > 0 {
		b.WriteString("// Left out of context.args, having no Cedar type:\n")
		for _, l := range args.leftOut {
			fmt.Fprintf(&b, "//   %s\n", commentSafe(l))
		}
	}
	b.WriteString("type MCPArgs = ")
	renderRecord(&b, args.attrs)
	b.WriteString(";\n")
	return b.String()
}

func renderRecord(b *strings.Builder, attrs map[string]*argType) {
	b.WriteString("{")
	for i, name := range slices.Sorted(maps.Keys(attrs)) {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(b, " %q?: ", name)
		if t := attrs[name]; t.kind == "Record" {
			renderRecord(b, t.attrs)
		} else {
			b.WriteString(t.kind)
		}
	}
	b.WriteString(" }")
}

// commentSafe keeps a line of a generated comment on its line: tool and target names come from a
// server and the configuration.
func commentSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '\u2028' || r == '\u2029' {
			return '?'
		}
		return r
	}, s)
}

// undeclaredMCPNames lists the places a policy tests or reads context.args.NAME (at any depth:
// context.args.filter.status) where MCPArgs declares no such name. As with the HTTP records, `has`
// of an undeclared name validates and is always false, so a misspelt name would silently disable a
// forbid: it is refused.
//
// With no mcp target in the catalog (args nil) nothing is refused: no MCP decision can happen, and
// the same policy packs serve brokers with and without MCP targets.
func undeclaredMCPNames(p *cedar.Policy, args *mcpArgs) []string {
	if args == nil {
		return nil
	}
	var out []string
	seen := map[string]bool{}
	a := (*xast.Policy)(p.AST())
	for _, c := range a.Conditions {
		xast.Inspect(xast.NewNode(c.Body), func(n xast.IsNode) bool {
			var op xast.StrOpNode
			switch n := n.(type) {
			case xast.NodeTypeHas:
				op = n.StrOpNode
			case xast.NodeTypeAccess:
				op = n.StrOpNode
			default:
				return true
			}
			path, ok := contextPath(op)
			if !ok || len(path) < 2 || path[0] != "args" {
				return true
			}
			attrs := args.attrs
			for i, name := range path[1:] {
				t, declared := attrs[name]
				if !declared {
					msg := fmt.Sprintf("context.%s: no tool of an mcp target's pins declares argument %q", strings.Join(path[:i+2], "."), name)
					if len(attrs) > 0 {
						msg += fmt.Sprintf(" (declared here: %s)", strings.Join(slices.Sorted(maps.Keys(attrs)), ", "))
					}
					msg += "; a test of an undeclared name is always false"
					if !seen[msg] {
						seen[msg] = true
						out = append(out, msg)
					}
					break
				}
				if t.kind != "Record" {
					break // the validator types what follows
				}
				attrs = t.attrs
			}
			return true
		})
	}
	return out
}

// contextPath is the chain of attribute names of context.a.b.c that op (a has or an access) tests
// or reads: ["a", "b", "c"].
func contextPath(op xast.StrOpNode) ([]string, bool) {
	path := []string{string(op.Value)}
	node := op.Arg
	for {
		switch n := node.(type) {
		case xast.NodeTypeAccess:
			path = append(path, string(n.Value))
			node = n.Arg
		case xast.NodeTypeVariable:
			if n.Name != "context" {
				return nil, false
			}
			slices.Reverse(path)
			return path, true
		default:
			return nil, false
		}
	}
}

// hasMCPTarget reports whether the catalog describes an mcp target: one of kind "mcp", or with
// tools or pinned schemas.
func hasMCPTarget(c *Catalog) bool {
	if c == nil {
		return false
	}
	for _, t := range c.Targets {
		if t.Kind == "mcp" || len(t.Tools) > 0 || len(t.ToolSchemas) > 0 {
			return true
		}
	}
	return false
}

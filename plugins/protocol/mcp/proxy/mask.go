package proxy

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/svidbroker/svidbroker/broker/inspect"
	"github.com/svidbroker/svidbroker/broker/session"
	"github.com/svidbroker/svidbroker/plugins/protocol/http/jsonmask"
	"github.com/svidbroker/svidbroker/plugins/protocol/mcp/wire"
)

// maskPlan is what a call's result is masked with: the tool's fields the caller may not read in
// clear. It is the verdict's Plan, kept with it.
type maskPlan struct {
	masked []string         // "path=strategy", for the records
	filter *jsonmask.Filter // nil when nothing is masked
}

var _ session.MaskingPlan = (*maskPlan)(nil)

// Masked names the fields masked and their strategies ("$.ssn=partial").
func (p *maskPlan) Masked() []string { return p.masked }

// planFields decides the catalog fields of a call's tool in one batch.
func (x *exchange) planFields(req Request, cat CatalogTool, v session.Verdict) (*maskPlan, error) {
	p := &maskPlan{}
	if len(cat.Fields) == 0 {
		return p, nil
	}
	paths := make([]string, len(cat.Fields))
	for i, f := range cat.Fields {
		paths[i] = f.Path
	}
	strategies, _ := x.e.cfg.Policy.MCPFieldMasks(x.conn, req, paths, v.Approval, string(x.e.defaultMask))
	if len(strategies) != len(paths) {
		return nil, fmt.Errorf("the field masks of tool %q cannot be applied: the policy decided %d of %d fields", req.Name, len(strategies), len(paths))
	}
	var rules []jsonmask.Rule
	for i, s := range strategies {
		if s == "" {
			continue
		}
		path, err := jsonmask.ParsePath(paths[i])
		if err != nil {
			return nil, fmt.Errorf("field %q of tool %q: %w", paths[i], req.Name, err)
		}
		rules = append(rules, jsonmask.Rule{Path: path, Strategy: inspect.Strategy(s)})
		p.masked = append(p.masked, paths[i]+"="+s)
	}
	if len(rules) > 0 {
		f, err := jsonmask.New(jsonmask.Config{Rules: rules, Masker: x.e.masker})
		if err != nil {
			return nil, fmt.Errorf("the field masks of tool %q cannot be applied: %w", req.Name, err)
		}
		p.filter = f
	}
	return p, nil
}

// resultStats is what a call's result held, for its record.
type resultStats struct {
	isError bool
	refused bool // an input request of the result was refused: the agent got an error
	kinds   []string
	masked  int
	bytes   int64
}

// withheldText replaces a text of a text="json" tool that is not JSON while fields are masked.
const withheldText = "[svidbroker: withheld: this text of tool %q is not JSON, and fields of the tool's results are masked]"

// maskResult masks a tools/call result: structuredContent by the fields' paths, each content text
// as JSON for a text="json" tool, and embedded resources and links withheld while fields are masked.
// The result is decoded with the SDK's types, as an SDK client reads it (its member names matched
// without regard to case), and encoded again: what the agent gets is what was masked, in the
// protocol's own names, and members the SDK does not know are dropped.
func maskResult(result json.RawMessage, it *item, st *resultStats) (json.RawMessage, error) {
	tr, err := wire.DecodeToolResult(result)
	if err != nil {
		return nil, fmt.Errorf("the result of tool %q could not be read", it.tool)
	}
	st.isError = tr.IsError
	f := it.plan.filter
	if tr.Structured != nil && f != nil {
		out, n, err := f.Append(nil, tr.Structured)
		if err != nil {
			return nil, fmt.Errorf("the structured result of tool %q could not be masked: %w", it.tool, err)
		}
		tr.Structured, st.masked = out, st.masked+n
	}
	for i, c := range tr.Content {
		switch c := c.(type) {
		case *mcp.TextContent:
			st.kinds = append(st.kinds, "text")
			if f == nil || it.cat.Text != "json" {
				continue
			}
			out, n, err := f.Append(nil, []byte(c.Text))
			if err != nil {
				out = fmt.Appendf(nil, withheldText, it.tool)
			}
			st.masked += n
			c.Text = string(out)
		case *mcp.ImageContent:
			st.kinds = append(st.kinds, "image")
		case *mcp.AudioContent:
			st.kinds = append(st.kinds, "audio")
		default: // embedded resources and links may quote the fields
			kind := fmt.Sprintf("%T", c)
			kind = kind[strings.LastIndexByte(kind, '.')+1:]
			st.kinds = append(st.kinds, kind)
			if f != nil {
				tr.Content[i] = &mcp.TextContent{Text: fmt.Sprintf("[svidbroker: withheld: a %s of tool %q's result, whose fields are masked]", kind, it.tool)}
			}
		}
	}
	return wire.EncodeToolResult(tr)
}

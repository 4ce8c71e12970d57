package proxy

import (
	"encoding/json"
	"fmt"

	"github.com/svidbroker/svidbroker/broker/inspect"
	"github.com/svidbroker/svidbroker/broker/session"
	"github.com/svidbroker/svidbroker/plugins/protocol/http/jsonmask"
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
	kinds   []string
	masked  int
	bytes   int64
}

// withheldText replaces a text of a text="json" tool that is not JSON while fields are masked.
const withheldText = "[svidbroker: withheld: this text of tool %q is not JSON, and fields of the tool's results are masked]"

// maskResult masks a tools/call result: structuredContent by the fields' paths, each content text
// as JSON for a text="json" tool, and embedded resources withheld while fields are masked.
func maskResult(result json.RawMessage, it *item, st *resultStats) (json.RawMessage, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(result, &obj); err != nil {
		return nil, fmt.Errorf("the result of tool %q is not an object", it.tool)
	}
	if v, ok := obj["isError"]; ok {
		_ = json.Unmarshal(v, &st.isError)
	}
	f := it.plan.filter
	if sc, ok := obj["structuredContent"]; ok && f != nil {
		out, n, err := f.Append(nil, sc)
		if err != nil {
			return nil, fmt.Errorf("the structured result of tool %q could not be masked: %w", it.tool, err)
		}
		obj["structuredContent"], st.masked = out, st.masked+n
	}
	if c, ok := obj["content"]; ok {
		var items []map[string]json.RawMessage
		if err := json.Unmarshal(c, &items); err != nil {
			return nil, fmt.Errorf("the content of tool %q's result is not a list", it.tool)
		}
		for _, item := range items {
			var kind string
			_ = json.Unmarshal(item["type"], &kind)
			st.kinds = append(st.kinds, clip(kind, 32))
			if f == nil {
				continue
			}
			switch kind {
			case "text":
				if it.cat.Text != "json" {
					continue
				}
				var text string
				if err := json.Unmarshal(item["text"], &text); err != nil {
					return nil, fmt.Errorf("a text of tool %q's result is not a string", it.tool)
				}
				out, n, err := f.Append(nil, []byte(text))
				if err != nil {
					out = fmt.Appendf(nil, withheldText, it.tool)
				}
				st.masked += n
				item["text"], _ = json.Marshal(string(out))
			case "image", "audio":
			default: // embedded resources and links may quote the fields
				item["type"], _ = json.Marshal("text")
				item["text"], _ = json.Marshal(fmt.Sprintf("[svidbroker: withheld: a %s of tool %q's result, whose fields are masked]", clip(kind, 32), it.tool))
				for k := range item {
					if k != "type" && k != "text" {
						delete(item, k)
					}
				}
			}
		}
		obj["content"], _ = json.Marshal(items)
	}
	return json.Marshal(obj)
}

package proxy

import (
	"encoding/json"
	"testing"

	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/broker/inspect"
	"github.com/svidbroker/svidbroker/broker/session"
)

// FuzzMaskResult: whatever a tool's result holds, masking it never panics, yields JSON, and never
// lets the masked field's value through in structuredContent or in a JSON text.
func FuzzMaskResult(f *testing.F) {
	f.Add([]byte(`{"content":[{"type":"text","text":"{\"ssn\":\"123-45-6789\"}"}],"structuredContent":{"ssn":"123-45-6789","id":1}}`))
	f.Add([]byte(`{"content":[{"type":"text","text":"plain 123-45-6789"},{"type":"resource","resource":{"uri":"x","text":"123-45-6789"}}]}`))
	f.Add([]byte(`{"content":[{"type":"image","data":"AAAA","mimeType":"image/png"}],"isError":true}`))
	f.Add([]byte(`{"content":"nope"}`))
	f.Add([]byte(`[]`))
	// Member names in another case: an SDK client reads them as the protocol's own.
	f.Add([]byte(`{"Content":[{"Type":"text","Text":"{\"ssn\":\"123-45-6789\"}"}],"StructuredContent":{"ssn":"123-45-6789"}}`))
	m, _ := inspect.NewMasker(nil)
	e := &Engine{masker: m, defaultMask: inspect.Redact}
	pol := &policy{masks: map[string]string{"$.ssn": "redact"}}
	e.cfg.Policy = pol
	x := &exchange{e: e}
	cat := CatalogTool{Name: "t", Text: "json", Fields: []CatalogField{{Path: "$.ssn"}}}
	plan, err := x.planFields(Request{Name: "t"}, cat, session.Verdict{Approval: authz.ApprovalState{}})
	if err != nil || plan.filter == nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, result []byte) {
		it := &item{tool: "t", cat: cat, plan: plan}
		out, err := maskResult(result, it, &resultStats{})
		if err != nil {
			return
		}
		if !json.Valid(out) {
			t.Fatalf("not JSON: %q", out)
		}
		var res struct {
			StructuredContent json.RawMessage `json:"structuredContent"`
			Content           []struct {
				Type string `json:"type"`
				Text string `json:"text"`
			} `json:"content"`
		}
		if err := json.Unmarshal(out, &res); err != nil {
			t.Fatalf("the masked result does not decode: %v", err)
		}
		check := func(where string, doc []byte) {
			var v map[string]json.RawMessage
			if json.Unmarshal(doc, &v) == nil {
				if s, ok := v["ssn"]; ok && string(s) != `"***"` && string(s) != "null" {
					t.Fatalf("%s: ssn not redacted: %s", where, s)
				}
			}
		}
		check("structuredContent", res.StructuredContent)
		for _, c := range res.Content {
			if c.Type == "text" {
				check("text", []byte(c.Text))
			} else if c.Type != "image" && c.Type != "audio" {
				t.Fatalf("content of kind %q passed while fields are masked", c.Type)
			}
		}
	})
}

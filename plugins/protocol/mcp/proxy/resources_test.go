package proxy

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestResourcesAndPrompts: resources/list shows only the resources the caller may see, a hidden
// resource's read is refused by policy without reaching the upstream, a visible one is read
// (control); prompts/get is decided as mcp:prompt.
func TestResourcesAndPrompts(t *testing.T) {
	r := newRig(t, "2025-06-18", nil)
	r.policy.hidden["shop://payroll"] = true
	cs := r.connect(t, agentID, "2025-06-18")
	list, err := cs.ListResources(ctx(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(list)
	if len(list.Resources) != 1 || list.Resources[0].URI != "shop://faq" || strings.Contains(string(b), "payroll") {
		t.Fatalf("listed %s", b)
	}
	res, err := cs.ReadResource(ctx(t), &mcp.ReadResourceParams{URI: "shop://faq"})
	if err != nil || len(res.Contents) != 1 || res.Contents[0].Text != "contents of shop://faq" {
		t.Fatalf("faq: %v %+v", err, res)
	}
	_, err = cs.ReadResource(ctx(t), &mcp.ReadResourceParams{URI: "shop://payroll"})
	var we *jsonrpc.Error
	if !errors.As(err, &we) || we.Code != codeDenied {
		t.Fatalf("payroll: %v", err)
	}
	if r.shop.saw(`"uri":"shop://payroll"`) {
		t.Fatal("the hidden resource's read reached the upstream")
	}
	if _, err := cs.GetPrompt(ctx(t), &mcp.GetPromptParams{Name: "greet"}); err != nil {
		t.Fatal(err)
	}
	var asked []string
	for _, q := range r.policy.requests() {
		asked = append(asked, q.Method+" "+q.Name)
	}
	if got := strings.Join(asked, ","); got != "resources/read shop://faq,resources/read shop://payroll,prompts/get greet" {
		t.Fatalf("policy asked %s", got)
	}
}

package authz

import (
	"encoding/json"
	"errors"
	"math/big"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cedar-policy/cedar-go/types"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/svidbroker/svidbroker/broker/identity"
	"github.com/svidbroker/svidbroker/policies"
)

// mcpSchemas are the input schemas of the test target's tools, as a pin file gives them.
var mcpSchemas = map[string]json.RawMessage{
	"get_customer": json.RawMessage(`{"type":"object","properties":{"id":{"type":"integer"}},"required":["id"]}`),
	"query": json.RawMessage(`{"type":"object","properties":{"table":{"type":"string","enum":["orders","customers"]},
		"limit":{"type":"integer"},"columns":{"type":"array","items":{"type":"string"}},
		"filter":{"type":"object","properties":{"status":{"type":"string"},"since":{"type":["integer","null"]}}}}}`),
	"refund": json.RawMessage(`{"type":"object","properties":{"order_id":{"type":"integer"},"amount":{"type":"number","multipleOf":1},
		"reason":{"type":"string"},"ratio":{"type":"number"},"urgent":{"type":"boolean"}}}`),
	"summarize": json.RawMessage(`{"type":"object","properties":{"text":{"type":"string"}}}`),
}

var mcpCatalog = NewCatalog([]CatalogTarget{{Name: "tools", Kind: "mcp",
	Tools: []CatalogTool{
		{Name: "get_customer", Tags: []string{"pii"}, Text: "json",
			Fields: []CatalogField{{Path: "$.email", Tags: []string{"pii"}}, {Path: "$.ssn", Tags: []string{"pii", "sensitive"}}}},
		{Name: "refund"},
	},
	ToolSchemas: mcpSchemas,
}}, []GroupRule{{Name: "agents", IDs: []string{"spiffe://example.org/agent/*"}}})

func mcpEngine(t testing.TB, src string) *Authorizer {
	t.Helper()
	s, err := ParseSchemaFor("svidbroker.cedarschema", policies.Schema, mcpCatalog)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writePolicies(t, dir, map[string]string{"p.cedar": src})
	e, err := New(Config{Dir: dir, Schema: s})
	if err != nil {
		t.Fatal(err)
	}
	return NewAuthorizer(e, mcpCatalog)
}

func mcpConnect(name string) Connect {
	return Connect{Peer: identity.Peer{ID: spiffeid.RequireFromString("spiffe://example.org/agent/" + name),
		Attestation: &identity.Attestation{}}, Target: "tools"}
}

const mcpPolicies = `
@id("call-tools")
permit (principal in Group::"agents", action == Action::"mcp:call", resource in Target::"tools")
when { !(resource.tags.contains("pii")) || principal.path == "/agent/support" };

@id("query-orders-only")
permit (principal in Group::"agents", action == Action::"mcp:call", resource == Tool::"tools/query")
when { context.args has table && context.args.table == "orders" };

@id("no-query-for-analyst")
forbid (principal == Workload::"spiffe://example.org/agent/analyst", action == Action::"mcp:call", resource == Tool::"tools/query")
when { context.args has limit && context.args.limit > 100 };

@id("big-refunds-held")
@approval("required")
permit (principal in Group::"agents", action == Action::"mcp:call", resource == Tool::"tools/refund")
when { context.args has amount && context.args.amount >= 100 };

@id("no-summaries")
forbid (principal, action == Action::"mcp:call", resource == Tool::"tools/summarize");

@id("no-refund-filters")
forbid (principal, action == Action::"mcp:call", resource == Tool::"tools/refund")
when { context.args has urgent && context.args.urgent };

@id("clear-fields")
permit (principal in Group::"agents", action == Action::"mcp:read-unmasked", resource in Tool::"tools/get_customer")
when { !resource.tags.contains("sensitive") };

@id("ssn-partial")
@mask("partial")
forbid (principal in Group::"agents", action == Action::"mcp:read-unmasked", resource in Target::"tools")
when { resource.tags.contains("sensitive") };

@id("read-reports")
permit (principal in Group::"agents", action == Action::"mcp:read", resource in Target::"tools")
when { resource.uri like "file:///reports/*" };

@id("prompts")
permit (principal in Group::"agents", action == Action::"mcp:prompt", resource == Prompt::"tools/draft_reply");

@id("sampling-for-support")
permit (principal == Workload::"spiffe://example.org/agent/support", action == Action::"mcp:sampling", resource == Target::"tools")
when { context.method == "sampling/createMessage" && context.protocolVersion == "2025-06-18" };
`

func TestMCPDecidesEachMethodOnItsResource(t *testing.T) {
	a := mcpEngine(t, mcpPolicies)
	call := func(tool string, args map[string]any) MCPRequest {
		return MCPRequest{Target: "tools", Method: "tools/call", Name: tool, Args: args, Version: "2025-06-18"}
	}
	for _, tc := range []struct {
		name     string
		who      string
		r        MCPRequest
		allow    bool
		reasons  string
		approval string
	}{
		{"an untagged declared tool", "analyst", call("refund", map[string]any{"order_id": json.Number("7"), "amount": json.Number("5")}), true, "call-tools", ""},
		{"a pii tool for the wrong caller", "analyst", call("get_customer", map[string]any{"id": json.Number("1")}), false, "", ""},
		{"a pii tool for support", "support", call("get_customer", map[string]any{"id": json.Number("1")}), true, "call-tools", ""},
		{"an undeclared tool is in its target", "analyst", call("list_orders", nil), true, "call-tools", ""},
		{"an argument permits", "analyst", call("query", map[string]any{"table": "orders"}), true, "call-tools,query-orders-only", ""},
		{"an argument forbids", "analyst", call("query", map[string]any{"table": "orders", "limit": json.Number("1000")}), false, "no-query-for-analyst", ""},
		{"the forbid is the analyst's", "support", call("query", map[string]any{"table": "orders", "limit": json.Number("1000")}), true, "call-tools,query-orders-only", ""},
		{"an integral number is a Long", "analyst", call("refund", map[string]any{"amount": json.Number("1e3")}), true, "call-tools,big-refunds-held", "required"},
		{"a boolean argument forbids", "analyst", call("refund", map[string]any{"urgent": true}), false, "no-refund-filters", ""},
		{"a forbid without conditions", "support", call("summarize", map[string]any{"text": "x"}), false, "no-summaries", ""},
		{"a resource by its URI", "analyst", MCPRequest{Target: "tools", Method: "resources/read", Name: "file:///reports/q1.csv"}, true, "read-reports", ""},
		{"another resource", "analyst", MCPRequest{Target: "tools", Method: "resources/read", Name: "file:///etc/passwd"}, false, "", ""},
		{"a prompt", "analyst", MCPRequest{Target: "tools", Method: "prompts/get", Name: "draft_reply"}, true, "prompts", ""},
		{"another prompt", "analyst", MCPRequest{Target: "tools", Method: "prompts/get", Name: "other"}, false, "", ""},
		{"sampling for support", "support", MCPRequest{Target: "tools", Method: "sampling/createMessage", Version: "2025-06-18"}, true, "sampling-for-support", ""},
		{"sampling under another version", "support", MCPRequest{Target: "tools", Method: "sampling/createMessage", Version: "2024-11-05"}, false, "", ""},
		{"elicitation nobody permits", "support", MCPRequest{Target: "tools", Method: "elicitation/create"}, false, "", ""},
		{"roots nobody permits", "support", MCPRequest{Target: "tools", Method: "roots/list"}, false, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := a.MCP(mcpConnect(tc.who), tc.r, ApprovalState{})
			if d.Allow != tc.allow || (err == nil) != tc.allow {
				t.Fatalf("allow %v, err %v; want allow %v (decision %+v)", d.Allow, err, tc.allow, d)
			}
			if got := strings.Join(d.Reasons, ","); got != tc.reasons {
				t.Errorf("reasons %q, want %q", got, tc.reasons)
			}
			if d.Obligations.Approval != tc.approval {
				t.Errorf("approval %q, want %q", d.Obligations.Approval, tc.approval)
			}
			if err != nil {
				var den *Denied
				if !errors.As(err, &den) || !errors.Is(err, ErrDenied) {
					t.Fatalf("error %v is not a *Denied", err)
				}
				if tc.r.Name != "" && !strings.Contains(err.Error(), tc.r.Name) {
					t.Errorf("denial %q does not name %q", err, tc.r.Name)
				}
				if len(d.Reasons) == 0 && !strings.Contains(err.Error(), "permit Action::") {
					t.Errorf("default deny %q does not say what to permit", err)
				}
			}
		})
	}
}

func TestMCPRefusesWhatItCannotDecide(t *testing.T) {
	a := mcpEngine(t, mcpPolicies)
	for _, tc := range []struct {
		name string
		r    MCPRequest
		want string
	}{
		{"a method with no action", MCPRequest{Target: "tools", Method: "tools/list"}, `method "tools/list" has no action`},
		{"a notification", MCPRequest{Target: "tools", Method: "notifications/initialized"}, "has no action"},
		{"another target", MCPRequest{Target: "other", Method: "tools/call", Name: "refund"}, `connection to target "tools"`},
		{"no tool name", MCPRequest{Target: "tools", Method: "tools/call"}, "names no tool"},
		{"a long name", MCPRequest{Target: "tools", Method: "prompts/get", Name: strings.Repeat("p", maxMCPNameBytes+1)}, "longer than"},
		{"a string for a Long", MCPRequest{Target: "tools", Method: "tools/call", Name: "refund", Args: map[string]any{"amount": "SECRET-99"}}, `argument "amount" is declared Long; the call gives a string`},
		{"a fraction for a Long", MCPRequest{Target: "tools", Method: "tools/call", Name: "refund", Args: map[string]any{"amount": json.Number("99.5")}}, `argument "amount"`},
		{"past int64", MCPRequest{Target: "tools", Method: "tools/call", Name: "refund", Args: map[string]any{"amount": json.Number("9223372036854775808")}}, "outside 64 bits"},
		{"a nested mismatch", MCPRequest{Target: "tools", Method: "tools/call", Name: "query", Args: map[string]any{"filter": map[string]any{"status": json.Number("1")}}}, `argument "filter.status"`},
		{"a set item", MCPRequest{Target: "tools", Method: "tools/call", Name: "query", Args: map[string]any{"columns": []any{"a", true}}}, `"columns" is declared Set<String>; item 1`},
		{"a null for a Long", MCPRequest{Target: "tools", Method: "tools/call", Name: "refund", Args: map[string]any{"amount": nil}}, `"amount" is null`},
		// The name is typed by MCPArgs whichever tool is called, so no policy reading it is bypassed.
		{"a declared name given to another tool", MCPRequest{Target: "tools", Method: "tools/call", Name: "summarize", Args: map[string]any{"amount": "x"}}, `argument "amount"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := a.MCP(mcpConnect("support"), tc.r, ApprovalState{})
			if err == nil || d.Allow {
				t.Fatalf("decided %+v, want an error", d)
			}
			if errors.Is(err, ErrDenied) {
				t.Errorf("error %v is a denial; want a refusal before Cedar", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "SECRET") {
				t.Errorf("error %q quotes the argument's value", err)
			}
			if len(d.Reasons) != 0 || d.ID == "" {
				t.Errorf("decision %+v: want an ID and no policies", d)
			}
		})
	}
	// A null where the schema allows one leaves the argument out; undeclared arguments are left out.
	if _, err := a.MCP(mcpConnect("support"), MCPRequest{Target: "tools", Method: "tools/call", Name: "query",
		Args: map[string]any{"table": "orders", "filter": map[string]any{"since": nil, "other": 1.5}, "undeclared": []any{1}}}, ApprovalState{}); err != nil {
		t.Errorf("nullable and undeclared arguments: %v", err)
	}
}

func TestMCPArgsConversion(t *testing.T) {
	a := mcpEngine(t, mcpPolicies)
	rec, err := a.MCPArgs("query", map[string]any{
		"table": "orders", "limit": json.Number("10"), "columns": []any{"id", "total"},
		"filter": map[string]any{"status": "open", "since": float64(1700000000)}, "undeclared": "x"})
	if err != nil {
		t.Fatal(err)
	}
	want := types.NewRecord(types.RecordMap{
		"table": types.String("orders"), "limit": types.Long(10), "columns": types.NewSet(types.String("id"), types.String("total")),
		"filter": types.NewRecord(types.RecordMap{"status": types.String("open"), "since": types.Long(1700000000)}),
	})
	if !rec.Equal(want) {
		t.Errorf("args = %s, want %s", rec.MarshalCedar(), want.MarshalCedar())
	}
	for _, n := range []struct {
		in   any
		want int64
		ok   bool
	}{
		{json.Number("-9223372036854775808"), -1 << 63, true}, {json.Number("9223372036854775807"), 1<<63 - 1, true},
		{json.Number("2.0"), 2, true}, {json.Number("1E2"), 100, true}, {json.Number("-0"), 0, true},
		{json.Number("9223372036854775808"), 0, false}, {json.Number("0.1"), 0, false}, {json.Number("1e400"), 0, false},
		{json.Number(strings.Repeat("1", 70)), 0, false}, {json.Number("NaN"), 0, false}, {json.Number("Inf"), 0, false}, {json.Number("-infinity"), 0, false}, {json.Number("1e-999999999"), 0, false}, {json.Number("1e999999999"), 0, false}, {json.Number("0e999999999"), 0, true}, {json.Number("0x10"), 0, false}, {json.Number("1_0"), 0, false}, {json.Number(" 1"), 0, false},
		{float64(1 << 63), 0, false}, {1.5, 0, false}, {int64(3), 3, true}, {"3", 0, false},
	} {
		got, err := toLong(n.in)
		if (err == nil) != n.ok || got != n.want {
			t.Errorf("toLong(%#v) = %d, %v; want %d ok %v", n.in, got, err, n.want, n.ok)
		}
	}
}

func TestMCPVisibleIgnoresTheArguments(t *testing.T) {
	a := mcpEngine(t, mcpPolicies)
	for _, tc := range []struct {
		name, who, list, entry string
		want                   bool
	}{
		{"a permit conditioned on args shows the tool", "analyst", "tools/list", "query", true},
		{"a forbid conditioned on args does not hide it", "analyst", "tools/list", "refund", true},
		{"an unconditional forbid hides it", "support", "tools/list", "summarize", false},
		{"a default deny hides it", "analyst", "tools/list", "get_customer", false},
		{"a permitted pii tool", "support", "tools/list", "get_customer", true},
		{"a resource", "analyst", "resources/list", "file:///reports/q1.csv", true},
		{"a resource denied", "analyst", "resources/list", "file:///etc/passwd", false},
		{"a prompt", "analyst", "prompts/list", "draft_reply", true},
		{"a prompt denied", "analyst", "prompts/list", "other", false},
		{"an unknown list", "support", "roots/list", "x", false},
		{"an empty name", "support", "tools/list", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := a.MCPVisible(mcpConnect(tc.who), "tools", tc.list, tc.entry); got != tc.want {
				t.Errorf("visible = %v, want %v", got, tc.want)
			}
		})
	}
	// Another target than the connection's shows nothing.
	if a.MCPVisible(mcpConnect("support"), "other", "tools/list", "refund") {
		t.Error("a tool of another target is visible")
	}
	// A policy that fails to evaluate hides the entry.
	b := mcpEngine(t, `@id("p") permit (principal, action == Action::"mcp:call", resource) when { context.time * 9223372036854775807 > 0 };`)
	if b.MCPVisible(mcpConnect("support"), "tools", "tools/list", "refund") {
		t.Error("an erroring permit shows the tool")
	}
	c := mcpEngine(t, `@id("p") permit (principal, action == Action::"mcp:call", resource) when { context.time * 2 > 0 };`)
	if !c.MCPVisible(mcpConnect("support"), "tools", "tools/list", "refund") {
		t.Error("the same permit without the error hides the tool")
	}
}

func TestMCPFieldMasks(t *testing.T) {
	a := mcpEngine(t, mcpPolicies)
	r := MCPRequest{Target: "tools", Method: "tools/call", Name: "get_customer", Args: map[string]any{"id": json.Number("1")}}
	got, ds := a.MCPFieldMasks(mcpConnect("analyst"), r, []string{"$.email", "$.ssn", "$.undeclared"}, ApprovalState{}, "redact")
	if strings.Join(got, "|") != "|partial|redact" {
		t.Errorf("masks %q, want clear, partial, redact", got)
	}
	if !ds[0].Allow || ds[1].Allow || strings.Join(ds[1].Reasons, ",") != "ssn-partial" || len(ds[2].Reasons) != 0 || ds[2].ID == "" {
		t.Errorf("decisions %+v", ds)
	}
	// A request whose arguments cannot be typed masks everything.
	bad := r
	bad.Args = map[string]any{"id": "one"}
	if got, _ := a.MCPFieldMasks(mcpConnect("analyst"), bad, []string{"$.email"}, ApprovalState{}, "null"); got[0] != "null" {
		t.Errorf("untyped arguments: mask %q, want null", got[0])
	}
	// So does another method.
	if got, _ := a.MCPFieldMasks(mcpConnect("analyst"), MCPRequest{Target: "tools", Method: "prompts/get", Name: "get_customer"}, []string{"$.email"}, ApprovalState{}, "null"); got[0] != "null" {
		t.Errorf("prompts/get: mask %q, want null", got[0])
	}
}

func TestMCPToolAndEntities(t *testing.T) {
	a := mcpEngine(t, mcpPolicies)
	tool, ok := a.MCPTool("tools", "get_customer")
	if !ok || tool.Text != "json" || len(tool.Fields) != 2 || tool.Fields[1].Path != "$.ssn" {
		t.Errorf("MCPTool(get_customer) = %+v, %v", tool, ok)
	}
	if _, ok := a.MCPTool("tools", "list_orders"); ok {
		t.Error("an undeclared tool is declared")
	}
	if _, ok := a.MCPTool("other", "get_customer"); ok {
		t.Error("a tool of another target")
	}
	if got := ToolUID("tools", "get_customer").String(); got != `Tool::"tools/get_customer"` {
		t.Errorf("ToolUID = %s", got)
	}
	if got := ToolFieldUID("tools", "get_customer", "$.ssn").String(); got != `ToolField::"tools/get_customer $.ssn"` {
		t.Errorf("ToolFieldUID = %s", got)
	}
	st := a.Static()
	f, ok := st[ToolFieldUID("tools", "get_customer", "$.ssn")]
	if !ok || !f.Parents.Contains(ToolUID("tools", "get_customer")) {
		t.Fatalf("field entity %+v", f)
	}
	if tl := st[ToolUID("tools", "get_customer")]; !tl.Parents.Contains(TargetUID("tools")) {
		t.Errorf("tool entity %+v", tl)
	}
	ent := a.mcpEntity("tools", mcpMethods["tools/call"], "list_orders")
	if tags, _ := ent.Attributes.Get("tags"); !ent.Parents.Contains(TargetUID("tools")) || tags.(types.Set).Len() != 0 {
		t.Errorf("undeclared tool entity %+v", ent)
	}
}

// TestCanAndPickRoleForAnMCPTarget: Can asks mcp:call of each declared tool as tools/list shows it,
// mcp:read-unmasked of each declared field, and the server requests' actions of mcp targets only;
// PickRole counts mcp:call as needed when some declared or pinned tool could be called.
func TestCanAndPickRoleForAnMCPTarget(t *testing.T) {
	cat := NewCatalog([]CatalogTarget{mcpCatalog.Targets[0], {Name: "shop", Kind: "postgres"}}, mcpCatalog.Groups)
	cat.Targets[0].Roles = []CredentialRole{{Name: "tools-read", Covers: []string{ActionMCPCall}}}
	s, err := ParseSchemaFor("svidbroker.cedarschema", policies.Schema, cat)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writePolicies(t, dir, map[string]string{"p.cedar": mcpPolicies + `
@id("role")
permit (principal, action == Action::"credential:use", resource == CredentialRole::"tools/tools-read");`})
	e, err := New(Config{Dir: dir, Schema: s})
	if err != nil {
		t.Fatal(err)
	}
	a := NewAuthorizer(e, cat)
	caps, err := a.Can(t.Context(), spiffeid.RequireFromString("spiffe://example.org/agent/analyst"), nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, c := range caps {
		got[c.Action+" "+c.Resource] = c.Allow
	}
	for k, want := range map[string]bool{
		`mcp:call Tool::"tools/refund"`:                             true, // some arguments are permitted
		`mcp:call Tool::"tools/get_customer"`:                       false,
		`mcp:read-unmasked ToolField::"tools/get_customer $.email"`: true,
		`mcp:read-unmasked ToolField::"tools/get_customer $.ssn"`:   false,
		`mcp:sampling Target::"tools"`:                              false,
		`mcp:roots Target::"tools"`:                                 false,
	} {
		if v, ok := got[k]; !ok || v != want {
			t.Errorf("%s: listed %v, allow %v; want %v", k, ok, v, want)
		}
	}
	if _, ok := got[`mcp:sampling Target::"shop"`]; ok {
		t.Error("a server request's action is asked of a postgres target")
	}
	pick, err := a.PickRole(mcpConnect("analyst"))
	if err != nil || pick.Role != "tools-read" || strings.Join(pick.For, ",") != ActionMCPCall {
		t.Errorf("analyst: %+v, %v", pick, err)
	}
	// A caller no policy lets call a tool gets no role.
	other := Connect{Peer: identity.Peer{ID: spiffeid.RequireFromString("spiffe://other.org/x"), Attestation: &identity.Attestation{}}, Target: "tools"}
	if pick, err := a.PickRole(other); err == nil {
		t.Errorf("a caller with no tool got %+v", pick)
	}
}

func TestMCPContextHoldsTheRequestsFacts(t *testing.T) {
	now := time.Date(2026, 1, 5, 14, 0, 0, 0, time.UTC)
	ctx := MCPContext(now, netip.MustParseAddr("10.0.0.1"), "TLS1.3", "X", "tools/call", "2025-06-18",
		types.NewRecord(types.RecordMap{"id": types.Long(1)}), ApprovalState{State: "approved", Approver: "a@example.com"})
	for attr, want := range map[types.String]types.Value{
		"method": types.String("tools/call"), "protocolVersion": types.String("2025-06-18"), "hourUTC": types.Long(14),
		"args":     types.NewRecord(types.RecordMap{"id": types.Long(1)}),
		"approval": types.NewRecord(types.RecordMap{"state": types.String("approved"), "approver": types.String("a@example.com")}),
	} {
		if v, ok := ctx.Get(attr); !ok || !v.Equal(want) {
			t.Errorf("%s = %v, want %v", attr, v, want)
		}
	}
	none := MCPContext(now, netip.Addr{}, "", "", "roots/list", "", types.NewRecord(nil), ApprovalState{})
	if ap, _ := none.Get("approval"); !ap.(types.Record).Equal(types.NewRecord(types.RecordMap{"state": types.String("none"), "approver": types.String("")})) {
		t.Errorf("approval without a state: %v", ap)
	}
}

// FuzzToLong holds toLong to strconv.ParseInt for plain integers, and to integral JSON numbers only.
func FuzzToLong(f *testing.F) {
	for _, s := range []string{"0", "-1", "9223372036854775807", "-9223372036854775808", "1e3", "1.0", "0.5", "1e-999999999", "1e400", "-0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := toLong(json.Number(s))
		if want, perr := strconv.ParseInt(s, 10, 64); perr == nil && json.Valid([]byte(s)) {
			if err != nil || got != want {
				t.Fatalf("toLong(%q) = %d, %v; ParseInt gives %d", s, got, err, want)
			}
		}
		if err != nil {
			return
		}
		if !json.Valid([]byte(s)) {
			t.Fatalf("toLong(%q) = %d for what is not a JSON number", s, got)
		}
		var r big.Rat
		if _, ok := r.SetString(s); ok && len(s) < 24 && (!r.IsInt() || r.Num().Int64() != got) {
			t.Fatalf("toLong(%q) = %d, but the number is %s", s, got, r.String())
		}
	})
}

package main

import (
	"bytes"
	"flag"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/broker/config"
	"github.com/svidbroker/svidbroker/policies"
)

// toolsAuthorizer is the authorizer `policy explain` and `policy can` load for the demo's MCP server:
// the repository's packs and policies/catalog.hcl, whose pin file types context.args.
func toolsAuthorizer(t *testing.T) (*authz.Authorizer, *config.Config) {
	t.Helper()
	file, diags := hclparse.NewParser().ParseHCLFile(filepath.Join("..", "..", "policies", "catalog.hcl"))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	var c struct {
		Catalogs []config.CatalogBlock `hcl:"catalog,block"`
		Groups   []config.GroupBlock   `hcl:"group,block"`
	}
	if diags := gohcl.DecodeBody(file.Body, nil, &c); diags.HasErrors() {
		t.Fatal(diags)
	}
	cat := config.NewCatalog(c.Catalogs, c.Groups)
	schema, err := authz.ParseSchemaFor("svidbroker.cedarschema", policies.Schema, cat)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join("..", "..", "policies", "packs")
	e, err := authz.New(authz.Config{Dir: dir, Schema: schema, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{Catalogs: c.Catalogs, Groups: c.Groups, Policy: &config.Policy{Dir: dir, DefaultMask: "redact"},
		Targets: []config.Target{{Name: "tools", Protocol: "mcp", VaultRoles: map[string]string{"tools-read": "tools-read"}}}}
	return authz.NewAuthorizer(e, cat), cfg
}

// explainMCPArgs parses explain's MCP flags as the command does and prints the explanation.
func explainMCPArgs(t *testing.T, az *authz.Authorizer, args []string) (string, error) {
	t.Helper()
	var spec authz.RequestSpec
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&spec.Principal, "principal", "", "")
	fs.StringVar(&spec.Target, "target", "", "")
	fs.StringVar(&spec.Action, "action", "", "")
	selectors := fs.String("selectors", "", "")
	fs.StringVar(&spec.Approval, "approval", "", "")
	hf := httpFlags(fs, &spec)
	mf := mcpFlags(fs, &spec)
	if err := fs.Parse(args); err != nil {
		return "", err
	}
	if err := mf.apply(&spec); err != nil {
		return "", err
	}
	if err := hf.apply(az.Catalog, &spec); err != nil {
		return "", err
	}
	spec.Selectors = splitList(*selectors)
	var out bytes.Buffer
	if err := printExplain(&out, az, spec); err != nil {
		return out.String(), err
	}
	if mf.listed {
		err := printListed(&out, az, spec)
		return out.String(), err
	}
	return out.String(), nil
}

func TestExplainAnMCPRequest(t *testing.T) {
	az, _ := toolsAuthorizer(t)
	analyst := []string{"--principal", "spiffe://example.org/agent/analyst", "--selectors", "agent:name:analyst"}
	support := []string{"--principal", "spiffe://example.org/agent/support", "--selectors", "agent:name:support"}
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"a tool named with its target", append(analyst, "--tool", "tools/get_customer", "--args", `{"id":1}`),
			[]string{"decision   ALLOW", `mcp:call  Tool::"tools/get_customer"`, "permitted by analyst-tools-get-customer"}},
		{"a query of orders", append(analyst, "--target", "tools", "--tool", "query", "--args", `{"table":"orders"}`, "--listed"),
			[]string{"decision   ALLOW", "analyst-tools-query-orders", "listed     SHOWN in tools/list: some arguments are permitted, by analyst-tools-query-orders"}},
		{"a query of customers", append(analyst, "--tool", "tools/query", "--args", `{"table":"customers"}`, "--listed"),
			[]string{"decision   DENY", "no permit matched (default deny)", "listed     SHOWN in tools/list"}},
		{"summarize, hidden", append(support, "--tool", "tools/summarize", "--args", `{"text":"x"}`, "--listed"),
			[]string{"decision   DENY", "listed     HIDDEN in tools/list: no permit matches whatever the arguments"}},
		{"a large refund", append(support, "--tool", "tools/refund", "--args", `{"order_id":7,"amount":250,"reason":"late"}`),
			[]string{"decision   ALLOW", "support-tools-large-refunds-held", "obligations approval=required record=full"}},
		{"a field", append(analyst, "--tool", "tools/get_customer", "--field", "$.ssn", "--args", `{"id":1}`),
			[]string{"decision   DENY", `mcp:read-unmasked  ToolField::"tools/get_customer $.ssn"`, "forbidden by analyst-tools-pii-hashed", "mask=hash"}},
		{"sampling", append(support, "--action", "mcp:sampling", "--target", "tools"),
			[]string{"decision   ALLOW", `mcp:sampling  Target::"tools"`, "support-tools-sampling"}},
		{"roots", append(support, "--action", "mcp:roots", "--target", "tools"),
			[]string{"decision   DENY", "forbidden by baseline-no-roots"}},
		{"a resource", append(support, "--target", "tools", "--resource-uri", "shop://reports/daily", "--listed"),
			[]string{"decision   DENY", `mcp:read  MCPResource::"tools/shop://reports/daily"`, "HIDDEN in resources/list"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := explainMCPArgs(t, az, tc.args)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output does not contain\n  %s\n%s", w, out)
				}
			}
		})
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{append(analyst, "--tool", "tools/refund", "--args", `{"amount":"SECRET"}`), `argument "amount" is declared Long; the call gives a string`},
		{append(analyst, "--tool", "tools/refund", "--args", `{"amount":1`), "--args: a JSON object"},
		{append(analyst, "--tool", "tools/refund", "--args", `{} {}`), "one JSON object"},
		{append(analyst, "--tool", "tools/refund", "--args", `null`), "not null"},
		{append(analyst, "--target", "tools", "--args", `{}`), "give its --tool"},
		{append(analyst, "--tool", "tools/get_customer", "--field", "$.phone"), `declares no field "$.phone" (declared: $.email, $.ssn)`},
		{append(analyst, "--tool", "tools/get_customer", "--action", "mcp:sampling"), "mcp:sampling names no tool"},
		{append(analyst, "--action", "mcp:roots", "--target", "tools", "--listed"), "--listed: mcp:roots is not shown in a list"},
	} {
		out, err := explainMCPArgs(t, az, tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want %q\n%s", tc.args, err, tc.want, out)
		}
		if err != nil && strings.Contains(err.Error(), "SECRET") {
			t.Errorf("error %v quotes an argument's value", err)
		}
	}
}

// TestCanListsToolsHiddenToolsAndMaskedFields: `policy can` lists the tools a caller's tools/list
// shows, the ones it hides, the result fields it reads masked, and its role for the MCP server.
func TestCanListsToolsHiddenToolsAndMaskedFields(t *testing.T) {
	az, cfg := toolsAuthorizer(t)
	var out bytes.Buffer
	if err := printCan(t.Context(), &out, az, cfg, spiffeid.RequireFromString("spiffe://example.org/agent/analyst"), []string{"agent:name:analyst"}, false); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{
		`may    mcp:call               Tool::"tools/get_customer"`,
		`may    mcp:elicitation        Target::"tools"`,
		"Tool result fields it reads masked (mcp:read-unmasked is denied):",
		`masked ToolField::"tools/get_customer $.ssn"`,
		"strategy hash, from @mask of the deciding policy; forbidden by policy analyst-tools-pii-hashed",
		"Tools hidden from its tools/list (mcp:call denied whatever the arguments):",
		`hidden Tool::"tools/refund"`,
		"tools      tools-read (Vault role tools-read), for mcp:call",
	} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("output does not contain\n  %s\n%s", w, out.String())
		}
	}
	for _, never := range []string{`mcp:call               Tool::"tools/refund"`, "mcp:sampling", "mcp:roots"} {
		if strings.Contains(out.String(), "may    "+never) {
			t.Errorf("lists %s:\n%s", never, out.String())
		}
	}
}

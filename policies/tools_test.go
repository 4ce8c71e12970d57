package policies_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/broker/identity"
	"github.com/svidbroker/svidbroker/policies"
)

func persona(name string) authz.Connect {
	return authz.Connect{Peer: identity.Peer{ID: spiffeid.RequireFromString("spiffe://example.org/agent/" + name),
		Attestation: &identity.Attestation{Selectors: []string{"agent:name:" + name}}}, Target: "tools"}
}

// TestToolsListedPerPersona lists the pinned tools as each persona's tools/list shows them under all
// packs, through MCPVisible as the engine asks it.
func TestToolsListedPerPersona(t *testing.T) {
	cat := demoCatalog(t)
	az := authz.NewAuthorizer(allPacks(t), cat)
	var tools []string
	for _, ct := range cat.Targets {
		if ct.Name == "tools" {
			for name := range ct.ToolSchemas {
				tools = append(tools, name)
			}
		}
	}
	slices.Sort(tools)
	if len(tools) != 8 {
		t.Fatalf("pinned tools %q, want the demo's eight", tools)
	}
	for who, want := range map[string]string{
		"analyst":  "ask_user get_customer list_orders query send_email",
		"support":  "draft_reply get_customer list_orders refund send_email",
		"migrator": "",
		"intruder": "",
	} {
		var shown []string
		for _, tool := range tools {
			if az.MCPVisible(persona(who), "tools", "tools/list", tool) {
				shown = append(shown, tool)
			}
		}
		if got := strings.Join(shown, " "); got != want {
			t.Errorf("%s sees %q, want %q", who, got, want)
		}
	}
}

// TestToolFieldMasksPerPersona masks get_customer's fields as MCPFieldMasks does for the engine.
func TestToolFieldMasksPerPersona(t *testing.T) {
	az := authz.NewAuthorizer(allPacks(t), demoCatalog(t))
	r := authz.MCPRequest{Target: "tools", Method: "tools/call", Name: "get_customer", Args: map[string]any{"id": json.Number("1")}, Version: "2025-06-18"}
	for who, want := range map[string]string{"analyst": "hash hash", "support": "partial partial", "intruder": "null null"} {
		got, _ := az.MCPFieldMasks(persona(who), r, []string{"$.email", "$.ssn"}, authz.ApprovalState{}, "null")
		if strings.Join(got, " ") != want {
			t.Errorf("%s: masks %q, want %q", who, got, want)
		}
	}
}

// TestToolsRoleIsPicked: a persona that may call some tool gets the tools role its pack permits
// (support the write role refund needs, the analyst the read role); one that may call none gets no
// credential.
func TestToolsRoleIsPicked(t *testing.T) {
	az := authz.NewAuthorizer(allPacks(t), demoCatalog(t))
	for who, want := range map[string]string{"analyst": "tools-read", "support": "tools-write", "migrator": "", "intruder": ""} {
		pick, err := az.PickRole(persona(who))
		if pick.Role != want || (want == "") != (err != nil) {
			t.Errorf("%s: role %q (%v), want %q", who, pick.Role, err, want)
		}
	}
}

// TestMisspeltToolArgumentIsRefused: a pack policy reading an argument no pinned tool declares is
// refused at load, at its file and line, so a misspelt name cannot silently disable a forbid.
func TestMisspeltToolArgumentIsRefused(t *testing.T) {
	src, err := os.ReadFile("packs/support/support-tools.cedar")
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(src), "context.args has amount && context.args.amount < 100", "context.args has amout && context.args.amount < 100", 1)
	if bad == string(src) {
		t.Fatal("the support pack no longer tests context.args.amount")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "support-tools.cedar"), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	schema, err := authz.ParseSchemaFor("svidbroker.cedarschema", policies.Schema, demoCatalog(t))
	if err != nil {
		t.Fatal(err)
	}
	_, err = authz.New(authz.Config{Dir: dir, Schema: schema})
	line := strings.Count(bad[:strings.Index(bad, `@id("support-tools-small-refunds")`)], "\n") + 1
	want := filepath.Join(dir, "support-tools.cedar") + ":" + strconv.Itoa(line) + ` @id("support-tools-small-refunds"): context.args.amout: no tool of an mcp target's pins declares argument "amout"`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %v\nwant %s", err, want)
	}
}

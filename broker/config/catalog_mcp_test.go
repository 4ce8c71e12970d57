package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclparse"

	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/broker/config"
	"github.com/svidbroker/svidbroker/plugins/protocol/postgres"
	"github.com/svidbroker/svidbroker/policies"
)

var mcpPlugins = config.Plugins{Protocols: map[string]config.Protocol{"postgres": postgres.ConfigValidator{}, "http": acceptHTTP{}, "mcp": acceptHTTP{}}}

const testPins = `{"version":1,"target":"tools","tools":[
 {"name":"get_customer","title":"","description":"d","inputSchema":{"type":"object","properties":{"id":{"type":"integer"}}},"digest":"sha256:00","pinnedAt":"2026-12-01T00:00:00Z"},
 {"name":"refund","inputSchema":{"type":"object","properties":{"amount":{"type":"integer"},"reason":{"type":"string"}}},"digest":"sha256:01","pinnedAt":"2026-12-01T00:00:00Z"}]}`

// mcpConfig writes a configuration with an mcp target "tools" and the catalogs given, beside a pin
// file tools.pins.json, into one directory; it returns the configuration's path.
func mcpConfig(t *testing.T, catalogs, pins string) string {
	dir := t.TempDir()
	if pins != "" {
		if err := os.WriteFile(filepath.Join(dir, "tools.pins.json"), []byte(pins), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	src := httpConfig(t, catalogs) + `
target "tools" {
  protocol = "mcp"
  listen   = "127.0.0.1:8444"
  backend {
    address  = "127.0.0.1:9444"
    database = "unused"
    ca_file  = "` + write(t, "ca.pem", caPEM) + `"
  }
}
`
	p := filepath.Join(dir, "broker.hcl")
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const toolsCatalog = `
catalog "tools" {
  pins = "tools.pins.json"
  tool "get_customer" {
    tags = ["pii"]
    text = "json"
    field "$.email" { tags = ["pii"] }
    field "$.ssn"   { tags = ["pii", "sensitive"] }
  }
  tool "refund" {}
  credential_role "tools-read" { covers = ["mcp:call", "mcp:read"] }
}
`

// TestMCPCatalogLoadsToolsAndPins: an mcp catalog's tool blocks and its pin file's input schemas,
// read relative to the configuration file whatever the working directory, reach the catalog.
func TestMCPCatalogLoadsToolsAndPins(t *testing.T) {
	p := mcpConfig(t, toolsCatalog, testPins)
	t.Chdir(t.TempDir())
	cfg, err := config.Load(p, mcpPlugins)
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, ct := range cfg.Catalog().Targets {
		if ct.Name != "tools" {
			continue
		}
		found = true
		if ct.Kind != "mcp" {
			t.Errorf("kind %q: a catalog without one takes its target's protocol", ct.Kind)
		}
		if len(ct.Tools) != 2 || ct.Tools[0].Name != "get_customer" || ct.Tools[0].Text != "json" ||
			len(ct.Tools[0].Fields) != 2 || ct.Tools[0].Fields[1].Path != "$.ssn" || ct.Tools[0].Fields[1].Tags[1] != "sensitive" {
			t.Errorf("tools %+v", ct.Tools)
		}
		if len(ct.ToolSchemas) != 2 || !strings.Contains(string(ct.ToolSchemas["refund"]), `"amount"`) {
			t.Errorf("schemas %s", ct.ToolSchemas)
		}
	}
	if !found {
		t.Fatal("no catalog for tools")
	}
}

// TestMCPCatalogMistakesAreRefused: each way of getting an mcp catalog wrong is refused at load,
// naming the file and what to change.
func TestMCPCatalogMistakesAreRefused(t *testing.T) {
	for name, tc := range map[string]struct{ catalog, pins, says string }{
		"tools on a postgres target":     {"catalog \"shop\" {\n  tool \"x\" {}\n}\n", testPins, `catalog "shop" lists tool blocks or pins but its target is "postgres"`},
		"a missing pin file":             {toolsCatalog, "", `pin file: open `},
		"a pin file of another version":  {toolsCatalog, `{"version":2,"tools":[]}`, `version 2; this broker reads version 1`},
		"a pin file that is not JSON":    {toolsCatalog, `{"version":1,`, `pin file`},
		"a tool without a schema":        {toolsCatalog, `{"version":1,"tools":[{"name":"a"}]}`, `tool "a" has no inputSchema`},
		"a tool pinned twice":            {toolsCatalog, `{"version":1,"tools":[{"name":"a","inputSchema":{}},{"name":"a","inputSchema":{}}]}`, `tool "a" is pinned twice`},
		"an HTTP cover on an mcp target": {"catalog \"tools\" {\n  credential_role \"r\" { covers = [\"http:get\"] }\n}\n", "", `covers "http:get", which is not an MCP request action of target "tools"`},
		"a tool twice":                   {"catalog \"tools\" {\n  tool \"a\" {}\n  tool \"a\" {}\n}\n", "", `lists tool "a" twice`},
		"a bad text":                     {"catalog \"tools\" {\n  tool \"a\" { text = \"yaml\" }\n}\n", "", `text = "yaml"; use "json"`},
		"a bad field path":               {"catalog \"tools\" {\n  tool \"a\" {\n    field \"ssn\" {}\n  }\n}\n", "", `field path "ssn" must start with "$"`},
		"a field twice":                  {"catalog \"tools\" {\n  tool \"a\" {\n    field \"$.a\" {}\n    field \"$.a\" {}\n  }\n}\n", "", `lists field "$.a" twice`},
		"an argument with two types": {toolsCatalog, `{"version":1,"tools":[{"name":"a","inputSchema":{"type":"object","properties":{"id":{"type":"string"}}}},
			{"name":"b","inputSchema":{"type":"object","properties":{"id":{"type":"integer"}}}}]}`, `argument "id" is String in tool "a" of target "tools" and Long in tool "b"`},
	} {
		t.Run(name, func(t *testing.T) {
			p := mcpConfig(t, tc.catalog, tc.pins)
			_, err := config.Load(p, mcpPlugins)
			if err == nil || !strings.Contains(err.Error(), "broker.hcl:") || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("error %v; want file:line and %q", err, tc.says)
			}
		})
	}
}

// TestCheckRoutesChecksMCPCatalogs: catalogs from a policy test file are checked by their kind, with
// the pin file relative to the file that holds the block.
func TestCheckRoutesChecksMCPCatalogs(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "tools.pins.json"), []byte(testPins), 0o644); err != nil {
		t.Fatal(err)
	}
	decode := func(src string) []config.CatalogBlock {
		p := filepath.Join(dir, "c.hcl")
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		f, diags := hclparse.NewParser().ParseHCLFile(p)
		if diags.HasErrors() {
			t.Fatal(diags)
		}
		var c struct {
			Catalogs []config.CatalogBlock `hcl:"catalog,block"`
		}
		if diags := gohcl.DecodeBody(f.Body, nil, &c); diags.HasErrors() {
			t.Fatal(diags)
		}
		return c.Catalogs
	}
	good := decode("catalog \"tools\" {\n  kind = \"mcp\"\n  pins = \"tools.pins.json\"\n  tool \"refund\" {}\n}\n")
	if err := config.CheckRoutes(good); err != nil {
		t.Fatal(err)
	}
	if got := good[0].PinPath(); got != filepath.Join(dir, "tools.pins.json") {
		t.Errorf("PinPath = %q", got)
	}
	if s := config.NewCatalog(good, nil).Targets[0].ToolSchemas; len(s) != 2 {
		t.Errorf("schemas %s", s)
	}
	for _, src := range []string{
		"catalog \"tools\" {\n  kind = \"http\"\n  tool \"refund\" {}\n}\n",
		"catalog \"tools\" {\n  kind = \"mcp\"\n  pins = \"missing.json\"\n}\n",
	} {
		if err := config.CheckRoutes(decode(src)); err == nil {
			t.Errorf("%s: accepted", src)
		}
	}
}

func FuzzReadPinSchemas(f *testing.F) {
	f.Add(testPins)
	f.Add(`{"version":1,"tools":[{"name":"a","inputSchema":null}]}`)
	f.Add(`{"version":1,"tools":[{"name":"","inputSchema":{}}]}`)
	f.Fuzz(func(t *testing.T, src string) {
		p := filepath.Join(t.TempDir(), "p.json")
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		schemas, err := config.ReadPinSchemas(p)
		if err != nil {
			return
		}
		for name, s := range schemas {
			if name == "" || len(s) == 0 {
				t.Fatalf("tool %q with schema %q accepted", name, s)
			}
		}
	})
}

// TestMCPTargetWithoutCatalogIsAnMCPTarget: an mcp target without a catalog block is still one to
// policies: a policy reading an argument is refused there, since no pin file types it and its forbid
// would never apply.
func TestMCPTargetWithoutCatalogIsAnMCPTarget(t *testing.T) {
	cfg, err := config.Load(mcpConfig(t, "", ""), mcpPlugins)
	if err != nil {
		t.Fatal(err)
	}
	cat := cfg.Catalog()
	var kind string
	for _, ct := range cat.Targets {
		if ct.Name == "tools" {
			kind = ct.Kind
		}
	}
	if kind != "mcp" {
		t.Fatalf("target tools has kind %q in the catalog", kind)
	}
	schema, err := authz.ParseSchemaFor("svidbroker.cedarschema", policies.Schema, cat)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	src := "@id(\"p\")\nforbid (principal, action == Action::\"mcp:call\", resource)\nwhen { context.args has amount && context.args.amount > 100 };\n"
	if err := os.WriteFile(filepath.Join(dir, "p.cedar"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := authz.LoadDir(dir, schema); err == nil || !strings.Contains(err.Error(), `declares argument "amount"`) {
		t.Fatalf("error %v; want the argument refused", err)
	}
}

package stack

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// TestToolsTargetHCL decodes the mcp target block the e2e tests and the demo add to the broker's
// configuration: target "tools", the catalog's name, with its token from Vault and pins from the file.
func TestToolsTargetHCL(t *testing.T) {
	m := &MCPShop{Addr: "127.0.0.1:9444", CAFile: "/tmp/mcpshop-ca.pem"}
	src := m.TargetHCL("127.0.0.1:8444")
	f, diags := hclsyntax.ParseConfig([]byte(src), "extra.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatalf("%s\n%s", diags.Error(), src)
	}
	var cfg struct {
		Targets []struct {
			Name     string `hcl:"name,label"`
			Protocol string `hcl:"protocol"`
			Listen   string `hcl:"listen"`
			Backend  struct {
				Address          string `hcl:"address"`
				CAFile           string `hcl:"ca_file"`
				ServerName       string `hcl:"server_name"`
				Auth             string `hcl:"auth"`
				VaultPasswordKey string `hcl:"vault_password_key"`
				VaultMount       string `hcl:"vault_mount"`
			} `hcl:"backend,block"`
			MCP struct {
				Pin  string `hcl:"pin"`
				Path string `hcl:"path"`
			} `hcl:"mcp,block"`
		} `hcl:"target,block"`
	}
	if diags := gohcl.DecodeBody(f.Body, nil, &cfg); diags.HasErrors() {
		t.Fatalf("%s\n%s", diags.Error(), src)
	}
	if len(cfg.Targets) != 1 {
		t.Fatalf("%d targets, want 1", len(cfg.Targets))
	}
	tg, b := cfg.Targets[0], cfg.Targets[0].Backend
	if tg.Name != "tools" || tg.Protocol != "mcp" || tg.Listen != "127.0.0.1:8444" || tg.MCP.Pin != "file" || tg.MCP.Path != MCPShopPath ||
		b.Address != m.Addr || b.CAFile != m.CAFile || b.ServerName != "localhost" || b.Auth != "vault" || b.VaultPasswordKey != "token" || b.VaultMount != APIVaultMount {
		t.Errorf("target %+v", tg)
	}
}

// TestToolsVaultRolesAreTheEngines: catalog "tools"'s credential roles lease the API-token engine's
// roles, the only ones the MCP shop accepts.
func TestToolsVaultRolesAreTheEngines(t *testing.T) {
	roles, err := ToolsVaultRoles()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(roles, APIVaultRoles) {
		t.Errorf("catalog tools leases %v, want %v", roles, APIVaultRoles)
	}
}

// TestResolvePins: a relative pins path becomes the absolute path of a copy in the directory given;
// an absolute one and a catalog without pins are left alone; a missing pin file fails.
func TestResolvePins(t *testing.T) {
	policies, dir := t.TempDir(), filepath.Join(t.TempDir(), "pins")
	if err := os.WriteFile(filepath.Join(policies, "tools.pins.json"), []byte(`{"version":1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	src := `catalog "tools" {
  kind = "mcp"
  pins = "tools.pins.json"
}
catalog "other" {
  kind = "mcp"
  pins = "/etc/svidbroker/other.pins.json"
}
catalog "shop" {
  kind = "postgres"
}
`
	out, err := resolvePins([]byte(src), policies, dir, os.Getuid())
	if err != nil {
		t.Fatal(err)
	}
	copied := filepath.Join(dir, "tools.pins.json")
	if !strings.Contains(string(out), `pins = "`+copied+`"`) || !strings.Contains(string(out), `pins = "/etc/svidbroker/other.pins.json"`) ||
		strings.Contains(string(out), `"tools.pins.json"`) {
		t.Errorf("resolved:\n%s", out)
	}
	if b, err := os.ReadFile(copied); err != nil || string(b) != `{"version":1}` {
		t.Errorf("the copy: %q %v", b, err)
	}
	if _, err := resolvePins([]byte(src), t.TempDir(), dir, os.Getuid()); err == nil {
		t.Error("a missing pin file resolved")
	}
}

package stack

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
	vaultapi "github.com/hashicorp/vault/api"
	"github.com/zclconf/go-cty/cty"
)

// ToolsTargetName is the broker's mcp target in front of the MCP shop, as catalog "tools" of
// policies/catalog.hcl and the policy packs name it.
const ToolsTargetName = "tools"

// TargetHCL is the broker configuration of mcp target "tools" (ToolsTargetName) listening at listen,
// in front of the MCP shop, for BrokerOptions.Extra of a broker that uses Cedar (not Allow). Its
// catalog "tools" (tools, masked fields, credential roles, pin file) is in policies/catalog.hcl,
// which StartBroker puts in the configuration with the pin file resolved to a copy the broker's uid
// owns (see resolvePins). Each session's token is leased from Vault's API-token engine (mount
// APIVaultMount, set up by ConfigureToolsVault) for the credential role Cedar picks among the
// catalog's, and injected as Authorization: Bearer. Tools are pinned by the pin file: a tool whose
// definition differs from it is refused. Add JWTBlock for agents that present JWT-SVIDs.
func (m *MCPShop) TargetHCL(listen string) string {
	return fmt.Sprintf(`
# The demo's MCP server (examples/mcpshop). Agents never hold its token: the broker leases one from
# Vault per session, for the credential role Cedar picks (tools-read or tools-write), and injects
# it. Only the tools of the catalog's pin file, at their pinned definitions, may be called.
target %q {
  protocol = "mcp"
  listen   = %q
  backend {
    address            = %q
    ca_file            = %q
    server_name        = "localhost"
    auth               = "vault"
    vault_password_key = "token"
    vault_mount        = %q
  }
  mcp {
    pin  = "file"
    path = %q
  }
}
`, ToolsTargetName, listen, m.Addr, m.CAFile, APIVaultMount, MCPShopPath)
}

// ConfigureToolsVault sets up the API-token engine for target "tools": ConfigureAPIVault (the engine
// at APIVaultMount and its roles), then checks that every credential role of catalog "tools" in
// policies/catalog.hcl maps to one of those engine roles (its vault_role, or its own name): the
// roles whose tokens the MCP shop accepts, so that Cedar's pick leases a token it takes.
func (s *Stack) ConfigureToolsVault(ctx context.Context, root *vaultapi.Client, m *MCPShop, ttl, maxTTL string) error {
	if err := s.ConfigureAPIVault(ctx, root, m, ttl, maxTTL); err != nil {
		return err
	}
	roles, err := ToolsVaultRoles()
	if err != nil {
		return err
	}
	for _, r := range roles {
		if !slices.Contains(APIVaultRoles, r) {
			return fmt.Errorf("stack: catalog %q's credential roles lease %s/creds/%s, but the engine's roles are %v (the MCP shop's)", ToolsTargetName, APIVaultMount, r, APIVaultRoles)
		}
	}
	return nil
}

// ToolsVaultRoles are the engine roles catalog "tools"'s credential roles lease, in catalog order.
func ToolsVaultRoles() ([]string, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	src, err := os.ReadFile(filepath.Join(root, "policies", "catalog.hcl"))
	if err != nil {
		return nil, fmt.Errorf("stack: %w", err)
	}
	f, diags := hclsyntax.ParseConfig(src, "catalog.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		return nil, fmt.Errorf("stack: policies/catalog.hcl: %s", diags.Error())
	}
	var roles []string
	for _, b := range f.Body.(*hclsyntax.Body).Blocks {
		if b.Type != "catalog" || len(b.Labels) != 1 || b.Labels[0] != ToolsTargetName {
			continue
		}
		for _, rb := range b.Body.Blocks {
			if rb.Type != "credential_role" || len(rb.Labels) != 1 {
				continue
			}
			name := rb.Labels[0]
			if a, ok := rb.Body.Attributes["vault_role"]; ok {
				v, diags := a.Expr.Value(nil)
				if diags.HasErrors() || v.Type() != cty.String {
					return nil, fmt.Errorf("stack: catalog %q: credential_role %q: vault_role is not a string", ToolsTargetName, name)
				}
				name = v.AsString()
			}
			roles = append(roles, name)
		}
	}
	if len(roles) == 0 {
		return nil, fmt.Errorf("stack: catalog %q in policies/catalog.hcl has no credential roles", ToolsTargetName)
	}
	return roles, nil
}

// resolvePins rewrites each catalog block's relative pins = "FILE" (relative to policies/, where
// catalog.hcl is) to an absolute path of a copy in dir, which it creates for the broker's uid: the
// generated configuration is in another directory, and `svidbroker mcp pin --accept`, run as the
// broker, writes the copy, never the repository's file.
func resolvePins(catalogs []byte, policiesDir, dir string, uid int) ([]byte, error) {
	f, diags := hclwrite.ParseConfig(catalogs, "catalog.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		return nil, fmt.Errorf("stack: policies/catalog.hcl: %s", diags.Error())
	}
	parsed, diags := hclsyntax.ParseConfig(catalogs, "catalog.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		return nil, fmt.Errorf("stack: policies/catalog.hcl: %s", diags.Error())
	}
	pins := map[string]string{}
	for _, b := range parsed.Body.(*hclsyntax.Body).Blocks {
		if b.Type != "catalog" || len(b.Labels) != 1 {
			continue
		}
		if a, ok := b.Body.Attributes["pins"]; ok {
			v, diags := a.Expr.Value(nil)
			if diags.HasErrors() || v.Type() != cty.String {
				return nil, fmt.Errorf("stack: catalog %q: pins is not a string", b.Labels[0])
			}
			pins[b.Labels[0]] = v.AsString()
		}
	}
	if len(pins) == 0 {
		return catalogs, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("stack: %w", err)
	}
	for _, b := range f.Body().Blocks() {
		if b.Type() != "catalog" || len(b.Labels()) != 1 {
			continue
		}
		rel, ok := pins[b.Labels()[0]]
		if !ok || filepath.IsAbs(rel) {
			continue
		}
		data, err := os.ReadFile(filepath.Join(policiesDir, rel))
		if err != nil {
			return nil, fmt.Errorf("stack: catalog %q's pin file: %w", b.Labels()[0], err)
		}
		dst := filepath.Join(dir, filepath.Base(rel))
		if err := os.WriteFile(dst, data, 0o600); err != nil {
			return nil, fmt.Errorf("stack: %w", err)
		}
		b.Body().SetAttributeValue("pins", cty.StringVal(dst))
	}
	if err := ChownTree(dir, uid, uid); err != nil {
		return nil, err
	}
	return f.Bytes(), nil
}

// brokerPins resolves the catalog's pin files for broker b (into Dir/<Name>-pins, b.PinsDir).
func (s *Stack) brokerPins(b *Broker, opts BrokerOptions, catalogs []byte) ([]byte, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	broker, err := s.Persona(PersonaBroker)
	if err != nil {
		return nil, err
	}
	b.PinsDir = filepath.Join(s.Dir, opts.Name+"-pins")
	return resolvePins(catalogs, filepath.Join(root, "policies"), b.PinsDir, int(broker.UID))
}

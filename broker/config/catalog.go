package config

import (
	"github.com/hashicorp/hcl/v2"

	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/plugins/protocol/http/route"
)

// CatalogBlock is a `catalog "TARGET" { ... }` block, as written in the broker's configuration and in
// policy test files. It describes a database target's tables and columns (with tags such as "pii"),
// an http target's routes (with tagged response fields, declared query parameters and body members),
// an mcp target's tools (with tagged result fields) and pin file,
// and its credential roles, least privileged first.
type CatalogBlock struct {
	Target      string        `hcl:"target,label"`
	Kind        string        `hcl:"kind,optional"`
	Environment string        `hcl:"environment,optional"`
	Tags        []string      `hcl:"tags,optional"`
	Tables      []TableBlock  `hcl:"table,block"`
	Routes      []route.Block `hcl:"route,block"`
	Roles       []RoleBlock   `hcl:"credential_role,block"`
	// Pins, for an mcp target, is its pin file (`svidbroker mcp pin`), relative to the file this
	// block is written in: the tools' input schemas policies see the arguments of (context.args).
	Pins string `hcl:"pins,optional"`
	// Tools are an mcp target's tool blocks.
	Tools []ToolBlock `hcl:"tool,block"`
	// DeclRange is where the block is written; its file is what Pins is relative to.
	DeclRange hcl.Range `hcl:",def_range"`
}

// TableBlock is a `table "schema.name" { ... }` block.
type TableBlock struct {
	Name    string        `hcl:"name,label"`
	Tags    []string      `hcl:"tags,optional"`
	Columns []ColumnBlock `hcl:"column,block"`
}

// ColumnBlock is a `column "name" { tags = [...] }` block.
type ColumnBlock struct {
	Name string   `hcl:"name,label"`
	Tags []string `hcl:"tags,optional"`
}

// RoleBlock is a `credential_role "name" { covers = [...] }` block. Cedar picks one per session (see
// authz.Authorizer.PickRole).
type RoleBlock struct {
	Name string `hcl:"name,label"`
	// Covers are the actions the role is meant for: statement actions ("sql:select", ...), or HTTP
	// request actions ("http:get", ...) for an http target.
	Covers []string `hcl:"covers,optional"`
	// VaultRole is the database secrets engine role the broker leases the credential from, under the
	// vault block's mount, for a target with auth = "vault". Default: Name.
	VaultRole string `hcl:"vault_role,optional"`
}

// GroupBlock is a `group "name" { ids = [...]; selectors = [...] }` block.
type GroupBlock struct {
	Name      string   `hcl:"name,label"`
	IDs       []string `hcl:"ids,optional"`
	Selectors []string `hcl:"selectors,optional"`
}

// NewCatalog is the catalog that catalog and group blocks describe, as authz models it.
func NewCatalog(catalogs []CatalogBlock, groups []GroupBlock) *authz.Catalog {
	var targets []authz.CatalogTarget
	for _, b := range catalogs {
		t := authz.CatalogTarget{Name: b.Target, Kind: b.Kind, Environment: b.Environment, Tags: b.Tags}
		for _, tb := range b.Tables {
			ct := authz.CatalogTable{Name: tb.Name, Tags: tb.Tags}
			for _, col := range tb.Columns {
				ct.Columns = append(ct.Columns, authz.CatalogColumn(col))
			}
			t.Tables = append(t.Tables, ct)
		}
		t.Routes = catalogRoutes(b.Routes)
		t.Tools, t.ToolSchemas = catalogMCP(b)
		for _, r := range b.Roles {
			t.Roles = append(t.Roles, authz.CredentialRole{Name: r.Name, Covers: r.Covers})
		}
		targets = append(targets, t)
	}
	var rules []authz.GroupRule
	for _, g := range groups {
		rules = append(rules, authz.GroupRule(g))
	}
	return authz.NewCatalog(targets, rules)
}

// Catalog is the catalog of the configuration's catalog and group blocks. A catalog block without a
// kind takes its target's protocol as kind, and an mcp target without a catalog block has an empty
// one: policies are then checked as for an mcp target without pins, whose calls carry no typed
// argument (see authz.ParseSchemaFor).
func (c *Config) Catalog() *authz.Catalog {
	catalogs := make([]CatalogBlock, 0, len(c.Catalogs))
	described := map[string]bool{}
	for _, b := range c.Catalogs {
		for _, t := range c.Targets {
			if b.Kind == "" && t.Name == b.Target {
				b.Kind = t.Protocol
			}
		}
		catalogs = append(catalogs, b)
		described[b.Target] = true
	}
	for _, t := range c.Targets {
		if t.Protocol == "mcp" && !described[t.Name] {
			catalogs = append(catalogs, CatalogBlock{Target: t.Name, Kind: t.Protocol})
		}
	}
	return NewCatalog(catalogs, c.Groups)
}

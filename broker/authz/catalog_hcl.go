package authz

// CatalogBlock is a `catalog "TARGET" { ... }` block, as written in the broker's configuration and in
// policy test files. It describes a target's tables and columns (with tags such as "pii") and its
// credential roles, least privileged first.
type CatalogBlock struct {
	Target      string       `hcl:"target,label"`
	Kind        string       `hcl:"kind,optional"`
	Environment string       `hcl:"environment,optional"`
	Tags        []string     `hcl:"tags,optional"`
	Tables      []TableBlock `hcl:"table,block"`
	Roles       []RoleBlock  `hcl:"credential_role,block"`
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
// Authorizer.PickRole).
type RoleBlock struct {
	Name string `hcl:"name,label"`
	// Covers are the statement actions the role is meant for ("sql:select", ...).
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

// NewCatalog builds a Catalog from configuration blocks.
func NewCatalog(catalogs []CatalogBlock, groups []GroupBlock) *Catalog {
	c := &Catalog{}
	for _, b := range catalogs {
		t := CatalogTarget{Name: b.Target, Kind: b.Kind, Environment: b.Environment, Tags: b.Tags}
		for _, tb := range b.Tables {
			ct := CatalogTable{Name: tb.Name, Tags: tb.Tags}
			for _, col := range tb.Columns {
				ct.Columns = append(ct.Columns, CatalogColumn(col))
			}
			t.Tables = append(t.Tables, ct)
		}
		for _, r := range b.Roles {
			t.Roles = append(t.Roles, CredentialRole{Name: r.Name, Covers: r.Covers})
		}
		c.Targets = append(c.Targets, t)
	}
	for _, g := range groups {
		c.Groups = append(c.Groups, GroupRule(g))
	}
	return c
}

package console

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclparse"

	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/broker/config"
	"github.com/svidbroker/svidbroker/policies"
)

// packsAuthorizer is the repository's policy packs over the demo catalog, as the stack runs them.
func packsAuthorizer(t *testing.T) *authz.Authorizer {
	t.Helper()
	file, diags := hclparse.NewParser().ParseHCLFile("../../policies/catalog.hcl")
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
	if err := config.CheckRoutes(c.Catalogs); err != nil {
		t.Fatal(err)
	}
	cat := config.NewCatalog(c.Catalogs, c.Groups)
	schema, err := authz.ParseSchemaFor("svidbroker.cedarschema", policies.Schema, cat)
	if err != nil {
		t.Fatal(err)
	}
	e, err := authz.New(authz.Config{Dir: "../../policies/packs", Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	return authz.NewAuthorizer(e, cat)
}

// TestCanShowsWhatTheAgentMayDo asks the page what the migrator may do: its DDL is allowed with an
// approval obligation, as `svidbroker policy can` says; an agent the packs do not know may do nothing.
func TestCanShowsWhatTheAgentMayDo(t *testing.T) {
	h := newHarness(t)
	h.console.cfg.Authorizer = packsAuthorizer(t)
	b := h.browser()
	b.logIn(approverEmail)
	ask := func(id, selectors string) response {
		return b.get(h.URL + "/can?" + url.Values{"spiffe_id": {id}, "selectors": {selectors}}.Encode())
	}
	r := ask("spiffe://example.org/agent/migrator", "agent:name:migrator")
	if r.status != http.StatusOK || !strings.Contains(r.body, "sql:ddl") || !strings.Contains(r.body, `<span class="allow">allowed</span>`) ||
		!strings.Contains(r.body, "approval required") {
		t.Fatalf("the migrator:\n%s", r.body)
	}
	r = ask("spiffe://example.org/agent/stranger", "")
	if r.status != http.StatusOK || strings.Contains(r.body, `<span class="allow">allowed</span>`) || !strings.Contains(r.body, "denied") {
		t.Fatalf("an unknown agent:\n%s", r.body)
	}
	if r := ask("not a spiffe id", ""); r.status != http.StatusBadRequest || !strings.Contains(r.body, "not valid") {
		t.Fatalf("a bad SPIFFE ID: %d", r.status)
	}
}

package policies_test

import (
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/broker/config"
)

// TestCanAsksColumnUseMaskedWithoutErrors: `policy can` asks column:use-masked too, for no particular
// use, and the packs' policies on it evaluate without errors: nothing is permitted whatever the use.
func TestCanAsksColumnUseMaskedWithoutErrors(t *testing.T) {
	e := allPacks(t)
	cat := config.NewCatalog([]config.CatalogBlock{{Target: "shop", Kind: "postgres",
		Tables: []config.TableBlock{{Name: "public.customers", Columns: []config.ColumnBlock{{Name: "email", Tags: []string{"pii"}}}}},
	}}, []config.GroupBlock{{Name: "analysts", Selectors: []string{"agent:name:analyst"}}})
	caps, err := authz.NewAuthorizer(e, cat).Can(t.Context(), spiffeid.RequireFromString("spiffe://example.org/agent/analyst"), []string{"agent:name:analyst"})
	if err != nil {
		t.Fatal(err)
	}
	asked := false
	for _, c := range caps {
		if len(c.Errors) > 0 {
			t.Errorf("%s %s: policies failed to evaluate: %+v", c.Action, c.Resource, c.Errors)
		}
		if c.Action == authz.ActionUseMasked && c.Resource == `Column::"shop/public.customers.email"` {
			asked = true
			if c.Allow {
				t.Errorf("%s %s allowed whatever the use", c.Action, c.Resource)
			}
		}
	}
	if !asked {
		t.Error("column:use-masked on email was not asked")
	}
}

package config_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/svidbroker/svidbroker/broker/config"
	"github.com/svidbroker/svidbroker/plugins/protocol/http/route"
	"github.com/svidbroker/svidbroker/plugins/protocol/postgres"
)

// acceptHTTP stands in for the http engine's validator: these tests check the catalog's routes, not
// the http backend block.
type acceptHTTP struct{}

func (acceptHTTP) ValidateBackend(*config.Target, *config.Check)  {}
func (acceptHTTP) ValidateTimeouts(*config.Target, *config.Check) {}

var httpPlugins = config.Plugins{Protocols: map[string]config.Protocol{"postgres": postgres.ConfigValidator{}, "http": acceptHTTP{}}}

// httpConfig is an http target "api" and a postgres target "shop", with the catalogs given.
func httpConfig(t *testing.T, catalogs string) string {
	ca := write(t, "ca.pem", caPEM)
	return `
trust_domain        = "example.org"
workload_api_socket = "unix:///run/spire/agent.sock"

target "api" {
  protocol = "http"
  listen   = "127.0.0.1:8443"
  backend {
    address  = "127.0.0.1:9443"
    database = "unused"
    ca_file  = "` + ca + `"
  }
}

target "shop" {
  protocol = "postgres"
  listen   = "127.0.0.1:15432"
  backend {
    address  = "db.internal:5432"
    database = "shop"
    ca_file  = "` + ca + `"
    user     = "svidbroker"
  }
}

policy {
  dir = "` + t.TempDir() + `"
}
` + catalogs
}

const apiCatalog = `
catalog "api" {
  kind = "http"
  route "GET /v1/customers/{id}" {
    tags = ["pii"]
    field "$.ssn" { tags = ["pii", "sensitive"] }
  }
  route "GET /v1/customers" {
    query = ["limit"]
  }
  route "POST /v1/refunds" {
    body = { order_id = "Long", amount = "Long", reason = "String" }
  }
  route "DELETE /v1/orders/{id}" {}
  credential_role "api-read"  { covers = ["http:get"] }
  credential_role "api-write" { covers = ["http:get", "http:post", "http:delete"] }
}
`

// TestRoutesLoadIntoTheCatalogAndTheRouteTable: an http target's routes load into its route table
// and into the catalog policies see, with their parameters, declared query and body.
func TestRoutesLoadIntoTheCatalogAndTheRouteTable(t *testing.T) {
	cfg, err := config.Parse("broker.hcl", []byte(httpConfig(t, apiCatalog)), httpPlugins)
	if err != nil {
		t.Fatal(err)
	}
	tb, err := cfg.RouteTable("api")
	if err != nil {
		t.Fatal(err)
	}
	m, err := tb.Match("POST", "/v1/refunds", "")
	if err != nil || m.Route.Body["amount"] != "Long" {
		t.Fatalf("POST /v1/refunds: %+v, %v", m.Route, err)
	}
	if _, err := tb.Match("GET", "/v1/orders/1", ""); err == nil {
		t.Fatal("a route the catalog does not list matched")
	}
	// A target without routes has an empty table: every request is an unknown route.
	empty, err := cfg.RouteTable("shop")
	if err != nil || len(empty.Routes()) != 0 {
		t.Fatalf("shop's table: %v, %v", empty, err)
	}
	if _, err := cfg.RouteTable("nope"); err == nil {
		t.Fatal("a table for no target")
	}
	cat := cfg.Catalog()
	var routes []string
	for _, ct := range cat.Targets {
		for _, r := range ct.Routes {
			routes = append(routes, ct.Name+"/"+r.Pattern+" "+strings.Join(r.Params, ","))
		}
	}
	if strings.Join(routes, "|") != "api/GET /v1/customers/{id} id|api/GET /v1/customers |api/POST /v1/refunds |api/DELETE /v1/orders/{id} id" {
		t.Fatalf("catalog routes: %q", routes)
	}
}

// TestRouteMistakesAreRefused: each way of getting a catalog's routes wrong is refused at load,
// naming file:line and what to change.
func TestRouteMistakesAreRefused(t *testing.T) {
	for name, tc := range map[string]struct {
		catalog, says string
		line          int // of the route block, when the problem is one route's
	}{
		"routes of a postgres target": {"catalog \"shop\" {\n  route \"GET /a\" {}\n}\n", `catalog "shop" lists route blocks, but target "shop" has protocol "postgres"`, 2},
		"unknown body type": {"catalog \"api\" {\n  kind = \"http\"\n  route \"POST /a\" {\n    body = { n = \"Number\" }\n  }\n}\n",
			`body member "n" has type "Number"; use one of ["String" "Long" "Bool"]`, 3},
		"bad pattern":      {"catalog \"api\" {\n  route \"GET /a/{id}.json\" {}\n}\n", `is not allowed in a literal segment`, 2},
		"bad query name":   {"catalog \"api\" {\n  route \"GET /a\" { query = [\"a=b\"] }\n}\n", `query parameter "a=b"`, 2},
		"overlap":          {"catalog \"api\" {\n  route \"GET /a/{id}\" {}\n  route \"GET /a/b\" {}\n}\n", "overlaps", 0},
		"two body types":   {"catalog \"api\" {\n  route \"POST /a\" { body = { n = \"Long\" } }\n  route \"POST /b\" { body = { n = \"String\" } }\n}\n", `body member "n" is Long in route "POST /a"`, 0},
		"sql cover on api": {"catalog \"api\" {\n  credential_role \"r\" { covers = [\"sql:select\"] }\n}\n", `covers "sql:select", which is not an HTTP request action of target "api"`, 0},
		"http cover on db": {"catalog \"shop\" {\n  credential_role \"r\" { covers = [\"http:get\"] }\n}\n", `covers "http:get", which is not a statement action of target "shop"`, 0},
		"misspelt cover":   {"catalog \"api\" {\n  credential_role \"r\" { covers = [\"http:fetch\"] }\n}\n", `covers "http:fetch"`, 0},
	} {
		t.Run(name, func(t *testing.T) {
			src := httpConfig(t, tc.catalog)
			_, err := config.Parse("broker.hcl", []byte(src), httpPlugins)
			if err == nil || !strings.Contains(err.Error(), "broker.hcl:") || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("error %v; want file:line and %q", err, tc.says)
			}
			if tc.line > 0 {
				start := strings.Count(src[:strings.Index(src, tc.catalog)], "\n")
				if want := "broker.hcl:" + itoa(start+tc.line) + ":"; !strings.Contains(err.Error(), want) {
					t.Errorf("error %v; want it at %s", err, want)
				}
			}
		})
	}
	// Control: http covers on the http target, sql covers on the database.
	ok := apiCatalog + "catalog \"shop\" {\n  credential_role \"r\" { covers = [\"sql:select\"] }\n}\n"
	if _, err := config.Parse("broker.hcl", []byte(httpConfig(t, ok)), httpPlugins); err != nil {
		t.Fatal(err)
	}
}

// TestCheckRoutesOfTestFileCatalogs: catalogs from elsewhere than a configuration are held to the
// same rules, kind = "http" standing for the target's protocol.
func TestCheckRoutesOfTestFileCatalogs(t *testing.T) {
	good := config.CatalogBlock{Target: "api", Kind: "http"}
	good.Routes = append(good.Routes, routeBlock("POST /a", map[string]string{"n": "Long"}))
	if err := config.CheckRoutes([]config.CatalogBlock{good}); err != nil {
		t.Fatal(err)
	}
	noKind := good
	noKind.Kind = "postgres"
	other := config.CatalogBlock{Target: "api2", Kind: "http"}
	other.Routes = append(other.Routes, routeBlock("POST /b", map[string]string{"n": "Bool"}))
	bad := config.CatalogBlock{Target: "api", Kind: "http"}
	bad.Routes = append(bad.Routes, routeBlock("POST /a", map[string]string{"n": "Float"}))
	for name, cs := range map[string][]config.CatalogBlock{
		"not http": {noKind}, "two types": {good, other}, "bad type": {bad},
	} {
		if err := config.CheckRoutes(cs); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func routeBlock(pattern string, body map[string]string) route.Block {
	return route.Block{Pattern: pattern, Body: body}
}

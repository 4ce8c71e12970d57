package main

import (
	"bytes"
	"flag"
	"io"
	"os"
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

const apiCatalogHCL = `
catalog "api" {
  kind = "http"
  route "GET /v1/customers/{id}" {
    field "$.email" { tags = ["pii"] }
    field "$.ssn"   { tags = ["pii", "sensitive"] }
  }
  route "DELETE /v1/orders/{id}" {}
  route "POST /v1/refunds" {
    body = { order_id = "Long", amount = "Long", reason = "String" }
  }
  credential_role "api-read"  { covers = ["http:get"] }
  credential_role "api-write" { covers = ["http:get", "http:post", "http:delete"] }
}
group "agents" { ids = ["spiffe://example.org/agent/*"] }
`

const apiPolicies = `
@id("agents-get")
permit (principal in Group::"agents", action == Action::"http:get", resource in Target::"api")
unless { context.params has id && context.params.id == "13" };

@id("agents-refund")
@approval("required")
permit (principal in Group::"agents", action == Action::"http:post", resource == Route::"api/POST /v1/refunds")
when { context.body has amount && context.body.amount <= 100 };

@id("agents-clear")
permit (principal in Group::"agents", action == Action::"field:read-unmasked", resource in Target::"api");

@id("agents-ssn")
@mask("partial")
@reason("support confirms a customer by the last digits")
forbid (principal in Group::"agents", action == Action::"field:read-unmasked", resource in Target::"api")
when { resource.tags.contains("sensitive") };

@id("agents-read-role")
permit (principal in Group::"agents", action == Action::"credential:use", resource == CredentialRole::"api/api-read");
`

// TestPolicyCommandsOnHTTPTestFiles: validate and test load the policies with the HTTP records the
// test files' catalogs generate, so a policy on context.params validates.
func TestPolicyCommandsOnHTTPTestFiles(t *testing.T) {
	dir := t.TempDir()
	tests := apiCatalogHCL + `
test "refund of 100 is held" {
  principal = "spiffe://example.org/agent/a"
  action    = "http:post"
  target    = "api"
  route     = "POST /v1/refunds"
  body      = { order_id = 1, amount = 100, reason = "late" }
  expect    = "allow"
  obligations { approval = "required" }
}
test "ssn partially masked" {
  principal = "spiffe://example.org/agent/a"
  action    = "field:read-unmasked"
  target    = "api"
  route     = "GET /v1/customers/{id}"
  params    = { id = "1" }
  field     = "$.ssn"
  expect    = "deny"
  obligations { mask = "partial" }
}
`
	for name, src := range map[string]string{"p.cedar": apiPolicies, "p.test.hcl": tests} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"policy", "validate", dir}, ": 5 policies, valid against the schema"},
		{[]string{"policy", "test", dir}, "2 passed, 0 failed"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(tc.args, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), tc.want) {
			t.Errorf("%v: exit %d\n%s%s", tc.args, code, stdout.String(), stderr.String())
		}
	}
	// Control: without the routes' catalog, context.params has no id and the policies are refused.
	if err := os.WriteFile(filepath.Join(dir, "p.test.hcl"), []byte("# no catalog\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"policy", "validate", dir}, &stdout, &stderr); code == 0 || !strings.Contains(stderr.String(), "agents-refund") {
		t.Errorf("validated without the catalog: exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
}

// apiAuthorizer is the authorizer `policy explain` and `policy can` load, over apiCatalogHCL.
func apiAuthorizer(t *testing.T) (*authz.Authorizer, *config.Config) {
	t.Helper()
	file, diags := hclparse.NewParser().ParseHCL([]byte(apiCatalogHCL), "catalog.hcl")
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
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "p.cedar"), []byte(apiPolicies), 0o644); err != nil {
		t.Fatal(err)
	}
	e, err := authz.New(authz.Config{Dir: dir, Schema: schema, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{Catalogs: c.Catalogs, Groups: c.Groups, Policy: &config.Policy{Dir: dir, DefaultMask: "redact"},
		Targets: []config.Target{{Name: "api", Protocol: "http", VaultRoles: map[string]string{"api-read": "api-read", "api-write": "api-write"}}}}
	return authz.NewAuthorizer(e, cat), cfg
}

// TestExplainAnHTTPRequest parses explain's HTTP flags as the command does and explains the request.
func TestExplainAnHTTPRequest(t *testing.T) {
	az, _ := apiAuthorizer(t)
	base := []string{"--principal", "spiffe://example.org/agent/a", "--target", "api"}
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"a customer", []string{"--route", "GET /v1/customers/{id}", "--param", "id=1"},
			[]string{"decision   ALLOW", `http:get  Route::"api/GET /v1/customers/{id}"`, "permitted by agents-get"}},
		{"customer 13", []string{"--route", "GET /v1/customers/{id}", "--param", "id=13"},
			[]string{"decision   DENY", "no permit matched (default deny)"}},
		{"a refund held", []string{"--route", "POST /v1/refunds", "--body", "amount=100", "--body", "reason=late"},
			[]string{"decision   ALLOW", "obligations approval=required"}},
		{"a large refund", []string{"--route", "POST /v1/refunds", "--body", "amount=101"}, []string{"decision   DENY"}},
		{"a field", []string{"--route", "GET /v1/customers/{id}", "--param", "id=1", "--field", "$.ssn"},
			[]string{"decision   DENY", `field:read-unmasked  Field::"api/GET /v1/customers/{id} $.ssn"`, "forbidden by agents-ssn", "mask=partial",
				"reason     agents-ssn: support confirms a customer by the last digits"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var spec authz.RequestSpec
			fs := flag.NewFlagSet("x", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			fs.StringVar(&spec.Principal, "principal", "", "")
			fs.StringVar(&spec.Target, "target", "", "")
			hf := httpFlags(fs, &spec)
			if err := fs.Parse(append(base, tc.args...)); err != nil {
				t.Fatal(err)
			}
			spec.Action = defaultHTTPAction(spec)
			if err := hf.apply(az.Catalog, &spec); err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if err := printExplain(&out, az, spec); err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output does not contain\n  %s\n%s", w, out.String())
				}
			}
		})
	}
	// Mistakes: a body member that is not a Long, flags of a request without its route.
	for _, args := range [][]string{
		{"--route", "POST /v1/refunds", "--body", "amount=lots"},
		{"--param", "id=1"},
		{"--route", "GET /v1/customers/{id}", "--param", "id=1", "--param", "id=2"},
	} {
		spec := authz.RequestSpec{Target: "api"}
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		hf := httpFlags(fs, &spec)
		if err := fs.Parse(args); err == nil {
			err = hf.apply(az.Catalog, &spec)
			if err == nil {
				t.Errorf("%v: accepted", args)
			}
		}
	}
}

// TestCanListsRoutePermissionsAndTheAPIRole: `policy can` lists the routes a caller may call, the
// response fields it reads masked and why, and the credential role of its API sessions.
func TestCanListsRoutePermissionsAndTheAPIRole(t *testing.T) {
	az, cfg := apiAuthorizer(t)
	var out bytes.Buffer
	if err := printCan(t.Context(), &out, az, cfg, spiffeid.RequireFromString("spiffe://example.org/agent/a"), nil, false); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{
		`may    http:get               Route::"api/GET /v1/customers/{id}"`,
		`may    field:read-unmasked    Field::"api/GET /v1/customers/{id} $.email"`,
		"Response fields it reads masked (field:read-unmasked is denied):",
		`masked Field::"api/GET /v1/customers/{id} $.ssn"`,
		`strategy partial, from @mask of the deciding policy; forbidden by policy agents-ssn`,
		"api-read (Vault role api-read), for http:get",
	} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("output does not contain\n  %s\n%s", w, out.String())
		}
	}
	for _, never := range []string{`http:delete            Route::`, `http:post              Route::"api/POST`} {
		if strings.Contains(out.String(), "may    "+never) {
			t.Errorf("lists %s:\n%s", never, out.String())
		}
	}
}

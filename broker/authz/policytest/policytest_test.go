package policytest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/policies"
)

// TestTestsRunThroughASymlinkedDir runs tests through a symbolic link to their directory, as the
// demo's .demo/policies is, and names the files through the link.
func TestTestsRunThroughASymlinkedDir(t *testing.T) {
	real := t.TempDir()
	for name, src := range map[string]string{"p.cedar": `@id("agents-connect")
permit (principal in Group::"agents", action == Action::"connect", resource == Target::"shop");
`, "p.test.hcl": `catalog "shop" {}
group "agents" { ids = ["spiffe://example.org/agent/*"] }
test "agent connects" {
  principal = "spiffe://example.org/agent/a"
  action    = "connect"
  target    = "shop"
  expect    = "allow"
}
`} {
		if err := os.WriteFile(filepath.Join(real, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	link := filepath.Join(t.TempDir(), "policies")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	schema, err := authz.ParseSchema("svidbroker.cedarschema", policies.Schema)
	if err != nil {
		t.Fatal(err)
	}
	e, err := authz.New(authz.Config{Dir: link, Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	results, err := Run(e, link)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 1 || len(results[0].Diff) != 0 || results[0].File != filepath.Join(link, "p.test.hcl") {
		t.Fatalf("results %+v", results)
	}
}

func TestFailedTestSaysWhatDiffersInWords(t *testing.T) {
	req := &Case{Expect: "allow", Reasons: []string{"a", "b"}, Obligations: &authz.Obligations{Mask: "hash", Record: "full"}}
	d := authz.Decision{Allow: false, Reasons: []string{"forbid-x"}, Obligations: authz.Obligations{Mask: "partial", Record: "full"}}
	got := strings.Join(req.diff(d), "\n")
	want := []string{
		`decision: expected allow, got deny by "forbid-x"`,
		`deciding policies: expected "a", "b", got "forbid-x"`,
		`obligation mask: expected "hash", got "partial"`,
	}
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("diff does not say %q:\n%s", w, got)
		}
	}
	if strings.Contains(got, "record") || strings.Contains(got, "{") {
		t.Errorf("diff mentions what matched, or dumps a struct:\n%s", got)
	}
	none := (&Case{Expect: "allow", Reasons: []string{}, Obligations: &authz.Obligations{Approval: "required"}}).diff(authz.Decision{})
	for _, w := range []string{"got deny because no policy permits it (default deny)", `obligation approval: expected "required", got none`} {
		if !strings.Contains(strings.Join(none, "\n"), w) {
			t.Errorf("diff does not say %q:\n%s", w, strings.Join(none, "\n"))
		}
	}
}

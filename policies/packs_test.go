package policies_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/policies"
)

// TestPacks runs every pack's own tests against that pack alone, and the combined tests against all
// packs together, as the demo loads them.
func TestPacks(t *testing.T) {
	schema, err := authz.ParseSchema("svidbroker.cedarschema", policies.Schema)
	if err != nil {
		t.Fatal(err)
	}
	packs, err := os.ReadDir("packs")
	if err != nil {
		t.Fatal(err)
	}
	runs := map[string][2]string{"all packs": {"packs", "tests"}}
	for _, p := range packs {
		if p.IsDir() {
			dir := filepath.Join("packs", p.Name())
			runs[p.Name()] = [2]string{dir, dir}
		}
	}
	if len(runs) < 5 {
		t.Fatalf("expected the baseline, analyst, support and migrator packs; found %d runs", len(runs))
	}
	for name, dirs := range runs {
		t.Run(name, func(t *testing.T) {
			e, err := authz.New(authz.Config{Dir: dirs[0], Schema: schema})
			if err != nil {
				t.Fatal(err)
			}
			results, err := authz.RunTests(e, dirs[1])
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range results {
				if len(r.Diff) > 0 {
					t.Errorf("%s:%d %q:\n    %s", r.File, r.Line, r.Name, strings.Join(r.Diff, "\n    "))
				}
			}
			if len(results) == 0 {
				t.Fatal("no tests ran")
			}
		})
	}
}

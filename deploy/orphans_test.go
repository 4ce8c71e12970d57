package deploy_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestNoManifestLeftOut checks that every YAML file beside a kustomization is one of its resources
// or patches: a file the kustomization does not name (a misspelt entry, a file added and forgotten)
// is never applied, and nothing else would notice.
func TestNoManifestLeftOut(t *testing.T) {
	for _, b := range builds {
		t.Run(b.dir, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join(b.dir, "kustomization.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			var k struct {
				Resources []string `json:"resources"`
				Patches   []struct {
					Path string `json:"path"`
				} `json:"patches"`
			}
			if err := yaml.Unmarshal(raw, &k); err != nil {
				t.Fatal(err)
			}
			named := slices.Clone(k.Resources)
			for _, p := range k.Patches {
				named = append(named, p.Path)
			}
			files, err := filepath.Glob(filepath.Join(b.dir, "*.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range files {
				if base := filepath.Base(f); base != "kustomization.yaml" && !slices.Contains(named, base) {
					t.Errorf("%s is neither a resource nor a patch of %s/kustomization.yaml", f, b.dir)
				}
			}
		})
	}
}

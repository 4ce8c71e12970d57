package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/svidbroker/svidbroker/test/stack"
)

// The packs' policy tests name the catalog as catalog_file = "../../catalog.hcl", relative to their
// pack's directory in policies/packs, and the catalog names its pin files relative to itself. The
// demo's policy directories (the stack's while it runs, .demo/policies once kept) sit one level
// below these copies, so `svidbroker policy test --config .demo/broker.hcl` finds them.
func writeTestCatalog(dirs ...string) error {
	root, err := stack.RepoRoot()
	if err != nil {
		return err
	}
	src := filepath.Join(root, "policies")
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || name != "catalog.hcl" && !strings.HasSuffix(name, ".pins.json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			return err
		}
		for _, dir := range dirs {
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
				return fmt.Errorf("the policy tests' catalog: %w", err)
			}
		}
	}
	return nil
}

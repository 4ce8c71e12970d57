package stack

import (
	"fmt"
	"os"
	"path/filepath"
)

// BinDir returns the directory holding the programs `make tools` builds: $SVIDBROKER_BIN if set, else
// .bin/ at the root of the repository that contains the working directory.
func BinDir() (string, error) {
	if d := os.Getenv("SVIDBROKER_BIN"); d != "" {
		return d, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, ".bin"), nil
}

// RepoRoot returns the root of the repository that contains the working directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("stack: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "tools", "go.mod")); err == nil {
			return dir, nil
		}
		up := filepath.Dir(dir)
		if up == dir {
			return "", fmt.Errorf("stack: cannot find the repository root (a folder with tools/go.mod) above the working directory; set SVIDBROKER_BIN to the folder `make tools` builds into")
		}
		dir = up
	}
}

// tool returns the path of an executable that `make tools` or `make build` (target) puts in binDir, or
// an error that says how to build it.
func tool(binDir, name, target string) (string, error) {
	p := filepath.Join(binDir, name)
	st, err := os.Stat(p)
	if err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		return "", fmt.Errorf("stack: %s not found at %s: run `make %s` first", name, p, target)
	}
	return p, nil
}

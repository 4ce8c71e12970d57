package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// What `down` keeps in the demo directory, and `up` carries into the next run: the audit log and its
// keys (the chain continues), the policies with their edits, and the configuration, its paths pointing
// at these copies, so `svidbroker audit ... --config .demo/broker.hcl` and `svidbroker policy ...`
// work while the demo is down.
const (
	keptConfig   = "broker.hcl"
	keptPolicies = "policies"
	keptAudit    = "audit"
	keptKeys     = "audit-keys"
	// keptOther holds the other files the configuration names: CA certificates, the mask key.
	keptOther = "state"
	// keptAside holds the kept configuration and policies while a run has broker.hcl and policies
	// link into its stack. They are moved there, never deleted, so a run that dies without keeping
	// (SIGKILL, out of memory, a reboot) loses only its own changes.
	keptAside = "kept-while-running"
)

var keptNames = []string{keptConfig, keptPolicies, keptAudit, keptKeys, keptOther, keptAside, markerFile}

// markerFile marks a directory as the demo's: up writes it into the directory it creates or finds
// empty, and nothing clears or wipes a non-empty directory without it, so a mistyped --dir cannot
// remove someone's files.
const markerFile = ".svidbroker-demo"

// errNotDemoDir is returned for a non-empty directory without the marker.
var errNotDemoDir = errors.New("not a demo directory")

// checkDemoDir returns nil when dir is the demo's: marked, empty or absent.
func checkDemoDir(dir string) error {
	if _, err := os.Stat(filepath.Join(dir, markerFile)); err == nil {
		return nil
	}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) || err == nil && len(entries) == 0 {
		return nil
	}
	if err != nil {
		return err
	}
	return fmt.Errorf("%w: %s is not empty and has no %s file, so svidbroker-demo leaves it alone: pass --dir "+
		"a new or empty directory (a demo directory from before the marker existed needs: touch %s)",
		errNotDemoDir, dir, markerFile, filepath.Join(dir, markerFile))
}

// markDemoDir creates dir if need be and marks it as the demo's; it refuses a directory that is not.
func markDemoDir(dir string) error {
	if err := checkDemoDir(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, markerFile),
		[]byte("This directory belongs to svidbroker-demo, which may clear it (up) or remove it (down --wipe).\n"), 0o644)
}

// linked are the kept names a running demo links into its stack.
var linked = []string{keptConfig, keptPolicies}

// linkLive points demoDir's broker.hcl and policies at the running stack's, given by targets (kept
// name to path), after moving the copies an earlier run kept aside.
func linkLive(demoDir string, targets map[string]string) error {
	for _, name := range linked {
		p := filepath.Join(demoDir, name)
		st, err := os.Lstat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return fmt.Errorf("link %s: %w", name, err)
		case st.Mode()&os.ModeSymlink != 0:
			if err := os.Remove(p); err != nil { // a dead run's link; recoverKept restored what it hid
				return fmt.Errorf("link %s: %w", name, err)
			}
		default:
			aside := filepath.Join(demoDir, keptAside, name)
			if err := os.MkdirAll(filepath.Dir(aside), 0o755); err != nil {
				return fmt.Errorf("link %s: %w", name, err)
			}
			if err := os.RemoveAll(aside); err != nil {
				return fmt.Errorf("link %s: %w", name, err)
			}
			if err := os.Rename(p, aside); err != nil {
				return fmt.Errorf("link %s: %w", name, err)
			}
		}
		if target, ok := targets[name]; ok {
			if err := os.Symlink(target, p); err != nil {
				return fmt.Errorf("link %s: %w", name, err)
			}
		}
	}
	return nil
}

// recoverKept undoes linkLive once no run is using the links: a link left by a run that died
// without keeping (or whose keep failed) gives way to the copy set aside, and copies set aside that a
// completed keep replaced are removed. It returns the names it restored.
func recoverKept(demoDir string) (restored []string, err error) {
	for _, name := range linked {
		p, aside := filepath.Join(demoDir, name), filepath.Join(demoDir, keptAside, name)
		if st, err := os.Lstat(p); err == nil && st.Mode()&os.ModeSymlink != 0 {
			if err := os.Remove(p); err != nil {
				return restored, fmt.Errorf("restore %s: %w", name, err)
			}
		}
		if _, err := os.Lstat(p); err == nil {
			if err := os.RemoveAll(aside); err != nil {
				return restored, fmt.Errorf("restore %s: %w", name, err)
			}
			continue
		}
		if _, err := os.Lstat(aside); err != nil {
			continue
		}
		if err := os.Rename(aside, p); err != nil {
			return restored, fmt.Errorf("restore %s: %w", name, err)
		}
		restored = append(restored, name)
	}
	if err := os.Remove(filepath.Join(demoDir, keptAside)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return restored, fmt.Errorf("restore: %w", err)
	}
	return restored, nil
}

// keep copies what the configuration at configPath names inside stateDir (which the stack removes
// when it stops) into demoDir, and writes the configuration there with those paths rewritten. named
// maps directories to the names they keep (the policy directory to "policies", ...); anything else
// goes below "state". Stop the broker first, so the audit log is complete.
func keep(demoDir, stateDir, configPath string, named map[string]string) error {
	b, err := os.ReadFile(configPath)
	if err != nil {
		return fmt.Errorf("keep: %w", err)
	}
	cfg := string(b)
	dest := func(p string) (src, dst string) {
		for from, to := range named {
			if from == "" {
				continue
			}
			if p == from || strings.HasPrefix(p, from+string(filepath.Separator)) {
				return from, filepath.Join(demoDir, to, strings.TrimPrefix(p, from))
			}
		}
		rel, _ := filepath.Rel(stateDir, p)
		return p, filepath.Join(demoDir, keptOther, rel)
	}
	copied := map[string]bool{}
	if err := os.RemoveAll(filepath.Join(demoDir, keptOther)); err != nil {
		return fmt.Errorf("keep: %w", err)
	}
	for _, p := range pathsUnder(cfg, stateDir) {
		src, dst := dest(p)
		if !copied[src] {
			copied[src] = true
			_, top := dest(src)
			if err := replaceWithCopy(src, top); err != nil {
				return err
			}
		}
		cfg = strings.ReplaceAll(cfg, `"`+p+`"`, `"`+dst+`"`)
	}
	header := "# Kept by `svidbroker-demo down`: the broker that ran with this configuration has stopped, and its\n" +
		"# paths now point at copies in this directory, for `svidbroker audit` and `svidbroker policy`.\n"
	return writeReplacing(filepath.Join(demoDir, keptConfig), []byte(header+cfg))
}

// pathsUnder lists the distinct quoted strings of cfg that are paths below dir.
func pathsUnder(cfg, dir string) []string {
	var out []string
	prefix := `"` + dir + string(filepath.Separator)
	for rest := cfg; ; {
		i := strings.Index(rest, prefix)
		if i < 0 {
			break
		}
		rest = rest[i+1:]
		end := strings.IndexByte(rest, '"')
		if end < 0 {
			break
		}
		if p := rest[:end]; !slices.Contains(out, p) {
			out = append(out, p)
		}
		rest = rest[end+1:]
	}
	return out
}

// replaceWithCopy copies src (a file or a directory tree) to dst, replacing whatever dst was: a
// symbolic link into the stopped stack, or a copy from an earlier run. A src that is gone is skipped.
func replaceWithCopy(src, dst string) error {
	if _, err := os.Stat(src); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	tmp := dst + ".new"
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("keep: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("keep: %w", err)
	}
	if err := copyTree(src, tmp); err != nil {
		return err
	}
	if err := os.RemoveAll(dst); err != nil {
		return fmt.Errorf("keep: %w", err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("keep: %w", err)
	}
	return nil
}

func writeReplacing(path string, b []byte) error {
	tmp := path + ".new"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("keep: %w", err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("keep: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("keep: %w", err)
	}
	return nil
}

// copyTree copies a file, or a directory of regular files, keeping their permission bits: audit keys
// stay private.
func copyTree(src, dst string) error {
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(target, info.Mode().Perm()|0o700)
		case !d.Type().IsRegular():
			return nil // sockets and the like belong to the running stack
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, info.Mode().Perm())
	})
	if err != nil {
		return fmt.Errorf("keep: %w", err)
	}
	return nil
}

// kept returns what an earlier run left in demoDir: the policy directory (when it is a directory of
// its own, not a link into a running stack), and the audit log and keys.
func kept(demoDir string) (policies, auditDir, auditKeys string) {
	if st, err := os.Lstat(filepath.Join(demoDir, keptPolicies)); err == nil && st.IsDir() {
		policies = filepath.Join(demoDir, keptPolicies)
	}
	if st, err := os.Stat(filepath.Join(demoDir, keptAudit)); err == nil && st.IsDir() {
		auditDir = filepath.Join(demoDir, keptAudit)
	}
	if st, err := os.Stat(filepath.Join(demoDir, keptKeys)); err == nil && st.IsDir() {
		auditKeys = filepath.Join(demoDir, keptKeys)
	}
	return policies, auditDir, auditKeys
}

// clearRuntime removes what a run leaves in demoDir besides the kept state: pid and ready files,
// logs, personas' files. It refuses a directory that is not the demo's.
func clearRuntime(demoDir string) error {
	if err := checkDemoDir(demoDir); err != nil {
		return err
	}
	entries, err := os.ReadDir(demoDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if slices.Contains(keptNames, e.Name()) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(demoDir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

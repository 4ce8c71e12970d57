package pin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Version is the pin file format this package reads and writes.
const Version = 1

// MaxFileBytes bounds a pin file.
const MaxFileBytes = 16 << 20

// Entry is one pinned tool: its definition, the digest of that definition, and when it was pinned.
type Entry struct {
	Definition
	Digest   string    `json:"digest"`
	PinnedAt time.Time `json:"pinnedAt"`
}

// File is a target's pins, as JSON on disk.
type File struct {
	Version int     `json:"version"`
	Target  string  `json:"target"`
	Tools   []Entry `json:"tools"`
}

// NewFile pins defs for target at now. Two definitions with one name are refused.
func NewFile(target string, defs []Definition, now time.Time) (*File, error) {
	f := &File{Version: Version, Target: target}
	seen := map[string]bool{}
	for _, d := range defs {
		if err := d.Validate(); err != nil {
			return nil, err
		}
		if seen[d.Name] {
			return nil, fmt.Errorf("pin: target %q lists tool %q twice", target, clip(d.Name))
		}
		seen[d.Name] = true
		f.Tools = append(f.Tools, Entry{Definition: d, Digest: Digest(d), PinnedAt: now.UTC()})
	}
	f.sort()
	return f, nil
}

func (f *File) sort() {
	slices.SortFunc(f.Tools, func(a, b Entry) int { return strings.Compare(a.Name, b.Name) })
}

// Load reads and checks a pin file: its version, its size, one entry per tool, and each entry's digest
// against its definition (a hand-edited definition or digest is refused).
func Load(path string) (*File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("pin: %w", err)
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("pin: %s: %w", path, err)
	}
	if len(b) > MaxFileBytes {
		return nil, fmt.Errorf("pin: %s is over the limit of %d bytes", path, MaxFileBytes)
	}
	f, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("pin: %s: %s", path, strings.TrimPrefix(err.Error(), "pin: "))
	}
	return f, nil
}

// Parse reads a pin file's bytes (see Load).
func Parse(b []byte) (*File, error) {
	if len(b) > MaxFileBytes {
		return nil, fmt.Errorf("pin: a pin file of %d bytes is over the limit of %d", len(b), MaxFileBytes)
	}
	var probe struct {
		Version *int `json:"version"`
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		return nil, fmt.Errorf("pin: not a pin file: %w", err)
	}
	if probe.Version == nil {
		return nil, errors.New("pin: not a pin file: no \"version\"")
	}
	if *probe.Version != Version {
		return nil, fmt.Errorf("pin: pin file version %d is not one this broker reads (it reads version %d); write it again with `svidbroker mcp pin TARGET --accept`", *probe.Version, Version)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var f File
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("pin: not a pin file: %w", err)
	}
	if f.Target == "" {
		return nil, errors.New("pin: the pin file names no target")
	}
	seen := map[string]bool{}
	for i, e := range f.Tools {
		if err := e.Validate(); err != nil {
			return nil, fmt.Errorf("pin: tools[%d]: %s", i, strings.TrimPrefix(err.Error(), "pin: "))
		}
		if seen[e.Name] {
			return nil, fmt.Errorf("pin: tool %q is pinned twice", clip(e.Name))
		}
		seen[e.Name] = true
		if got := Digest(e.Definition); got != e.Digest {
			return nil, fmt.Errorf("pin: tool %q: its recorded digest %s is not the digest of its definition (%s): the file was edited by hand; pin it again with `svidbroker mcp pin %s --accept`", clip(e.Name), e.Digest, got, f.Target)
		}
	}
	f.sort()
	return &f, nil
}

// Save writes f to path atomically: a temporary file in the same directory, synced, renamed over path,
// and the directory synced, so that a reader sees the old file or the new one, and a crash keeps one.
func (f *File) Save(path string) error {
	if f.Version == 0 {
		f.Version = Version
	}
	f.sort()
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("pin: %w", err)
	}
	b = append(b, '\n')
	if len(b) > MaxFileBytes {
		return fmt.Errorf("pin: the pins of target %q take %d bytes, over the limit of %d", f.Target, len(b), MaxFileBytes)
	}
	return writeAtomic(path, b, 0o644)
}

func writeAtomic(path string, b []byte, mode os.FileMode) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("pin: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(b); err != nil {
		return fmt.Errorf("pin: %w", err)
	}
	if err = tmp.Chmod(mode); err != nil {
		return fmt.Errorf("pin: %w", err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("pin: %w", err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("pin: %w", err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("pin: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("pin: %w", err)
	}
	defer d.Close()
	if err = d.Sync(); err != nil {
		return fmt.Errorf("pin: syncing %s: %w", dir, err)
	}
	return nil
}

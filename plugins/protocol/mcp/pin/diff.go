package pin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// ChangeKind is what happened to a tool between a pin file and the live list.
type ChangeKind string

const (
	Added   ChangeKind = "added"
	Removed ChangeKind = "removed"
	Changed ChangeKind = "changed"
)

// Change is one tool that differs between a pin file and the live list.
type Change struct {
	Tool string
	Kind ChangeKind
	// Fields are the definition's members that differ (Changed): "title", "description", "inputSchema",
	// "outputSchema", "annotations".
	Fields []string
	// Paths are where, inside the schemas and annotations, values differ: "inputSchema.properties.reason
	// (added)". At most maxPaths per member.
	Paths    []string
	Old, New *Definition // nil for the side that has no such tool
	// Pinned and Seen are the digests (Pinned "" for Added, Seen "" for Removed).
	Pinned, Seen string
}

const maxPaths = 20

// Diff compares the live definitions with the pins of old (nil: no pin file, every tool is added), by
// tool name. Where defs name a tool twice, the first counts.
func Diff(old *File, defs []Definition) []Change {
	pinned := map[string]Entry{}
	if old != nil {
		for _, e := range old.Tools {
			pinned[e.Name] = e
		}
	}
	live := map[string]bool{}
	var out []Change
	for _, d := range defs {
		if live[d.Name] {
			continue
		}
		live[d.Name] = true
		d := d
		seen := Digest(d)
		e, ok := pinned[d.Name]
		switch {
		case !ok:
			out = append(out, Change{Tool: d.Name, Kind: Added, New: &d, Seen: seen})
		case e.Digest != seen:
			old := e.Definition
			c := Change{Tool: d.Name, Kind: Changed, Old: &old, New: &d, Pinned: e.Digest, Seen: seen}
			c.Fields, c.Paths = fieldsChanged(old, d)
			out = append(out, c)
		}
	}
	if old != nil {
		for _, e := range old.Tools {
			if !live[e.Name] {
				old := e.Definition
				out = append(out, Change{Tool: e.Name, Kind: Removed, Old: &old, Pinned: e.Digest})
			}
		}
	}
	slices.SortFunc(out, func(a, b Change) int { return strings.Compare(a.Tool, b.Tool) })
	return out
}

// fieldsChanged lists the members of a and b that differ, and where inside them.
func fieldsChanged(a, b Definition) (fields, paths []string) {
	if a.Title != b.Title {
		fields = append(fields, "title")
	}
	if a.Description != b.Description {
		fields = append(fields, "description")
	}
	for _, m := range []struct {
		name string
		a, b json.RawMessage
	}{{"inputSchema", a.InputSchema, b.InputSchema}, {"outputSchema", a.OutputSchema, b.OutputSchema}, {"annotations", a.Annotations, b.Annotations}} {
		ca, errA := canonicalValue(m.a)
		cb, errB := canonicalValue(m.b)
		if errA == nil && errB == nil && bytes.Equal(ca, cb) {
			continue
		}
		fields = append(fields, m.name)
		var va, vb any
		if ca != nil {
			_ = json.Unmarshal(ca, &va)
		}
		if cb != nil {
			_ = json.Unmarshal(cb, &vb)
		}
		var ps []string
		walkDiff(m.name, va, vb, &ps)
		if len(ps) > maxPaths {
			ps = append(ps[:maxPaths], fmt.Sprintf("%s: and %d more", m.name, len(ps)-maxPaths))
		}
		paths = append(paths, ps...)
	}
	return fields, paths
}

// walkDiff appends the paths at which a and b differ.
func walkDiff(path string, a, b any, out *[]string) {
	if len(*out) > maxPaths {
		return
	}
	switch {
	case a == nil && b != nil:
		*out = append(*out, path+" (added)")
		return
	case a != nil && b == nil:
		*out = append(*out, path+" (removed)")
		return
	}
	ma, okA := a.(map[string]any)
	mb, okB := b.(map[string]any)
	if okA && okB {
		keys := map[string]bool{}
		for k := range ma {
			keys[k] = true
		}
		for k := range mb {
			keys[k] = true
		}
		sorted := make([]string, 0, len(keys))
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		for _, k := range sorted {
			walkDiff(path+"."+k, ma[k], mb[k], out)
		}
		return
	}
	ea, _ := json.Marshal(a)
	eb, _ := json.Marshal(b)
	if !bytes.Equal(ea, eb) {
		*out = append(*out, path+" (changed)")
	}
}

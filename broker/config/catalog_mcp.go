package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/plugins/protocol/http/jsonmask"
)

// MaxPinFileBytes bounds a pin file the catalog reads.
const MaxPinFileBytes = 16 << 20

// ToolBlock is a `tool "name" { ... }` block of an mcp catalog: the tool's tags, whether its results'
// text is JSON (text = "json"), and its tagged result fields.
//
//	tool "get_customer" {
//	  tags = ["pii"]
//	  text = "json"
//	  field "$.ssn" { tags = ["pii", "sensitive"] }
//	}
type ToolBlock struct {
	Name   string       `hcl:"name,label"`
	Tags   []string     `hcl:"tags,optional"`
	Text   string       `hcl:"text,optional"`
	Fields []FieldBlock `hcl:"field,block"`
}

// FieldBlock is a `field "$.json.path" { tags = [...] }` block of a tool.
type FieldBlock struct {
	Path string   `hcl:"path,label"`
	Tags []string `hcl:"tags,optional"`
}

// pinFile is the part of a pin file (written by `svidbroker mcp pin`) that the catalog reads: each
// tool's name and input schema, from which MCPArgs is generated. The file's format belongs to the
// plugins/protocol/mcp/pin package; reading only these fields with this small struct keeps the
// configuration independent of it.
type pinFile struct {
	Version int `json:"version"`
	Tools   []struct {
		Name        string          `json:"name"`
		InputSchema json.RawMessage `json:"inputSchema"`
	} `json:"tools"`
}

// PinPath is the catalog's pin file as a path: relative to the file the catalog block is written in.
// "" when it names none.
func (b CatalogBlock) PinPath() string {
	if b.Pins == "" || filepath.IsAbs(b.Pins) {
		return b.Pins
	}
	return filepath.Join(filepath.Dir(b.DeclRange.Filename), b.Pins)
}

// ReadPinSchemas reads the input schema of each tool of a pin file: tool name -> inputSchema.
func ReadPinSchemas(path string) (map[string]json.RawMessage, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("pin file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxPinFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("pin file %s: %w", path, err)
	}
	if len(b) > MaxPinFileBytes {
		return nil, fmt.Errorf("pin file %s: larger than %d bytes", path, MaxPinFileBytes)
	}
	var pf pinFile
	if err := json.Unmarshal(b, &pf); err != nil {
		return nil, fmt.Errorf("pin file %s: %v", path, err)
	}
	if pf.Version != 1 {
		return nil, fmt.Errorf("pin file %s: version %d; this broker reads version 1", path, pf.Version)
	}
	out := map[string]json.RawMessage{}
	for i, t := range pf.Tools {
		switch {
		case t.Name == "":
			return nil, fmt.Errorf("pin file %s: tool %d has no name", path, i+1)
		case out[t.Name] != nil:
			return nil, fmt.Errorf("pin file %s: tool %q is pinned twice", path, t.Name)
		case len(t.InputSchema) == 0 || string(t.InputSchema) == "null":
			return nil, fmt.Errorf("pin file %s: tool %q has no inputSchema", path, t.Name)
		}
		out[t.Name] = t.InputSchema
	}
	return out, nil
}

// catalogMCP converts an mcp catalog's tool blocks, and reads its pin file's input schemas. A pin
// file that cannot be read gives no schemas: Load and CheckRoutes refuse such catalogs before they
// are used.
func catalogMCP(b CatalogBlock) ([]authz.CatalogTool, map[string]json.RawMessage) {
	var tools []authz.CatalogTool
	for _, tb := range b.Tools {
		ct := authz.CatalogTool{Name: tb.Name, Tags: tb.Tags, Text: tb.Text}
		for _, f := range tb.Fields {
			ct.Fields = append(ct.Fields, authz.CatalogField{Path: f.Path, Tags: f.Tags})
		}
		tools = append(tools, ct)
	}
	var schemas map[string]json.RawMessage
	if b.Pins != "" {
		schemas, _ = ReadPinSchemas(b.PinPath())
	}
	return tools, schemas
}

// checkMCPCatalog checks an mcp catalog's blocks: tools and pins only where kind is "mcp", each tool
// once, text "" or "json", field paths that parse, once each, and a readable pin file.
func checkMCPCatalog(cb CatalogBlock, kind string) []error {
	if len(cb.Tools) == 0 && cb.Pins == "" {
		return nil
	}
	if kind != "mcp" {
		return []error{fmt.Errorf("catalog %q lists tool blocks or pins but its target is %q: tools describe an mcp target", cb.Target, kind)}
	}
	var errs []error
	seen := map[string]bool{}
	for _, tb := range cb.Tools {
		if seen[tb.Name] {
			errs = append(errs, fmt.Errorf("catalog %q lists tool %q twice", cb.Target, tb.Name))
		}
		seen[tb.Name] = true
		if !slices.Contains([]string{"", "json"}, tb.Text) {
			errs = append(errs, fmt.Errorf("catalog %q tool %q: text = %q; use \"json\" (each content text is JSON) or leave it out (plain text)", cb.Target, tb.Name, tb.Text))
		}
		paths := map[string]bool{}
		for _, f := range tb.Fields {
			if _, err := jsonmask.ParsePath(f.Path); err != nil {
				errs = append(errs, fmt.Errorf("catalog %q tool %q: %w", cb.Target, tb.Name, err))
			}
			if paths[f.Path] {
				errs = append(errs, fmt.Errorf("catalog %q tool %q lists field %q twice", cb.Target, tb.Name, f.Path))
			}
			paths[f.Path] = true
		}
	}
	if cb.Pins != "" {
		if _, err := ReadPinSchemas(cb.PinPath()); err != nil {
			errs = append(errs, fmt.Errorf("catalog %q: %w (run `svidbroker mcp pin %s` to write it)", cb.Target, err, cb.Target))
		}
	}
	return errs
}

// mcpTools checks the mcp blocks of the target's catalogs, and (once, under the first mcp target)
// that the tools' input schemas give each argument one type (MCPArgs).
func (v *validator) mcpTools(t *Target) {
	for _, cb := range v.c.Catalogs {
		if cb.Target != t.Name {
			continue
		}
		for _, err := range checkMCPCatalog(cb, t.Protocol) {
			v.fail("Invalid MCP catalog", err.Error()+".", "catalog:"+t.Name)
		}
	}
	for _, first := range v.c.Targets {
		if first.Protocol == "mcp" {
			if first.Name != t.Name {
				return
			}
			break
		}
	}
	if t.Protocol != "mcp" {
		return
	}
	if err := mcpArgsError(v.c.Catalogs); err != nil {
		v.fail("Conflicting tool arguments", err.Error()+".", "catalog:"+t.Name)
	}
}

// checkMCPCatalogs checks the mcp blocks of catalogs from elsewhere than a configuration (a policy
// test file), by their kind, and the MCPArgs they generate.
func checkMCPCatalogs(catalogs []CatalogBlock) error {
	var errs []error
	for _, cb := range catalogs {
		errs = append(errs, checkMCPCatalog(cb, cb.Kind)...)
	}
	if len(errs) == 0 {
		if err := mcpArgsError(catalogs); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("config: %w", errors.Join(errs...))
	}
	return nil
}

// mcpArgsError is why the catalogs' tools' input schemas make no MCPArgs (an argument with two
// types), or nil.
func mcpArgsError(catalogs []CatalogBlock) error {
	tools := map[string]map[string]json.RawMessage{}
	for _, t := range NewCatalog(catalogs, nil).Targets {
		if len(t.ToolSchemas) > 0 {
			tools[t.Name] = t.ToolSchemas
		}
	}
	_, err := authz.MCPArgsSchema(tools)
	return err
}

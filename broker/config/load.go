package config

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// MaxFileBytes bounds the size of a configuration file.
const MaxFileBytes = 1 << 20

// Error is a configuration error. Its message names file:line and the field.
type Error struct {
	Diags hcl.Diagnostics
}

func (e *Error) Error() string {
	var b strings.Builder
	for i, d := range e.Diags {
		if i > 0 {
			b.WriteString("\n")
		}
		b.WriteString("config: ")
		if d.Subject != nil {
			fmt.Fprintf(&b, "%s:%d: ", d.Subject.Filename, d.Subject.Start.Line)
		}
		b.WriteString(d.Summary)
		if d.Detail != "" {
			b.WriteString(": ")
			b.WriteString(d.Detail)
		}
	}
	return b.String()
}

// Load reads, decodes and validates the configuration file at path, checking
// the blocks that belong to plugins with theirs.
func Load(path string, plugins Plugins) (*Config, error) {
	src, err := readLimited(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, src, plugins)
}

// Parse decodes and validates src, naming path in errors.
func Parse(path string, src []byte, plugins Plugins) (*Config, error) {
	file, diags := hclsyntax.ParseConfig(src, path, hcl.InitialPos)
	if diags.HasErrors() {
		return nil, &Error{Diags: diags}
	}
	cfg := &Config{Path: path, file: file}
	if diags := gohcl.DecodeBody(file.Body, nil, cfg); diags.HasErrors() {
		nameFields(file.Body.(*hclsyntax.Body), diags)
		return nil, &Error{Diags: diags}
	}
	if err := cfg.Validate(plugins); err != nil {
		return nil, err
	}
	return cfg, nil
}

// nameFields adds the attribute's name to diagnostics that point into its value but do not name it,
// such as HCL's type errors ("string required, but have tuple").
func nameFields(body *hclsyntax.Body, diags hcl.Diagnostics) {
	for _, d := range diags {
		if d.Subject == nil {
			continue
		}
		if name := attributeAt(body, *d.Subject); name != "" && !strings.Contains(d.Detail, `"`+name+`"`) {
			d.Detail = fmt.Sprintf("field %q: %s", name, d.Detail)
		}
	}
}

func attributeAt(body *hclsyntax.Body, r hcl.Range) string {
	for name, a := range body.Attributes {
		if er := a.Expr.Range(); er.ContainsOffset(r.Start.Byte) {
			return name
		}
	}
	for _, b := range body.Blocks {
		if name := attributeAt(b.Body, r); name != "" {
			return name
		}
	}
	return ""
}

func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("config: %s: %w", path, err)
	}
	if len(b) > MaxFileBytes {
		return nil, fmt.Errorf("config: %s: larger than %d bytes", path, MaxFileBytes)
	}
	return b, nil
}

// locate finds the source range of a field for error messages. Each step is a block type, optionally
// with its label ("target:shop"); the last step names an attribute. If the attribute is absent, the
// range of the innermost block found is returned, so the message still points near the problem.
func (c *Config) locate(steps ...string) *hcl.Range {
	if c.file == nil {
		return nil
	}
	body, ok := c.file.Body.(*hclsyntax.Body)
	if !ok {
		return nil
	}
	where := body.SrcRange
	for i, step := range steps {
		last := i == len(steps)-1
		if last {
			if a, ok := body.Attributes[step]; ok {
				r := a.SrcRange
				return &r
			}
		}
		typ, label, _ := strings.Cut(step, ":")
		var next *hclsyntax.Block
		for _, b := range body.Blocks {
			if b.Type == typ && (label == "" || (len(b.Labels) > 0 && b.Labels[0] == label)) {
				next = b
				break
			}
		}
		if next == nil {
			break
		}
		where = next.DefRange()
		body = next.Body
	}
	return &where
}

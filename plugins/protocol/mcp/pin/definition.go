package pin

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	sjson "github.com/segmentio/encoding/json"
)

// Definition is what a tool's pin covers: everything a server tells a client (and so the model) about a
// tool. Icons and _meta are not covered.
type Definition struct {
	Name         string          `json:"name"`
	Title        string          `json:"title,omitempty"`
	Description  string          `json:"description,omitempty"`
	InputSchema  json.RawMessage `json:"inputSchema,omitempty"`
	OutputSchema json.RawMessage `json:"outputSchema,omitempty"`
	Annotations  json.RawMessage `json:"annotations,omitempty"`
}

// Limits on what a definition may hold.
const (
	// MaxDefinitionBytes bounds the JSON of one tool's schemas and annotations together.
	MaxDefinitionBytes = 1 << 20
	// MaxDepth bounds the nesting of a schema's objects and arrays.
	MaxDepth = 64
	// MaxNameBytes bounds a tool's name.
	MaxNameBytes = 256
)

// FromTool is the definition of a tool as the go-sdk holds it, whether a client decoded it from a
// tools/list result or a server declared it. The schemas are passed through the SDK client's own
// decoding (JSON into Go values, numbers as float64) and encoded again, so that a tool has the same
// definition, and so the same digest, whichever side of the SDK it was read from and however the server
// spelled its numbers (1.0 and 1 are one number to every SDK client). The annotations are encoded from
// the SDK's typed view with every field at a fixed place, independent of the SDK's MCPGODEBUG settings.
func FromTool(t *mcp.Tool) (Definition, error) {
	if t == nil {
		return Definition{}, fmt.Errorf("pin: no tool")
	}
	d := Definition{Name: t.Name, Title: t.Title, Description: t.Description}
	var err error
	if d.InputSchema, err = normalize(t.InputSchema); err != nil {
		return Definition{}, fmt.Errorf("pin: tool %q: inputSchema: %w", clip(t.Name), err)
	}
	if d.OutputSchema, err = normalize(t.OutputSchema); err != nil {
		return Definition{}, fmt.Errorf("pin: tool %q: outputSchema: %w", clip(t.Name), err)
	}
	if a := t.Annotations; a != nil {
		d.Annotations, err = json.Marshal(annotations{
			DestructiveHint: a.DestructiveHint, IdempotentHint: a.IdempotentHint,
			OpenWorldHint: a.OpenWorldHint, ReadOnlyHint: a.ReadOnlyHint, Title: a.Title,
		})
		if err != nil {
			return Definition{}, fmt.Errorf("pin: tool %q: annotations: %w", clip(t.Name), err)
		}
	}
	if err := d.Validate(); err != nil {
		return Definition{}, err
	}
	return d, nil
}

// FromJSON is the definition of one tool object of a tools/list result, read exactly as an SDK client
// reads it (see FromTool): with the decoder the SDK uses, so that a field the SDK client would not see
// (such as "Description" beside "description") is not seen here either.
func FromJSON(raw []byte) (Definition, error) {
	if len(raw) > MaxDefinitionBytes {
		return Definition{}, fmt.Errorf("pin: a tool definition of %d bytes is over the limit of %d", len(raw), MaxDefinitionBytes)
	}
	// The SDK client's decoder: exact-case field names, nesting bounded.
	dec := sjson.NewDecoder(bytes.NewReader(raw))
	dec.DontMatchCaseInsensitiveStructFields()
	if err := checkDepth(raw); err != nil {
		return Definition{}, fmt.Errorf("pin: tool definition: %w", err)
	}
	// Duplicate keys anywhere are refused: parsers disagree on which one counts.
	if _, err := canonicalValue(raw); err != nil {
		return Definition{}, fmt.Errorf("pin: tool definition: %w", err)
	}
	var t mcp.Tool
	if err := dec.Decode(&t); err != nil {
		return Definition{}, fmt.Errorf("pin: tool definition: %w", err)
	}
	return FromTool(&t)
}

// annotations is mcp.ToolAnnotations with a fixed encoding.
type annotations struct {
	DestructiveHint *bool  `json:"destructiveHint,omitempty"`
	IdempotentHint  bool   `json:"idempotentHint"`
	OpenWorldHint   *bool  `json:"openWorldHint,omitempty"`
	ReadOnlyHint    bool   `json:"readOnlyHint"`
	Title           string `json:"title,omitempty"`
}

// normalize encodes v, decodes it into Go values as the SDK's client does, and encodes that again.
func normalize(v any) (json.RawMessage, error) {
	if v == nil {
		return nil, nil
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	if len(raw) > MaxDefinitionBytes {
		return nil, fmt.Errorf("%d bytes is over the limit of %d", len(raw), MaxDefinitionBytes)
	}
	if bytes.Equal(raw, []byte("null")) {
		return nil, nil
	}
	var x any
	if err := json.Unmarshal(raw, &x); err != nil {
		return nil, err
	}
	return json.Marshal(x)
}

// Validate checks that d can be pinned: a name, and schemas and annotations that are canonical JSON
// input (valid UTF-8, no duplicate keys, within the size and depth limits).
func (d Definition) Validate() error {
	if d.Name == "" {
		return fmt.Errorf("pin: a tool has no name")
	}
	if len(d.Name) > MaxNameBytes {
		return fmt.Errorf("pin: a tool name of %d bytes is over the limit of %d", len(d.Name), MaxNameBytes)
	}
	_, err := canonical(d)
	return err
}

// clip shortens a tool name for a message.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// checkDepth refuses JSON nested deeper than MaxDepth+4 (a tool object holds its schemas a level down),
// skipping the contents of strings.
func checkDepth(raw []byte) error {
	depth, inString, escaped := 0, false, false
	for _, c := range raw {
		switch {
		case inString && escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case inString && c == '"':
			inString = false
		case inString:
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			if depth++; depth > MaxDepth+4 {
				return fmt.Errorf("nested deeper than %d", MaxDepth)
			}
		case c == '}' || c == ']':
			depth--
		}
	}
	return nil
}

package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode"
)

// Manifest is an AI agent's declaration of what it is. The agent's launcher writes it next to the
// agent and points the AGENT_MANIFEST environment variable at it:
//
//	{
//	  "name": "analyst",
//	  "framework": "langgraph",
//	  "owner": "data-team",
//	  "version": "1.4.2",
//	  "tools": ["sql.query", "http.get"]
//	}
//
// name and owner are required; unknown fields make the manifest invalid, so a typo never silently
// drops a field that an entry selects on.
type Manifest struct {
	Name      string   `json:"name"`
	Framework string   `json:"framework,omitempty"`
	Owner     string   `json:"owner"`
	Version   string   `json:"version,omitempty"`
	Tools     []string `json:"tools,omitempty"`
}

// Limits on a manifest.
const (
	MaxManifestBytes = 64 << 10
	maxValueLen      = 128
	maxTools         = 64
)

// parseManifest decodes and checks a manifest strictly.
func parseManifest(b []byte) (*Manifest, error) {
	if len(b) > MaxManifestBytes {
		return nil, fmt.Errorf("manifest is %d bytes, over the %d-byte limit", len(b), MaxManifestBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("manifest is not valid JSON for the schema: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("manifest has data after its JSON object")
	}
	if m.Name == "" || m.Owner == "" {
		return nil, errors.New(`manifest needs "name" and "owner"`)
	}
	if len(m.Tools) > maxTools {
		return nil, fmt.Errorf("manifest lists %d tools, over the limit of %d", len(m.Tools), maxTools)
	}
	for field, v := range map[string]string{"name": m.Name, "framework": m.Framework, "owner": m.Owner, "version": m.Version} {
		if err := checkValue(v); err != nil {
			return nil, fmt.Errorf("manifest %s: %w", field, err)
		}
	}
	for _, tool := range m.Tools {
		if tool == "" {
			return nil, errors.New("manifest lists an empty tool")
		}
		if err := checkValue(tool); err != nil {
			return nil, fmt.Errorf("manifest tool: %w", err)
		}
	}
	return &m, nil
}

// checkValue keeps selector values short and printable: they end up in logs and policy.
func checkValue(v string) error {
	if len(v) > maxValueLen {
		return fmt.Errorf("longer than %d bytes", maxValueLen)
	}
	for _, r := range v {
		if !unicode.IsPrint(r) || unicode.IsSpace(r) {
			return fmt.Errorf("%q holds a space or a non-printable character", v)
		}
	}
	return nil
}

// selectors are the manifest's selector values (the "agent" type is added by SPIRE): one per field,
// one per tool, and the hash of the manifest's exact bytes, which pins an entry to one reviewed
// manifest.
func selectors(m *Manifest, raw []byte) []string {
	sum := sha256.Sum256(raw)
	out := []string{"name:" + m.Name, "owner:" + m.Owner, "manifest-sha256:" + hex.EncodeToString(sum[:])}
	if m.Framework != "" {
		out = append(out, "framework:"+m.Framework)
	}
	if m.Version != "" {
		out = append(out, "version:"+m.Version)
	}
	for _, t := range m.Tools {
		out = append(out, "tool:"+t)
	}
	return out
}

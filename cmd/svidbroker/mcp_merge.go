package main

// This file holds what `svidbroker mcp pin` and `svidbroker policy schema --mcp` take from the parts of
// the MCP work configured on other branches; each function says what it becomes when they merge.

import (
	"encoding/json"
	"errors"

	"github.com/svidbroker/svidbroker/broker/config"
)

// mcpPath is the path of a target's MCP endpoint on its upstream ("" = mcpDefaultPath).
// With the mcp target block: return its path (default "/mcp").
func mcpPath(t config.Target) string { return "" }

// catalogPins is the pin file the target's catalog names (pins = "...", relative to the file the
// catalog block is written in); "" when it names none. With the mcp catalog:
//
//	for _, cb := range cfg.Catalogs { if cb.Target == target { return cb.PinPath() } }; return ""
func catalogPins(cfg *config.Config, target string) string { return "" }

// mcpArgsSchema renders the Cedar MCPArgs type of the tools' input schemas, by target then tool.
// With the MCP authorizer: `var mcpArgsSchema = authz.MCPArgsSchema`.
func mcpArgsSchema(tools map[string]map[string]json.RawMessage) (string, error) {
	return "", errors.New("this build has no MCPArgs schema generator (authz.MCPArgsSchema)")
}

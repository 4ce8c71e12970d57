package main

// This file holds what `svidbroker mcp pin` and `svidbroker policy schema --mcp` take from the parts of
// the MCP work that live on other branches: each function names what replaces it when they merge.

import (
	"encoding/json"
	"errors"

	"github.com/svidbroker/svidbroker/broker/config"
)

// mcpPath is the path of a target's MCP endpoint on its upstream ("" = mcpDefaultPath).
// At merge: return the mcp block's path (t.MCP.Path, default "/mcp").
func mcpPath(t config.Target) string { return "" }

// catalogPins is the pin file the target's catalog names (pins = "...", relative to the configuration
// file); "" when it names none. At merge: read config.CatalogBlock.Pins for the target, resolved
// against filepath.Dir(cfg.Path) when relative.
func catalogPins(cfg *config.Config, target string) string { return "" }

// mcpArgsSchema renders the Cedar MCPArgs type of the tools' input schemas, by target then tool.
// At merge: `var mcpArgsSchema = authz.MCPArgsSchema` (broker/authz/mcp.go).
func mcpArgsSchema(tools map[string]map[string]json.RawMessage) (string, error) {
	return "", errors.New("this build has no MCPArgs schema generator (authz.MCPArgsSchema)")
}

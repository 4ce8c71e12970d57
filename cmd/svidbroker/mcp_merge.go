package main

// This file holds what `svidbroker mcp pin`, `svidbroker policy schema --mcp` and the mcp engine take
// from the parts of the MCP work configured elsewhere: the mcp target block, the mcp catalog, and the
// MCP authorizer.

import (
	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/broker/config"
)

// mcpPath is the path of a target's MCP endpoint on its upstream ("" = mcpDefaultPath): its mcp
// block's path.
func mcpPath(t config.Target) string {
	if t.MCP == nil {
		return ""
	}
	return t.MCP.Path
}

// catalogPins is the pin file the target's catalog names (pins = "...", relative to the file the
// catalog block is written in); "" when it names none.
func catalogPins(cfg *config.Config, target string) string {
	for _, cb := range cfg.Catalogs {
		if cb.Target == target {
			return cb.PinPath()
		}
	}
	return ""
}

// mcpArgsSchema renders the Cedar MCPArgs type of the tools' input schemas, by target then tool.
var mcpArgsSchema = authz.MCPArgsSchema

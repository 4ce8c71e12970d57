package config

import "time"

// MCPTarget is the mcp block of a target with protocol = "mcp": how its tools' definitions are
// pinned, and where its upstream serves MCP.
type MCPTarget struct {
	// Pin is where pins come from: "file" (only the tools of the pin file its catalog names, at their
	// digests) or "first-sight" (a tool's first definition seen is pinned, in StateDir). Default "file".
	Pin string `hcl:"pin,optional"`
	// Path is the upstream's MCP endpoint, the only path agents may use. Default "/mcp".
	Path string `hcl:"path,optional"`
	// StateDir keeps first-sight pins across restarts. Required with pin = "first-sight".
	StateDir string `hcl:"state_dir,optional"`
	// ToolsMaxAge is how old the broker's view of a tool's definition may be at a call before it lists
	// the tools again. Default "5s"; "0s" lists them again before every call.
	ToolsMaxAge string `hcl:"tools_max_age,optional"`

	// ToolsMaxAgeD is ToolsMaxAge, parsed (negative for "0s": before every call); filled in by validation.
	ToolsMaxAgeD time.Duration
}

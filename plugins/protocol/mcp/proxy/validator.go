package proxy

import (
	"fmt"
	"strings"
	"time"

	"github.com/svidbroker/svidbroker/broker/config"
	httpproxy "github.com/svidbroker/svidbroker/plugins/protocol/http/proxy"
	"github.com/svidbroker/svidbroker/plugins/protocol/mcp/pin"
)

// maxToolsMaxAge bounds tools_max_age: the window of a changed definition nothing announced.
const maxToolsMaxAge = 10 * time.Minute

// ConfigValidator checks the blocks of mcp targets: the backend and timeouts as an http target's,
// and the mcp block. cmd passes it to config.Load under the name "mcp".
type ConfigValidator struct{}

var _ config.Protocol = ConfigValidator{}

// ValidateBackend checks the backend block (as an http target's) and the mcp block, filling in its
// defaults: pin = "file", path = "/mcp", tools_max_age = "5s" ("0s" lists the tools before every
// call: ToolsMaxAgeD is then ToolsEveryCall).
func (ConfigValidator) ValidateBackend(t *config.Target, c *config.Check) {
	httpproxy.ConfigValidator{}.ValidateBackend(t, c)
	if t.MCP == nil {
		t.MCP = &config.MCPTarget{}
	}
	m := t.MCP
	switch pin.Mode(m.Pin) {
	case "":
		m.Pin = string(pin.ModeFile)
	case pin.ModeFile, pin.ModeFirstSight:
	default:
		c.Fail("Unknown pin mode", `mcp.pin is "file" (the tools of the pin file the target's catalog names) or "first-sight" (a tool's first definition, kept in state_dir).`, "mcp", "pin")
	}
	if m.Pin == string(pin.ModeFirstSight) && m.StateDir == "" {
		c.Fail("No state directory", `mcp.pin = "first-sight" keeps the pins it takes in mcp.state_dir: name a directory the broker may write.`, "mcp", "state_dir")
	}
	if m.Path == "" {
		m.Path = DefaultPath
	}
	if !strings.HasPrefix(m.Path, "/") || strings.ContainsAny(m.Path, "?# \t\r\n") {
		c.Fail("Invalid MCP path", "mcp.path is the upstream's MCP endpoint path, such as \"/mcp\".", "mcp", "path")
	}
	if d, err := time.ParseDuration(m.ToolsMaxAge); err == nil && d == 0 {
		m.ToolsMaxAgeD = ToolsEveryCall // "0s": no age at all, listed before every call
		return
	}
	m.ToolsMaxAgeD = c.Duration(m.ToolsMaxAge, DefaultToolsMaxAge, "mcp", "tools_max_age")
	if m.ToolsMaxAgeD > maxToolsMaxAge {
		c.Fail("Tools max age too long", fmt.Sprintf("mcp.tools_max_age bounds how long a changed tool definition may go unseen when the upstream sends no list_changed; at most %s (default %s, \"0s\" lists the tools before every call).", maxToolsMaxAge, DefaultToolsMaxAge), "mcp", "tools_max_age")
	}
}

// ValidateTimeouts fills in the timeouts, as an http target's.
func (ConfigValidator) ValidateTimeouts(t *config.Target, c *config.Check) {
	httpproxy.ConfigValidator{}.ValidateTimeouts(t, c)
}

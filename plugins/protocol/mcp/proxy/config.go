package proxy

import (
	"errors"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/svidbroker/svidbroker/broker/authz"
	httpproxy "github.com/svidbroker/svidbroker/plugins/protocol/http/proxy"
	"github.com/svidbroker/svidbroker/plugins/protocol/mcp/pin"
	"github.com/svidbroker/svidbroker/plugins/protocol/mcp/wire"
)

// MCPPolicy decides an mcp target's messages: the authorizer's MCP methods (broker/authz/mcp.go).
type MCPPolicy interface {
	// MCP decides r: the method's action on its resource; an error is a refusal worded for the agent.
	MCP(c authz.Connect, r Request, ap authz.ApprovalState) (authz.Decision, error)
	// MCPVisible says whether an entry of list ("tools/list", "resources/list", "prompts/list") is
	// shown: true when some arguments could be permitted.
	MCPVisible(c authz.Connect, target, list, name string) bool
	// MCPFieldMasks decides mcp:read-unmasked for each field path of r's tool: "" clear, else the
	// strategy.
	MCPFieldMasks(c authz.Connect, r Request, fields []string, ap authz.ApprovalState, def string) ([]string, []authz.Decision)
	// MCPTool is the catalog's declaration of a tool (false when undeclared).
	MCPTool(target, tool string) (CatalogTool, bool)
}

// Pins checks a tool's definition against its pin before each call (*pin.Store): OK to call, else
// the verdict's Why names the tool and what an operator does, never its text.
type Pins interface {
	CheckTool(t *mcp.Tool) pin.Verdict
}

// Defaults of Config.
const (
	DefaultPath          = "/mcp"
	DefaultMaxBatch      = wire.DefaultMaxBatch
	DefaultProgressEvery = 5 * time.Second
	// DefaultMaxMessageBytes bounds one message of the upstream's (a result, an event).
	DefaultMaxMessageBytes = wire.DefaultMaxMessageBytes
	// DefaultToolsMaxAge bounds how long a definition the engine saw (in a list it relayed or
	// fetched) stands for the upstream's at a call, when no notifications/tools/list_changed said
	// otherwise. See docs/mcp-targets.md for the window it leaves.
	DefaultToolsMaxAge = 5 * time.Second
	// ToolsEveryCall as Config.ToolsMaxAge lists the tools again before every call.
	ToolsEveryCall time.Duration = -1
)

// Config configures an mcp target's Engine.
type Config struct {
	// HTTP is the target's HTTP engine configuration: TLS, principals, sessions, limits, upstream and
	// credential, masking and approvals. Its Serve, Routes and Policy are the engine's own.
	HTTP httpproxy.Config
	// Path is the upstream's MCP endpoint, the only path agents may use. Default DefaultPath.
	Path string
	// Policy decides every message. Required.
	Policy MCPPolicy
	// Pins, if set, checks each tool's definition before a call to it; nil checks none.
	Pins Pins
	// ToolsMaxAge is how old the engine's view of a tool's definition may be at a call before it
	// lists the tools itself. Every definition in a list is checked against its pin when seen, and
	// the upstream's notifications/tools/list_changed makes the view stale at once. 0 is
	// DefaultToolsMaxAge; ToolsEveryCall (any negative value) lists them again before every call.
	ToolsMaxAge time.Duration
	// MaxMessageBytes bounds one message from the upstream; MaxBatch the messages of a client's
	// batch. Defaults DefaultMaxMessageBytes and DefaultMaxBatch.
	MaxMessageBytes int
	MaxBatch        int
	// ProgressEvery is the interval of notifications/progress to a call held for approval whose
	// client gave a progressToken. Default DefaultProgressEvery.
	ProgressEvery time.Duration

	now func() time.Time // the clock of tools' ages; time.Now when nil (tests set it)
}

func (c *Config) validate() error {
	if c.Policy == nil {
		return errors.New("mcp: Policy is required: every message of an mcp target is decided")
	}
	if c.Path == "" {
		c.Path = DefaultPath
	}
	if c.Path[0] != '/' {
		return errors.New("mcp: the path must start with /")
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = DefaultMaxBatch
	}
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
	switch {
	case c.ToolsMaxAge == 0:
		c.ToolsMaxAge = DefaultToolsMaxAge
	case c.ToolsMaxAge < 0:
		c.ToolsMaxAge = ToolsEveryCall
	}
	if c.ProgressEvery <= 0 {
		c.ProgressEvery = DefaultProgressEvery
	}
	return nil
}

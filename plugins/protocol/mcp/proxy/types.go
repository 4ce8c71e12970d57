package proxy

import (
	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/plugins/protocol/mcp/pin"
)

// Request is an MCP message as policy decides it; CatalogTool and CatalogField are the catalog's
// declaration of a tool and of its results' fields.
type (
	Request      = authz.MCPRequest
	CatalogTool  = authz.CatalogTool
	CatalogField = authz.CatalogField
)

// *authz.Authorizer decides mcp targets' messages.
var _ MCPPolicy = (*authz.Authorizer)(nil)

// *pin.Store checks tool definitions against their pins.
var _ Pins = (*pin.Store)(nil)

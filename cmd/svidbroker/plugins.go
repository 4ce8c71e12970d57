package main

import (
	"github.com/svidbroker/svidbroker/broker/config"
	vaultcred "github.com/svidbroker/svidbroker/plugins/credential/vault"
	"github.com/svidbroker/svidbroker/plugins/protocol/http/proxy"
	mcpproxy "github.com/svidbroker/svidbroker/plugins/protocol/mcp/proxy"
	"github.com/svidbroker/svidbroker/plugins/protocol/postgres"
)

// plugins are the validators of the configuration blocks that belong to the plugins this broker
// wires in: a target's protocol must be one of Protocols (an engine added to newEngine is added
// here too), and the vault block configures the Vault credential plugin.
func plugins() config.Plugins {
	return config.Plugins{
		Protocols: map[string]config.Protocol{"postgres": postgres.ConfigValidator{}, "http": proxy.ConfigValidator{},
			"mcp": mcpproxy.ConfigValidator{}},
		Vault: vaultcred.ConfigValidator{},
	}
}

package config_test

import (
	"github.com/svidbroker/svidbroker/broker/config"
	"github.com/svidbroker/svidbroker/plugins/credential/vault"
	"github.com/svidbroker/svidbroker/plugins/protocol/postgres"
)

// plugins are the plugins' validators as cmd wires them: these tests check the postgres plugin's
// backend and timeouts blocks and the Vault plugin's vault block through config.Load too, where
// users meet them.
var plugins = config.Plugins{
	Protocols: map[string]config.Protocol{"postgres": postgres.ConfigValidator{}},
	Vault:     vault.ConfigValidator{},
}

package config_test

import (
	"github.com/svidbroker/svidbroker/broker/config"
	"github.com/svidbroker/svidbroker/plugins/protocol/postgres"
)

// protocols are the protocols the broker serves, as cmd wires them: these tests check the postgres
// plugin's backend and timeouts validation through config.Load too.
var protocols = config.Protocols{"postgres": postgres.ConfigValidator{}}

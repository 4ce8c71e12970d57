package main

import (
	"github.com/svidbroker/svidbroker/broker/config"
	"github.com/svidbroker/svidbroker/plugins/protocol/postgres"
)

// protocols are the protocols this broker serves, by the name a target gives in `protocol = "..."`.
// The configuration's targets are checked with their engine's validator; an engine added to
// newEngine is added here too.
func protocols() config.Protocols {
	return config.Protocols{"postgres": postgres.ConfigValidator{}}
}

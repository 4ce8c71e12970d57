// Package spireconf embeds the SPIRE configuration profiles kept in this folder, so that the test stack
// and the demo run exactly the files operators read.
package spireconf

import _ "embed"

// DevServer is dev/server.conf: expand it with `spire-server run -expandEnv`.
//
//go:embed dev/server.conf
var DevServer []byte

// DevAgent is dev/agent.conf: expand it with `spire-agent run -expandEnv`.
//
//go:embed dev/agent.conf
var DevAgent []byte

// Package server runs svidbroker's listeners: one per target, each handing connections to its
// protocol Engine, and the admin listener with health and readiness (/healthz, /readyz) and the
// handlers cmd adds there (the approvals API, Go's profiles).
//
// It owns what every protocol needs the same way: a deadline on the pre-authentication phase, a cap on
// concurrent handshakes (a client that stalls mid-handshake holds one slot until its deadline, never the
// listener), a cap on sessions, and shutdown that stops accepting, lets sessions drain for a grace
// period, and only then ends them.
package server

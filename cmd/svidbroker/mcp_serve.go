package main

import (
	"fmt"
	"path/filepath"

	"github.com/svidbroker/svidbroker/broker/server"
	"github.com/svidbroker/svidbroker/plugins/protocol/mcp/pin"
	mcpproxy "github.com/svidbroker/svidbroker/plugins/protocol/mcp/proxy"
)

// newMCPEngine wires an mcp target: the http engine's TLS, principals, sessions and credential, with
// every message decided by Cedar's MCP actions and each tool checked against its pin.
func newMCPEngine(h httpTarget) (server.Engine, error) {
	t := h.t
	if h.az == nil {
		return nil, fmt.Errorf("target %q: mcp targets are decided per message by Cedar: add a policy block", t.Name)
	}
	hc, err := httpEngineConfig(h, "mcp")
	if err != nil {
		return nil, err
	}
	m := t.MCP
	if m == nil {
		return nil, fmt.Errorf("target %q: the mcp block was not validated", t.Name)
	}
	var file *pin.File
	if path := catalogPins(h.cfg, t.Name); path != "" {
		if file, err = pin.Load(path); err != nil {
			return nil, fmt.Errorf("target %q: %w", t.Name, err)
		}
	} else if m.Pin == string(pin.ModeFile) {
		return nil, fmt.Errorf("target %q: mcp.pin = \"file\" needs the pins file its catalog names (pins = \"...\"); write it with `svidbroker mcp pin %s`, or use pin = \"first-sight\"", t.Name, t.Name)
	}
	stateDir := m.StateDir
	if stateDir != "" {
		stateDir = filepath.Clean(stateDir)
	}
	store, err := pin.NewStore(t.Name, pin.Mode(m.Pin), file, stateDir)
	if err != nil {
		return nil, fmt.Errorf("target %q: %w", t.Name, err)
	}
	e, err := mcpproxy.New(mcpproxy.Config{HTTP: hc, Path: m.Path, Policy: h.az, Pins: store, ToolsMaxAge: m.ToolsMaxAgeD})
	if err != nil {
		return nil, fmt.Errorf("target %q: %w", t.Name, err)
	}
	return e, nil
}

// Package proxy is the engine of mcp targets: MCP's Streamable HTTP transport, carried by the http
// engine (its TLS, principals, sessions, limits and credential injection), with every client message
// decided, lists filtered, server-initiated requests gated, tool definitions checked against their
// pins, arguments validated against the tool's input schema, and results masked.
package proxy

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/svidbroker/svidbroker/broker/inspect"
	"github.com/svidbroker/svidbroker/broker/server"
	httpproxy "github.com/svidbroker/svidbroker/plugins/protocol/http/proxy"
	"github.com/svidbroker/svidbroker/plugins/protocol/mcp/wire"
)

// maxBound bounds the MCP sessions bound to principals, and the server requests awaiting answers.
const maxBound = 1 << 14

// Engine is the mcp targets' engine.
type Engine struct {
	cfg    Config
	http   *httpproxy.Engine
	target string
	tools  toolCache
	// masker and defaultMask mask results (Config.HTTP's).
	masker      *inspect.Masker
	defaultMask inspect.Strategy
	seq         atomic.Int64 // IDs of the engine's own requests upstream
	now         func() time.Time

	mu sync.Mutex
	// owners binds an upstream Mcp-Session-Id to the principal whose initialize created it, and the
	// version that initialize settled on.
	owners map[string]binding
	// pending are server-initiated requests forwarded to a client, awaiting its response.
	pending map[pendingKey]string
	// asks are the input requests of results relayed to clients, awaiting their answers.
	asks askBook
}

// binding is an MCP session's owner and version ("" until its initialize result was read).
type binding struct{ principal, version string }

// pendingKey names a server request forwarded to a client: the principal, the MCP session, the id.
type pendingKey struct {
	principal, session string
	id                 any
}

var _ server.Engine = (*Engine)(nil)

// New checks cfg and returns an Engine.
func New(cfg Config) (*Engine, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	e := &Engine{cfg: cfg, target: cfg.HTTP.Target, owners: map[string]binding{}, pending: map[pendingKey]string{}, now: time.Now}
	e.tools.m = map[string]toolView{}
	if cfg.now != nil {
		e.now = cfg.now
	}
	e.masker, e.defaultMask = cfg.HTTP.Masker, cfg.HTTP.DefaultMask
	if e.masker == nil {
		e.masker, _ = inspect.NewMasker(nil)
		cfg.HTTP.Masker = e.masker
	}
	if e.defaultMask == "" {
		e.defaultMask = inspect.Redact
	}
	hc := cfg.HTTP
	e.cfg = cfg
	hc.Serve, hc.Routes, hc.Policy = e.serve, nil, nil
	if hc.Logger != nil {
		hc.Logger = hc.Logger.With("mcp", true)
	}
	h, err := httpproxy.New(hc)
	if err != nil {
		return nil, fmt.Errorf("mcp: %w", err)
	}
	e.http = h
	return e, nil
}

// Handshake runs the TLS handshake (the http engine's); sessions open per principal.
func (e *Engine) Handshake(ctx context.Context, conn net.Conn) (server.Session, error) {
	return e.http.Handshake(ctx, conn)
}

// Close releases the upstream connections kept for reuse.
func (e *Engine) Close() { e.http.Close() }

// limits are wire's limits of the engine's messages.
func (e *Engine) limits() wire.Limits {
	return wire.Limits{MaxMessageBytes: e.cfg.MaxMessageBytes, MaxBatch: e.cfg.MaxBatch, MaxBodyBytes: e.http.Limits().MaxBodyBytes}
}

// bind binds an upstream MCP session to principal.
func (e *Engine) bind(sid, principal string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.owners[sid]; !ok && len(e.owners) >= maxBound {
		for k := range e.owners { // forget one: its client initializes again
			delete(e.owners, k)
			break
		}
	}
	e.owners[sid] = binding{principal: principal}
}

// settle records the version an MCP session's initialize settled on.
func (e *Engine) settle(sid, principal, version string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if b, ok := e.owners[sid]; ok && b.principal == principal {
		b.version = version
		e.owners[sid] = b
	}
}

// owner is the binding of an MCP session.
func (e *Engine) owner(sid string) (binding, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	b, ok := e.owners[sid]
	return b, ok
}

func (e *Engine) unbind(sid string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.owners, sid)
	for k := range e.pending {
		if k.session == sid {
			delete(e.pending, k)
		}
	}
}

func (e *Engine) addPending(k pendingKey, method string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.pending) < maxBound {
		e.pending[k] = method
	}
}

// takePending removes and returns a server request a client answers; false if none was sent.
func (e *Engine) takePending(k pendingKey) (string, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	m, ok := e.pending[k]
	delete(e.pending, k)
	return m, ok
}

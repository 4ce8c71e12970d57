package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"sync"
	"time"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/svidbroker/svidbroker/plugins/protocol/mcp/wire"
)

// maxListPages bounds the pages of the engine's own tools/list.
const maxListPages = 16

// toolView is the last definition of a tool the engine saw, and when the list it came in was asked.
type toolView struct {
	tool   *mcp.Tool
	at     time.Time
	pinned bool // the definition was checked against its pin, and matched
	// bindings are the input schema's Mcp-Param headers (bindErr when they cannot be read).
	bindings []wire.ParamBinding
	bindErr  error
	raw      []byte               // the input schema as JSON: a list again with the same keeps schema
	schema   *jsonschema.Resolved // nil until first needed
	err      error                // the input schema could not be resolved
}

// toolCache keeps the last definitions seen per tool of the target.
type toolCache struct {
	mu sync.Mutex
	m  map[string]toolView
	// stale: the upstream said its tools changed (notifications/tools/list_changed); views from lists
	// asked for before then are stale.
	stale time.Time
}

// put keeps the definitions of a list asked for at at; pinned says which of them matched their pins.
func (c *toolCache) put(tools []*mcp.Tool, at time.Time, pinned map[*mcp.Tool]bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, t := range tools {
		if t == nil || t.Name == "" {
			continue
		}
		old, ok := c.m[t.Name]
		if !ok && len(c.m) >= maxBound {
			continue
		}
		if ok && old.at.After(at) {
			continue // a newer list was seen since this one was asked for
		}
		v := newView(t, at)
		v.pinned = pinned[t]
		if ok && bytes.Equal(old.raw, v.raw) {
			v.schema, v.err = old.schema, old.err // resolved once per schema, not per list
		}
		c.m[t.Name] = v
	}
}

// newView is the view of t, seen in a list asked for at at.
func newView(t *mcp.Tool, at time.Time) toolView {
	v := toolView{tool: t, at: at}
	v.raw, _ = json.Marshal(t.InputSchema)
	v.bindings, v.bindErr = wire.ParamBindings(t)
	return v
}

func (c *toolCache) get(name string) (toolView, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[name]
	return v, ok
}

// fresh is the view of tool name when a list asked for less than maxAge before now, and after the
// upstream last said its tools changed, had it.
func (c *toolCache) fresh(name string, now time.Time, maxAge time.Duration) (toolView, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[name]
	if !ok || maxAge <= 0 || !v.at.After(c.stale) || now.Sub(v.at) >= maxAge {
		return toolView{}, false
	}
	return v, true
}

// invalidate makes every view stale: the upstream's tools changed at now.
func (c *toolCache) invalidate(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now.After(c.stale) {
		c.stale = now
	}
}

// markPinned notes that t, the view of its tool, matched its pin: later calls with the same view
// need not check it again (a tool's pin does not change while the broker runs).
func (c *toolCache) markPinned(t *mcp.Tool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, ok := c.m[t.Name]; ok && v.tool == t {
		v.pinned = true
		c.m[t.Name] = v
	}
}

// resolved is the input schema of v's tool, resolved once per schema.
func (c *toolCache) resolved(v toolView) (*jsonschema.Resolved, error) {
	if v.schema != nil || v.err != nil {
		return v.schema, v.err
	}
	name := v.tool.Name
	c.mu.Lock()
	cur, ok := c.m[name]
	c.mu.Unlock()
	if ok && cur.tool == v.tool && (cur.schema != nil || cur.err != nil) {
		return cur.schema, cur.err
	}
	rs, err := resolveSchema(v.tool.InputSchema)
	c.mu.Lock()
	if cur, ok := c.m[name]; ok && cur.tool == v.tool {
		cur.schema, cur.err = rs, err
		c.m[name] = cur
	}
	c.mu.Unlock()
	return rs, err
}

// checkParamHeaders is wire.CheckParamHeaders against the view's definition, its bindings read once.
func (v toolView) checkParamHeaders(h http.Header, req *jsonrpc.Request) error {
	if v.bindErr != nil {
		return wire.CheckParamHeaders(h, req, v.tool) // the same refusal, in the same order
	}
	return wire.CheckBoundHeaders(h, req, v.bindings)
}

func resolveSchema(schema any) (*jsonschema.Resolved, error) {
	raw, err := json.Marshal(schema)
	if err != nil {
		return nil, err
	}
	var s jsonschema.Schema
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, err
	}
	return s.Resolve(&jsonschema.ResolveOptions{})
}

// errToolUnknown: the upstream does not list the tool.
var errToolUnknown = errors.New("tool not listed by the upstream")

// tool is the definition of tool name the call is checked against: the engine's view while it is
// fresh (younger than ToolsMaxAge, and no list_changed since), else the upstream's list now,
// fetched with the session's credential.
func (e *Engine) tool(ctx context.Context, x *exchange, name string, meta json.RawMessage) (toolView, error) {
	if v, ok := e.tools.fresh(name, e.now(), e.cfg.ToolsMaxAge); ok {
		return v, nil
	}
	asked := e.now()
	tools, err := e.listTools(ctx, x, meta)
	if err != nil {
		return toolView{}, err
	}
	e.tools.put(tools, asked, nil)
	for _, t := range tools {
		if t != nil && t.Name == name {
			v, _ := e.tools.get(name)
			if v.tool != t { // another list was kept since: check against what was seen now
				v = newView(t, asked)
			}
			return v, nil
		}
	}
	return toolView{}, errToolUnknown
}

// listTools lists the upstream's tools in the exchange's MCP session, every page.
func (e *Engine) listTools(ctx context.Context, x *exchange, meta json.RawMessage) ([]*mcp.Tool, error) {
	var all []*mcp.Tool
	cursor := ""
	for range maxListPages {
		params := map[string]any{}
		if cursor != "" {
			params["cursor"] = cursor
		}
		if len(meta) > 0 {
			params["_meta"] = meta
		}
		id, _ := jsonrpc.MakeID(fmt.Sprintf("svidbroker-tools-%d", e.seq.Add(1)))
		raw, err := json.Marshal(params)
		if err != nil {
			return nil, err
		}
		req := &jsonrpc.Request{ID: id, Method: "tools/list", Params: raw}
		raw, err = e.call(ctx, x, req)
		if err != nil {
			return nil, err
		}
		var res mcp.ListToolsResult
		if err := json.Unmarshal(raw, &res); err != nil {
			return nil, fmt.Errorf("the upstream's tools/list result is not a list of tools: %w", err)
		}
		all = append(all, res.Tools...)
		if res.NextCursor == "" {
			return all, nil
		}
		cursor = res.NextCursor
	}
	return nil, fmt.Errorf("the upstream's tools/list has more than %d pages", maxListPages)
}

// call sends the engine's own request in the exchange's MCP session and returns its result.
func (e *Engine) call(ctx context.Context, x *exchange, req *jsonrpc.Request) (json.RawMessage, error) {
	body, err := jsonrpc.EncodeMessage(req)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, e.http.Limits().Upstream)
	defer cancel()
	out, err := e.http.UpstreamRequest(ctx, nil, x.s, http.MethodPost, e.cfg.Path, body)
	if err != nil {
		return nil, err
	}
	x.sessionHeaders(out.Header, req.Method, "")
	resp, err := e.http.RoundTrip(ctx, out, "mcp "+req.Method)
	if err != nil {
		return nil, fmt.Errorf("the upstream did not answer %s", req.Method)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("the upstream answered %s with HTTP %d", req.Method, resp.StatusCode)
	}
	var result json.RawMessage
	var rerr error
	found := false
	ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	err = readServerMessages(ctx, ct, resp.Body, e.cfg.MaxMessageBytes, func(m message, _ string) error {
		if m.resp != nil && m.resp.ID == req.ID {
			found = true
			if m.resp.Error != nil {
				rerr = fmt.Errorf("the upstream refused %s", req.Method)
			}
			result = m.resp.Result
		}
		return nil // read on to the stream's end, which follows the answer: the connection is reused
	})
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("the upstream did not answer %s", req.Method)
	}
	return result, rerr
}

// sessionHeaders sets the MCP headers of the engine's own request in the exchange's session.
func (x *exchange) sessionHeaders(h http.Header, method, name string) {
	h.Set("Content-Type", "application/json")
	h.Set("Accept", "application/json, text/event-stream")
	if x.sid != "" {
		h.Set("Mcp-Session-Id", x.sid)
	}
	if v := x.r.Header.Get("Mcp-Protocol-Version"); v != "" {
		h.Set("Mcp-Protocol-Version", v)
	}
	for k := range h {
		if len(k) > 10 && k[:10] == "Mcp-Param-" {
			delete(h, k)
		}
	}
	h.Del("Mcp-Method")
	h.Del("Mcp-Name")
	h.Del("Last-Event-Id")
	if x.version >= version20260728 {
		h.Set("Mcp-Method", method)
		if name != "" {
			h.Set("Mcp-Name", name)
		}
	}
}

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
)

// maxListPages bounds the pages of the engine's own tools/list.
const maxListPages = 16

// toolView is the last definition of a tool the engine saw, and when.
type toolView struct {
	tool   *mcp.Tool
	at     time.Time
	raw    []byte               // the input schema as JSON: a list again with the same keeps schema
	schema *jsonschema.Resolved // nil until first needed
	err    error                // the input schema could not be resolved
}

// toolCache keeps the last definitions seen per tool of the target.
type toolCache struct {
	mu sync.Mutex
	m  map[string]toolView
}

func (c *toolCache) put(tools []*mcp.Tool, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, t := range tools {
		if t == nil || t.Name == "" {
			continue
		}
		if len(c.m) >= maxBound {
			if _, ok := c.m[t.Name]; !ok {
				continue
			}
		}
		v := toolView{tool: t, at: at}
		v.raw, _ = json.Marshal(t.InputSchema)
		if old, ok := c.m[t.Name]; ok && bytes.Equal(old.raw, v.raw) {
			v.schema, v.err = old.schema, old.err // resolved once per schema, not per list
		}
		c.m[t.Name] = v
	}
}

func (c *toolCache) get(name string) (toolView, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[name]
	return v, ok
}

// resolved is the tool's input schema, resolved once per definition.
func (c *toolCache) resolved(name string, t *mcp.Tool) (*jsonschema.Resolved, error) {
	c.mu.Lock()
	v, ok := c.m[name]
	c.mu.Unlock()
	raw, _ := json.Marshal(t.InputSchema)
	if ok && bytes.Equal(v.raw, raw) && (v.schema != nil || v.err != nil) {
		return v.schema, v.err
	}
	rs, err := resolveSchema(t.InputSchema)
	c.mu.Lock()
	if v, ok := c.m[name]; ok && bytes.Equal(v.raw, raw) {
		v.schema, v.err = rs, err
		c.m[name] = v
	}
	c.mu.Unlock()
	return rs, err
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

// tool is the definition of tool name the call is checked against: the engine's view when it is
// newer than ToolsMaxAge, else the upstream's list now, fetched with the session's credential.
func (e *Engine) tool(ctx context.Context, x *exchange, name string, meta json.RawMessage) (toolView, error) {
	if v, ok := e.tools.get(name); ok && e.cfg.ToolsMaxAge > 0 && time.Since(v.at) < e.cfg.ToolsMaxAge {
		return v, nil
	}
	tools, err := e.listTools(ctx, x, meta)
	if err != nil {
		return toolView{}, err
	}
	e.tools.put(tools, time.Now())
	for _, t := range tools {
		if t != nil && t.Name == name {
			v, _ := e.tools.get(name)
			if v.tool != t { // another call listed the tools since: check against what was seen now
				v = toolView{tool: t, at: time.Now()}
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

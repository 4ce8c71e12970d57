package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/broker/session"
	"github.com/svidbroker/svidbroker/plugins/protocol/mcp/wire"
)

// maxRecordedResult caps a result recorded with @record("full").
const maxRecordedResult = 64 << 10

// forward sends a permitted message upstream (it.m; for a GET, the stream's request) and relays
// what comes back, filtered: to out, or, for a batch's message, appended to collect.
func (x *exchange) forward(ctx context.Context, it *item, out *clientOut, collect *[][]byte) {
	e := x.e
	method, body := http.MethodPost, []byte(it.m.raw)
	if it.method == "GET" {
		method, body = http.MethodGet, nil
	} else if it.m.req != nil {
		body = x.withTrace(ctx, it.m.raw)
	}
	req, err := e.http.UpstreamRequest(ctx, x.r, x.s, method, e.cfg.Path, body)
	if err != nil {
		x.fail(it, out, collect, http.StatusInternalServerError, "svidbroker: the request could not be built")
		return
	}
	if collect != nil { // a batch's message goes alone
		x.sessionHeaders(req.Header, it.method, "")
	}
	it.asked = e.now()
	resp, err := e.http.RoundTrip(ctx, req, "mcp "+spanMethod(it.method))
	if err != nil {
		if x.r.Context().Err() != nil {
			return
		}
		x.s.Log().WarnContext(ctx, "upstream request failed", "method", spanMethod(it.method), "error", err)
		x.s.Record(audit.Record{Kind: audit.KindError, Error: "upstream unavailable", Detail: map[string]string{"request": it.text}})
		msg := fmt.Sprintf("svidbroker: the upstream of target %q did not answer", e.target)
		if _, ok := errors.AsType[*session.Ended](context.Cause(ctx)); ok {
			msg = "svidbroker: " + context.Cause(ctx).Error() + "; send the request again"
		}
		x.fail(it, out, collect, http.StatusBadGateway, msg)
		return
	}
	defer resp.Body.Close()
	if it.method == "initialize" && resp.StatusCode == http.StatusOK {
		if sid := resp.Header.Get("Mcp-Session-Id"); sid != "" {
			e.bind(sid, x.principal)
			x.opened = sid
		}
	}
	head := func(h http.Header) {
		for _, k := range []string{"Mcp-Session-Id", "Mcp-Protocol-Version"} {
			if v := resp.Header.Get(k); v != "" && (x.secret == "" || !strings.Contains(v, x.secret)) {
				h.Set(k, v)
			}
		}
	}
	switch {
	case resp.StatusCode == http.StatusAccepted:
		if out != nil {
			out.status(head, http.StatusAccepted)
		}
		return
	case resp.StatusCode == http.StatusNotFound && x.sid != "":
		e.unbind(x.sid) // the upstream ended the session: the agent initializes again
		x.fail(it, out, collect, http.StatusNotFound, "svidbroker: the upstream ended this MCP session; initialize a new session")
		return
	case resp.StatusCode != http.StatusOK:
		x.s.Record(audit.Record{Kind: audit.KindResult, Result: &audit.Result{Tag: fmt.Sprintf("HTTP %d", resp.StatusCode)},
			Detail: map[string]string{"request": it.text}})
		x.fail(it, out, collect, resp.StatusCode, fmt.Sprintf("svidbroker: the upstream of target %q answered HTTP %d", e.target, resp.StatusCode))
		return
	}
	ct := mediaType(resp.Header)
	st := &resultStats{}
	var rec *capped
	if it.full {
		rec = &capped{max: maxRecordedResult}
	}
	filter := x.filter(ctx, it, st, rec)
	var msgs [][]byte
	switch {
	case ct != "text/event-stream" || out == nil:
	case it.method == "GET":
		out.startStream(head) // the agent's listening stream is open from now
	default:
		out.startRelay(head)
	}
	err = readServerMessages(ctx, ct, resp.Body, e.cfg.MaxMessageBytes, func(m message, eventID string) error {
		b, err := filter(m)
		if err != nil || b == nil {
			return err
		}
		switch {
		case collect != nil:
			*collect = append(*collect, b)
		case ct == "text/event-stream":
			return out.event(b, eventID)
		default:
			msgs = append(msgs, b)
		}
		return nil
	})
	if out != nil && ct == "application/json" && err == nil {
		err = out.json(head, msgs, len(msgs) > 1)
	}
	if it.m.req != nil && it.m.req.IsCall() {
		x.recordResult(it, st, rec, err)
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		x.s.Log().WarnContext(ctx, "upstream answer refused", "method", spanMethod(it.method), "error", err)
		if out == nil || !out.isStarted() {
			x.fail(it, out, collect, http.StatusBadGateway, fmt.Sprintf("svidbroker: the upstream's answer to %s could not be checked, so it is withheld", spanMethod(it.method)))
			return
		}
		panic(http.ErrAbortHandler) // the stream is cut: what follows could not be checked
	}
}

// fail answers a forwarded message the engine could not relay: a JSON-RPC error for a request,
// an HTTP error otherwise.
func (x *exchange) fail(it *item, out *clientOut, collect *[][]byte, status int, msg string) {
	if it.m.req != nil && it.m.req.IsCall() {
		b := errorResponse(it.m.req.ID, codeUnavailable, msg)
		if collect != nil {
			*collect = append(*collect, b)
		} else {
			_ = out.json(nil, [][]byte{b}, false)
		}
		return
	}
	if out != nil && !out.isStarted() {
		out.status(nil, status)
		_, _ = out.w.Write(fmt.Appendf(nil, "{\"error\":%q}\n", msg))
	}
}

// recordResult records a call's answer: its summary, what was masked, and, with @record("full"),
// the result as the agent saw it.
func (x *exchange) recordResult(it *item, st *resultStats, rec *capped, err error) {
	tag := "ok"
	switch {
	case st.refused: // the agent got the refusal, whatever came after it
		tag = "input refused"
	case err != nil:
		tag = "withheld"
	case st.isError:
		tag = "isError"
	}
	detail := map[string]string{"request": it.text}
	if len(st.kinds) > 0 {
		detail["content"] = strings.Join(st.kinds, ",")
	}
	if it.plan != nil && len(it.plan.masked) > 0 {
		detail["masked"] = strings.Join(it.plan.masked, ",")
	}
	if rec != nil {
		detail["body"] = rec.buf.String()
		if rec.cut {
			detail["body_truncated"] = "true"
		}
	}
	x.s.Record(audit.Record{Kind: audit.KindResult, Result: &audit.Result{Tag: resultTag(it, tag), Rows: int64(st.masked), Unit: "masked values", Bytes: st.bytes}, Detail: detail})
}

// resultTag is a result's tag in records: "tools/call get_customer ok", "initialize ok".
func resultTag(it *item, outcome string) string {
	if it.tool != "" {
		return it.method + " " + clip(it.tool, 128) + " " + outcome
	}
	return it.method + " " + outcome
}

// filter is what the agent gets of each upstream message of an exchange: the answer to its
// request (lists filtered, results masked), server requests policy permits, the notifications it
// may see. nil drops a message.
func (x *exchange) filter(ctx context.Context, it *item, st *resultStats, rec *capped) func(message) ([]byte, error) {
	return func(m message) ([]byte, error) {
		var out []byte
		var err error
		switch {
		case m.resp != nil:
			if it.m.req == nil || !it.m.req.IsCall() || m.resp.ID != it.m.req.ID {
				return nil, nil // not an answer to this request of the agent's
			}
			out, err = x.answer(it, m, st)
			if err != nil {
				return nil, err
			}
			if rec != nil {
				rec.Write(out)
			}
			st.bytes += int64(len(out))
		case m.req.IsCall():
			out = x.serverRequest(ctx, m)
		default:
			out = x.notification(it, m)
		}
		if out != nil && x.secret != "" && bytes.Contains(out, []byte(x.secret)) {
			x.s.Record(audit.Record{Kind: audit.KindError, Error: "credential quoted", Detail: map[string]string{"request": it.text}})
			if m.resp != nil {
				return errorResponse(m.resp.ID, codeUnavailable, "svidbroker: the upstream's answer quotes the target's credential, so it is withheld"), nil
			}
			return nil, nil
		}
		return out, nil
	}
}

// answer is the agent's view of the upstream's answer to its request.
func (x *exchange) answer(it *item, m message, st *resultStats) ([]byte, error) {
	e := x.e
	if m.resp.Error != nil {
		if it.method == "tools/call" && it.plan != nil && (it.plan.filter != nil || len(it.cat.Fields) > 0) {
			// The message may quote the fields the policy masks: it is replaced.
			code := int64(codeUnavailable)
			if we, ok := m.resp.Error.(*jsonrpc.Error); ok {
				code = we.Code
			}
			st.isError = true
			return errorResponse(m.resp.ID, code, fmt.Sprintf("svidbroker: tool %q failed upstream; its message is withheld because fields of the tool's results are masked", it.tool)), nil
		}
		return m.raw, nil
	}
	if b := x.inputs(it, m, st); b != nil {
		return b, nil
	}
	var result json.RawMessage
	var err error
	switch it.method {
	case "initialize":
		v, err := wire.InitializeResultVersion(m.resp.Result)
		if err != nil {
			if x.opened != "" {
				e.unbind(x.opened)
			}
			return errorResponse(m.resp.ID, codeUnavailable, "svidbroker: "+err.Error()), nil
		}
		if x.opened != "" {
			e.settle(x.opened, x.principal, v)
		}
		return m.raw, nil
	case "tools/list":
		result, err = x.filterTools(m.resp.Result, it.asked)
	case "resources/list":
		result, err = x.filterList(m.resp.Result, "resources/list")
	case "prompts/list":
		result, err = x.filterList(m.resp.Result, "prompts/list")
	case "tools/call":
		result, err = maskResult(m.resp.Result, it, st)
	default:
		return m.raw, nil
	}
	if err != nil {
		st.isError = true
		e.cfg.HTTP.Logger.Warn("result withheld", "target", e.target, "method", it.method, "error", err)
		return errorResponse(m.resp.ID, codeUnavailable, "svidbroker: "+err.Error()+", so it is withheld"), nil
	}
	return jsonrpc.EncodeMessage(&jsonrpc.Response{ID: m.resp.ID, Result: result})
}

// filterTools keeps the entries of a tools/list result, asked for at asked, that the caller may see
// and whose definitions match their pins: a changed one is dropped (its description never reaches
// the model) and recorded. The engine's view of the tools' definitions is updated. The list is
// decoded with the SDK's types, as an SDK client reads it, and encoded again.
func (x *exchange) filterTools(result json.RawMessage, asked time.Time) (json.RawMessage, error) {
	e := x.e
	r, err := wire.DecodeList[mcp.ListToolsResult](result)
	if err != nil {
		return nil, errors.New("the upstream's tools/list result could not be read")
	}
	all := slices.Clone(r.Tools)
	var pinned map[*mcp.Tool]bool
	r.Tools = slices.DeleteFunc(r.Tools, func(t *mcp.Tool) bool {
		if t == nil || t.Name == "" || !e.cfg.Policy.MCPVisible(x.conn, e.target, "tools/list", t.Name) {
			return true
		}
		if e.cfg.Pins == nil {
			return false
		}
		// A hidden tool is not checked: it is not relayed, and a call to it is refused by policy.
		pv := e.cfg.Pins.CheckTool(t)
		if pv.OK {
			if pinned == nil {
				pinned = map[*mcp.Tool]bool{}
			}
			pinned[t] = true
			return false
		}
		x.s.Record(audit.Record{Kind: audit.KindDenied, Statement: &audit.Statement{Protocol: "mcp", Text: "tools/list"},
			Detail: map[string]string{"method": "tools/list", "tool": clip(t.Name, 128), "refused": "tool definition changed", "pin": pv.Why}})
		return true
	})
	// Every entry is kept, the hidden and the refused too: a call checks the definition seen last.
	e.tools.put(all, asked, pinned)
	return json.Marshal(r)
}

// filterList keeps the entries of a resources or prompts list result the caller may see. The list
// is decoded with the SDK's types, as an SDK client reads it, and encoded again.
func (x *exchange) filterList(result json.RawMessage, list string) (json.RawMessage, error) {
	visible := func(name string) bool { return name != "" && x.e.cfg.Policy.MCPVisible(x.conn, x.e.target, list, name) }
	bad := fmt.Errorf("the upstream's %s result could not be read", list)
	switch list {
	case "resources/list":
		r, err := wire.DecodeList[mcp.ListResourcesResult](result)
		if err != nil {
			return nil, bad
		}
		r.Resources = slices.DeleteFunc(r.Resources, func(e *mcp.Resource) bool { return e == nil || !visible(e.URI) })
		return json.Marshal(r)
	case "prompts/list":
		r, err := wire.DecodeList[mcp.ListPromptsResult](result)
		if err != nil {
			return nil, bad
		}
		r.Prompts = slices.DeleteFunc(r.Prompts, func(e *mcp.Prompt) bool { return e == nil || !visible(e.Name) })
		return json.Marshal(r)
	}
	return nil, bad
}

// serverActions are the server requests a policy decides before the agent sees them.
var serverActions = map[string]bool{"sampling/createMessage": true, "elicitation/create": true, "roots/list": true}

// serverRequest gates a server-initiated request: forwarded to the agent when policy permits it,
// else answered to the server with an error, unseen by the agent.
func (x *exchange) serverRequest(ctx context.Context, m message) []byte {
	method := m.req.Method
	if method == "ping" {
		x.e.addPending(pendingKey{x.principal, x.sid, m.req.ID.Raw()}, method)
		return m.raw
	}
	text := "server " + clip(method, 64)
	if !serverActions[method] {
		x.deny(text, "server request not relayed", http.StatusOK)
		x.answerServer(m.req.ID, fmt.Sprintf("svidbroker: server request %s is not relayed to clients", quoteMethod(method)))
		return nil
	}
	if ok, msg, _ := x.decideServer(method, nil); !ok {
		x.answerServer(m.req.ID, msg)
		return nil
	}
	x.e.addPending(pendingKey{x.principal, x.sid, m.req.ID.Raw()}, method)
	return m.raw
}

// decideServer decides a request of the server's to the client (server-initiated, or an input
// request of a result): whether policy permits the client's principal to be asked method on the
// target, and when it does not, the refusal's message and its policies. detail is added to the
// record.
func (x *exchange) decideServer(method string, detail map[string]string) (bool, string, []string) {
	text := "server " + clip(method, 64)
	req := Request{Target: x.e.target, Method: method, Version: x.version}
	conn, policy := x.conn, x.e.cfg.Policy
	rec := audit.Record{Kind: audit.KindStatement, Statement: &audit.Statement{Protocol: "mcp", Text: text}, Detail: map[string]string{"method": method}}
	for k, v := range detail {
		rec.Detail[k] = v
	}
	v := x.s.Decide(x.s.Context(), session.Operation{Action: "mcp", Text: text, Key: "server\x00" + method, Record: &rec, NoHold: true,
		Decide: func(ap authz.ApprovalState) (authz.Decision, error) { return policy.MCP(conn, req, ap) }})
	if v.Outcome != session.Block {
		return true, "", nil
	}
	msg := fmt.Sprintf("svidbroker: the client's principal may not be asked %s on target %q", method, x.e.target)
	if errors.Is(v.Err, session.ErrBlocked) && v.Cause != nil {
		msg = "svidbroker: " + v.Cause.Error()
	}
	if len(v.Decision.Reasons) > 0 {
		msg += " (policy " + strings.Join(v.Decision.Reasons, ", ") + ")"
	}
	return false, msg, v.Decision.Reasons
}

// answerServer answers a server request the agent is not asked, in the background.
func (x *exchange) answerServer(id jsonrpc.ID, msg string) {
	body := errorResponse(id, codeDenied, msg)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(x.s.Context()), x.e.http.Limits().Upstream)
	req, err := x.e.http.UpstreamRequest(ctx, nil, x.s, http.MethodPost, x.e.cfg.Path, body)
	if err != nil {
		cancel()
		return
	}
	x.sessionHeaders(req.Header, "", "")
	req.Header.Del("Mcp-Method")
	go func() {
		defer cancel()
		resp, err := x.e.http.RoundTrip(ctx, req, "mcp response")
		if err == nil {
			resp.Body.Close()
		}
	}()
}

// notification is what the agent sees of a server notification: progress and list changes pass;
// log messages pass only on the answer to a request whose results nothing masks; a resource's update
// only for a resource the caller may see.
func (x *exchange) notification(it *item, m message) []byte {
	switch m.req.Method {
	case "notifications/tools/list_changed":
		x.e.tools.invalidate(x.e.now()) // before the agent hears of it: its next call lists again
		return m.raw
	case "notifications/cancelled", "notifications/prompts/list_changed", "notifications/resources/list_changed":
		return m.raw
	case "notifications/progress", "notifications/message":
		if it.m.req != nil && (it.plan == nil || (it.plan.filter == nil && len(it.cat.Fields) == 0)) {
			return m.raw
		}
	case "notifications/resources/updated":
		var p struct {
			URI string `json:"uri"`
		}
		if json.Unmarshal(m.req.Params, &p) == nil && p.URI != "" && x.e.cfg.Policy.MCPVisible(x.conn, x.e.target, "resources/list", p.URI) {
			return m.raw
		}
	}
	return nil
}

// spanMethod is a method as span names and logs show it: one of MCP's, else "_OTHER".
func spanMethod(m string) string {
	switch m {
	case "initialize", "ping", "tools/list", "tools/call", "resources/list", "resources/read", "prompts/list", "prompts/get",
		"notifications/initialized", "notifications/cancelled", "notifications/progress", "server/discover",
		"subscriptions/listen", "response", "GET":
		return m
	}
	return "_OTHER"
}

// capped keeps the first max bytes written to it.
type capped struct {
	buf bytes.Buffer
	max int
	cut bool
}

func (c *capped) Write(p []byte) (int, error) {
	n := len(p)
	if room := c.max - c.buf.Len(); room < len(p) {
		c.cut = true
		p = p[:max(room, 0)]
	}
	c.buf.Write(p)
	return n, nil
}

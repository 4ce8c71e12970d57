package proxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"go.opentelemetry.io/otel/trace"

	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/broker/session"
	"github.com/svidbroker/svidbroker/plugins/protocol/mcp/wire"
)

// JSON-RPC error codes of the engine's refusals.
const (
	codeInvalidRequest = jsonrpc.CodeInvalidRequest
	codeInvalidParams  = jsonrpc.CodeInvalidParams
	codeNotPermitted   = jsonrpc.CodeMethodNotFound
	// codeDenied: a policy refused the message (its data names the policies). Not one of the codes
	// the SDKs give their own meanings (-32001 to -32005, -32020 to -32022, -32042).
	codeDenied = -32010
	// codeUnavailable: the broker or the upstream could not serve it now.
	codeUnavailable = jsonrpc.CodeInternalError
)

// errClientLeft withdraws a call held for approval whose client went away.
var errClientLeft = errors.New("the client closed its connection")

// item is one client message on its way: refused (refusal, or refused for a notification or a
// response, which get no answer), or forwarded, with what its answer needs.
type item struct {
	m      message
	method string
	text   string // as records and approvers see it
	tool   string
	cat    CatalogTool
	plan   *maskPlan
	full   bool      // @record("full"): the masked result is recorded
	ask    string    // the call, as input requests of its result are kept: method, name, digest of arguments
	asked  time.Time // when it was sent upstream

	refusal []byte // the JSON-RPC error answering a refused request
	refused string // why a notification or a response was refused
	status  int    // its HTTP status
}

// errorData is a refusal's JSON-RPC error data.
type errorData struct {
	Policy   []string `json:"policy,omitempty"`
	Approval string   `json:"approval_request,omitempty"`
	Tool     string   `json:"tool,omitempty"`
}

func (it *item) refuse(code int64, msg string, data *errorData) {
	e := &jsonrpc.Error{Code: code, Message: msg}
	if data != nil {
		e.Data, _ = json.Marshal(data)
	}
	it.refusal, _ = jsonrpc.EncodeMessage(&jsonrpc.Response{ID: it.m.req.ID, Error: e})
}

// classify decides one client message. single: the message is a POST's only one, so a held call
// may answer with an event stream of progress notifications.
func (x *exchange) classify(ctx context.Context, m message, out *clientOut, single bool) *item {
	e := x.e
	it := &item{m: m}
	if m.resp != nil {
		method, ok := e.takePending(pendingKey{x.principal, x.sid, m.resp.ID.Raw()})
		if !ok {
			it.refused, it.status = "svidbroker: a response to a request the server never sent, or that was answered already", http.StatusBadRequest
			x.deny("response", "a response to a request never sent", it.status)
			return it
		}
		it.method, it.text = "response", "response to "+method
		x.mechanics(it.text)
		return it
	}
	req := m.req
	it.method, it.text = req.Method, req.Method
	if !req.IsCall() {
		switch req.Method {
		case "notifications/initialized", "notifications/cancelled", "notifications/progress":
			x.mechanics(req.Method)
		default:
			it.refused, it.status = fmt.Sprintf("svidbroker: notification %s is not relayed to target %q", quoteMethod(req.Method), e.target), http.StatusForbidden
			x.deny(clip(req.Method, 64), "notification not relayed", it.status)
		}
		return it
	}
	switch req.Method {
	case "initialize", "ping", "server/discover", "subscriptions/listen":
		x.mechanics(req.Method)
	case "tools/list", "resources/list", "prompts/list":
		x.s.Record(audit.Record{Kind: audit.KindStatement, Statement: &audit.Statement{Protocol: "mcp", Text: req.Method},
			Detail: map[string]string{"method": req.Method, "filtered": "by policy"}})
	case "tools/call":
		x.decideCall(ctx, it, out, single)
	case "resources/read", "prompts/get":
		x.decideNamed(ctx, it)
	default:
		x.deny(clip(req.Method, 64), "method not relayed", http.StatusOK)
		it.refuse(codeNotPermitted, fmt.Sprintf("svidbroker: method %s is not relayed to target %q: the broker relays tool calls, resources and prompts that policy permits, and the protocol's own requests", quoteMethod(req.Method), e.target), nil)
	}
	return it
}

// callParams are tools/call's params as the engine reads them.
type callParams struct {
	Meta      map[string]json.RawMessage `json:"_meta"`
	Name      string                     `json:"name"`
	Arguments json.RawMessage            `json:"arguments"`
}

// decideCall decides a tools/call: visibility, the definition's pin, the arguments against the
// input schema, then policy, held with progress when a person must approve it.
func (x *exchange) decideCall(ctx context.Context, it *item, out *clientOut, single bool) {
	e := x.e
	var p callParams
	if err := json.Unmarshal(it.m.req.Params, &p); err != nil || p.Name == "" {
		x.deny("tools/call", "params not a tool call", http.StatusOK)
		it.refuse(codeInvalidParams, "svidbroker: tools/call's params must be an object with the tool's name and its arguments", nil)
		return
	}
	it.tool = p.Name
	args, plain, err := decodeArgs(p.Arguments)
	if err != nil {
		it.text = "tools/call " + clip(p.Name, 128)
		x.deny(it.text, "arguments not an object", http.StatusOK)
		it.refuse(codeInvalidParams, fmt.Sprintf("svidbroker: the arguments of tool %q must be a JSON object", p.Name), nil)
		return
	}
	canon, _ := json.Marshal(args) // sorted keys, numbers as sent
	it.cat, _ = e.cfg.Policy.MCPTool(e.target, p.Name)
	it.text = "tools/call " + clip(p.Name, 128) + " " + recordedArgs(it.cat, args, canon)
	refused := func(code int64, why, msg string, d map[string]string) {
		detail := map[string]string{"method": "tools/call", "tool": p.Name, "refused": why}
		for k, v := range d {
			detail[k] = v
		}
		x.s.Record(audit.Record{Kind: audit.KindDenied, Statement: &audit.Statement{Protocol: "mcp", Text: it.text}, Detail: detail})
		it.refuse(code, msg, &errorData{Tool: p.Name})
	}
	if it.ask, err = callKey("tools/call", p.Name, args); err != nil {
		x.deny(it.text, "arguments not canonically encodable", http.StatusOK)
		it.refuse(codeInvalidParams, fmt.Sprintf("svidbroker: the arguments of tool %q must be JSON values", p.Name), nil)
		return
	}
	if !x.answers(it) {
		return
	}
	if e.cfg.Policy.MCPVisible(x.conn, e.target, "tools/list", p.Name) {
		// The definition is checked only for a tool the caller may see: a hidden tool's schema and
		// pin say nothing to it, and policy refuses the call below.
		meta := listMeta(p.Meta)
		v, err := e.tool(ctx, x, p.Name, meta)
		switch {
		case errors.Is(err, errToolUnknown):
			refused(codeInvalidParams, "tool not offered by the upstream", fmt.Sprintf("svidbroker: target %q offers no tool %q; tools/list names the tools you may call", e.target, p.Name), nil)
			return
		case err != nil:
			refused(codeUnavailable, "tool definition unavailable", fmt.Sprintf("svidbroker: the definition of tool %q could not be fetched from target %q (%v), and a call is checked against it; try again", p.Name, e.target, err), nil)
			return
		}
		if e.cfg.Pins != nil && !v.pinned {
			if pv := e.cfg.Pins.CheckTool(v.tool); pv.OK {
				e.tools.markPinned(v.tool)
			} else {
				refused(codeDenied, "tool definition changed",
					fmt.Sprintf("svidbroker: %s; calls to it are refused until an operator reviews its definition and pins it (svidbroker mcp pin %s --accept)", pv.Why, e.target),
					map[string]string{"pin": pv.Why})
				return
			}
		}
		if err := v.checkParamHeaders(x.r.Header, it.m.req); err != nil {
			msg := "the Mcp-Param headers do not match the tool's arguments"
			if we, ok := errors.AsType[*wire.Error](err); ok {
				msg = we.Message
			}
			refused(mcp.CodeHeaderMismatch, "Mcp-Param headers mismatch", "svidbroker: "+msg, nil)
			return
		}
		rs, err := e.tools.resolved(v)
		if err != nil {
			refused(codeUnavailable, "input schema unusable", fmt.Sprintf("svidbroker: the input schema of tool %q cannot check arguments (%v), so calls to it are refused", p.Name, err), nil)
			return
		}
		if err := rs.Validate(plain); err != nil {
			refused(codeInvalidParams, "arguments do not match the input schema", fmt.Sprintf("svidbroker: the arguments of tool %q do not match its input schema: %v", p.Name, err), nil)
			return
		}
	}
	req := Request{Target: e.target, Method: "tools/call", Name: p.Name, Args: args, Version: x.version}
	op := x.operation(ctx, it, req, it.ask)
	op.Prepare = func(v session.Verdict) (any, error) { return x.planFields(req, it.cat, v) }
	var prog *progress
	if tok, ok := p.Meta["progressToken"]; ok && single && len(tok) > 0 && string(tok) != "null" {
		prog = &progress{out: out, token: tok, every: e.cfg.ProgressEvery}
		op.Notify = prog.start
	}
	v := x.s.Decide(x.s.Context(), op)
	prog.stop()
	if !x.verdict(it, v) {
		return
	}
	it.plan, _ = v.Plan.(*maskPlan)
	if it.plan == nil {
		it.plan = &maskPlan{}
	}
	it.full = e.cfg.HTTP.FullData && v.Decision.Obligations.Record == "full"
}

// callKey names one call for kept verdicts, approvals and the input requests it may be answered for:
// its method, its tool, resource or prompt, and wire.ArgsDigest of its arguments. Arguments decoded
// with UseNumber always encode; a call whose arguments do not is refused, never given a shared key.
func callKey(method, name string, args map[string]any) (string, error) {
	d, err := wire.ArgsDigest(args)
	if err != nil {
		return "", err
	}
	return method + "\x00" + name + "\x00" + d, nil
}

// decideNamed decides resources/read and prompts/get.
func (x *exchange) decideNamed(ctx context.Context, it *item) {
	var p struct {
		Name      string            `json:"name"`
		URI       string            `json:"uri"`
		Arguments map[string]string `json:"arguments"`
	}
	if err := json.Unmarshal(it.m.req.Params, &p); err != nil {
		x.deny(it.method, "params not an object", http.StatusOK)
		it.refuse(codeInvalidParams, "svidbroker: "+it.method+"'s params are not an object with its name or uri", nil)
		return
	}
	name := p.Name
	req := Request{Target: x.e.target, Method: it.method, Version: x.version}
	if it.method == "resources/read" {
		name = p.URI
	} else if len(p.Arguments) > 0 {
		req.Args = make(map[string]any, len(p.Arguments))
		for k, v := range p.Arguments {
			req.Args[k] = v
		}
	}
	if name == "" {
		it.refuse(codeInvalidParams, "svidbroker: "+it.method+" names no "+map[bool]string{true: "resource URI", false: "prompt"}[it.method == "resources/read"], nil)
		return
	}
	req.Name = name
	it.text = it.method + " " + clip(name, 256)
	var err error
	if it.ask, err = callKey(it.method, name, req.Args); err != nil {
		it.refuse(codeInvalidParams, "svidbroker: the arguments of "+it.method+" must be JSON values", nil)
		return
	}
	if !x.answers(it) {
		return
	}
	v := x.s.Decide(x.s.Context(), x.operation(ctx, it, req, it.ask))
	if x.verdict(it, v) {
		it.plan = &maskPlan{}
	}
}

// operation is the session operation deciding req, withdrawn when the client goes away.
func (x *exchange) operation(ctx context.Context, it *item, req Request, key string) session.Operation {
	rec := audit.Record{Kind: audit.KindStatement, Statement: &audit.Statement{Protocol: "mcp", Text: it.text},
		Detail: map[string]string{"method": req.Method}}
	if req.Method == "tools/call" {
		rec.Detail["tool"] = req.Name
	}
	conn, policy, r := x.conn, x.e.cfg.Policy, x.r
	// An approval binds the method, the tool (resource, prompt) and the sha256 of its arguments.
	fingerprint := "mcp:" + strings.ReplaceAll(key, "\x00", " ")
	return session.Operation{Action: "mcp", Text: it.text, Key: key, Fingerprint: fingerprint, Record: &rec, Durable: true,
		Parent: trace.SpanContextFromContext(ctx),
		Decide: func(ap authz.ApprovalState) (authz.Decision, error) { return policy.MCP(conn, req, ap) },
		Withdrawable: func(withdraw context.CancelCauseFunc) func() error {
			stop := context.AfterFunc(r.Context(), func() { withdraw(errClientLeft) })
			return func() error {
				stop()
				if r.Context().Err() != nil {
					return errClientLeft
				}
				return nil
			}
		},
	}
}

// verdict turns a refusing verdict into the item's JSON-RPC error; true for an allowing one.
func (x *exchange) verdict(it *item, v session.Verdict) bool {
	if v.Outcome != session.Block {
		return true
	}
	why := v.Err
	if errors.Is(v.Err, session.ErrBlocked) && v.Cause != nil {
		why = v.Cause // the policy's refusal says what was denied and what to permit
	}
	code := int64(codeDenied)
	if errors.Is(v.Err, session.ErrAuditUnavailable) {
		code = codeUnavailable
	}
	msg := "svidbroker: " + why.Error()
	if len(v.Decision.Reasons) > 0 {
		msg += " (policy " + strings.Join(v.Decision.Reasons, ", ") + ")"
	}
	it.refuse(code, msg, &errorData{Policy: v.Decision.Reasons, Approval: v.Request, Tool: it.tool})
	return false
}

// decodeArgs decodes a call's arguments: with json.Number for policy, and plainly for the schema.
func decodeArgs(raw json.RawMessage) (map[string]any, map[string]any, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return map[string]any{}, map[string]any{}, nil
	}
	var args, plain map[string]any
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if err := d.Decode(&args); err != nil || args == nil {
		return nil, nil, errors.New("not an object")
	}
	if err := json.Unmarshal(raw, &plain); err != nil {
		return nil, nil, err
	}
	return args, plain, nil
}

// recordedArgs are a call's arguments as records show them: as sent, or, for a tool the catalog
// tags "sensitive", each value's digest.
func recordedArgs(cat CatalogTool, args map[string]any, canon []byte) string {
	for _, t := range cat.Tags {
		if t == "sensitive" {
			d := make(map[string]string, len(args))
			for k, v := range args {
				b, _ := json.Marshal(v)
				sum := sha256.Sum256(b)
				d[k] = "sha256:" + hex.EncodeToString(sum[:8])
			}
			b, _ := json.Marshal(d)
			return clip(string(b), 4096)
		}
	}
	return clip(string(canon), 4096)
}

// listMeta is a call's _meta for the engine's own tools/list in its session: the protocol's keys
// (2026-07-28 requires them), without the call's progress token and trace context.
func listMeta(meta map[string]json.RawMessage) json.RawMessage {
	if len(meta) == 0 {
		return nil
	}
	m := make(map[string]json.RawMessage, len(meta))
	for k, v := range meta {
		if k != "progressToken" && k != "traceparent" && k != "tracestate" {
			m[k] = v
		}
	}
	b, _ := json.Marshal(m)
	return b
}

// progress sends notifications/progress to a client whose call is held for approval.
type progress struct {
	out   *clientOut
	token json.RawMessage
	every time.Duration
	done  chan struct{}
	wg    sync.WaitGroup
}

// start is the hold's Notify: the answer becomes an event stream, with a notification now and
// every few seconds until the hold ends.
func (p *progress) start(request string) error {
	p.out.startStream(nil)
	p.done = make(chan struct{})
	n := 0
	send := func() {
		n++
		params := map[string]any{"progressToken": p.token, "progress": n,
			"message": "held for a person's approval (request " + request + ")"}
		b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": "notifications/progress", "params": params})
		_ = p.out.event(b, "")
	}
	send()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(p.every)
		defer t.Stop()
		for {
			select {
			case <-p.done:
				return
			case <-t.C:
				send()
			}
		}
	}()
	return nil
}

func (p *progress) stop() {
	if p == nil || p.done == nil {
		return
	}
	close(p.done)
	p.wg.Wait()
}

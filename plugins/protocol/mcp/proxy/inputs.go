package proxy

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/svidbroker/svidbroker/broker/audit"
)

// Input requests (2026-07-28): a tools/call, prompts/get or resources/read result may ask the
// client for sampling, elicitation or roots (its inputRequests), and the client calls again with
// its answers (inputResponses) and the result's requestState. Each input request is decided as the
// server-initiated request of earlier versions is (mcp:sampling, mcp:elicitation, mcp:roots); a
// client's answers pass only for input requests the broker relayed to its principal, in its MCP
// session, for the same call.

const (
	// askTTL is how long a relayed result's input requests may be answered.
	askTTL = 10 * time.Minute
	// maxInputRequests bounds the input requests of one result.
	maxInputRequests = 64
)

// askKey names a call whose result asked the client for input: the principal, the MCP session,
// and the call (its method, name and the digest of its arguments).
type askKey struct{ principal, session, call string }

// asked is what a relayed result asked: its input requests' keys and methods, its requestState.
type asked struct {
	keys  map[string]string
	state string
	at    time.Time
}

// maxAsksPerCall bounds the results of one call (principal, session, method, name, arguments)
// whose input requests await answers: a principal's concurrent identical calls.
const maxAsksPerCall = 8

// askBook keeps the input requests relayed to clients, awaiting their answers.
type askBook struct {
	mu sync.Mutex
	m  map[askKey][]asked
}

func (b *askBook) put(k askKey, a asked) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.m == nil {
		b.m = map[askKey][]asked{}
	}
	if _, ok := b.m[k]; !ok && len(b.m) >= maxBound {
		var oldest askKey
		var at time.Time
		for k2, v := range b.m { // expired ones first, else the oldest: its client calls afresh
			last := v[len(v)-1].at
			if a.at.Sub(last) > askTTL {
				delete(b.m, k2)
				continue
			}
			if at.IsZero() || last.Before(at) {
				oldest, at = k2, last
			}
		}
		if len(b.m) >= maxBound {
			delete(b.m, oldest)
		}
	}
	l := append(b.m[k], a)
	if len(l) > maxAsksPerCall {
		l = l[len(l)-maxAsksPerCall:]
	}
	b.m[k] = l
}

// take removes and returns what a result relayed for k asked with requestState state, if one did
// and has not expired; the latest such one.
func (b *askBook) take(k askKey, state string, now time.Time) (asked, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	l := b.m[k]
	for i := len(l) - 1; i >= 0; i-- {
		if l[i].state != state || now.Sub(l[i].at) > askTTL {
			continue
		}
		a := l[i]
		l = append(l[:i:i], l[i+1:]...)
		if len(l) == 0 {
			delete(b.m, k)
		} else {
			b.m[k] = l
		}
		return a, true
	}
	return asked{}, false
}

// pending reports whether input requests relayed for k await answers.
func (b *askBook) pending(k askKey) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.m[k]) > 0
}

// inputMethod is the method of an input request, as a server-initiated request would carry it.
func inputMethod(r mcp.InputRequest) string {
	switch r.(type) {
	case *mcp.ElicitParams:
		return "elicitation/create"
	case *mcp.CreateMessageParams, *mcp.CreateMessageWithToolsParams:
		return "sampling/createMessage"
	case *mcp.ListRootsParams:
		return "roots/list"
	}
	return ""
}

// responseMethod is the method an input response answers.
func responseMethod(r mcp.InputResponse) string {
	switch r.(type) {
	case *mcp.ElicitResult:
		return "elicitation/create"
	case *mcp.CreateMessageResult, *mcp.CreateMessageWithToolsResult:
		return "sampling/createMessage"
	case *mcp.ListRootsResult:
		return "roots/list"
	}
	return ""
}

// hasMember reports whether a JSON object has a member named name, without regard to case (as
// Go's decoders match it).
func hasMember(raw json.RawMessage, name string) bool {
	var top map[string]json.RawMessage
	if json.Unmarshal(raw, &top) != nil {
		return false
	}
	for k, v := range top {
		if strings.EqualFold(k, name) && string(v) != "null" {
			return true
		}
	}
	return false
}

// inputs gates the input requests of a result to it: nil when the result asks for none (it is
// relayed as usual); else the answer the agent gets: the result as decoded and encoded again when
// policy permits every input request (and they are kept for the client's answers), or an error
// naming the refused one.
func (x *exchange) inputs(it *item, m message, st *resultStats) []byte {
	if it.ask == "" || !hasMember(m.resp.Result, "inputRequests") {
		return nil
	}
	id := m.resp.ID
	var reqs mcp.InputRequestMap
	var state string
	var res any
	switch it.method {
	case "tools/call":
		var r mcp.CallToolResult
		if json.Unmarshal(m.resp.Result, &r) != nil {
			return nil // maskResult withholds it
		}
		reqs, state = r.InputRequests, r.RequestState
	case "prompts/get":
		r := &mcp.GetPromptResult{}
		if json.Unmarshal(m.resp.Result, r) == nil {
			reqs, state, res = r.InputRequests, r.RequestState, r
		}
	case "resources/read":
		r := &mcp.ReadResourceResult{}
		if json.Unmarshal(m.resp.Result, r) == nil {
			reqs, state, res = r.InputRequests, r.RequestState, r
		}
	}
	of := clip(it.text, 256)
	refuse := func(why, msg string, policies []string, d map[string]string) []byte {
		detail := map[string]string{"method": it.method, "refused": why}
		if it.tool != "" {
			detail["tool"] = it.tool
		}
		for k, v := range d {
			detail[k] = v
		}
		x.s.Record(audit.Record{Kind: audit.KindDenied, Statement: &audit.Statement{Protocol: "mcp", Text: "input requests of " + of}, Detail: detail})
		st.refused = true
		it.refuse(codeDenied, msg, &errorData{Policy: policies, Tool: it.tool})
		return it.refusal
	}
	if it.method != "tools/call" && res == nil {
		return refuse("input requests unreadable", fmt.Sprintf("svidbroker: the upstream's %s result asks the client for input in a form that could not be read, so it is withheld", it.method), nil, nil)
	}
	if len(reqs) > maxInputRequests {
		return refuse("too many input requests", fmt.Sprintf("svidbroker: the upstream's %s result asks the client for %d inputs, more than %d, so it is withheld", it.method, len(reqs), maxInputRequests), nil, nil)
	}
	keys := make([]string, 0, len(reqs))
	for k := range reqs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		method := inputMethod(reqs[k])
		d := map[string]string{"input_request": clip(k, 128), "asks": method}
		if method == "" {
			return refuse("input request not relayed", fmt.Sprintf("svidbroker: the upstream's %s result asks the client for an input the broker does not relay, so it is withheld", it.method), nil, d)
		}
		if it.plan != nil && it.plan.filter != nil {
			// Fields of the tool's results are masked for this principal, and an input request is
			// free text (an elicitation's message, a sampling prompt) that could quote them, where
			// no field path reaches: it is refused, not masked.
			return refuse("input request of a masked tool", fmt.Sprintf("svidbroker: tool %q asked the client for %s, which is withheld because fields of the tool's results are masked for this principal and the request could quote them", it.tool, method), nil, d)
		}
		if ok, msg, policies := x.decideServer(method, d); !ok {
			return refuse("input request refused", fmt.Sprintf("svidbroker: %s asked the client for %s (input request %q), refused: %s", of, method, clip(k, 128), strings.TrimPrefix(msg, "svidbroker: ")), policies, d)
		}
	}
	a := asked{keys: make(map[string]string, len(reqs)), state: state, at: x.e.now()}
	for k, r := range reqs {
		a.keys[k] = inputMethod(r)
	}
	x.e.asks.put(askKey{x.principal, x.sid, it.ask}, a)
	if res == nil {
		return nil // a tool's result is masked and encoded again by answer
	}
	b, err := json.Marshal(res)
	if err != nil {
		return errorResponse(id, codeUnavailable, fmt.Sprintf("svidbroker: the upstream's %s result could not be encoded again, so it is withheld", it.method))
	}
	out, _ := jsonrpc.EncodeMessage(&jsonrpc.Response{ID: id, Result: b})
	return out
}

// inputParams are the members of a call's params that answer input requests.
type inputParams struct {
	InputResponses json.RawMessage `json:"inputResponses"`
	RequestState   string          `json:"requestState"`
}

// answers checks the inputResponses and requestState a client's call carries: accepted only for
// input requests relayed to this principal in this MCP session for the same call, each answered
// by a response of its kind, with the requestState relayed. false: the call is refused (it.refusal).
func (x *exchange) answers(it *item) bool {
	var p inputParams
	if err := json.Unmarshal(it.m.req.Params, &p); err != nil {
		return true // the method's own decoding refuses it
	}
	raw := strings.TrimSpace(string(p.InputResponses))
	if (raw == "" || raw == "null") && p.RequestState == "" {
		return true
	}
	refuse := func(why, msg string, d map[string]string) bool {
		detail := map[string]string{"method": it.method, "refused": why}
		if it.tool != "" {
			detail["tool"] = it.tool
		}
		for k, v := range d {
			detail[k] = v
		}
		x.s.Record(audit.Record{Kind: audit.KindDenied, Statement: &audit.Statement{Protocol: "mcp", Text: it.text}, Detail: detail})
		it.refuse(codeInvalidParams, msg, &errorData{Tool: it.tool})
		return false
	}
	var resps mcp.InputResponseMap
	if raw != "" && raw != "null" {
		if err := json.Unmarshal(p.InputResponses, &resps); err != nil {
			return refuse("inputResponses unreadable", fmt.Sprintf("svidbroker: the inputResponses of %s could not be read: each must be an elicitation, sampling or roots result", it.method), nil)
		}
	}
	k := askKey{x.principal, x.sid, it.ask}
	a, ok := x.e.asks.take(k, p.RequestState, x.e.now())
	if !ok {
		if x.e.asks.pending(k) {
			return refuse("requestState not relayed", fmt.Sprintf("svidbroker: the requestState of %s is not one the broker relayed for this call: echo the one the result carried", it.method), nil)
		}
		return refuse("unsolicited inputResponses", fmt.Sprintf("svidbroker: %s carries inputResponses or a requestState, but the broker relayed no input request of this call to this principal (or they expired after %s, or were answered): call again without them", it.method, askTTL), nil)
	}
	for k, r := range resps {
		method, ok := a.keys[k]
		if !ok {
			return refuse("unsolicited input response", fmt.Sprintf("svidbroker: inputResponses[%q] answers no input request the broker relayed for this call", clip(k, 128)), map[string]string{"input_response": clip(k, 128)})
		}
		if got := responseMethod(r); got != method {
			return refuse("input response of another kind", fmt.Sprintf("svidbroker: inputResponses[%q] must answer %s, the request relayed under that key", clip(k, 128), method), map[string]string{"input_response": clip(k, 128)})
		}
	}
	return true
}

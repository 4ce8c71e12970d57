package authz

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"net/netip"
	"strings"
	"time"

	"github.com/cedar-policy/cedar-go/types"
	"github.com/cedar-policy/cedar-go/x/exp/batch"
)

// MCP actions.
const (
	ActionMCPCall        = "mcp:call"
	ActionMCPUnmasked    = "mcp:read-unmasked"
	ActionMCPRead        = "mcp:read"
	ActionMCPPrompt      = "mcp:prompt"
	ActionMCPSampling    = "mcp:sampling"
	ActionMCPElicitation = "mcp:elicitation"
	ActionMCPRoots       = "mcp:roots"
)

// MCP entity types.
const (
	TypeTool        types.EntityType = "Tool"
	TypeToolField   types.EntityType = "ToolField"
	TypeMCPResource types.EntityType = "MCPResource"
	TypePrompt      types.EntityType = "Prompt"
)

// Limits on an MCP request's names and numbers.
const (
	maxMCPNameBytes = 4096
	// maxNumberChars bounds a JSON number converted to a Long: more digits than any int64 has, with
	// room for a fraction of zeros and an exponent.
	maxNumberChars = 64
)

// CatalogTool is a tool block of an mcp target's catalog.
type CatalogTool struct {
	Name string
	Tags []string
	// Text is "json" when each content[].text of the tool's results is JSON, which Fields then apply
	// to; "" for plain text.
	Text string
	// Fields are JSON paths into structuredContent and (Text == "json") the text's JSON.
	Fields []CatalogField
}

// MCPRequest is one MCP request an agent sends (tools/call, resources/read, prompts/get) or a server
// sends the agent (sampling/createMessage, elicitation/create, roots/list).
type MCPRequest struct {
	Target string
	// Method is "tools/call", "resources/read", "prompts/get", "sampling/createMessage",
	// "elicitation/create" or "roots/list".
	Method string
	// Name is the tool name, resource URI or prompt name; "" for server requests.
	Name string
	// Args are the tools/call arguments decoded with UseNumber: json.Number, string, bool, nil, []any,
	// map[string]any.
	Args map[string]any
	// Version is the session's protocol version.
	Version string
}

// mcpMethod is what a method is decided as: its action, and the kind of resource.
type mcpMethod struct {
	action string
	typ    types.EntityType // TypeTarget for server requests
	what   string           // "tool", "resource", "prompt"
}

var mcpMethods = map[string]mcpMethod{
	"tools/call":             {ActionMCPCall, TypeTool, "tool"},
	"resources/read":         {ActionMCPRead, TypeMCPResource, "resource"},
	"prompts/get":            {ActionMCPPrompt, TypePrompt, "prompt"},
	"sampling/createMessage": {ActionMCPSampling, TypeTarget, ""},
	"elicitation/create":     {ActionMCPElicitation, TypeTarget, ""},
	"roots/list":             {ActionMCPRoots, TypeTarget, ""},
}

// mcpLists are the list methods MCPVisible answers, with the method whose decision they preview.
var mcpLists = map[string]string{"tools/list": "tools/call", "resources/list": "resources/read", "prompts/list": "prompts/get"}

// ToolUID is the entity of a target's tool: Tool::"tools/get_customer".
func ToolUID(target, tool string) types.EntityUID {
	return types.NewEntityUID(TypeTool, types.String(target+"/"+tool))
}

// ToolFieldUID is the entity of a tool's result field: ToolField::"tools/get_customer $.ssn".
func ToolFieldUID(target, tool, path string) types.EntityUID {
	return types.NewEntityUID(TypeToolField, types.String(target+"/"+tool+" "+path))
}

// MCPResourceUID is the entity of a target's resource: MCPResource::"tools/file:///orders.csv".
func MCPResourceUID(target, uri string) types.EntityUID {
	return types.NewEntityUID(TypeMCPResource, types.String(target+"/"+uri))
}

// PromptUID is the entity of a target's prompt: Prompt::"tools/draft_reply".
func PromptUID(target, prompt string) types.EntityUID {
	return types.NewEntityUID(TypePrompt, types.String(target+"/"+prompt))
}

// mcpEntities adds the entities of an mcp target's declared tools and their fields.
func mcpEntities(t CatalogTarget, add func(types.EntityUID, *types.EntityUID, types.RecordMap)) {
	tu := TargetUID(t.Name)
	for _, tool := range t.Tools {
		u := ToolUID(t.Name, tool.Name)
		add(u, &tu, types.RecordMap{"name": types.String(tool.Name), "tags": stringSet(tool.Tags)})
		for _, f := range tool.Fields {
			add(ToolFieldUID(t.Name, tool.Name, f.Path), &u, types.RecordMap{"path": types.String(f.Path), "tags": stringSet(f.Tags)})
		}
	}
}

// MCPTool is the catalog's declaration of a tool (zero CatalogTool, false when undeclared).
func (a *Authorizer) MCPTool(target, tool string) (CatalogTool, bool) {
	for _, t := range a.Catalog.Targets {
		if t.Name != target {
			continue
		}
		for _, ct := range t.Tools {
			if ct.Name == tool {
				return ct, true
			}
		}
	}
	return CatalogTool{}, false
}

// mcpEntity is the resource entity of a method on name: the catalog's for a declared tool, else one
// built for the request with no tags and the target as parent (a resource or prompt is never
// declared), so that `resource in Target::"tools"` holds for everything the target offers.
func (a *Authorizer) mcpEntity(target string, m mcpMethod, name string) types.Entity {
	var uid types.EntityUID
	attrs := types.RecordMap{"tags": stringSet(nil)}
	switch m.typ {
	case TypeTarget:
		return types.Entity{UID: TargetUID(target)}
	case TypeTool:
		uid, attrs["name"] = ToolUID(target, name), types.String(name)
		if e, ok := a.static[uid]; ok {
			return e
		}
	case TypeMCPResource:
		uid, attrs["uri"] = MCPResourceUID(target, name), types.String(name)
	case TypePrompt:
		uid, attrs["name"] = PromptUID(target, name), types.String(name)
	}
	return types.Entity{UID: uid, Parents: types.NewEntityUIDSet(TargetUID(target)), Attributes: types.NewRecord(attrs)}
}

// mcpBase checks r's method, target and name, and gives the method and the resource's entity.
func (a *Authorizer) mcpBase(c Connect, r MCPRequest) (mcpMethod, types.Entity, error) {
	m, ok := mcpMethods[r.Method]
	if !ok {
		return m, types.Entity{}, fmt.Errorf("authz: MCP method %q has no action: only tools/call, resources/read, prompts/get, sampling/createMessage, elicitation/create and roots/list are decided", r.Method)
	}
	if c.Target != "" && r.Target != c.Target {
		return m, types.Entity{}, fmt.Errorf("authz: request for target %q on a connection to target %q", r.Target, c.Target)
	}
	if m.typ != TypeTarget {
		if r.Name == "" {
			return m, types.Entity{}, fmt.Errorf("authz: %s names no %s", r.Method, m.what)
		}
		if len(r.Name) > maxMCPNameBytes {
			return m, types.Entity{}, fmt.Errorf("authz: %s: the %s's name is longer than %d bytes", r.Method, m.what, maxMCPNameBytes)
		}
	}
	return m, a.mcpEntity(r.Target, m, r.Name), nil
}

// MCPContext is the context of MCP decisions.
func MCPContext(now time.Time, source netip.Addr, tlsVersion, cipherSuite, method, version string, args types.Value, ap ApprovalState) types.Record {
	m := connectionFacts(now, source, tlsVersion, cipherSuite)
	if ap.State == "" {
		ap.State = "none"
	}
	m["method"] = types.String(method)
	m["protocolVersion"] = types.String(version)
	m["args"] = args
	m["approval"] = types.NewRecord(types.RecordMap{"state": types.String(ap.State), "approver": types.String(ap.Approver)})
	return types.NewRecord(m)
}

// mcpRequest builds the Cedar request of action on resource for r, converting its arguments (for
// tools/call) as MCPArgs types them.
func (a *Authorizer) mcpRequest(c Connect, r MCPRequest, ap ApprovalState, action string, resource types.Entity) (Request, error) {
	args := types.NewRecord(nil)
	if r.Method == "tools/call" {
		var err error
		if args, err = a.MCPArgs(r.Name, r.Args); err != nil {
			return Request{}, err
		}
	}
	var ents types.EntityGetter = a.Entities(c.Peer)
	if _, static := a.static[resource.UID]; !static && resource.UID.Type != TypeTarget {
		ents = withEntity{Entities: ents.(Entities), extra: resource}
	}
	return Request{
		Principal: WorkloadUID(c.Peer.ID), Action: Action(action), Resource: resource.UID,
		Context: MCPContext(a.now(), c.Source, tls.VersionName(c.TLS.Version), tls.CipherSuiteName(c.TLS.CipherSuite),
			r.Method, r.Version, args, ap),
		Entities: ents,
	}, nil
}

// MCP decides r: the method's action on its resource (mcp:call on the Tool, mcp:read on the
// MCPResource, mcp:prompt on the Prompt, mcp:sampling, mcp:elicitation and mcp:roots on the Target).
// It returns a *Denied error when the decision is not an allow, naming the tool, resource or prompt
// and what to permit; and an error, with a Decision that does not allow, for a method with no action
// or arguments that cannot be typed (naming the argument, never its value).
func (a *Authorizer) MCP(c Connect, r MCPRequest, ap ApprovalState) (Decision, error) {
	m, ent, err := a.mcpBase(c, r)
	if err != nil {
		return a.refused(), err
	}
	req, err := a.mcpRequest(c, r, ap, m.action, ent)
	if err != nil {
		return a.refused(), err
	}
	d := a.Engine.Decide(req)
	if !d.Allow {
		what := fmt.Sprintf("%s (action %s) on target %q", r.Method, m.action, r.Target)
		if m.what != "" {
			what = fmt.Sprintf("%s of %s %q (action %s) on target %q", r.Method, m.what, r.Name, m.action, r.Target)
		}
		return d, &Denied{Decision: d, What: what, Permit: fmt.Sprintf("Action::%q on %s for this caller", m.action, ent.UID)}
	}
	return d, nil
}

// MCPVisible says whether a list entry is shown: list is "tools/list", "resources/list" or
// "prompts/list", name the tool name, resource URI or prompt name. It is true when some arguments
// could be permitted: the entry's call is decided with context.args ignored (cedar-go's batch
// Ignore), so a permit's conditions on the arguments are dropped and a forbid that refers to them
// does not apply. The rest of the context is the call's (method "tools/call", ...), with no approval
// and no protocol version (""), so a permit that needs either does not show the entry. Anything else
// that fails, or an unknown list, hides the entry.
func (a *Authorizer) MCPVisible(c Connect, target, list, name string) bool {
	method, ok := mcpLists[list]
	if !ok {
		return false
	}
	r := MCPRequest{Target: target, Method: method, Name: name}
	m, ent, err := a.mcpBase(c, r)
	if err != nil {
		return false
	}
	req, err := a.mcpRequest(c, r, ApprovalState{}, m.action, ent)
	if err != nil {
		return false
	}
	return a.Engine.DecideListed(req).Allow
}

// DecideListed decides req as a list shows it (see MCPVisible): with context.args ignored, so that
// permit conditions on the arguments are dropped and forbids that read them do not apply. The
// decision's policies and obligations are those that could decide a call.
func (e *Engine) DecideListed(req Request) Decision { return visibleIn(e.current.Load(), req) }

// visibleIn is DecideListed under set.
func visibleIn(set *policySet, req Request) Decision {
	rec := types.RecordMap{}
	for k, v := range req.Context.All() {
		rec[k] = v
	}
	rec["args"] = batch.Ignore()
	out := Decision{ID: newDecisionID(), PolicySet: set.digest}
	err := batch.Authorize(context.Background(), set.index.policies(req.Action, req.Resource.Type), req.Entities,
		batch.Request{Principal: req.Principal, Action: req.Action, Resource: req.Resource, Context: types.NewRecord(rec)},
		func(res batch.Result) error {
			out = decision(set, res.Decision, res.Diagnostic)
			return nil
		})
	if err != nil {
		return Decision{ID: out.ID, PolicySet: set.digest, Errors: []PolicyError{{Message: err.Error()}}}
	}
	return out
}

// MCPFieldMasks decides mcp:read-unmasked for each of fields, result field paths of r's tool (Name)
// as the catalog writes them ("$.ssn"): "" when the caller may read the field in clear, otherwise
// the strategy (the deciding policies' @mask, or def when none names one); and each decision, for
// the record. A field the tool does not declare, or a request that cannot be decided, is masked with
// def.
func (a *Authorizer) MCPFieldMasks(c Connect, r MCPRequest, fields []string, ap ApprovalState, def string) ([]string, []Decision) {
	strategies, decisions := make([]string, len(fields)), make([]Decision, len(fields))
	_, ent, err := a.mcpBase(c, r)
	if err == nil && r.Method != "tools/call" {
		err = errors.New("not a tool call")
	}
	var req Request
	if err == nil {
		req, err = a.mcpRequest(c, r, ap, ActionMCPUnmasked, ent)
	}
	for i, field := range fields {
		uid := ToolFieldUID(r.Target, r.Name, field)
		if _, ok := a.static[uid]; err != nil || !ok {
			strategies[i], decisions[i] = def, a.refused()
			continue
		}
		req.Resource = uid
		d := a.Engine.Decide(req)
		strategies[i], decisions[i] = maskStrategy(d, def), d
	}
	return strategies, decisions
}

// MCPArgs converts a tool call's arguments to the record context.args holds: each argument MCPArgs
// declares, converted to its type (whichever tool's schema declared the name: the schemas agree);
// arguments MCPArgs does not declare are left out, since no policy can read them. A value that does
// not fit the type, or an integer outside 64 bits, is an error naming the argument and never its
// value.
func (a *Authorizer) MCPArgs(tool string, args map[string]any) (types.Record, error) {
	if a.mcpArgsErr != nil {
		return types.Record{}, fmt.Errorf("authz: arguments of tool %q cannot be typed: %w", tool, a.mcpArgsErr)
	}
	var attrs map[string]*argType
	if a.mcpArgs != nil {
		attrs = a.mcpArgs.attrs
	}
	rec, err := convertRecord(attrs, args, "")
	if err != nil {
		return types.Record{}, fmt.Errorf("authz: tool %q: %w", tool, err)
	}
	return rec, nil
}

// convertRecord converts the members of v that attrs declares; at is the path so far ("filter.").
func convertRecord(attrs map[string]*argType, v map[string]any, at string) (types.Record, error) {
	m := types.RecordMap{}
	for name, val := range v {
		t, ok := attrs[name]
		if !ok {
			continue
		}
		cv, err := convertArg(t, val, at+name)
		if err != nil {
			return types.Record{}, err
		}
		if cv != nil {
			m[types.String(name)] = cv
		}
	}
	return types.NewRecord(m), nil
}

// convertArg converts one argument's value to t; nil (and no error) for a null that t allows, which
// leaves the argument out.
func convertArg(t *argType, v any, name string) (types.Value, error) {
	if v == nil {
		if t.nullable {
			return nil, nil
		}
		return nil, fmt.Errorf("argument %q is null; it is declared %s", name, t.kind)
	}
	mismatch := func() error {
		return fmt.Errorf("argument %q is declared %s; the call gives %s", name, t.kind, jsonKind(v))
	}
	switch t.kind {
	case "String":
		s, ok := v.(string)
		if !ok {
			return nil, mismatch()
		}
		return types.String(s), nil
	case "Bool":
		b, ok := v.(bool)
		if !ok {
			return nil, mismatch()
		}
		return types.Boolean(b), nil
	case "Long":
		n, err := toLong(v)
		if err != nil {
			if errors.Is(err, errNotNumber) {
				return nil, mismatch()
			}
			return nil, fmt.Errorf("argument %q is declared %s: %v", name, t.kind, err)
		}
		return types.Long(n), nil
	case "Set<String>":
		list, ok := v.([]any)
		if !ok {
			return nil, mismatch()
		}
		vs := make([]types.Value, len(list))
		for i, e := range list {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("argument %q is declared Set<String>; item %d is %s", name, i, jsonKind(e))
			}
			vs[i] = types.String(s)
		}
		return types.NewSet(vs...), nil
	case "Record":
		obj, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("argument %q is declared a record; the call gives %s", name, jsonKind(v))
		}
		return convertRecord(t.attrs, obj, name+".")
	}
	return nil, fmt.Errorf("argument %q has no Cedar type", name)
}

var errNotNumber = errors.New("not a number")

// toLong converts a JSON number (json.Number, or the float64 and ints of other decoders) that is an
// integer within 64 bits.
func toLong(v any) (int64, error) {
	switch n := v.(type) {
	case json.Number:
		s := string(n)
		if len(s) > maxNumberChars {
			return 0, fmt.Errorf("the call gives a number of more than %d characters", maxNumberChars)
		}
		f, ok := parseNumber(s)
		if !ok {
			return 0, errNotNumber
		}
		if !f.IsInt() {
			return 0, fmt.Errorf("the call gives a number with a fraction")
		}
		i, acc := f.Int64()
		if acc != big.Exact {
			return 0, fmt.Errorf("the call gives an integer outside 64 bits")
		}
		return i, nil
	case float64:
		if n != math.Trunc(n) || math.IsInf(n, 0) || math.IsNaN(n) {
			return 0, fmt.Errorf("the call gives a number with a fraction")
		}
		if n < -(1<<63) || n >= 1<<63 {
			return 0, fmt.Errorf("the call gives an integer outside 64 bits")
		}
		return int64(n), nil
	case int64:
		return n, nil
	case int:
		return int64(n), nil
	}
	return 0, errNotNumber
}

// jsonKind names a decoded JSON value's kind for an error, without its value.
func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case json.Number, float64, int64, int:
		return "a number"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("a %T", v)
}

// parseNumber parses a JSON number (and nothing JSON does not call one) of at most maxNumberChars characters exactly enough to tell an
// integer: 256 bits hold 64 decimal digits' worth of difference from the nearest integer. A number
// whose exponent takes it past big.Float's range (1e999999999, 1e-999999999) is not a number here,
// so that no tiny fraction is read as zero.
func parseNumber(s string) (*big.Float, bool) {
	if s == "" || len(s) > maxNumberChars || !json.Valid([]byte(s)) || !strings.ContainsAny(s[:1], "-0123456789") {
		return nil, false
	}
	f, _, err := big.ParseFloat(s, 10, 256, big.ToNearestEven)
	if err != nil || f.IsInf() {
		return nil, false
	}
	mantissa, _, _ := strings.Cut(strings.ToLower(s), "e")
	if f.Sign() == 0 && strings.ContainsAny(mantissa, "123456789") {
		return nil, false // underflowed
	}
	return f, true
}

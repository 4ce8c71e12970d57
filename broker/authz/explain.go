package authz

import (
	"context"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/svidbroker/svidbroker/broker/identity"
)

// PolicyOutcome is what one policy made of a request.
type PolicyOutcome struct {
	Policy    Policy
	Effect    string // "permit" or "forbid"
	Satisfied bool   // scope and conditions all held
	Error     string // evaluation error, if any
}

// Explanation is a decision with the part each applicable policy played.
type Explanation struct {
	Decision Decision
	Groups   []string
	// Outcomes are the policies the index selected for the request's action and resource type, in
	// load order; the others cannot apply to it.
	Outcomes []PolicyOutcome
	// Total is the number of policies in the set.
	Total int
}

// Explain decides req and evaluates each applicable policy on its own, to show which matched, which
// errored, and which did not apply.
func (e *Engine) Explain(req Request) Explanation {
	set := e.current.Load()
	ex := Explanation{Decision: e.Decide(req), Total: len(set.policies)}
	if w, ok := req.Entities.Get(req.Principal); ok {
		for p := range w.Parents.All() {
			ex.Groups = append(ex.Groups, string(p.ID))
		}
		slices.Sort(ex.Groups)
	}
	cr := cedar.Request{Principal: req.Principal, Action: req.Action, Resource: req.Resource, Context: req.Context}
	for _, p := range set.index.policies(req.Action, req.Resource.Type) {
		_, diag := cedar.Authorize(policyList{p}, req.Entities, cr)
		o := PolicyOutcome{Policy: p, Effect: "permit", Satisfied: len(diag.Reasons) > 0}
		if p.Policy.Effect() == cedar.Forbid {
			o.Effect = "forbid"
		}
		if len(diag.Errors) > 0 {
			o.Error = diag.Errors[0].Message
		}
		ex.Outcomes = append(ex.Outcomes, o)
	}
	return ex
}

// Capability is one thing a principal may do.
type Capability struct {
	Action   string `json:"action"`
	Resource string `json:"resource"`
	Allow    bool   `json:"allow"`
	// Reasons are the deciding policies, as in Decision: the erroring ones when any policy errored.
	Reasons []string `json:"policies"`
	// Errors are the policies that failed to evaluate; any error denies.
	Errors      []PolicyError `json:"errors,omitempty"`
	Obligations Obligations   `json:"obligations"`
}

// Can lists, for every action the schema gives a workload and every catalog resource it applies to,
// whether the principal is allowed. Each request is built as the broker builds it: a statement action
// on a Table is asked as a statement of that kind on that table, and on the Target as one that touches
// no table (BEGIN, SHOW, SELECT 1), without approval; the answer is what the principal may try, before
// any approval. An HTTP action is asked of the routes of its method, and field:read-unmasked of
// every field, each with the route's template as the path and no parameters, query or body.
func (a *Authorizer) Can(ctx context.Context, id spiffeid.ID, selectors []string) ([]Capability, error) {
	peer := identity.Peer{ID: id, Attestation: &identity.Attestation{Selectors: selectors}}
	ents := a.Entities(peer)
	principal := WorkloadUID(id)
	now := a.now()
	set := a.Engine.current.Load() // one set answers every question, whatever reloads meanwhile
	resources := slices.SortedFunc(maps.Keys(a.static), func(x, y types.EntityUID) int {
		return strings.Compare(x.String(), y.String())
	})
	var out []Capability
	for _, action := range a.Engine.workloadActions() {
		for _, uid := range resources {
			if !slices.Contains(action.types, uid.Type) {
				continue
			}
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if strings.HasPrefix(action.name, "mcp:") {
				if c, ok := a.mcpCapability(set, principal, ents, action.name, uid, now); ok {
					out = append(out, c)
				}
				continue
			}
			var rctx types.Record
			if uid.Type == TypeRoute || uid.Type == TypeField {
				probe, ok := a.probeOf(uid)
				if !ok || uid.Type == TypeRoute && HTTPAction(probe.Method) != action.name {
					continue // a route is only ever asked its own method's action
				}
				rctx = HTTPContext(now, netip.IPv4Unspecified(), "", "", probe, ApprovalState{})
			} else {
				var err error
				if rctx, err = actionContext(action.name, now, netip.IPv4Unspecified(), a.tablesOf(uid), ""); err != nil {
					return nil, err
				}
			}
			d := a.Engine.decideIn(set, Request{Principal: principal, Action: Action(action.name), Resource: uid, Context: rctx, Entities: ents})
			out = append(out, Capability{Action: action.name, Resource: uid.String(),
				Allow: d.Allow, Reasons: d.Reasons, Errors: d.Errors, Obligations: d.Obligations})
		}
	}
	slices.SortFunc(out, func(x, y Capability) int {
		if c := strings.Compare(x.Action, y.Action); c != 0 {
			return c
		}
		return strings.Compare(x.Resource, y.Resource)
	})
	return out, nil
}

// probeOf is the request a Route or a Field's route is asked about in Can (see routeProbe).
func (a *Authorizer) probeOf(uid types.EntityUID) (HTTPRequest, bool) {
	e, ok := a.static[uid]
	if ok && uid.Type == TypeField {
		for p := range e.Parents.All() {
			e, ok = a.static[p]
		}
	}
	if !ok {
		return HTTPRequest{}, false
	}
	var r HTTPRequest
	if v, ok := e.Attributes.Get("method"); ok {
		s, _ := v.(types.String)
		r.Method = string(s)
	}
	if v, ok := e.Attributes.Get("path"); ok {
		s, _ := v.(types.String)
		r.Path = string(s)
	}
	return r, r.Method != ""
}

// tablesOf is the statement's tables when the resource is asked about: the table itself, or a
// column's table.
func (a *Authorizer) tablesOf(uid types.EntityUID) []string {
	switch uid.Type {
	case TypeTable:
		return []string{string(uid.ID)}
	case TypeColumn:
		var out []string
		for p := range a.static[uid].Parents.All() {
			if p.Type == TypeTable {
				out = append(out, string(p.ID))
			}
		}
		return out
	}
	return nil
}

// actionSpec is an action of the schema whose principal is a Workload, with its resource types.
type actionSpec struct {
	name  string
	types []types.EntityType
}

// workloadActions lists the schema's actions a workload can take, by name, so that a new action in
// the schema (sql:transaction, sql:utility, ...) is asked about without anyone keeping a list.
func (e *Engine) workloadActions() []actionSpec {
	var out []actionSpec
	for uid, act := range e.cfg.Schema.resolved.Actions {
		if act.AppliesTo == nil || !slices.Contains(act.AppliesTo.Principals, TypeWorkload) {
			continue
		}
		out = append(out, actionSpec{name: string(uid.ID), types: act.AppliesTo.Resources})
	}
	slices.SortFunc(out, func(x, y actionSpec) int { return strings.Compare(x.name, y.name) })
	return out
}

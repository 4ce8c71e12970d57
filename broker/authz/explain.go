package authz

import (
	"context"
	"net/netip"
	"slices"
	"strings"

	"github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"
	"github.com/cedar-policy/cedar-go/x/exp/batch"
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
	Action      string      `json:"action"`
	Resource    string      `json:"resource"`
	Allow       bool        `json:"allow"`
	Reasons     []string    `json:"policies"`
	Obligations Obligations `json:"obligations"`
}

// Can lists, for every action the schema gives a workload and every catalog resource it applies to,
// whether the principal is allowed, using cedar-go's batch evaluation with the resource as a variable.
// Statement actions are asked as a statement of that kind on the resource, without approval; the
// answer is what the principal may try, before any approval.
func (a *Authorizer) Can(ctx context.Context, id spiffeid.ID, selectors []string) ([]Capability, error) {
	peer := identity.Peer{ID: id, Attestation: &identity.Attestation{Selectors: selectors}}
	ents := types.EntityMap{}
	for k, v := range a.static {
		ents[k] = v
	}
	w := a.Catalog.Workload(peer)
	ents[w.UID] = w
	set := a.Engine.current.Load()
	now := a.now()
	var out []Capability
	for _, action := range workloadActions {
		var resources []types.Value
		for uid := range a.static {
			if slices.Contains(action.types, uid.Type) {
				resources = append(resources, uid)
			}
		}
		if len(resources) == 0 {
			continue
		}
		rctx, err := requestContext(action.name, now, netip.IPv4Unspecified(), "", "", "")
		if err != nil {
			return nil, err
		}
		err = batch.Authorize(ctx, policyList(set.policies), ents, batch.Request{
			Principal: w.UID,
			Action:    Action(action.name),
			Resource:  batch.Variable("resource"),
			Context:   rctx,
			Variables: batch.Variables{"resource": resources},
		}, func(r batch.Result) error {
			d := decision(set, r.Decision, r.Diagnostic)
			out = append(out, Capability{Action: action.name, Resource: r.Request.Resource.String(),
				Allow: d.Allow, Reasons: d.Reasons, Obligations: d.Obligations})
			return nil
		})
		if err != nil {
			return nil, err
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

// workloadActions are the schema's actions whose principal is a Workload, with their resource types.
var workloadActions = []struct {
	name  string
	types []types.EntityType
}{
	{"connect", []types.EntityType{TypeTarget}},
	{"credential:use", []types.EntityType{TypeCredentialRole}},
	{"sql:select", []types.EntityType{TypeTable}},
	{"sql:insert", []types.EntityType{TypeTable}},
	{"sql:update", []types.EntityType{TypeTable}},
	{"sql:delete", []types.EntityType{TypeTable}},
	{"sql:ddl", []types.EntityType{TypeTable, TypeTarget}},
	{"column:read-unmasked", []types.EntityType{TypeColumn}},
}

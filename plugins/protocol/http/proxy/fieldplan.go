package proxy

import (
	"fmt"

	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/broker/inspect"
	"github.com/svidbroker/svidbroker/broker/session"
	"github.com/svidbroker/svidbroker/plugins/protocol/http/jsonmask"
	"github.com/svidbroker/svidbroker/plugins/protocol/http/route"
)

// fieldPlan is what an allowed request's response is masked with: its route's fields the caller may
// not read in clear, and the filter that masks them. It is a verdict's Plan (session.Operation.Prepare),
// so it is decided once for requests the session's kept verdict answers: the verdict's key holds
// everything the field decisions see (route, method, path and so its parameters, query, body), and it
// is kept only within one policy epoch.
type fieldPlan struct {
	rules  []jsonmask.Rule
	masked []string         // "path=strategy", for the records
	filter *jsonmask.Filter // nil without rules
}

var _ session.MaskingPlan = (*fieldPlan)(nil)

// Masked names the fields masked and their strategies ("$.ssn=partial").
func (p *fieldPlan) Masked() []string { return p.masked }

// errFieldMasks refuses a request whose response fields could not be masked as policy decided.
type errFieldMasks struct {
	route string
	err   error
}

func (e *errFieldMasks) Error() string {
	return fmt.Sprintf("the field masks of route %q cannot be applied: %v", e.route, e.err)
}

func (e *errFieldMasks) Unwrap() error { return e.err }

// fieldPlanner is the Prepare of a request to m's route: nil for a route without fields, which has
// nothing to plan.
func (e *Engine) fieldPlanner(conn authz.Connect, req Request, m route.Match) func(session.Verdict) (any, error) {
	if len(m.Route.Fields) == 0 {
		return nil
	}
	return func(v session.Verdict) (any, error) { return e.planFields(conn, req, m, v) }
}

// planFields decides the fields of m's route for req, allowed by verdict v, in one batch. A plan whose
// masks cannot be applied (a strategy the masker refuses) is an error, so the request is refused
// before it reaches the upstream.
func (e *Engine) planFields(conn authz.Connect, req Request, m route.Match, v session.Verdict) (*fieldPlan, error) {
	p := &fieldPlan{}
	paths := make([]string, len(m.Route.Fields))
	for i, f := range m.Route.Fields {
		paths[i] = f.Path.String()
	}
	strategies := e.cfg.Policy.FieldMasks(conn, req, paths, v.Approval, string(e.cfg.DefaultMask))
	if len(strategies) != len(paths) {
		return nil, &errFieldMasks{route: m.Route.Pattern, err: fmt.Errorf("the policy decided %d of %d fields", len(strategies), len(paths))}
	}
	for i, strategy := range strategies {
		if strategy != "" {
			p.rules = append(p.rules, jsonmask.Rule{Path: m.Route.Fields[i].Path, Strategy: inspect.Strategy(strategy)})
			p.masked = append(p.masked, paths[i]+"="+strategy)
		}
	}
	if len(p.rules) > 0 {
		f, err := jsonmask.New(jsonmask.Config{Rules: p.rules, Masker: e.cfg.Masker})
		if err != nil {
			return nil, &errFieldMasks{route: m.Route.Pattern, err: err}
		}
		p.filter = f
	}
	return p, nil
}

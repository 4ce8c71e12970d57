package authz

import (
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/cedar-policy/cedar-go/types"
)

// RolePick is the credential role Cedar picks for a caller's sessions of a target, and why.
type RolePick struct {
	Target string `json:"target"`
	// Role is the picked credential role's name; "" when the caller may use none.
	Role string `json:"role,omitempty"`
	// Decision is the credential:use decision that permitted Role.
	Decision Decision `json:"-"`
	// For are the actions of Role's covers that the caller's policies permit: why it needs this role
	// and not a less privileged one.
	For []string `json:"for,omitempty"`
	// Uncovered are actions the caller's policies permit that only roles more privileged than Role
	// cover, which credential:use does not permit it: its statements of those kinds fail in the
	// database. It points at a policy to fix.
	Uncovered []string `json:"uncovered,omitempty"`
}

// ErrNoRole is the sentinel of a caller refused because no credential role is picked for it;
// errors.As gives the *NoRole.
var ErrNoRole = errors.New("no credential role")

// NoRole says why no credential role was picked, in terms a policy author can act on.
type NoRole struct {
	Target string
	// Uses are the credential:use decisions, one per role of the target, in catalog order.
	Uses []RoleUse
	// Permitted are the roles credential:use permits (none of which covers a permitted action).
	Permitted []string
}

// RoleUse is one role's credential:use decision.
type RoleUse struct {
	Role     string
	Decision Decision
}

func (n *NoRole) Error() string {
	if len(n.Permitted) > 0 {
		return fmt.Sprintf("no credential role of target %q: credential:use permits %s, but no policy permits any action it covers (its covers in the catalog); permit such an action, or credential:use of a role that covers what the caller may do",
			n.Target, strings.Join(n.Permitted, ", "))
	}
	var why []string
	for _, u := range n.Uses {
		d := u.Decision
		switch {
		case len(d.Errors) > 0:
			why = append(why, fmt.Sprintf("%s: policy %s failed to evaluate", u.Role, d.Errors[0].PolicyID))
		case len(d.Reasons) > 0:
			why = append(why, fmt.Sprintf("%s: forbidden by policy %s", u.Role, strings.Join(d.Reasons, ", ")))
		default:
			why = append(why, fmt.Sprintf("%s: no policy permits it", u.Role))
		}
	}
	return fmt.Sprintf("no credential role of target %q: credential:use is denied for every one (%s); permit credential:use on CredentialRole::\"%s/<role>\" for this caller",
		n.Target, strings.Join(why, "; "), n.Target)
}

func (n *NoRole) Is(err error) bool { return err == ErrNoRole || err == ErrDenied }

// PickRole picks the credential role of a caller's session of c.Target, among the target's catalog
// credential_roles (ordered from least to most privileged). The rule:
//
//  1. The candidates are the roles credential:use permits for the caller.
//  2. An action is needed when the caller's policies permit it, before any approval (a statement
//     or request held for approval counts), on the target or on any of its catalog tables; an HTTP
//     action, on any catalog route of its method (asked with the route's template as the path and
//     no parameters, query or body, so a permit that holds only for some values does not count).
//  3. The pick is the most privileged candidate whose covers include a needed action that no less
//     privileged candidate covers: the least privileged role that still serves the most privileged
//     thing the caller may do. A role ranked above another is taken to include what that one's
//     covers allow, whether its covers repeat them (api-write covering http:get as api-read does)
//     or not.
//  4. With no such candidate the caller is refused: a *NoRole error (ErrNoRole, ErrDenied).
//
// A caller permitted only sql:select gets the read role even where credential:use permits more;
// one permitted DDL (held for approval) gets the role covering sql:ddl. Every question is asked of
// one policy set, with the connection's facts; tables outside the catalog are not asked about, so a
// permit that names only such tables does not make its action needed. It asks at most one decision
// per role, plus one per covered action and catalog table. `svidbroker policy can` shows the same
// pick, through this function.
func (a *Authorizer) PickRole(c Connect) (RolePick, error) {
	var target *CatalogTarget
	for i := range a.Catalog.Targets {
		if a.Catalog.Targets[i].Name == c.Target {
			target = &a.Catalog.Targets[i]
		}
	}
	if target == nil || len(target.Roles) == 0 {
		return RolePick{Target: c.Target}, fmt.Errorf("authz: target %q has no credential roles in the catalog", c.Target)
	}
	set := a.Engine.current.Load()
	if set == nil {
		return RolePick{Target: c.Target}, errors.New("authz: no valid policy set in force")
	}
	ents := a.Entities(c.Peer)
	principal := WorkloadUID(c.Peer.ID)
	now := a.now()
	tlsVersion, cipher := tls.VersionName(c.TLS.Version), tls.CipherSuiteName(c.TLS.CipherSuite)
	connCtx := ConnectionContext(now, c.Source, tlsVersion, cipher)

	no := &NoRole{Target: c.Target}
	var permitted []int
	for i, r := range target.Roles {
		d := a.Engine.decideIn(set, Request{Principal: principal, Action: Action("credential:use"),
			Resource: RoleUID(c.Target, r.Name), Context: connCtx, Entities: ents})
		no.Uses = append(no.Uses, RoleUse{Role: r.Name, Decision: d})
		if d.Allow {
			permitted = append(permitted, i)
			no.Permitted = append(no.Permitted, r.Name)
		}
	}
	resources := append([]types.EntityUID{TargetUID(c.Target)}, a.tablesOfTarget(c.Target)...)
	needed := map[string]bool{}
	need := func(action string) bool {
		if v, ok := needed[action]; ok {
			return v
		}
		allow := false
		if kind, ok := strings.CutPrefix(action, "sql:"); ok {
			for _, res := range resources {
				var tables []string
				if res.Type == TypeTable {
					tables = []string{string(res.ID)}
				}
				ctx := StatementContext(now, c.Source, tlsVersion, cipher, Statement{Kind: kind, Tables: tables}, ApprovalState{})
				if d := a.Engine.decideIn(set, Request{Principal: principal, Action: Action(action), Resource: res, Context: ctx, Entities: ents}); d.Allow {
					allow = true
					break
				}
			}
		} else if strings.HasPrefix(action, "http:") {
			for _, rt := range target.Routes {
				if HTTPAction(rt.Method()) != action {
					continue // a route is only ever asked its own method's action
				}
				ctx := HTTPContext(now, c.Source, tlsVersion, cipher, routeProbe(c.Target, rt), ApprovalState{})
				if d := a.Engine.decideIn(set, Request{Principal: principal, Action: Action(action), Resource: RouteUID(c.Target, rt.Pattern), Context: ctx, Entities: ents}); d.Allow {
					allow = true
					break
				}
			}
		} else if strings.HasPrefix(action, "mcp:") {
			allow = a.mcpNeeded(set, principal, ents, target, action, now)
		}
		// Only statement, HTTP and MCP request actions are asked: a role covers what sessions send.
		needed[action] = allow
		return allow
	}
	for k := len(permitted) - 1; k >= 0; k-- {
		i := permitted[k]
		r := target.Roles[i]
		var why []string
		own := false // a needed action no permitted role below covers
		for _, action := range r.Covers {
			if need(action) {
				why = append(why, action)
				own = own || !slices.ContainsFunc(permitted[:k], func(j int) bool { return slices.Contains(target.Roles[j].Covers, action) })
			}
		}
		if !own {
			continue
		}
		pick := RolePick{Target: c.Target, Role: r.Name, Decision: no.Uses[i].Decision, For: why}
		var served []string // what the pick and the roles below it cover
		for _, below := range target.Roles[:i+1] {
			served = append(served, below.Covers...)
		}
		for _, above := range target.Roles[i+1:] {
			for _, action := range above.Covers {
				if !slices.Contains(served, action) && !slices.Contains(pick.Uncovered, action) && need(action) {
					pick.Uncovered = append(pick.Uncovered, action)
				}
			}
		}
		return pick, nil
	}
	return RolePick{Target: c.Target}, no
}

// tablesOfTarget lists the catalog's tables of a target, sorted.
func (a *Authorizer) tablesOfTarget(target string) []types.EntityUID {
	tu := TargetUID(target)
	var out []types.EntityUID
	for uid, e := range a.static {
		if uid.Type == TypeTable && e.Parents.Contains(tu) {
			out = append(out, uid)
		}
	}
	slices.SortFunc(out, func(x, y types.EntityUID) int { return strings.Compare(string(x.ID), string(y.ID)) })
	return out
}

// StatementActions lists the schema's statement actions ("sql:select", ...): what a credential role
// of a database target can cover.
func (s *Schema) StatementActions() []string { return s.actionsWithPrefix("sql:") }

// HTTPActions lists the schema's HTTP request actions ("http:get", ...): what a credential role of
// an HTTP target can cover.
func (s *Schema) HTTPActions() []string { return s.actionsWithPrefix("http:") }

func (s *Schema) actionsWithPrefix(prefix string) []string {
	var out []string
	for uid := range s.resolved.Actions {
		if strings.HasPrefix(string(uid.ID), prefix) {
			out = append(out, string(uid.ID))
		}
	}
	slices.Sort(out)
	return out
}

// routeProbe is the request a route is asked about when no particular request is: its template as
// the path, no parameters, query or body.
func routeProbe(target string, rt CatalogRoute) HTTPRequest {
	_, path, _ := strings.Cut(rt.Pattern, " ")
	return HTTPRequest{Target: target, Route: rt.Pattern, Method: rt.Method(), Path: path}
}

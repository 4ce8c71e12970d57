package authz

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/cedar-policy/cedar-go/types"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/svidbroker/svidbroker/broker/identity"
)

// RequestSpec describes a request in the terms of the catalog, as test files and `svidbroker policy
// explain` give it.
type RequestSpec struct {
	Principal string
	Selectors []string
	// Unattested builds the principal as if SPIRE had not been asked.
	Unattested                  bool
	Action                      string
	Target, Table, Column, Role string
	// Function, for sql:call-function, is the function called.
	Function *Function
	Approval string
	HourUTC  int
	SourceIP string
	// Use is how a column:use-masked request uses the column.
	Use MaskedUse
	// Route, for an HTTP action or field:read-unmasked, is the target's route as written
	// ("GET /v1/customers/{id}"); Field, for field:read-unmasked, one of its fields ("$.ssn").
	Route, Field string
	// Params, Query and Body are the HTTP request's path parameters, declared query parameters and
	// declared body members (string, int64 or bool).
	Params, Query map[string]string
	Body          map[string]any
	// Path is the path forwarded; default the route's template with Params substituted.
	Path string
	// MCP is an MCP request's tool, resource or prompt, and arguments (mcptestfile.go).
	MCP MCPSpec
	// Approver and Held, for the approve action, are the person deciding and the request held
	// (its action, text, fingerprint and policies; its caller, target and attestation are the
	// spec's). Approver's Issuer defaults to DefaultTestIssuer.
	Approver *Person
	Held     *ApprovalRequest
}

// DefaultTestIssuer is the issuer of an approver in a test or an explanation that names none.
const DefaultTestIssuer = "https://idp.example.org"

// buildApproveRequest is the approve request a spec describes, at 1 January 2026, tc.HourUTC.
func buildApproveRequest(static types.EntityMap, tc RequestSpec) (Request, error) {
	if tc.Approver == nil || tc.Approver.Email == "" || tc.Held == nil || tc.Held.Action == "" {
		return Request{}, errors.New("an approve request needs the approver (email, groups) and what is held (its action: sql, http or mcp)")
	}
	if _, err := spiffeid.FromString(tc.Principal); err != nil {
		return Request{}, fmt.Errorf("principal: %w", err)
	}
	p := *tc.Approver
	if p.Issuer == "" {
		p.Issuer = DefaultTestIssuer
	}
	r := *tc.Held
	r.ID, r.Target, r.SPIFFEID, r.Attested = "explain", tc.Target, tc.Principal, !tc.Unattested
	if r.Attested {
		r.Selectors = tc.Selectors
	}
	r.Owner = OwnerOf(r.Selectors)
	return ApproveRequest(static, p, r, time.Date(2026, 1, 1, tc.HourUTC, 0, 0, 0, time.UTC)), nil
}

// BuildRequest builds a Request exactly as the broker does, from the catalog and a spec.
func BuildRequest(cat *Catalog, static types.EntityMap, tc RequestSpec) (Request, error) {
	if tc.Action == "approve" {
		return buildApproveRequest(static, tc)
	}
	id, err := spiffeid.FromString(tc.Principal)
	if err != nil {
		return Request{}, fmt.Errorf("principal: %w", err)
	}
	peer := identity.Peer{ID: id}
	if !tc.Unattested {
		peer.Attestation = &identity.Attestation{Selectors: tc.Selectors}
	}
	var resource types.EntityUID
	var ents types.EntityGetter = Entities{Static: static, Workload: cat.Workload(peer)}
	switch {
	case tc.isMCP():
		return buildMCPRequest(cat, static, tc, id, ents.(Entities))
	case tc.Route != "":
		return buildHTTPRequest(cat, static, tc, id, ents)
	case strings.HasPrefix(tc.Action, "http:") || tc.Action == ActionFieldUnmasked:
		return Request{}, fmt.Errorf("action %q is asked of a route: name the route (\"GET /v1/customers/{id}\")", tc.Action)
	case tc.Function != nil:
		ent := FunctionEntity(tc.Target, *tc.Function)
		resource, ents = ent.UID, withEntity{Entities: ents.(Entities), extra: ent}
		if _, ok := static[TargetUID(tc.Target)]; !ok {
			return Request{}, fmt.Errorf("target %q is not in the file's catalog", tc.Target)
		}
	case tc.Role != "":
		resource = RoleUID(tc.Target, tc.Role)
	case tc.Column != "":
		resource = ColumnUID(tc.Target, tc.Table, tc.Column)
	case tc.Table != "":
		resource = TableUID(tc.Target, tc.Table)
	default:
		resource = TargetUID(tc.Target)
	}
	_, known := static[resource]
	known = known || resource.Type == TypeFunction
	if !known && resource.Type == TypeTable {
		_, known = uncatalogedTable(static, resource) // as the broker sees a table the catalog omits
	}
	if !known {
		return Request{}, fmt.Errorf("resource %s is not in the file's catalog", resource)
	}
	now := time.Date(2026, 1, 5, tc.HourUTC, 0, 0, 0, time.UTC)
	src := netip.MustParseAddr("127.0.0.1")
	if tc.SourceIP != "" {
		if src, err = netip.ParseAddr(tc.SourceIP); err != nil {
			return Request{}, fmt.Errorf("source_ip: %w", err)
		}
	}
	ctx, err := requestContext(tc.Action, now, src, tc.Target, tc.Table, tc.Approval)
	if err != nil {
		return Request{}, err
	}
	if tc.Action == ActionUseMasked {
		ctx = MaskedUseContext(ctx, tc.Use, static)
	}
	return Request{Principal: WorkloadUID(id), Action: Action(tc.Action), Resource: resource, Context: ctx,
		Entities: ents}, nil
}

// requestContext builds the context record an action's decisions get.
func requestContext(action string, now time.Time, src netip.Addr, target, table, approval string) (types.Record, error) {
	var tables []string
	if table != "" {
		tables = []string{string(TableUID(target, table).ID)}
	}
	return actionContext(action, now, src, tables, approval)
}

// actionContext builds the context record of an action on a statement touching tables (Table entity
// IDs), or of a connection-time action.
func actionContext(action string, now time.Time, src netip.Addr, tables []string, approval string) (types.Record, error) {
	switch {
	case action == "connect" || action == "credential:use":
		return ConnectionContext(now, src, "TLS1.3", "TLS_AES_128_GCM_SHA256"), nil
	case strings.HasPrefix(action, "sql:") || action == "column:read-unmasked" || action == ActionUseMasked:
		st := Statement{Kind: strings.TrimPrefix(action, "sql:"), Tables: tables}
		if action == ActionCallFunction {
			st.Kind = "select" // a function is called by a statement, most often a query
		}
		ctx := StatementContext(now, src, "TLS1.3", "TLS_AES_128_GCM_SHA256", st, ApprovalState{State: approval})
		if action == ActionUseMasked {
			ctx = MaskedUseContext(ctx, MaskedUse{}, nil) // no particular use: what is permitted whatever the use
		}
		return ctx, nil
	default:
		return types.Record{}, fmt.Errorf("authz: action %q is not one svidbroker decides yet", action)
	}
}

// buildHTTPRequest builds the request of an HTTP action, or of field:read-unmasked, on a route.
func buildHTTPRequest(cat *Catalog, static types.EntityMap, tc RequestSpec, id spiffeid.ID, ents types.EntityGetter) (Request, error) {
	rt, ok := cat.route(tc.Target, tc.Route)
	if !ok {
		return Request{}, fmt.Errorf("route %q is not in the catalog of target %q", tc.Route, tc.Target)
	}
	resource := RouteUID(tc.Target, tc.Route)
	switch {
	case tc.Action == ActionFieldUnmasked:
		if tc.Field == "" {
			return Request{}, fmt.Errorf("%s is asked of a field: name one of route %q's fields", ActionFieldUnmasked, tc.Route)
		}
		resource = FieldUID(tc.Target, tc.Route, tc.Field)
		if _, ok := static[resource]; !ok {
			return Request{}, fmt.Errorf("route %q of target %q lists no field %q", tc.Route, tc.Target, tc.Field)
		}
	case tc.Field != "":
		return Request{}, fmt.Errorf("a field is asked %s, not %s", ActionFieldUnmasked, tc.Action)
	case tc.Action != HTTPAction(rt.Method()):
		return Request{}, fmt.Errorf("action %q is never asked of route %q: the broker asks %q of a %s route", tc.Action, tc.Route, HTTPAction(rt.Method()), rt.Method())
	}
	r := HTTPRequest{Target: tc.Target, Route: tc.Route, Method: rt.Method(), Path: tc.Path, Params: tc.Params, Query: tc.Query, Body: tc.Body}
	if err := checkHTTPRequest(rt, r); err != nil {
		return Request{}, err
	}
	if r.Path == "" {
		r.Path = routeProbe(tc.Target, *rt).Path
		for name, v := range r.Params {
			r.Path = strings.ReplaceAll(r.Path, "{"+name+"...}", v)
			r.Path = strings.ReplaceAll(r.Path, "{"+name+"}", v)
		}
	}
	now := time.Date(2026, 1, 5, tc.HourUTC, 0, 0, 0, time.UTC)
	src := netip.MustParseAddr("127.0.0.1")
	if tc.SourceIP != "" {
		var err error
		if src, err = netip.ParseAddr(tc.SourceIP); err != nil {
			return Request{}, fmt.Errorf("source_ip: %w", err)
		}
	}
	ctx := HTTPContext(now, src, "TLS1.3", "TLS_AES_128_GCM_SHA256", r, ApprovalState{State: tc.Approval})
	return Request{Principal: WorkloadUID(id), Action: Action(tc.Action), Resource: resource, Context: ctx, Entities: ents}, nil
}

package authz

import (
	"crypto/tls"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/cedar-policy/cedar-go/types"
)

// ActionFieldUnmasked is the action that lets a caller read a tagged response field in clear; denied
// means the field is masked.
const ActionFieldUnmasked = "field:read-unmasked"

// CatalogRoute is an HTTP route of a target's catalog.
type CatalogRoute struct {
	// Pattern is the route as written: "GET /v1/customers/{id}".
	Pattern string
	Tags    []string
	// Params are the template's parameter names, in order.
	Params []string
	// Query are the declared query parameters.
	Query []string
	// Body maps each declared JSON body member to its type: "String", "Long" or "Bool".
	Body   map[string]string
	Fields []CatalogField
}

// CatalogField is a tagged response field of a route, as a JSON path ("$.ssn").
type CatalogField struct {
	Path string
	Tags []string
}

// Method is the route's method.
func (r CatalogRoute) Method() string {
	m, _, _ := strings.Cut(r.Pattern, " ")
	return m
}

// RouteUID is the entity of a target's route: Route::"api/GET /v1/customers/{id}".
func RouteUID(target, pattern string) types.EntityUID {
	return types.NewEntityUID(TypeRoute, types.String(target+"/"+pattern))
}

// FieldUID is the entity of a route's response field: Field::"api/GET /v1/customers/{id} $.ssn".
func FieldUID(target, pattern, path string) types.EntityUID {
	return types.NewEntityUID(TypeField, types.String(target+"/"+pattern+" "+path))
}

// httpMethods are the methods with an action, in the schema's order.
var httpMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

// HTTPAction is the action of an HTTP method: HTTPAction("GET") == "http:get"; "" for a method
// without one (CONNECT, TRACE, a lower-case or unknown method).
func HTTPAction(method string) string {
	if !slices.Contains(httpMethods, method) {
		return ""
	}
	return "http:" + strings.ToLower(method)
}

// HTTPRequest is an HTTP request matched to a route of the catalog.
type HTTPRequest struct {
	Target string            // "api"
	Route  string            // the route pattern as written: "GET /v1/customers/{id}"
	Method string            // "GET"
	Path   string            // the path forwarded (route.Match.Path), no query
	Params map[string]string // path parameters
	Query  map[string]string // declared query parameters present
	Body   map[string]any    // declared body members present: string, int64 or bool
}

// route finds a target's catalog route.
func (c *Catalog) route(target, pattern string) (*CatalogRoute, bool) {
	for i := range c.Targets {
		if c.Targets[i].Name != target {
			continue
		}
		for j := range c.Targets[i].Routes {
			if c.Targets[i].Routes[j].Pattern == pattern {
				return &c.Targets[i].Routes[j], true
			}
		}
	}
	return nil, false
}

// checkHTTPRequest holds r to its catalog route's declarations, so that the context policies see
// has the types the generated schema gives it: the method is the route's, the parameters are the
// template's, the query parameters are declared, and each body member is declared and of its type.
// Errors name what is wrong, never a value.
func checkHTTPRequest(rt *CatalogRoute, r HTTPRequest) error {
	if r.Method != rt.Method() {
		return fmt.Errorf("method %q is not the method of route %q", r.Method, rt.Pattern)
	}
	for name := range r.Params {
		if !slices.Contains(rt.Params, name) {
			return fmt.Errorf("route %q has no path parameter {%s}", rt.Pattern, name)
		}
	}
	for name := range r.Query {
		if !slices.Contains(rt.Query, name) {
			return fmt.Errorf("route %q declares no query parameter %q (query = %q)", rt.Pattern, name, rt.Query)
		}
	}
	for name, v := range r.Body {
		typ, ok := rt.Body[name]
		if !ok {
			return fmt.Errorf("route %q declares no body member %q", rt.Pattern, name)
		}
		var got string
		switch v.(type) {
		case string:
			got = "String"
		case int64:
			got = "Long"
		case bool:
			got = "Bool"
		default:
			got = fmt.Sprintf("%T", v)
		}
		if got != typ {
			return fmt.Errorf("route %q: body member %q is declared %s, the request gives a %s", rt.Pattern, name, typ, got)
		}
	}
	return nil
}

// HTTPContext is the context of HTTP decisions (http:* and field:read-unmasked). Body values must be
// string, int64 or bool.
func HTTPContext(now time.Time, source netip.Addr, tlsVersion, cipherSuite string, r HTTPRequest, ap ApprovalState) types.Record {
	m := connectionFacts(now, source, tlsVersion, cipherSuite)
	if ap.State == "" {
		ap.State = "none"
	}
	m["method"] = types.String(r.Method)
	m["path"] = types.String(r.Path)
	m["params"] = stringRecord(r.Params)
	m["query"] = stringRecord(r.Query)
	body := types.RecordMap{}
	for k, v := range r.Body {
		switch v := v.(type) {
		case string:
			body[types.String(k)] = types.String(v)
		case int64:
			body[types.String(k)] = types.Long(v)
		case bool:
			body[types.String(k)] = types.Boolean(v)
		}
	}
	m["body"] = types.NewRecord(body)
	m["approval"] = types.NewRecord(types.RecordMap{"state": types.String(ap.State), "approver": types.String(ap.Approver)})
	return types.NewRecord(m)
}

func stringRecord(kv map[string]string) types.Record {
	m := types.RecordMap{}
	for k, v := range kv {
		m[types.String(k)] = types.String(v)
	}
	return types.NewRecord(m)
}

// httpRequest builds the Cedar request of action on resource for r, after checking r against the
// catalog. The error names what is wrong with r.
func (a *Authorizer) httpRequest(c Connect, r HTTPRequest, ap ApprovalState, action string, resource types.EntityUID) (Request, error) {
	if c.Target != "" && r.Target != c.Target {
		return Request{}, fmt.Errorf("authz: request for target %q on a connection to target %q", r.Target, c.Target)
	}
	rt, ok := a.Catalog.route(r.Target, r.Route)
	if !ok {
		return Request{}, fmt.Errorf("authz: route %q is not in the catalog of target %q: every request is refused", r.Route, r.Target)
	}
	if err := checkHTTPRequest(rt, r); err != nil {
		return Request{}, fmt.Errorf("authz: %w", err)
	}
	return Request{
		Principal: WorkloadUID(c.Peer.ID), Action: Action(action), Resource: resource,
		Context:  HTTPContext(a.now(), c.Source, tls.VersionName(c.TLS.Version), tls.CipherSuiteName(c.TLS.CipherSuite), r, ap),
		Entities: a.Entities(c.Peer),
	}, nil
}

// HTTP decides an HTTP request: the method's action (HTTPAction) on the Route it matched. It returns
// the decision, with the obligations of the deciding policies (@approval, @record), and a *Denied
// error when it is not an allow, which names the route and the action and, for a default deny, what
// to permit. A request that does not fit its catalog route (another method, an undeclared query
// parameter or body member, a body member of another type) or names a route the catalog does not
// list is refused with an error, and a Decision that does not allow.
func (a *Authorizer) HTTP(c Connect, r HTTPRequest, ap ApprovalState) (Decision, error) {
	action := HTTPAction(r.Method)
	if action == "" {
		return a.refused(), fmt.Errorf("authz: method %q has no action; routes take GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS", r.Method)
	}
	res := RouteUID(r.Target, r.Route)
	req, err := a.httpRequest(c, r, ap, action, res)
	if err != nil {
		return a.refused(), err
	}
	d := a.Engine.Decide(req)
	if !d.Allow {
		return d, &Denied{Decision: d,
			What:   fmt.Sprintf("%s (action %s) on route %q of target %q", r.Method, action, r.Route, r.Target),
			Permit: fmt.Sprintf("Action::%q on %s for this caller", action, res)}
	}
	return d, nil
}

// refused is the decision of a request refused before Cedar was asked: not an allow, by no policy.
func (a *Authorizer) refused() Decision {
	return Decision{ID: newDecisionID(), PolicySet: a.Engine.Digest()}
}

// FieldMask decides field:read-unmasked for one response field of r's route (its path as the catalog
// writes it, "$.ssn"). It returns "" when the caller may read the field in clear, and otherwise the
// masking strategy: the deciding policies' @mask, or def when none names one; and the decision, for
// the record. A field the route does not list, or a request that does not fit its route, is masked
// with def.
func (a *Authorizer) FieldMask(c Connect, r HTTPRequest, field string, ap ApprovalState, def string) (string, Decision) {
	strategies, decisions := a.FieldMasks(c, r, []string{field}, ap, def)
	return strategies[0], decisions[0]
}

// FieldMasks decides FieldMask for each of fields, building the request's context and entities once.
func (a *Authorizer) FieldMasks(c Connect, r HTTPRequest, fields []string, ap ApprovalState, def string) ([]string, []Decision) {
	strategies, decisions := make([]string, len(fields)), make([]Decision, len(fields))
	req, err := a.httpRequest(c, r, ap, ActionFieldUnmasked, types.EntityUID{})
	for i, field := range fields {
		req.Resource = FieldUID(r.Target, r.Route, field)
		if _, ok := a.static[req.Resource]; err != nil || !ok {
			strategies[i], decisions[i] = def, a.refused()
			continue
		}
		d := a.Engine.Decide(req)
		strategies[i], decisions[i] = maskStrategy(d, def), d
	}
	return strategies, decisions
}

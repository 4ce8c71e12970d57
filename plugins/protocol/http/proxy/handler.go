package proxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"go.opentelemetry.io/otel/trace"

	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/broker/identity"
	"github.com/svidbroker/svidbroker/broker/session"
	"github.com/svidbroker/svidbroker/plugins/protocol/http/route"
)

// errClientLeft withdraws a request held for approval whose client went away.
var errClientLeft = errors.New("the client closed its connection")

// ServeHTTP serves one request: its principal, its session, its route, its checks, its decision,
// then the upstream's response, masked.
func (c *clientConn) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	e := c.e
	w := newWriteDeadline(rw, e.cfg.Limits.Write)
	r, span := e.startRequest(r) // continues the caller's trace (trace.go)
	defer endRequest(span, w)
	var peer *identity.Peer
	switch {
	case e.cfg.JWT != nil && len(r.Header.Values("Authorization")) > 0:
		p, err := e.cfg.JWT.VerifyRequest(r)
		if err != nil {
			e.cfg.Logger.InfoContext(r.Context(), "bearer refused", "remote", c.remote.String(), "reason", err)
			writeError(w, http.StatusUnauthorized, errorBody{Error: bearerMessage(err)})
			return
		}
		peer = &p
	case len(c.tls.ConnectionState().PeerCertificates) == 0:
		msg := "svidbroker: present an X.509-SVID as the TLS client certificate"
		if e.cfg.JWT != nil {
			msg += " or a JWT-SVID as \"Authorization: Bearer <token>\""
		}
		writeError(w, http.StatusUnauthorized, errorBody{Error: msg})
		return
	}
	p, err := c.session(r.Context(), peer)
	if err != nil {
		status, msg := e.openStatus(err)
		writeError(w, status, errorBody{Error: msg, Policy: refusingPolicies(err)})
		return
	}
	linkSession(span, p.s)
	// The request ends with its session (token expiry, lease loss, revocation, shutdown).
	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	stop := context.AfterFunc(p.ctx, func() { cancel(context.Cause(p.ctx)) })
	defer stop()
	if p.ctx.Err() != nil {
		writeError(w, http.StatusServiceUnavailable, errorBody{Error: "svidbroker: " + context.Cause(p.ctx).Error() + "; send the request again"})
		return
	}
	if e.cfg.Serve != nil {
		e.cfg.Serve(ctx, w, r, p.s)
		return
	}
	e.serve(ctx, w, r, p.s)
}

// refusingPolicies are the policies of a refused session, if a decision refused it.
func refusingPolicies(err error) []string {
	if se, ok := errors.AsType[*session.Error](err); ok {
		return se.Decision.Reasons
	}
	return nil
}

func (e *Engine) serve(ctx context.Context, w http.ResponseWriter, r *http.Request, s *session.Session) {
	refuse := func(status int, b errorBody, detail, text string) {
		s.Record(audit.Record{Kind: audit.KindDenied,
			Statement: &audit.Statement{Protocol: "http", Text: text},
			Detail:    map[string]string{"refused": detail, "status": fmt.Sprint(status)}})
		writeError(w, status, b)
	}
	m, err := e.cfg.Routes.Match(r.Method, r.RequestURI, r.Host)
	switch {
	case errors.Is(err, route.ErrNoRoute):
		msg := fmt.Sprintf("svidbroker: no route of target %q matches %s %s; requests are refused unless a route of the target's catalog names them", e.cfg.Target, r.Method, pathOnly(r.RequestURI))
		refuse(http.StatusForbidden, errorBody{Error: msg}, "no route matches", r.Method+" "+pathOnly(r.RequestURI))
		return
	case err != nil:
		// The target is not quoted: it was refused for what it holds.
		refuse(http.StatusBadRequest, errorBody{Error: "svidbroker: " + err.Error()}, err.Error(), r.Method+" (request target refused)")
		return
	}
	pattern := m.Route.Pattern
	e.routeSpan(ctx, r.Method, pattern, m.Path)
	text := r.Method + " " + m.Path
	if m.RawQuery != "" {
		text += "?" + m.RawQuery
	}
	refuseReq := func(err error) {
		status := http.StatusBadRequest
		if re, ok := errors.AsType[*requestError](err); ok {
			status = re.status
		}
		s.Record(audit.Record{Kind: audit.KindDenied, Statement: &audit.Statement{Protocol: "http", Text: text},
			Detail: map[string]string{"route": pattern, "refused": err.Error(), "status": fmt.Sprint(status)}})
		writeError(w, status, errorBody{Error: "svidbroker: " + err.Error(), Route: pattern})
	}
	query, err := checkQuery(m.RawQuery, m.Route)
	if err != nil {
		refuseReq(err)
		return
	}
	members, body, err := e.readBodyInTime(w, r, m.Route)
	if err != nil {
		refuseReq(err)
		return
	}
	req := Request{Target: e.cfg.Target, Route: pattern, Method: r.Method, Path: m.Path, Query: query, Body: members}
	if len(m.Params) > 0 {
		req.Params = make(map[string]string, len(m.Params))
		for _, p := range m.Params {
			req.Params[p.Name] = p.Value
		}
	}
	conn := s.Connect()
	rec := audit.Record{Kind: audit.KindStatement, Statement: &audit.Statement{Protocol: "http", Text: text},
		Detail: map[string]string{"route": pattern}}
	key := pattern + "\x00" + text
	bodySum := sha256.Sum256(body)
	fingerprint := requestFingerprint(pattern, text, body)
	if body != nil {
		key += fmt.Sprintf("\x00%x", bodySum)
	}
	// The hold lasts as long as the session; the client's leaving withdraws it (Withdrawable).
	v := s.Decide(s.Context(), session.Operation{
		Action: "http", Text: text, Key: key, Fingerprint: fingerprint, Record: &rec, Parent: trace.SpanContextFromContext(ctx),
		Durable: e.cfg.Session.AuditPerStatement || !safeMethod(r.Method),
		Decide:  func(ap authz.ApprovalState) (authz.Decision, error) { return e.cfg.Policy.HTTP(conn, req, ap) },
		Prepare: e.fieldPlanner(conn, req, m),
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
	})
	if v.Outcome == session.Block {
		status := http.StatusForbidden
		if errors.Is(v.Err, session.ErrAuditUnavailable) {
			status = http.StatusServiceUnavailable
		}
		if r.Context().Err() != nil {
			return // the client is gone
		}
		why := v.Err
		if errors.Is(v.Err, session.ErrBlocked) && v.Cause != nil {
			why = v.Cause // the policy's refusal says what was denied and what to permit
		}
		if fe, ok := errors.AsType[*errFieldMasks](v.Err); ok {
			s.Log().ErrorContext(ctx, "field masks refused", "route", pattern, "error", fe.err)
			status = http.StatusInternalServerError
		}
		writeError(w, status, errorBody{Error: "svidbroker: " + why.Error(), Policy: v.Decision.Reasons, Route: pattern, Approval: v.Request})
		return
	}
	var plan fieldPlan // none for a route without fields
	if p, ok := v.Plan.(*fieldPlan); ok {
		plan = *p
	}
	full := e.cfg.FullData && v.Decision.Obligations.Record == "full"
	e.forward(ctx, w, r, s, forwarding{m: m, body: body, plan: plan, full: full, text: text,
		describesMasked: len(plan.rules) > 0 || e.headOfMaskedGet(r)})
}

// pathOnly is a request target without its query, for errors.
func pathOnly(target string) string {
	p, _, _ := strings.Cut(target, "?")
	if len(p) > 256 {
		p = p[:256] + "..."
	}
	return p
}

func safeMethod(m string) bool { return m == "GET" || m == "HEAD" || m == "OPTIONS" }

// hopByHop are the headers of one connection (RFC 9110 §7.6.1), never forwarded either way.
var hopByHop = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
	"Proxy-Connection": true,
}

// dropRequestHeader says whether an agent's header stays behind: its credentials, the proxy's and
// the connection's headers, the framing (the engine sets it), and forwarding claims it could forge.
func dropRequestHeader(name string, listed map[string]bool) bool {
	switch name {
	case "Authorization", "Cookie", "Host", "Content-Length", "Accept-Encoding", "Expect", "Forwarded",
		"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Real-Ip":
		return true
	}
	return hopByHop[name] || listed[name] || strings.HasPrefix(name, "Proxy-") || restatesRequest(name)
}

// connectionListed are the headers a Connection header names: hop-by-hop too.
func connectionListed(h http.Header) map[string]bool {
	var listed map[string]bool
	for _, v := range h.Values("Connection") {
		for t := range strings.SplitSeq(v, ",") {
			if t = strings.TrimSpace(t); t != "" {
				if listed == nil {
					listed = map[string]bool{}
				}
				listed[http.CanonicalHeaderKey(t)] = true
			}
		}
	}
	return listed
}

// forwarding is a permitted request on its way.
type forwarding struct {
	m    route.Match
	body []byte
	plan fieldPlan
	full bool
	text string
	// describesMasked: the response describes a body whose fields are masked (its own, or, for
	// HEAD, the GET's), so what describes the unmasked body stays behind.
	describesMasked bool
}

func (e *Engine) upstreamRequest(ctx context.Context, r *http.Request, s *session.Session, f forwarding) (*http.Request, error) {
	u := "https://" + e.cfg.Upstream.Address + f.m.Path
	if f.m.RawQuery != "" {
		u += "?" + f.m.RawQuery
	}
	out, err := http.NewRequestWithContext(ctx, r.Method, u, nil)
	if err != nil {
		return nil, err
	}
	listed := connectionListed(r.Header)
	for k, vs := range r.Header {
		if !dropRequestHeader(k, listed) {
			out.Header[k] = vs
		}
	}
	if f.describesMasked {
		// Fields are masked by their paths in the whole representation: ask for it whole, since a
		// part of it is refused; and unconditionally, since a 304 or 412 would say whether a
		// validator the agent guessed (an ETag hashed from the unmasked body) is the body's.
		for _, h := range maskedRequestHeaders {
			out.Header.Del(h)
		}
	}
	if f.body != nil {
		out.ContentLength = int64(len(f.body))
		out.Body = readCloser{bytes.NewReader(f.body)}
		out.Header.Set("Content-Type", "application/json")
	}
	e.setCredential(out.Header, s)
	return out, nil
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }

package proxy

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"net/http"

	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/broker/session"
	httpproxy "github.com/svidbroker/svidbroker/plugins/protocol/http/proxy"
	"github.com/svidbroker/svidbroker/plugins/protocol/mcp/wire"
)

// exchange is one HTTP request of an agent's: its session, its MCP session, its version.
type exchange struct {
	e         *Engine
	s         *session.Session
	r         *http.Request
	sid       string // the upstream's Mcp-Session-Id the agent sent
	opened    string // the Mcp-Session-Id of the session this exchange's initialize opened
	settled   string // the version the agent's MCP session settled on ("" before its initialize result)
	version   string
	conn      authz.Connect
	principal string
	secret    string // the session's credential, which no message may carry to the agent
}

// serve is the http engine's Config.Serve: one request of an agent's, its session known.
func (e *Engine) serve(ctx context.Context, w http.ResponseWriter, r *http.Request, s *session.Session) {
	x := &exchange{e: e, s: s, r: r, sid: r.Header.Get("Mcp-Session-Id"), conn: s.Connect(), principal: s.Peer().ID.String()}
	if l := s.Lease(); l != nil {
		x.secret = l.Lease.Password
	}
	if r.URL.Path != e.cfg.Path || r.URL.RawQuery != "" {
		x.deny(r.Method+" "+clip(r.URL.Path, 128), "not the MCP endpoint", http.StatusNotFound)
		writeHTTPError(w, http.StatusNotFound, fmt.Sprintf("svidbroker: target %q serves MCP at %s only", e.target, e.cfg.Path))
		return
	}
	if x.sid != "" {
		b, ok := e.owner(x.sid)
		owner := b.principal
		x.settled = b.version
		switch {
		case !ok:
			x.deny(r.Method+" "+e.cfg.Path, "MCP session unknown to the broker", http.StatusNotFound)
			writeHTTPError(w, http.StatusNotFound, "svidbroker: this MCP session is not one the broker opened, or it ended; initialize a new session")
			return
		case owner != x.principal:
			x.deny(r.Method+" "+e.cfg.Path, "MCP session of another principal", http.StatusForbidden)
			writeHTTPError(w, http.StatusForbidden, "svidbroker: this MCP session belongs to another principal; initialize a session of your own")
			return
		}
	}
	switch r.Method {
	case http.MethodPost:
		x.post(ctx, w)
	case http.MethodGet:
		x.listen(ctx, w)
	case http.MethodDelete:
		x.end(ctx, w)
	default:
		x.deny(clip(r.Method, 16)+" "+e.cfg.Path, "method not allowed", http.StatusMethodNotAllowed)
		w.Header().Set("Allow", "GET, POST, DELETE")
		writeHTTPError(w, http.StatusMethodNotAllowed, "svidbroker: MCP over HTTP takes POST, GET and DELETE")
	}
}

// deny records a refusal of what text says, why.
func (x *exchange) deny(text, why string, status int) {
	x.s.Record(audit.Record{Kind: audit.KindDenied, Statement: &audit.Statement{Protocol: "mcp", Text: text},
		Detail: map[string]string{"refused": why, "status": fmt.Sprint(status)}})
}

// mechanics records a message of the protocol's own, which no policy decides.
func (x *exchange) mechanics(text string) {
	x.s.Record(audit.Record{Kind: audit.KindStatement, Statement: &audit.Statement{Protocol: "mcp", Text: text},
		Detail: map[string]string{"mechanics": "true", "version": x.version}})
}

// post serves a POST: its messages decided one by one, the permitted ones forwarded.
func (x *exchange) post(ctx context.Context, w http.ResponseWriter) {
	e := x.e
	body, err := e.http.ReadBody(w, x.r)
	if err != nil {
		status := http.StatusBadRequest
		switch {
		case errors.Is(err, httpproxy.ErrBodyTooLarge):
			status = http.StatusRequestEntityTooLarge
		case errors.Is(err, httpproxy.ErrBodyLate):
			status = http.StatusRequestTimeout
		}
		x.deny("POST "+e.cfg.Path, err.Error(), status)
		wire.WriteError(w, &wire.Error{HTTPStatus: status, Code: codeInvalidRequest, Message: "svidbroker: " + err.Error()})
		return
	}
	p, err := wire.ParsePost(x.r.Header, body, e.limits())
	if err != nil {
		we, ok := errors.AsType[*wire.Error](err)
		if !ok {
			we = &wire.Error{HTTPStatus: http.StatusBadRequest, Code: codeInvalidRequest, Message: "the request could not be read"}
		}
		x.deny("POST "+e.cfg.Path, we.Message, we.HTTPStatus)
		we.Message = "svidbroker: " + we.Message
		wire.WriteError(w, we)
		return
	}
	if x.settled != "" {
		if err := wire.CheckSessionVersion(p, x.settled); err != nil {
			we, ok := errors.AsType[*wire.Error](err)
			if !ok {
				we = &wire.Error{HTTPStatus: http.StatusBadRequest, Code: codeInvalidRequest, Message: err.Error()}
			}
			x.deny("POST "+e.cfg.Path, we.Message, we.HTTPStatus)
			we.Message = "svidbroker: " + we.Message
			wire.WriteError(w, we)
			return
		}
	}
	x.version = p.Version
	out := newClientOut(w)
	if !p.Batch {
		m := fromWire(p.Messages[0])
		ctx, end := x.traceMessage(ctx, m)
		defer end()
		it := x.classify(ctx, m, out, true)
		switch {
		case it.refusal != nil:
			_ = out.json(nil, [][]byte{it.refusal}, false)
		case it.refused != "":
			if !out.isStarted() {
				writeHTTPError(w, it.status, it.refused)
			}
		default:
			x.forward(ctx, it, out, nil)
		}
		return
	}
	var results [][]byte
	for _, m := range p.Messages {
		it := x.classify(ctx, fromWire(m), out, false)
		switch {
		case it.refusal != nil:
			results = append(results, it.refusal)
		case it.refused != "":
		default:
			x.forward(ctx, it, nil, &results)
		}
	}
	_ = out.json(nil, results, true)
}

// listen relays the server-to-client stream (GET), filtered as POST responses are.
func (x *exchange) listen(ctx context.Context, w http.ResponseWriter) {
	if _, err := wire.ParseGet(x.r.Header); err != nil {
		we, ok := errors.AsType[*wire.Error](err)
		if !ok {
			we = &wire.Error{HTTPStatus: http.StatusBadRequest, Code: codeInvalidRequest, Message: err.Error()}
		}
		x.deny("GET "+x.e.cfg.Path, we.Message, we.HTTPStatus)
		we.Message = "svidbroker: " + we.Message
		wire.WriteError(w, we)
		return
	}
	x.version = x.r.Header.Get("Mcp-Protocol-Version")
	x.mechanics("GET " + x.e.cfg.Path + " (server stream)")
	x.forward(ctx, &item{method: "GET", text: "GET " + x.e.cfg.Path}, newClientOut(w), nil)
}

// end ends the upstream MCP session (DELETE), and its binding.
func (x *exchange) end(ctx context.Context, w http.ResponseWriter) {
	x.mechanics("DELETE " + x.e.cfg.Path)
	out, err := x.e.http.UpstreamRequest(ctx, x.r, x.s, http.MethodDelete, x.e.cfg.Path, nil)
	if err != nil {
		writeHTTPError(w, http.StatusInternalServerError, "svidbroker: the request could not be built")
		return
	}
	resp, err := x.e.http.RoundTrip(ctx, out, "mcp DELETE")
	if err != nil {
		writeHTTPError(w, http.StatusBadGateway, fmt.Sprintf("svidbroker: the upstream of target %q did not answer", x.e.target))
		return
	}
	resp.Body.Close()
	if x.sid != "" && (resp.StatusCode < 300 || resp.StatusCode == http.StatusNotFound) {
		x.e.unbind(x.sid)
	}
	w.WriteHeader(resp.StatusCode)
}

func mediaType(h http.Header) string {
	ct, _, _ := mime.ParseMediaType(h.Get("Content-Type"))
	return ct
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

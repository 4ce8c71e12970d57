package proxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/svidbroker/svidbroker/broker/identity"
	"github.com/svidbroker/svidbroker/broker/session"
)

// errorBody is every error the engine answers with: what went wrong and what to fix, and the policies
// that decided it, if any. It never quotes a protected value or the credential.
type errorBody struct {
	Error    string   `json:"error"`
	Policy   []string `json:"policy,omitempty"`
	Route    string   `json:"route,omitempty"`
	Approval string   `json:"approval_request,omitempty"`
}

func writeError(w http.ResponseWriter, status int, b errorBody) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	if status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Bearer realm="svidbroker"`)
	}
	body, _ := json.Marshal(b)
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// openStatus is the status and message of a session the core did not open.
func (e *Engine) openStatus(err error) (int, string) {
	se, ok := errors.AsType[*session.Error](err)
	if !ok {
		if errors.Is(err, errCertificateExpired) {
			return http.StatusUnauthorized, "svidbroker: the connection's client X.509-SVID has expired; open a new connection with the rotated SVID"
		}
		if errors.Is(err, errTokenExpired) {
			return http.StatusUnauthorized, "svidbroker: the bearer JWT-SVID has expired; fetch a new one from the Workload API"
		}
		if errors.Is(err, errTooManyPrincipals) {
			return http.StatusTooManyRequests, fmt.Sprintf("svidbroker: more than %d principals on one connection; open another connection", e.cfg.Limits.MaxPrincipals)
		}
		return http.StatusInternalServerError, "svidbroker: internal error"
	}
	switch {
	case errors.Is(err, session.ErrUnidentified):
		return http.StatusUnauthorized, "svidbroker: the client certificate carries no SPIFFE ID: " + se.Err.Error()
	case errors.Is(err, session.ErrNotReady):
		return http.StatusServiceUnavailable, "svidbroker: not accepting requests: " + se.Err.Error()
	case errors.Is(err, session.ErrUnattested):
		return http.StatusForbidden, fmt.Sprintf("svidbroker: SPIRE did not confirm %s: %v", se.Peer, se.Err)
	case errors.Is(err, session.ErrDenied), errors.Is(err, session.ErrNoRole):
		return http.StatusForbidden, fmt.Sprintf("svidbroker: %s may not use target %q: %v", se.Peer, e.cfg.Target, se.Err)
	case errors.Is(err, session.ErrAuditUnavailable):
		return http.StatusServiceUnavailable, "svidbroker: the audit log is unavailable, so requests are refused"
	case errors.Is(err, session.ErrNoCredential):
		return http.StatusServiceUnavailable, fmt.Sprintf("svidbroker: no credential for target %q could be obtained", e.cfg.Target)
	}
	return http.StatusForbidden, "svidbroker: " + se.Err.Error()
}

// bearerMessage says why a bearer was refused, without the token.
func bearerMessage(err error) string {
	if errors.Is(err, identity.ErrNoBearer) {
		return "svidbroker: the Authorization header must be \"Bearer <JWT-SVID>\""
	}
	return "svidbroker: the bearer JWT-SVID was refused: " + err.Error()
}

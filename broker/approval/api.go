package approval

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/svidbroker/svidbroker/broker/approval/oidc"
)

// VerifyFunc authenticates a person from a raw ID token (oidc.Verifier.VerifyIDToken, without a
// nonce).
type VerifyFunc func(ctx context.Context, rawIDToken string) (oidc.Person, error)

// maxDecisionBody bounds a decision's JSON body.
const maxDecisionBody = 16 << 10

// DecisionBody is what POST /approvals/{id}/approve and /deny take.
type DecisionBody struct {
	Reason string `json:"reason"`
	// Scope is "once" (the default), "fingerprint" or "session"; For a Go duration ("30m") for the
	// latter two.
	Scope string `json:"scope,omitempty"`
	For   string `json:"for,omitempty"`
}

// APIHandler serves s to people who present an ID token of the approvers' provider
// (Authorization: Bearer <id_token>; `svidbroker approvals` gets one with the device flow):
//
//	GET  /approvals                 the pending requests, as JSON
//	GET  /approvals/{id}            one request
//	POST /approvals/{id}/approve    approve, with a DecisionBody
//	POST /approvals/{id}/deny       deny, with a DecisionBody (its reason)
//
// A request without a valid token is answered 401; a decision Store.Decide refuses, 403; an unknown
// request, 404.
func APIHandler(s Store, verify VerifyFunc) http.Handler {
	auth := func(next func(w http.ResponseWriter, r *http.Request, p oidc.Person)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || raw == "" || len(raw) > 16<<10 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="svidbroker approvals"`)
				http.Error(w, "log in: send the ID token of the approvers' provider as Authorization: Bearer <token> (svidbroker approvals does)", http.StatusUnauthorized)
				return
			}
			ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
			defer cancel()
			p, err := verify(ctx, strings.TrimSpace(raw))
			if err != nil {
				w.Header().Set("WWW-Authenticate", `Bearer realm="svidbroker approvals", error="invalid_token"`)
				http.Error(w, "the ID token was refused: "+err.Error(), http.StatusUnauthorized)
				return
			}
			next(w, r.WithContext(ctx), p)
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /approvals", auth(func(w http.ResponseWriter, r *http.Request, _ oidc.Person) {
		reqs, err := s.Pending(r.Context())
		if err != nil {
			http.Error(w, "the approvals store is unavailable", http.StatusServiceUnavailable)
			return
		}
		writeJSON(w, reqs)
	}))
	mux.HandleFunc("GET /approvals/{id}", auth(func(w http.ResponseWriter, r *http.Request, _ oidc.Person) {
		req, err := s.Get(r.Context(), r.PathValue("id"))
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, req)
	}))
	decide := func(approve bool) func(w http.ResponseWriter, r *http.Request, p oidc.Person) {
		return func(w http.ResponseWriter, r *http.Request, p oidc.Person) {
			var body DecisionBody
			dec := json.NewDecoder(io.LimitReader(r.Body, maxDecisionBody))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&body); err != nil && !errors.Is(err, io.EOF) {
				http.Error(w, "the body must be a JSON object {reason, scope, for} of at most 16 KiB: "+err.Error(), http.StatusBadRequest)
				return
			}
			scope := Scope{Kind: body.Scope}
			if scope.Kind == "" {
				scope.Kind = "once"
			}
			if body.For != "" {
				d, err := time.ParseDuration(body.For)
				if err != nil {
					http.Error(w, fmt.Sprintf("for %q is not a duration such as \"30m\"", body.For), http.StatusBadRequest)
					return
				}
				scope.For = d
			}
			req, err := s.Decide(r.Context(), r.PathValue("id"), p, approve, body.Reason, scope)
			if err != nil {
				writeError(w, err)
				return
			}
			writeJSON(w, req)
		}
	}
	mux.HandleFunc("POST /approvals/{id}/approve", auth(decide(true)))
	mux.HandleFunc("POST /approvals/{id}/deny", auth(decide(false)))
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrUnknown):
		http.Error(w, err.Error(), http.StatusNotFound)
	case errors.Is(err, ErrRefused):
		http.Error(w, err.Error(), http.StatusForbidden)
	case errors.Is(err, ErrScope):
		http.Error(w, err.Error(), http.StatusBadRequest)
	default:
		http.Error(w, "the approvals store failed; the decision was not recorded", http.StatusServiceUnavailable)
	}
}

package approval

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
)

// Handler serves the queue on the broker's admin listener:
//
//	GET  /approvals                 the pending requests, as JSON
//	POST /approvals/{id}/approve    approve (the approver's name in the X-Approver header)
//	POST /approvals/{id}/deny       deny
//
// Resolving a request that was withdrawn (its client cancelled the statement or went away) or that
// expired answers 410 Gone, saying which and why; one that is not pending otherwise, 404.
//
// It authenticates no one: it is for development and the demo, on a loopback admin address.
func (q *Queue) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /approvals", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(q.Pending())
	})
	resolve := func(approve bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			approver := strings.TrimSpace(r.Header.Get("X-Approver"))
			if approver == "" || len(approver) > 256 {
				http.Error(w, "the X-Approver header must name the approver", http.StatusBadRequest)
				return
			}
			err := q.Resolve(r.PathValue("id"), approve, approver)
			switch {
			case errors.Is(err, ErrWithdrawn) || errors.Is(err, ErrExpired):
				http.Error(w, err.Error(), http.StatusGone)
			case errors.Is(err, ErrUnknown):
				http.Error(w, err.Error(), http.StatusNotFound)
			case err != nil:
				http.Error(w, err.Error(), http.StatusInternalServerError)
			default:
				w.Write([]byte("ok\n"))
			}
		}
	}
	mux.HandleFunc("POST /approvals/{id}/approve", resolve(true))
	mux.HandleFunc("POST /approvals/{id}/deny", resolve(false))
	return mux
}

package proxy

import (
	"net/http"
	"time"

	"github.com/svidbroker/svidbroker/plugins/protocol/http/route"
)

// readBodyInTime reads and checks a request's body (readBody) within Limits.ReadBody: net/http bounds
// the head's reading only, so a client that announces a body and sends it a byte at a time, or not
// at all, would hold its request, its session and its lease for as long as it likes. A body refused
// unread keeps the deadline, which then bounds net/http's discarding of it. Once a body is read to
// its end, net/http watches the connection with no deadline (its background read lifts it), so a
// held or slow request is not cut short by this one.
func (e *Engine) readBodyInTime(w http.ResponseWriter, r *http.Request, rt *route.Route) (map[string]any, []byte, error) {
	if r.ContentLength > 0 {
		if err := http.NewResponseController(w).SetReadDeadline(time.Now().Add(e.cfg.Limits.ReadBody)); err != nil {
			return nil, nil, &requestError{http.StatusInternalServerError, "the request body's read deadline could not be set"}
		}
	}
	return readBody(r, rt, e.cfg.Limits.MaxBodyBytes)
}

package proxy

import "net/http"

// headOfMaskedGet reports whether r is a HEAD whose path the target's GET route of tagged fields
// serves. Upstreams answer HEAD with the GET's head (net/http, and most frameworks, run the GET's
// handler), so its Content-Length, ETag and digests describe the unmasked GET body: a length of a
// masked value, or a validator to test guesses of it against. Such a HEAD is answered without them,
// whatever its own route declares.
func (e *Engine) headOfMaskedGet(r *http.Request) bool {
	if r.Method != http.MethodHead {
		return false
	}
	m, err := e.cfg.Routes.Match(http.MethodGet, r.RequestURI, r.Host)
	return err == nil && len(m.Route.Fields) > 0
}

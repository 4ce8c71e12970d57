package proxy

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/svidbroker/svidbroker/broker/session"
)

// TestServeExtension: a Serve function takes over once the session is known, and the request it
// builds carries the session's credential, not the agent's, and none of the agent's own.
func TestServeExtension(t *testing.T) {
	var r *rig
	var served []string
	r = newRig(t, rigOptions{routes: customerRoutes, config: func(c *Config) {
		c.Routes, c.Policy = nil, nil // not used with Serve
		c.Serve = func(ctx context.Context, w http.ResponseWriter, req *http.Request, s *session.Session) {
			served = append(served, s.Peer().ID.String())
			body, err := r.engine.ReadBody(w, req)
			if err != nil {
				http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
				return
			}
			out, err := r.engine.UpstreamRequest(ctx, req, s, http.MethodPost, "/mcp", body)
			if err != nil {
				t.Error(err)
				return
			}
			resp, err := r.engine.RoundTrip(ctx, out, "mcp")
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			w.WriteHeader(resp.StatusCode)
			_, _ = io.Copy(w, resp.Body)
		}
	}})
	req := newReq(t, "POST", r.url("/anything"), `{"a":1}`)
	req.Header.Set("Cookie", "agent=1")
	status, body, _ := get(t, r.client(t, agentID), req)
	if status != http.StatusOK || !strings.Contains(body, "Ada") {
		t.Fatalf("got %d %q", status, body)
	}
	if len(served) != 1 || served[0] != agentID {
		t.Fatalf("served %v", served)
	}
	got := r.up.requests()
	if len(got) != 1 || got[0].RequestURI != "/mcp" || got[0].Body != `{"a":1}` {
		t.Fatalf("upstream saw %+v", got)
	}
	if a := got[0].Header.Get("Authorization"); a != "Bearer "+canary {
		t.Fatalf("credential %q", a)
	}
	if got[0].Header.Get("Cookie") != "" {
		t.Fatal("the agent's cookie was forwarded")
	}
	// A body over the limit is refused by ReadBody, unread.
	big := newReq(t, "POST", r.url("/anything"), strings.Repeat("x", 2<<20))
	if status, _, _ := get(t, r.client(t, agentID), big); status != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized body: %d", status)
	}
	if len(r.up.requests()) != 1 {
		t.Fatal("the oversized body reached the upstream")
	}
}

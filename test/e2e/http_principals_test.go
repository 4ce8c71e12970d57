package e2e

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/test/stack"
)

// TestHTTPPrincipalPerRequestOnOneConnection: on one TLS connection with support's client
// certificate, a request bearing the analyst's JWT-SVID is the analyst's (hashed, as the analyst's
// pack masks), and the requests around it are support's (partially masked): each principal has its
// own session and its own record, and nothing of one leaks into the other's.
func TestHTTPPrincipalPerRequestOnOneConnection(t *testing.T) {
	h := httpShared(t)
	row := h.customer(t, 4)
	jwt := h.jwtSVID(t, stack.PersonaAnalyst, stack.JWTAudience)
	f := clientFiles(t, h.s, stack.PersonaSupport)
	tr := &http.Transport{TLSClientConfig: tlsFor(t, f, f.RootCert), MaxConnsPerHost: 1}
	c := &http.Client{Timeout: 60 * time.Second, Transport: tr}
	defer tr.CloseIdleConnections()
	last4 := row.SSN[len(row.SSN)-4:]
	for i, tc := range []struct {
		bearer  bool
		persona string
		partial bool // support's partial mask keeps the ssn's last four digits; the analyst's hash does not
	}{{false, stack.PersonaSupport, true}, {true, stack.PersonaAnalyst, false}, {false, stack.PersonaSupport, true}} {
		var hdr http.Header
		if tc.bearer {
			hdr = http.Header{"Authorization": {"Bearer " + jwt}}
		}
		r := h.do(t, c, "GET", "/v1/customers/4", hdr, "")
		if r.status != http.StatusOK || strings.Contains(r.body, row.Email) || strings.Contains(r.body, row.SSN) {
			t.Fatalf("request %d as %s: %s", i, tc.persona, r)
		}
		ssn, _ := jsonObject(t, r.body)["ssn"].(string)
		if strings.HasSuffix(ssn, last4) != tc.partial {
			t.Fatalf("request %d as %s: ssn %q is not masked as the %s pack says", i, tc.persona, ssn, tc.persona)
		}
	}
	sessions := map[string]string{}
	for _, p := range []string{stack.PersonaSupport, stack.PersonaAnalyst} {
		id := mustPersonaID(t, h.s, p)
		rec := h.waitRecord(t, p+"'s request", func(r audit.Record) bool {
			return r.Kind == audit.KindStatement && r.Statement != nil && r.Statement.Text == "GET /v1/customers/4" && r.SPIFFEID == id
		})
		sessions[p] = rec.Session
	}
	if sessions[stack.PersonaSupport] == sessions[stack.PersonaAnalyst] {
		t.Fatal("support and the analyst share a session")
	}
}

// TestHTTPHeldRequestDeniedOrWithdrawn: the migrator's held DELETE, denied on the admin listener,
// is 403 and the order stays; a held DELETE whose client goes away is withdrawn (approving it
// afterwards answers 410) and the order stays.
func TestHTTPHeldRequestDeniedOrWithdrawn(t *testing.T) {
	h := httpShared(t)
	id := h.newOrder(t)
	path := "/v1/orders/" + strconv.Itoa(id)
	c := h.httpClient(t, stack.PersonaMigrator)
	done := make(chan httpReply, 1)
	go func() { done <- h.do(t, c, "DELETE", path, nil, "") }()
	req := waitPending(t, h.b, "DELETE "+path)
	if code, body := resolve(t, h.b, req.ID, "deny"); code != http.StatusOK {
		t.Fatalf("deny: %d %s", code, body)
	}
	if r := <-done; r.status != http.StatusForbidden || !strings.Contains(r.body, "approval") {
		t.Fatalf("denied DELETE: %s, want 403 saying the approval was denied", r)
	}
	if !h.orderExists(t, id) {
		t.Fatal("the denied DELETE deleted the order")
	}

	f := clientFiles(t, h.s, stack.PersonaMigrator)
	tr := &http.Transport{TLSClientConfig: tlsFor(t, f, f.RootCert)}
	gone := &http.Client{Transport: tr, Timeout: 2 * time.Minute}
	req2, _ := http.NewRequest("DELETE", h.base()+path, nil)
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		resp, err := gone.Do(req2.WithContext(ctx))
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	held := waitPending(t, h.b, "DELETE "+path)
	cancel() // the client closes its connection
	<-errc
	tr.CloseIdleConnections()
	waitGone(t, h.b, held.ID)
	if code, body := resolve(t, h.b, held.ID, "approve"); code != http.StatusGone {
		t.Fatalf("approving a withdrawn request: %d %s, want 410", code, body)
	}
	if !h.orderExists(t, id) {
		t.Fatal("the withdrawn DELETE deleted the order")
	}
}

// TestHTTPMethodsAndQueryStrict: HEAD on a GET route is no route (methods are exact), a repeated
// declared query parameter is 400, a request body on a route without one is 400.
func TestHTTPMethodsAndQueryStrict(t *testing.T) {
	h := httpShared(t)
	c := h.httpClient(t, stack.PersonaSupport)
	if r := h.do(t, c, "HEAD", "/v1/orders/10", nil, ""); r.status != http.StatusForbidden {
		t.Errorf("HEAD /v1/orders/10: %d, want 403", r.status)
	}
	if r := h.do(t, c, "GET", "/v1/customers?limit=1&limit=50", nil, ""); r.status != http.StatusBadRequest || !strings.Contains(r.body, "limit") {
		t.Errorf("repeated limit: %s, want 400 naming it", r)
	}
	if r := h.do(t, c, "GET", "/v1/orders/10", http.Header{"Content-Type": {"application/json"}}, `{"x":1}`); r.status != http.StatusBadRequest {
		t.Errorf("GET with a body: %s, want 400", r)
	}
	if r := h.do(t, c, "GET", "/v1/orders/10", nil, ""); r.status != http.StatusOK {
		t.Fatalf("control: %s", r)
	}
}

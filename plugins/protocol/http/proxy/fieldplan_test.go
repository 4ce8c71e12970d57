package proxy

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/svidbroker/svidbroker/broker/audit"
)

// statementMasked are the Statement.Masked of the session's allowed request records of text, in order.
func statementMasked(s *memSink, text string) [][]string {
	var out [][]string
	for _, rec := range s.all() {
		if rec.Kind == audit.KindStatement && rec.Statement != nil && rec.Statement.Text == text && rec.Detail["refused"] == "" {
			out = append(out, rec.Statement.Masked)
		}
	}
	return out
}

// TestFieldMasksAreKeptWithTheVerdict: a route's fields are decided once, in one batch, for the
// requests a kept verdict answers, and each request's record names the fields masked, whether its
// verdict was decided or kept. A route without fields asks for none.
func TestFieldMasksAreKeptWithTheVerdict(t *testing.T) {
	r := newRig(t, rigOptions{routes: customerRoutes})
	r.policy.masks = map[string]string{"$.ssn": "partial", "$.email": "redact"}
	c := r.client(t, agentID)
	for range 3 {
		status, body, _ := get(t, c, newReq(t, "GET", r.url("/v1/customers/1"), ""))
		if status != 200 || strings.Contains(body, "123-45-6789") || strings.Contains(body, "ada@example.org") {
			t.Fatalf("got %d %s", status, body)
		}
	}
	if n := r.policy.fieldAsks.Load(); n != 1 {
		t.Errorf("fields decided %d times for 3 identical requests in one session, want once", n)
	}
	want := []string{"$.email=redact", "$.ssn=partial"}
	got := statementMasked(r.sink, "GET /v1/customers/1")
	if len(got) != 3 {
		t.Fatalf("%d request records, want 3", len(got))
	}
	for i, m := range got {
		if !slices.Equal(m, want) {
			t.Errorf("record %d: masked %q, want %q", i, m, want)
		}
	}
	// Another request is decided anew.
	if status, _, _ := get(t, c, newReq(t, "GET", r.url("/v1/customers/2"), "")); status != 200 {
		t.Fatalf("got %d", status)
	}
	if n := r.policy.fieldAsks.Load(); n != 2 {
		t.Errorf("fields decided %d times after a second request, want 2", n)
	}
	// Control: a route without fields records nothing masked and asks for no field.
	if status, _, _ := get(t, c, newReq(t, "GET", r.url("/v1/orders/1"), "")); status != 200 {
		t.Fatalf("got %d", status)
	}
	if got := statementMasked(r.sink, "GET /v1/orders/1"); len(got) != 1 || got[0] != nil {
		t.Errorf("orders: masked %q, want none", got)
	}
	if n := r.policy.fieldAsks.Load(); n != 2 {
		t.Errorf("fields decided for a route without fields (%d asks)", n)
	}
}

// TestFieldMasksFollowTheRequestWithinASession: a field policy that looks at the request (its path
// parameters, its query) is decided for each request: a kept verdict is one of the same request.
func TestFieldMasksFollowTheRequestWithinASession(t *testing.T) {
	r := newRig(t, rigOptions{routes: customerRoutes, handler: func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if strings.HasPrefix(req.URL.Path, "/v1/customers/") {
			_, _ = w.Write([]byte(`{"id":1,"ssn":"123-45-6789"}`))
			return
		}
		_, _ = w.Write([]byte(`{"items":[{"id":1,"ssn":"123-45-6789"}]}`))
	}})
	// Customer 1's ssn, and the list's when more than one is asked for, are masked.
	r.policy.fieldMask = func(req Request, field string) string {
		switch {
		case field == "$.ssn" && req.Params["id"] == "1":
			return "redact"
		case field == "$.items[*].ssn" && req.Query["limit"] != "1":
			return "redact"
		}
		return ""
	}
	c := r.client(t, agentID)
	cases := []struct {
		path   string
		masked bool
	}{
		{"/v1/customers/1", true},
		{"/v1/customers/2", false},
		{"/v1/customers/1", true},
		{"/v1/customers/2", false},
		{"/v1/customers?limit=1", false},
		{"/v1/customers?limit=5", true},
		{"/v1/customers?limit=1", false},
		{"/v1/customers?limit=5", true},
	}
	for _, tc := range cases {
		status, body, _ := get(t, c, newReq(t, "GET", r.url(tc.path), ""))
		if status != 200 || strings.Contains(body, "123-45-6789") != !tc.masked {
			t.Errorf("%s: got %d %s, want masked %v", tc.path, status, body, tc.masked)
		}
	}
	if n := r.policy.fieldAsks.Load(); n != 4 {
		t.Errorf("fields decided %d times for 4 distinct requests, each twice, want 4", n)
	}
}

// TestUnappliableFieldMaskIsRefusedBeforeTheUpstream: a strategy the masker cannot apply refuses the
// request before it is sent, with an error that names the route and the strategy, and a refusal
// record; the same route with a strategy it applies is forwarded (the control).
func TestUnappliableFieldMaskIsRefusedBeforeTheUpstream(t *testing.T) {
	r := newRig(t, rigOptions{routes: customerRoutes})
	r.policy.masks = map[string]string{"$.ssn": "scramble"}
	status, body, _ := get(t, r.client(t, agentID), newReq(t, "GET", r.url("/v1/customers/1"), ""))
	if status != http.StatusInternalServerError || !strings.Contains(body, "GET /v1/customers/{id}") || !strings.Contains(body, "scramble") {
		t.Fatalf("got %d %s", status, body)
	}
	if n := len(r.up.requests()); n != 0 {
		t.Fatalf("the upstream got %d requests whose response could not be masked", n)
	}
	refused := false
	for _, rec := range r.sink.all() {
		refused = refused || rec.Kind == audit.KindDenied && rec.Detail["refused"] != "" && strings.Contains(rec.Detail["refused"], "scramble")
	}
	if !refused {
		t.Fatalf("no refusal record: %s", recordsText(t, r.sink))
	}
	r.policy.masks = map[string]string{"$.ssn": "redact"} // a new session sees it (the fake has no epochs)
	status, body, _ = get(t, r.client(t, agentID), newReq(t, "GET", r.url("/v1/customers/1"), ""))
	if status != 200 || strings.Contains(body, "123-45-6789") || len(r.up.requests()) != 1 {
		t.Fatalf("control: got %d %s, upstream asked %d times", status, body, len(r.up.requests()))
	}
}

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/test/stack"
)

// TestHTTPAnalystCannotDeleteAnOrder: the analyst's DELETE is refused 403 with a JSON error naming
// the route and the action, and the order is still in PostgreSQL; its GET of the same order passes.
func TestHTTPAnalystCannotDeleteAnOrder(t *testing.T) {
	h := httpShared(t)
	id := h.newOrder(t)
	c := h.httpClient(t, stack.PersonaAnalyst)
	path := "/v1/orders/" + strconv.Itoa(id)
	r := h.do(t, c, "DELETE", path, nil, "")
	if r.status != http.StatusForbidden {
		t.Fatalf("analyst DELETE %s: %s, want 403", path, r)
	}
	var e struct {
		Error  string   `json:"error"`
		Policy []string `json:"policy"`
	}
	if err := json.Unmarshal([]byte(r.body), &e); err != nil || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
		t.Fatalf("the refusal is not a JSON error (%v, Content-Type %q): %s", err, r.header.Get("Content-Type"), r.body)
	}
	if !strings.Contains(e.Error, "http:delete") || !strings.Contains(e.Error, "/v1/orders/{id}") {
		t.Errorf("the error does not name the action and the route: %q", e.Error)
	}
	if !h.orderExists(t, id) {
		t.Fatal("the refused DELETE deleted the order")
	}
	if r := h.do(t, c, "GET", path, nil, ""); r.status != http.StatusOK || !strings.Contains(r.body, `"id":`+strconv.Itoa(id)) {
		t.Fatalf("control: analyst GET %s: %s", path, r)
	}
}

// TestHTTPMigratorDeleteHeldForApproval: the migrator's DELETE waits for a person's approval on the
// admin listener; approved, it runs upstream (204) and the order is gone from PostgreSQL.
func TestHTTPMigratorDeleteHeldForApproval(t *testing.T) {
	h := httpShared(t)
	id := h.newOrder(t)
	c := h.httpClient(t, stack.PersonaMigrator)
	path := "/v1/orders/" + strconv.Itoa(id)
	// A read first: the connection's session (and its API token) must also allow the DELETE after it.
	if r := h.do(t, c, "GET", path, nil, ""); r.status != http.StatusOK {
		t.Fatalf("migrator GET %s: %s", path, r)
	}
	done := make(chan httpReply, 1)
	go func() { done <- h.do(t, c, "DELETE", path, nil, "") }()
	req := waitPending(t, h.b, "DELETE "+path)
	if req.SPIFFEID != mustPersonaID(t, h.s, stack.PersonaMigrator) || req.Target != stack.APITargetName {
		t.Errorf("pending request %+v", req)
	}
	select {
	case r := <-done:
		t.Fatalf("the held DELETE answered before approval: %s", r)
	default:
	}
	if !h.orderExists(t, id) {
		t.Fatal("the order was deleted before approval")
	}
	if code, body := resolve(t, h.b, req.ID, "approve"); code != http.StatusOK {
		t.Fatalf("approve: %d %s", code, body)
	}
	if r := <-done; r.status != http.StatusNoContent {
		t.Fatalf("approved DELETE %s: %s, want 204", path, r)
	}
	if h.orderExists(t, id) {
		t.Fatal("the approved DELETE left the order")
	}
}

// TestHTTPIntruderGetsNothing: the intruder, attested but permitted nothing, is refused before any
// route, with neither its X.509-SVID nor its JWT-SVID, and sees no customer data.
func TestHTTPIntruderGetsNothing(t *testing.T) {
	h := httpShared(t)
	row := h.customer(t, 1)
	r := h.do(t, h.httpClient(t, stack.PersonaIntruder), "GET", "/v1/customers/1", nil, "")
	if r.status != http.StatusForbidden && r.status != http.StatusUnauthorized {
		t.Fatalf("intruder GET: %s, want 403 or 401", r)
	}
	jwt := h.jwtSVID(t, stack.PersonaIntruder, stack.JWTAudience)
	r2 := h.do(t, h.noCertClient(t), "GET", "/v1/customers/1", http.Header{"Authorization": {"Bearer " + jwt}}, "")
	if r2.status != http.StatusForbidden && r2.status != http.StatusUnauthorized {
		t.Fatalf("intruder GET with its JWT-SVID: %s, want 403 or 401", r2)
	}
	for _, body := range []string{r.body, r2.body} {
		for _, v := range []string{row.Name, row.Email, row.SSN, row.SSN[len(row.SSN)-4:]} {
			if strings.Contains(body, v) {
				t.Fatalf("the intruder's refusal quotes customer data %q: %s", v, body)
			}
		}
	}
}

// TestHTTPUnknownRouteAndUndeclaredQuery: a route the catalog does not name is 403 (default deny),
// an undeclared query parameter 400 naming it; the declared one passes.
func TestHTTPUnknownRouteAndUndeclaredQuery(t *testing.T) {
	h := httpShared(t)
	c := h.httpClient(t, stack.PersonaSupport)
	if r := h.do(t, c, "GET", "/v1/admin/users", nil, ""); r.status != http.StatusForbidden || !strings.Contains(r.body, "no route") {
		t.Errorf("unknown route: %s, want 403 saying no route matches", r)
	}
	if r := h.do(t, c, "GET", "/v1/customers?limit=2&debug=1", nil, ""); r.status != http.StatusBadRequest || !strings.Contains(r.body, "debug") {
		t.Errorf("undeclared query parameter: %s, want 400 naming it", r)
	}
	r := h.do(t, c, "GET", "/v1/customers?limit=2", nil, "")
	if r.status != http.StatusOK {
		t.Fatalf("control: declared query parameter: %s", r)
	}
	var list struct {
		Items []map[string]any `json:"items"`
	}
	if err := json.Unmarshal([]byte(r.body), &list); err != nil || len(list.Items) != 2 {
		t.Fatalf("GET /v1/customers?limit=2: %v %s", err, r.body)
	}
	for _, it := range list.Items {
		id := int(it["id"].(float64))
		row := h.customer(t, id)
		if strings.Contains(r.body, row.Email) || strings.Contains(r.body, row.SSN) {
			t.Fatalf("the list holds customer %d's clear email or ssn: %s", id, r.body)
		}
	}
}

// TestHTTPEventStreamMasked: support's event stream arrives event by event with email and ssn
// masked in each.
func TestHTTPEventStreamMasked(t *testing.T) {
	h := httpShared(t)
	row := h.customer(t, 1)
	c := h.httpClient(t, stack.PersonaSupport)
	req, _ := http.NewRequestWithContext(t.Context(), "GET", h.base()+"/v1/customers/1/events", nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("events: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	sc := bufio.NewScanner(resp.Body)
	events := 0
	for sc.Scan() {
		line := sc.Text()
		for _, v := range []string{row.Email, row.SSN} {
			if strings.Contains(line, v) {
				t.Fatalf("the stream holds the clear value %q: %s", v, line)
			}
		}
		data, ok := strings.CutPrefix(line, "data:")
		if !ok {
			continue
		}
		var ev map[string]any
		if err := json.Unmarshal([]byte(strings.TrimSpace(data)), &ev); err != nil {
			t.Fatalf("event data is not JSON: %v: %s", err, data)
		}
		email, _ := ev["email"].(string)
		ssn, _ := ev["ssn"].(string)
		if !strings.Contains(email, "*") || !strings.Contains(ssn, "*") || ev["name"] != row.Name {
			t.Fatalf("event %d not masked as support's pack says: %s", events, data)
		}
		events++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if events < 2 {
		t.Fatalf("%d events, want the API's several", events)
	}
	h.waitRecord(t, "support's event stream", func(r audit.Record) bool {
		return r.Statement != nil && r.Statement.Text == "GET /v1/customers/1/events" && strings.HasSuffix(r.SPIFFEID, "/agent/support")
	})
}

// TestHTTPRefundBodyChecked: POST /v1/refunds takes the catalog's declared JSON members only, of
// their declared types (400 naming the member otherwise, before any decision); support may not
// POST (403); the migrator's refund waits for approval and, approved, is in api.refunds.
func TestHTTPRefundBodyChecked(t *testing.T) {
	h := httpShared(t)
	mig := h.httpClient(t, stack.PersonaMigrator)
	js := http.Header{"Content-Type": {"application/json"}}
	for _, tc := range []struct{ name, body, member string }{
		{"undeclared member", `{"order_id":10,"amount":5,"reason":"x","note":"y"}`, "note"},
		{"wrong type", `{"order_id":"10","amount":5,"reason":"x"}`, "order_id"},
		{"duplicate member", `{"order_id":10,"order_id":11,"amount":5,"reason":"x"}`, "order_id"},
	} {
		if r := h.do(t, mig, "POST", "/v1/refunds", js, tc.body); r.status != http.StatusBadRequest || !strings.Contains(r.body, tc.member) {
			t.Errorf("%s: %s, want 400 naming %q", tc.name, r, tc.member)
		}
	}
	if r := h.do(t, h.httpClient(t, stack.PersonaSupport), "POST", "/v1/refunds", js, `{"order_id":10,"amount":5,"reason":"support"}`); r.status != http.StatusForbidden {
		t.Errorf("support's refund: %s, want 403", r)
	}
	reason := "e2e-refund-" + strconv.FormatInt(int64(os.Getpid()), 10)
	done := make(chan httpReply, 1)
	go func() {
		done <- h.do(t, mig, "POST", "/v1/refunds", js, `{"order_id":10,"amount":5,"reason":"`+reason+`"}`)
	}()
	req := waitPending(t, h.b, "POST /v1/refunds")
	if code, body := resolve(t, h.b, req.ID, "approve"); code != http.StatusOK {
		t.Fatalf("approve: %d %s", code, body)
	}
	if r := <-done; r.status != http.StatusCreated {
		t.Fatalf("approved refund: %s, want 201", r)
	}
	db, err := h.s.Postgres.Connect(t.Context(), "shop")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())
	var n int
	if err := db.QueryRow(t.Context(), "SELECT count(*) FROM api.refunds WHERE reason = $1 AND order_id = 10 AND amount = 5", reason).Scan(&n); err != nil || n != 1 {
		t.Fatalf("api.refunds holds %d rows of the approved refund (%v), want 1", n, err)
	}
}

package proxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/svidbroker/svidbroker/broker/audit"
)

// noCanary fails if the upstream credential shows in s.
func noCanary(t *testing.T, what, s string) {
	t.Helper()
	if strings.Contains(s, canary) {
		t.Fatalf("the upstream credential reached %s", what)
	}
}

func recordsText(t *testing.T, s *memSink) string {
	b, err := json.Marshal(s.all())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestMTLSCallerIsForwardedWithTheCredential(t *testing.T) {
	r := newRig(t, rigOptions{routes: customerRoutes})
	status, body, hdr := get(t, r.client(t, agentID), newReq(t, "GET", r.url("/v1/orders/7"), ""))
	if status != 200 || !strings.Contains(body, "Ada") {
		t.Fatalf("got %d %s", status, body)
	}
	got := r.up.requests()
	if len(got) != 1 || got[0].RequestURI != "/v1/orders/7" || got[0].Header.Get("Authorization") != "Bearer "+canary {
		t.Fatalf("upstream saw %+v", got)
	}
	noCanary(t, "the client's body", body)
	for k, v := range hdr {
		noCanary(t, "the client's header "+k, strings.Join(v, ","))
	}
	recs := r.sink.all()
	var stmt *audit.Record
	for i := range recs {
		if recs[i].Kind == audit.KindStatement {
			stmt = &recs[i]
		}
	}
	if stmt == nil || stmt.SPIFFEID != agentID || stmt.Statement.Text != "GET /v1/orders/7" || stmt.Decision == nil || !stmt.Decision.Allow {
		t.Fatalf("records: %s", recordsText(t, r.sink))
	}
	noCanary(t, "the audit records", recordsText(t, r.sink))
}

func TestOneSessionPerConnectionAndPrincipal(t *testing.T) {
	r := newRig(t, rigOptions{routes: customerRoutes})
	c := r.client(t, agentID)
	for range 3 {
		if status, body, _ := get(t, c, newReq(t, "GET", r.url("/v1/orders/7"), "")); status != 200 {
			t.Fatalf("got %d %s", status, body)
		}
	}
	// A bearer of another principal on the same connection, twice: a second session.
	tok := r.token(t, "spiffe://example.org/agent/analyst", nil)
	for range 2 {
		req := newReq(t, "GET", r.url("/v1/orders/8"), "")
		req.Header.Set("Authorization", "Bearer "+tok)
		if status, body, _ := get(t, c, req); status != 200 {
			t.Fatalf("bearer: got %d %s", status, body)
		}
	}
	if n := r.leased(); n != 2 {
		t.Fatalf("%d sessions leased a credential; want 2 (one per principal on the connection)", n)
	}
	byPrincipal := map[string]string{}
	for _, rec := range r.sink.all() {
		if rec.Kind == audit.KindStatement {
			byPrincipal[rec.Statement.Text] = rec.SPIFFEID
		}
	}
	if byPrincipal["GET /v1/orders/7"] != agentID || byPrincipal["GET /v1/orders/8"] != "spiffe://example.org/agent/analyst" {
		t.Fatalf("requests recorded under %v", byPrincipal)
	}
	// Each session's start says which credential identified its principal.
	by := map[string]string{}
	for _, rec := range r.sink.all() {
		if rec.Kind == audit.KindSessionStart {
			by[rec.SPIFFEID] = rec.Detail["authenticated_by"]
		}
	}
	if by[agentID] != "X.509-SVID" || by["spiffe://example.org/agent/analyst"] != "JWT-SVID" {
		t.Fatalf("session starts say they were authenticated by %v", by)
	}
}

func TestBearerCallerWithoutClientCertificate(t *testing.T) {
	r := newRig(t, rigOptions{routes: customerRoutes})
	c := r.client(t, "")
	req := newReq(t, "GET", r.url("/v1/orders/7"), "")
	req.Header.Set("Authorization", "Bearer "+r.token(t, "spiffe://example.org/agent/analyst", nil))
	if status, body, _ := get(t, c, req); status != 200 {
		t.Fatalf("got %d %s", status, body)
	}
	got := r.up.requests()
	if len(got) != 1 || got[0].Header.Get("Authorization") != "Bearer "+canary {
		t.Fatalf("upstream saw %+v", got)
	}
	// Neither a certificate nor a bearer: 401 with a challenge, nothing forwarded.
	status, body, hdr := get(t, c, newReq(t, "GET", r.url("/v1/orders/7"), ""))
	if status != 401 || !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") || !strings.Contains(body, "JWT-SVID") {
		t.Fatalf("got %d %s %v", status, body, hdr)
	}
	if len(r.up.requests()) != 1 {
		t.Fatal("a request without a principal was forwarded")
	}
}

func TestBadBearersAreRefusedAndNothingForwarded(t *testing.T) {
	r := newRig(t, rigOptions{routes: customerRoutes})
	hsKey, _ := json.Marshal(r.jwtKey.Public())
	other := newPKI(t, "evil.org")
	_ = other
	unsigned := func() string {
		enc := func(v any) string {
			b, _ := json.Marshal(v)
			return b64(b)
		}
		return enc(map[string]string{"alg": "none", "typ": "JWT", "kid": "k1"}) + "." +
			enc(map[string]any{"sub": agentID, "aud": []string{audience}, "exp": 1 << 40}) + "."
	}
	cases := []struct{ name, token string }{
		{"alg none", unsigned()},
		{"HS256 keyed with the public key", signJWT(t, hsKey, jose.HS256, agentID, nil)},
		{"wrong audience", r.token(t, agentID, func(c map[string]any) { c["aud"] = []string{"other"} })},
		{"expired", r.token(t, agentID, func(c map[string]any) { c["exp"] = 1000 })},
		{"another trust domain", r.token(t, "spiffe://evil.org/agent/support", nil)},
		{"not a bearer", ""},
	}
	// Even with a valid client certificate: a bad bearer is never replaced by the certificate.
	c := r.client(t, agentID)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := newReq(t, "GET", r.url("/v1/orders/7"), "")
			if tc.token == "" {
				req.Header.Set("Authorization", "Basic YWxpY2U6c2VjcmV0")
			} else {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			status, body, _ := get(t, c, req)
			if status != 401 || !strings.Contains(body, "svidbroker:") {
				t.Fatalf("got %d %s", status, body)
			}
			if tc.token != "" && strings.Contains(body, tc.token) {
				t.Fatal("the error quotes the token")
			}
			if n := len(r.up.requests()); n != 0 {
				t.Fatalf("%d requests forwarded", n)
			}
		})
	}
	// Control: a valid bearer on the same connection is forwarded.
	req := newReq(t, "GET", r.url("/v1/orders/7"), "")
	req.Header.Set("Authorization", "Bearer "+r.token(t, agentID, nil))
	if status, body, _ := get(t, c, req); status != 200 || len(r.up.requests()) != 1 {
		t.Fatalf("control: got %d %s", status, body)
	}
}

// logBuffer collects the engine's logs, at debug level.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func TestAgentCredentialsStayBehindAndUpstreamSecretsStayOut(t *testing.T) {
	logs := &logBuffer{}
	r := newRig(t, rigOptions{routes: customerRoutes, noJWT: true, config: func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}, handler: func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Add("Set-Cookie", "session=upstream-session")
		w.Header().Set("X-Echo-Authorization", req.Header.Get("Authorization"))
		w.Header().Set("Connection", "X-Hop")
		w.Header().Set("X-Hop", "hop")
		w.Write([]byte(`{"ok":true}`))
	}})
	req := newReq(t, "GET", r.url("/v1/orders/7"), "")
	req.Header.Set("Authorization", "Bearer agent-own-secret")
	req.Header.Set("Cookie", "agent=cookie")
	req.Header.Set("Proxy-Authorization", "Basic cHJveHk6cHJveHk=")
	req.Header.Set("Connection", "X-Custom")
	req.Header.Set("X-Custom", "hop-by-hop")
	req.Header.Set("X-Forwarded-For", "10.0.0.1")
	req.Header.Set("X-Request-Id", "kept")
	status, body, hdr := get(t, r.client(t, agentID), req)
	if status != 200 {
		t.Fatalf("got %d %s", status, body)
	}
	got := r.up.requests()[0]
	if got.Header.Get("Authorization") != "Bearer "+canary || len(got.Header.Values("Authorization")) != 1 {
		t.Fatalf("upstream Authorization %q", got.Header.Values("Authorization"))
	}
	for _, h := range []string{"Cookie", "Proxy-Authorization", "X-Custom", "X-Forwarded-For"} {
		if got.Header.Get(h) != "" {
			t.Errorf("the agent's %s reached the upstream", h)
		}
	}
	if got.Header.Get("X-Request-Id") != "kept" {
		t.Error("control: an ordinary header was not forwarded")
	}
	if hdr.Get("Set-Cookie") != "" || hdr.Get("X-Hop") != "" || hdr.Get("X-Echo-Authorization") != "" {
		t.Fatalf("the agent got %v", hdr)
	}
	for k, v := range hdr {
		noCanary(t, "the client's header "+k, strings.Join(v, ","))
	}
	noCanary(t, "the audit records", recordsText(t, r.sink))
	if !strings.Contains(logs.String(), "spiffe_id="+agentID) {
		t.Fatalf("control: the session was not logged: %s", logs)
	}
	noCanary(t, "the logs", logs.String())
	if strings.Contains(logs.String(), "agent-own-secret") {
		t.Fatal("the agent's Authorization reached the logs")
	}
}

func TestPolicyDecidesOnThePathTheUpstreamServes(t *testing.T) {
	r := newRig(t, rigOptions{routes: customerRoutes})
	c := r.client(t, agentID)
	for _, tc := range []struct{ sent, served, id string }{
		{"/v1/customers/%41", "/v1/customers/A", "A"},
		{"/v1/customers/a;b", "/v1/customers/a%3Bb", "a;b"},
		{"/v1/customers/42", "/v1/customers/42", "42"},
	} {
		before := len(r.up.requests())
		req := newReq(t, "GET", r.url("/"), "")
		req.URL.Opaque = tc.sent // sent as written
		status, body, _ := get(t, c, req)
		if status != 200 {
			t.Fatalf("%s: got %d %s", tc.sent, status, body)
		}
		asked := r.policy.requests()
		decided := asked[len(asked)-1]
		served := r.up.requests()[before]
		if decided.Path != tc.served || decided.Params["id"] != tc.id || served.RequestURI != tc.served || decided.Route != "GET /v1/customers/{id}" {
			t.Fatalf("%s: decided %+v, upstream served %q", tc.sent, decided, served.RequestURI)
		}
	}
}

func TestDeniedRequestTellsThePolicyAndForwardsNothing(t *testing.T) {
	r := newRig(t, rigOptions{routes: customerRoutes})
	r.policy.deny = func(req Request) error {
		if req.Method == "DELETE" {
			return errors.New(`http:delete on Route::"api/DELETE /v1/orders/{id}" denied`)
		}
		return nil
	}
	status, body, _ := get(t, r.client(t, agentID), newReq(t, "DELETE", r.url("/v1/orders/7"), ""))
	var eb errorBody
	if err := json.Unmarshal([]byte(body), &eb); err != nil || status != 403 || eb.Route != "DELETE /v1/orders/{id}" ||
		len(eb.Policy) != 1 || eb.Policy[0] != "forbid-test" ||
		eb.Error != `svidbroker: http:delete on Route::"api/DELETE /v1/orders/{id}" denied` {
		t.Fatalf("got %d %s", status, body)
	}
	if len(r.up.requests()) != 0 {
		t.Fatal("a denied request was forwarded")
	}
	// Control: the GET of the same order is forwarded.
	if status, body, _ := get(t, r.client(t, agentID), newReq(t, "GET", r.url("/v1/orders/7"), "")); status != 200 {
		t.Fatalf("control: %d %s", status, body)
	}
}

func TestUnknownRouteIsRefusedAndRecorded(t *testing.T) {
	r := newRig(t, rigOptions{routes: customerRoutes})
	c := r.client(t, agentID)
	for _, path := range []string{"/v1/admin/users", "/v1/orders", "/v1/customers/1/orders"} {
		status, body, _ := get(t, c, newReq(t, "GET", r.url(path), ""))
		if status != 403 || !strings.Contains(body, "no route") {
			t.Fatalf("%s: got %d %s", path, status, body)
		}
	}
	if status, _, _ := get(t, c, newReq(t, "PUT", r.url("/v1/orders/7"), "")); status != 403 {
		t.Fatalf("a method without a route: %d", status)
	}
	if len(r.up.requests()) != 0 || len(r.policy.requests()) != 0 {
		t.Fatal("an unknown route was decided or forwarded")
	}
	denied := 0
	for _, rec := range r.sink.all() {
		if rec.Kind == audit.KindDenied && rec.Detail["refused"] == "no route matches" {
			denied++
		}
	}
	if denied != 4 || !strings.Contains(recordsText(t, r.sink), "GET /v1/admin/users") {
		t.Fatalf("%d refusals recorded, want 4: %s", denied, recordsText(t, r.sink))
	}
}

func TestQueryAndBodyChecks(t *testing.T) {
	r := newRig(t, rigOptions{routes: customerRoutes})
	c := r.client(t, agentID)
	cases := []struct {
		name, method, path, body string
		status                   int
		want                     string
	}{
		{"declared query", "GET", "/v1/customers?limit=2", "", 200, ""},
		{"undeclared query", "GET", "/v1/customers?limit=2&admin=1", "", 400, `"admin" is not declared`},
		{"repeated query", "GET", "/v1/customers?limit=2&limit=5000", "", 400, "appears 2 times"},
		{"query on a route without", "GET", "/v1/orders/7?x=1", "", 400, `"x" is not declared`},
		{"declared body", "POST", "/v1/refunds", `{"order_id":7,"amount":300,"reason":"late"}`, 200, ""},
		{"undeclared member", "POST", "/v1/refunds", `{"order_id":7,"amount":300,"approved_by":"me"}`, 400, `"approved_by" is not declared`},
		{"duplicate member", "POST", "/v1/refunds", `{"order_id":7,"amount":3,"amount":30000}`, 400, `"amount" appears twice`},
		{"wrong type", "POST", "/v1/refunds", `{"order_id":"7"}`, 400, `"order_id" must be a Long`},
		{"fraction", "POST", "/v1/refunds", `{"amount":1.5}`, 400, `"amount" must be a Long`},
		{"nested", "POST", "/v1/refunds", `{"reason":{"a":1}}`, 400, "not an object or array"},
		{"two values", "POST", "/v1/refunds", `{"amount":1}{"amount":2}`, 400, "more than one"},
		{"not an object", "POST", "/v1/refunds", `[1]`, 400, "one JSON object"},
		{"body on a route without", "DELETE", "/v1/orders/7", `{"force":true}`, 400, "takes no request body"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := len(r.up.requests())
			status, body, _ := get(t, c, newReq(t, tc.method, r.url(tc.path), tc.body))
			var eb errorBody
			_ = json.Unmarshal([]byte(body), &eb)
			if status != tc.status || !strings.Contains(eb.Error, tc.want) {
				t.Fatalf("got %d %s", status, body)
			}
			forwarded := len(r.up.requests()) - before
			if tc.status == 200 && forwarded != 1 || tc.status != 200 && forwarded != 0 {
				t.Fatalf("%d forwarded", forwarded)
			}
		})
	}
	// The body forwarded is the one decided: written again from the checked members.
	asked := r.policy.requests()
	var refund Request
	for _, a := range asked {
		if a.Route == "POST /v1/refunds" {
			refund = a
		}
	}
	if refund.Body["order_id"] != int64(7) || refund.Body["amount"] != int64(300) || refund.Body["reason"] != "late" {
		t.Fatalf("decided body %v", refund.Body)
	}
	var fwd map[string]any
	for _, s := range r.up.requests() {
		if s.Method == "POST" {
			if err := json.Unmarshal([]byte(s.Body), &fwd); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(fwd) != 3 || fwd["amount"] != float64(300) {
		t.Fatalf("forwarded body %v", fwd)
	}
}

func TestAuditUnavailableRefusesRequests(t *testing.T) {
	r := newRig(t, rigOptions{routes: customerRoutes})
	c := r.client(t, agentID)
	if status, body, _ := get(t, c, newReq(t, "GET", r.url("/v1/orders/1"), "")); status != 200 {
		t.Fatalf("control: %d %s", status, body)
	}
	r.sink.fail.Store(true)
	// On the open session (the request's record), and for a principal whose session would open now.
	status, body, _ := get(t, c, newReq(t, "DELETE", r.url("/v1/orders/1"), ""))
	if status != http.StatusServiceUnavailable || !strings.Contains(body, "audit") {
		t.Fatalf("open session: %d %s", status, body)
	}
	req := newReq(t, "GET", r.url("/v1/orders/2"), "")
	req.Header.Set("Authorization", "Bearer "+r.token(t, "spiffe://example.org/agent/analyst", nil))
	status, body, _ = get(t, c, req)
	if status != http.StatusServiceUnavailable || !strings.Contains(body, "audit") {
		t.Fatalf("new session: %d %s", status, body)
	}
	if n := len(r.up.requests()); n != 1 {
		t.Fatalf("%d requests forwarded while the audit log was unavailable", n-1)
	}
}

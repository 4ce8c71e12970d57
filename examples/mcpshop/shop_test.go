package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// memStore is the shop's data in memory, with what the tools wrote.
type memStore struct {
	mu        sync.Mutex
	customers []customer
	orders    []order
	refunds   []refundRecord
	emails    []sendEmailIn
}

func newMemStore() *memStore {
	m := &memStore{}
	for i, n := range []string{"Alice", "Bob", "Carol"} {
		id := int64(i + 1)
		m.customers = append(m.customers, customer{ID: id, Name: n, Email: strings.ToLower(n) + "@example.com", SSN: "123-45-000" + string(rune('0'+id))})
		for j := range 2 {
			m.orders = append(m.orders, order{ID: id*10 + int64(j), CustomerID: id, Total: "12.50", CreatedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})
		}
	}
	return m
}

func (m *memStore) Customers(_ context.Context, id int64, limit int) ([]customer, error) {
	if id > 0 {
		for _, c := range m.customers {
			if c.ID == id {
				return []customer{c}, nil
			}
		}
		return nil, errNotFound
	}
	return m.customers[:min(limit, len(m.customers))], nil
}

func (m *memStore) Orders(_ context.Context, customerID int64, limit int) ([]order, error) {
	var out []order
	for _, o := range m.orders {
		if (customerID == 0 || o.CustomerID == customerID) && len(out) < limit {
			out = append(out, o)
		}
	}
	return out, nil
}

func (m *memStore) Refund(_ context.Context, orderID, amount int64, reason string) (refundRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !slices.ContainsFunc(m.orders, func(o order) bool { return o.ID == orderID }) {
		return refundRecord{}, errNotFound
	}
	rf := refundRecord{ID: int64(len(m.refunds) + 1), OrderID: orderID, Amount: amount, Reason: reason, CreatedAt: time.Now()}
	m.refunds = append(m.refunds, rf)
	return rf, nil
}

func (m *memStore) SendEmail(_ context.Context, to, subject, body string) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.emails = append(m.emails, sendEmailIn{to, subject, body})
	return int64(len(m.emails)), nil
}

// tokenTable answers the token lookup as api.tokens would, by the token's SHA-256.
type tokenTable struct {
	mu    sync.Mutex
	roles map[[32]byte]string
	down  bool
}

type tokenRow struct {
	role string
	err  error
}

func (r tokenRow) Scan(dst ...any) error {
	if r.err != nil {
		return r.err
	}
	*dst[0].(*string), *dst[1].(*bool) = r.role, true
	return nil
}

func (t *tokenTable) QueryRow(_ context.Context, _ string, args ...any) pgx.Row {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.down {
		return tokenRow{err: errors.New("connection refused")}
	}
	role, ok := t.roles[[32]byte(args[0].([]byte))]
	if !ok {
		return tokenRow{err: pgx.ErrNoRows}
	}
	return tokenRow{role: role}
}

// fixture is the server over HTTPS (httptest, loopback) with tokens "read", "write" and "other"
// (of a role the server does not know).
type fixture struct {
	shop   *shop
	db     *memStore
	tokens *tokenTable
	srv    *httptest.Server
}

func start(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{db: newMemStore(), tokens: &tokenTable{roles: map[[32]byte]string{
		sha256.Sum256([]byte("read")): "api-read", sha256.Sum256([]byte("write")): "api-write", sha256.Sum256([]byte("other")): "shop-admin",
	}}}
	f.shop = newShop(f.db, f.tokens, slog.New(slog.DiscardHandler))
	f.srv = httptest.NewTLSServer(f.shop.handler(true))
	t.Cleanup(f.srv.Close)
	return f
}

// wire records the bodies of the server's responses, to show how a request reached the client.
type wire struct {
	mu   sync.Mutex
	seen bytes.Buffer
}

func (w *wire) Write(b []byte) (int, error) { w.mu.Lock(); defer w.mu.Unlock(); return w.seen.Write(b) }
func (w *wire) String() string              { w.mu.Lock(); defer w.mu.Unlock(); return w.seen.String() }

type bearerRT struct {
	token string
	next  http.RoundTripper
	wire  *wire
}

func (b bearerRT) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	resp, err := b.next.RoundTrip(r)
	if err == nil && b.wire != nil {
		resp.Body = struct {
			io.Reader
			io.Closer
		}{io.TeeReader(resp.Body, b.wire), resp.Body}
	}
	return resp, err
}

func (f *fixture) connect(t *testing.T, token, version string, opts *mcp.ClientOptions) (*mcp.ClientSession, *wire) {
	t.Helper()
	w := &wire{}
	hc := &http.Client{Transport: bearerRT{token, f.srv.Client().Transport, w}}
	c := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "1"}, opts)
	cs, err := c.Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: f.srv.URL + MCPPath, HTTPClient: hc, MaxRetries: -1},
		&mcp.ClientSessionOptions{ProtocolVersion: version})
	if err != nil {
		t.Fatalf("connect (%s): %v", version, err)
	}
	t.Cleanup(func() { cs.Close() })
	if got := cs.InitializeResult().ProtocolVersion; got != version {
		t.Fatalf("negotiated %s, want %s", got, version)
	}
	return cs, w
}

func call(t *testing.T, cs *mcp.ClientSession, name string, args any) *mcp.CallToolResult {
	t.Helper()
	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return res
}

func text(res *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

func wantError(t *testing.T, res *mcp.CallToolResult, contains string) {
	t.Helper()
	if !res.IsError || !strings.Contains(text(res), contains) {
		t.Fatalf("result %q (isError %v), want an error mentioning %q", text(res), res.IsError, contains)
	}
}

func TestEveryProtocolVersion(t *testing.T) {
	f := start(t)
	for _, v := range mcp.SupportedProtocolVersions() {
		t.Run(v, func(t *testing.T) {
			cs, _ := f.connect(t, "read", v, nil)
			if sessions := v < statelessVersion; (cs.ID() != "") != sessions {
				t.Errorf("session id %q: want one exactly when the version (%s) has sessions", cs.ID(), v)
			}
			tools, err := cs.ListTools(t.Context(), nil)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, tl := range tools.Tools {
				names = append(names, tl.Name)
			}
			slices.Sort(names)
			want := []string{"ask_user", "draft_reply", "get_customer", "list_orders", "query", "refund", "send_email", "summarize"}
			if !slices.Equal(names, want) {
				t.Fatalf("tools %v, want %v", names, want)
			}
			res := call(t, cs, "get_customer", map[string]any{"id": 2})
			var fromText, fromStruct customer
			if err := json.Unmarshal([]byte(text(res)), &fromText); err != nil {
				t.Fatalf("text %q is not the customer's JSON: %v", text(res), err)
			}
			b, _ := json.Marshal(res.StructuredContent)
			if err := json.Unmarshal(b, &fromStruct); err != nil {
				t.Fatal(err)
			}
			if want := f.db.customers[1]; res.IsError || fromText != want || fromStruct != want {
				t.Errorf("get_customer 2: text %+v, structured %+v; want %+v", fromText, fromStruct, want)
			}
		})
	}
}

func TestInputSchemas(t *testing.T) {
	f := start(t)
	cs, _ := f.connect(t, "read", "2025-11-25", nil)
	tools, err := cs.ListTools(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	schemas := map[string]map[string]any{}
	for _, tl := range tools.Tools {
		b, _ := json.Marshal(tl.InputSchema)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		schemas[tl.Name] = m
	}
	prop := func(tool, name string) map[string]any {
		p, _ := schemas[tool]["properties"].(map[string]any)[name].(map[string]any)
		return p
	}
	required := func(tool string) []any { r, _ := schemas[tool]["required"].([]any); return r }
	for _, tc := range []struct {
		tool, prop, typ string
		required        bool
	}{
		{"get_customer", "id", "integer", true},
		{"list_orders", "customer_id", "integer", false},
		{"list_orders", "limit", "integer", false},
		{"query", "table", "string", true},
		{"query", "limit", "integer", false},
		{"refund", "order_id", "integer", true},
		{"refund", "amount", "integer", true},
		{"refund", "reason", "string", true},
		{"send_email", "to", "string", true},
		{"summarize", "text", "string", true},
		{"ask_user", "question", "string", true},
		{"draft_reply", "message", "string", true},
	} {
		if p := prop(tc.tool, tc.prop); p["type"] != tc.typ || slices.Contains(required(tc.tool), any(tc.prop)) != tc.required {
			t.Errorf("%s.%s: %v (required %v); want type %s, required %v", tc.tool, tc.prop, p, required(tc.tool), tc.typ, tc.required)
		}
	}
	// Every property of every output schema is a schema object: the TypeScript SDK refuses a
	// tools/list whose output schemas hold a boolean schema (true) as a property.
	for _, tl := range tools.Tools {
		b, _ := json.Marshal(tl.OutputSchema)
		var m struct{ Properties map[string]any }
		_ = json.Unmarshal(b, &m)
		for name, p := range m.Properties {
			if _, ok := p.(map[string]any); !ok {
				t.Errorf("%s: output property %s has schema %v", tl.Name, name, p)
			}
		}
	}
	if e := prop("query", "table")["enum"]; !slices.Equal(e.([]any), []any{"orders", "customers"}) {
		t.Errorf("query.table enum %v", e)
	}
	// The SDK validates arguments against the schema before the handler runs.
	wantError(t, call(t, cs, "query", map[string]any{"table": "api.tokens"}), "table")
	wantError(t, call(t, cs, "list_orders", map[string]any{"limit": 1000}), "limit")
	wantError(t, call(t, cs, "get_customer", map[string]any{"id": "1"}), "id")
}

func TestReadTools(t *testing.T) {
	f := start(t)
	cs, _ := f.connect(t, "read", "2026-07-28", nil)
	var lo listOrdersOut
	res := call(t, cs, "list_orders", map[string]any{"customer_id": 2, "limit": 5})
	if err := json.Unmarshal([]byte(text(res)), &lo); err != nil || len(lo.Orders) != 2 || lo.Orders[0].CustomerID != 2 {
		t.Errorf("list_orders customer 2: %s (%v)", text(res), err)
	}
	res = call(t, cs, "list_orders", map[string]any{"limit": 3})
	if err := json.Unmarshal([]byte(text(res)), &lo); err != nil || len(lo.Orders) != 3 {
		t.Errorf("list_orders limit 3: %s (%v)", text(res), err)
	}
	res = call(t, cs, "query", map[string]any{"table": "customers", "limit": 2})
	var q struct {
		Table string
		Rows  []customer
	}
	if err := json.Unmarshal([]byte(text(res)), &q); err != nil || q.Table != "customers" || len(q.Rows) != 2 || q.Rows[1].SSN == "" {
		t.Errorf("query customers: %s (%v)", text(res), err)
	}
	wantError(t, call(t, cs, "get_customer", map[string]any{"id": 99}), "customer 99 not found")
	res = call(t, cs, "summarize", map[string]any{"text": "The parcel arrived late. The box was damaged."})
	if text(res) != `{"summary":"The parcel arrived late."}` {
		t.Errorf("summarize: %s", text(res))
	}
	rr, err := cs.ReadResource(t.Context(), &mcp.ReadResourceParams{URI: refundPolicyURI})
	if err != nil || len(rr.Contents) != 1 || !strings.Contains(rr.Contents[0].Text, "approval") {
		t.Errorf("resource: %+v, %v", rr, err)
	}
	pr, err := cs.GetPrompt(t.Context(), &mcp.GetPromptParams{Name: "refund_request", Arguments: map[string]string{"order_id": "10", "reason": "late"}})
	if err != nil || len(pr.Messages) != 1 || !strings.Contains(pr.Messages[0].Content.(*mcp.TextContent).Text, "order 10") {
		t.Errorf("prompt: %+v, %v", pr, err)
	}
	if _, err := cs.GetPrompt(t.Context(), &mcp.GetPromptParams{Name: "refund_request", Arguments: map[string]string{"order_id": "1; drop"}}); err == nil {
		t.Error("prompt with a non-numeric order_id: no error")
	}
}

func TestWriteToolsNeedTheWriteRole(t *testing.T) {
	f := start(t)
	for _, v := range []string{"2026-07-28", "2025-06-18"} {
		t.Run(v, func(t *testing.T) {
			read, _ := f.connect(t, "read", v, nil)
			write, _ := f.connect(t, "write", v, nil)
			before := len(f.db.refunds)
			wantError(t, call(t, read, "refund", map[string]any{"order_id": 10, "amount": 50, "reason": "late"}), "a token of role api-read may not call refund: it needs role api-write")
			wantError(t, call(t, read, "send_email", map[string]any{"to": "a@example.com", "subject": "s", "body": "b"}), "may not call send_email")
			if len(f.db.refunds) != before || len(f.db.emails) != 0 && v == "2026-07-28" {
				t.Fatalf("a read token's call wrote: %d refunds, %d emails", len(f.db.refunds)-before, len(f.db.emails))
			}
			res := call(t, write, "refund", map[string]any{"order_id": 10, "amount": 50, "reason": "late"})
			var rf refundRecord
			if err := json.Unmarshal([]byte(text(res)), &rf); err != nil || res.IsError || rf.OrderID != 10 || rf.Amount != 50 || len(f.db.refunds) != before+1 {
				t.Fatalf("refund: %s (%v)", text(res), err)
			}
			wantError(t, call(t, write, "refund", map[string]any{"order_id": 99, "amount": 5, "reason": "x"}), "order 99 not found")
			wantError(t, call(t, write, "refund", map[string]any{"order_id": 10, "amount": 5, "reason": "   "}), "reason must be")
			emails := len(f.db.emails)
			res = call(t, write, "send_email", map[string]any{"to": "bob@example.com", "subject": "Your refund", "body": "Done."})
			if res.IsError || len(f.db.emails) != emails+1 || f.db.emails[emails].To != "bob@example.com" {
				t.Fatalf("send_email: %s", text(res))
			}
			for _, to := range []string{"Bob <bob@example.com>", "a@example.com, b@example.com", "nobody"} {
				wantError(t, call(t, write, "send_email", map[string]any{"to": to, "subject": "s", "body": "b"}), "one bare address")
			}
			wantError(t, call(t, write, "send_email", map[string]any{"to": "a@example.com", "subject": "s\r\nBcc: x@example.com", "body": "b"}), "one line")
		})
	}
}

func TestRotatedDescriptionInNextList(t *testing.T) {
	f := start(t)
	desc := func(cs *mcp.ClientSession) string {
		t.Helper()
		tools, err := cs.ListTools(t.Context(), nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, tl := range tools.Tools {
			if tl.Name == "summarize" {
				return tl.Description
			}
		}
		t.Fatal("no summarize tool")
		return ""
	}
	changed := make(chan struct{}, 4)
	old, _ := f.connect(t, "read", "2025-11-25", &mcp.ClientOptions{ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) {
		changed <- struct{}{}
	}})
	stateless, _ := f.connect(t, "read", "2026-07-28", nil)
	if desc(old) != DefaultSummarizeDescription || desc(stateless) != DefaultSummarizeDescription {
		t.Fatalf("initial descriptions %q, %q", desc(old), desc(stateless))
	}
	rotate := func(body string) string {
		resp, err := f.srv.Client().Post(f.srv.URL+RotatePath, "text/plain", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]string
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("rotate: %s %v", resp.Status, err)
		}
		return out["description"]
	}
	if d := rotate(""); d != rotatedSummarizeDescription || desc(old) != d || desc(stateless) != d {
		t.Fatalf("after rotation: %q, %q, %q", d, desc(old), desc(stateless))
	}
	select {
	case <-changed:
	case <-t.Context().Done():
		t.Fatal("no notifications/tools/list_changed for the session")
	}
	if d := rotate(""); d != DefaultSummarizeDescription || desc(stateless) != d {
		t.Errorf("second rotation: %q, listed %q", d, desc(stateless))
	}
	if d := rotate("Summarize, v3."); desc(stateless) != "Summarize, v3." || d != "Summarize, v3." {
		t.Errorf("rotation to a given text: listed %q", desc(stateless))
	}

	t.Run("loopback peers only", func(t *testing.T) {
		r := httptest.NewRequest(http.MethodPost, RotatePath, nil)
		r.RemoteAddr = "192.0.2.7:4000"
		w := httptest.NewRecorder()
		f.shop.handler(true).ServeHTTP(w, r)
		if w.Code != http.StatusForbidden || desc(stateless) != "Summarize, v3." {
			t.Errorf("remote rotation: %d %s", w.Code, w.Body)
		}
		r = httptest.NewRequest(http.MethodPost, RotatePath, nil)
		r.RemoteAddr = "127.0.0.1:4000"
		w = httptest.NewRecorder()
		f.shop.handler(false).ServeHTTP(w, r)
		if w.Code != http.StatusNotFound {
			t.Errorf("rotation without --allow-rotate: %d %s", w.Code, w.Body)
		}
	})
}

// ask_user and draft_reply reach the client as server-initiated requests on a session's stream
// before 2026-07-28, and as an input_required result (answered by calling again) in 2026-07-28.
func TestElicitationAndSampling(t *testing.T) {
	f := start(t)
	for _, tc := range []struct {
		version, via, notVia string
	}{
		{"2025-11-25", `"method":"elicitation/create"`, `"input_required"`},
		{"2025-06-18", `"method":"elicitation/create"`, `"input_required"`},
		// In 2026-07-28 the request travels inside the result's inputRequests.
		{"2026-07-28", `"resultType":"input_required"`, ""},
	} {
		t.Run(tc.version, func(t *testing.T) {
			var asked, prompted string
			cs, w := f.connect(t, "read", tc.version, &mcp.ClientOptions{
				ElicitationHandler: func(_ context.Context, r *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
					asked = r.Params.Message
					return &mcp.ElicitResult{Action: "accept", Content: map[string]any{"answer": "blue"}}, nil
				},
				CreateMessageHandler: func(_ context.Context, r *mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
					prompted = r.Params.Messages[0].Content.(*mcp.TextContent).Text
					return &mcp.CreateMessageResult{Model: "test-model", Role: "assistant", Content: &mcp.TextContent{Text: "Dear Bob, sorry."}}, nil
				},
			})
			res := call(t, cs, "ask_user", map[string]any{"question": "Which colour?"})
			if res.IsError || asked != "Which colour?" || text(res) != `{"action":"accept","answer":"blue"}` {
				t.Errorf("ask_user: %s (asked %q)", text(res), asked)
			}
			if !strings.Contains(w.String(), tc.via) || tc.notVia != "" && strings.Contains(w.String(), tc.notVia) {
				t.Errorf("the elicitation did not reach the client as %s alone", tc.via)
			}
			res = call(t, cs, "draft_reply", map[string]any{"customer_id": 2, "message": "Where is my parcel?"})
			if res.IsError || text(res) != `{"draft":"Dear Bob, sorry.","model":"test-model"}` {
				t.Errorf("draft_reply: %s", text(res))
			}
			if !strings.Contains(prompted, "Bob") || !strings.Contains(prompted, "Where is my parcel?") || strings.Contains(prompted, f.db.customers[1].SSN) {
				t.Errorf("sampling prompt %q: want the name and message, never the SSN", prompted)
			}
		})
	}
	t.Run("declined", func(t *testing.T) {
		cs, _ := f.connect(t, "read", "2025-11-25", &mcp.ClientOptions{
			ElicitationHandler: func(context.Context, *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
				return &mcp.ElicitResult{Action: "decline"}, nil
			}})
		if res := call(t, cs, "ask_user", map[string]any{"question": "q"}); text(res) != `{"action":"decline"}` {
			t.Errorf("declined ask_user: %s", text(res))
		}
	})
	t.Run("a client that never answers", func(t *testing.T) {
		g := start(t)
		g.shop.callTimeout = 100 * time.Millisecond // before any request
		release := make(chan struct{})
		defer close(release) // before the session's cleanup, which waits for this handler
		cs, _ := g.connect(t, "read", "2025-11-25", &mcp.ClientOptions{
			ElicitationHandler: func(ctx context.Context, _ *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
				select { // the server's giving up does not reach the client's handler
				case <-ctx.Done():
				case <-release:
				}
				return nil, errors.New("no answer")
			}})
		res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "ask_user", Arguments: map[string]any{"question": "q"}})
		if t.Context().Err() != nil || err == nil && !res.IsError {
			t.Fatalf("ask_user to a client that never answers: %v, %v; want an error once the call's deadline passed", res, err)
		}
	})
	t.Run("a client without elicitation", func(t *testing.T) {
		cs, _ := f.connect(t, "read", "2025-11-25", nil)
		res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "ask_user", Arguments: map[string]any{"question": "q"}})
		if err == nil && !res.IsError {
			t.Errorf("ask_user without the client's elicitation capability: %s", text(res))
		}
	})
}

func TestEveryRequestNeedsAToken(t *testing.T) {
	f := start(t)
	post := func(token string) *http.Response {
		req, _ := http.NewRequest(http.MethodPost, f.srv.URL+MCPPath, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
		req.Host = "tools.example:8443" // as a proxy in front may pass it on: the token decides, not the Host
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := f.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	for _, tc := range []struct {
		token     string
		status    int
		challenge string
	}{
		{"", http.StatusUnauthorized, `error="invalid_request"`},
		{"nope", http.StatusUnauthorized, `error="invalid_token"`},
		{"other", http.StatusForbidden, ""},
		{"read", http.StatusOK, ""},
	} {
		resp := post(tc.token)
		if resp.StatusCode != tc.status || !strings.Contains(resp.Header.Get("WWW-Authenticate"), tc.challenge) {
			t.Errorf("token %q: %s, WWW-Authenticate %q; want %d, %q", tc.token, resp.Status, resp.Header.Get("WWW-Authenticate"), tc.status, tc.challenge)
		}
	}
	// A session's later requests are checked too: a revoked token ends its use mid-session.
	cs, _ := f.connect(t, "read", "2025-11-25", nil)
	f.tokens.mu.Lock()
	delete(f.tokens.roles, sha256.Sum256([]byte("read")))
	f.tokens.mu.Unlock()
	if _, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "get_customer", Arguments: map[string]any{"id": 1}}); err == nil {
		t.Error("a call with a revoked token succeeded")
	}
	f.tokens.mu.Lock()
	f.tokens.down = true
	f.tokens.mu.Unlock()
	if resp := post("write"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("token store down: %s, want 503", resp.Status)
	}
}

// FuzzRefundArguments sends arbitrary arguments to refund over the protocol with a write token:
// whatever the shop records is within the documented bounds, and nothing else is recorded.
func FuzzRefundArguments(f *testing.F) {
	for _, s := range []string{
		`{"order_id": 10, "amount": 250, "reason": "damaged"}`,
		`{"order_id": 10, "amount": 0, "reason": "zero"}`,
		`{"order_id": 10, "amount": 1e2, "reason": "exponent"}`,
		`{"order_id": 10, "amount": 100.5, "reason": "fraction"}`,
		`{"order_id": "10", "amount": 1, "reason": "string id"}`,
		`{"order_id": 10, "amount": 10000000000, "reason": "too much"}`,
		`{"order_id": 10, "amount": 1, "reason": "   "}`,
		`{"order_id": 10, "amount": 1, "reason": "x", "approved": true}`,
		`{"order_id": 10, "amount": -1, "reason": "negative"}`,
		`[]`, `null`, `{}`,
	} {
		f.Add(s)
	}
	fx := &fixture{db: newMemStore(), tokens: &tokenTable{roles: map[[32]byte]string{sha256.Sum256([]byte("write")): "api-write"}}}
	fx.shop = newShop(fx.db, fx.tokens, slog.New(slog.DiscardHandler))
	fx.srv = httptest.NewTLSServer(fx.shop.handler(false))
	defer fx.srv.Close()
	hc := &http.Client{Transport: bearerRT{"write", fx.srv.Client().Transport, nil}}
	c := mcp.NewClient(&mcp.Implementation{Name: "fuzz", Version: "1"}, nil)
	cs, err := c.Connect(context.Background(), &mcp.StreamableClientTransport{Endpoint: fx.srv.URL + MCPPath, HTTPClient: hc, MaxRetries: -1}, nil)
	if err != nil {
		f.Fatal(err)
	}
	defer cs.Close()
	f.Fuzz(func(t *testing.T, args string) {
		if !json.Valid([]byte(args)) {
			return
		}
		fx.db.mu.Lock()
		before := len(fx.db.refunds)
		fx.db.mu.Unlock()
		res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "refund", Arguments: json.RawMessage(args)})
		fx.db.mu.Lock()
		defer fx.db.mu.Unlock()
		switch n := len(fx.db.refunds) - before; {
		case n == 0:
			return
		case n > 1:
			t.Fatalf("one call recorded %d refunds", n)
		case err != nil || res.IsError:
			t.Fatalf("a refund was recorded for a call that failed (%v, %q)", err, text(res))
		}
		rf := fx.db.refunds[before]
		if rf.OrderID < 1 || rf.Amount < 1 || rf.Amount > maxAmount || strings.TrimSpace(rf.Reason) == "" ||
			!utf8.ValidString(rf.Reason) || utf8.RuneCountInString(rf.Reason) > maxReasonRunes {
			t.Fatalf("recorded out-of-bounds refund %+v from %s", rf, args)
		}
	})
}

package wire

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// exchange is one HTTP request a real go-sdk client sent, and the server's answer.
type exchange struct {
	method      string
	header      http.Header
	body        []byte
	status      int
	contentType string
	response    []byte
}

// recorder keeps every exchange passing through it to the SDK's own handler.
type recorder struct {
	next http.Handler
	mu   sync.Mutex
	log  []*exchange
}

type teeWriter struct {
	http.ResponseWriter
	buf    bytes.Buffer
	status int
}

func (w *teeWriter) WriteHeader(s int)           { w.status = s; w.ResponseWriter.WriteHeader(s) }
func (w *teeWriter) Write(b []byte) (int, error) { w.buf.Write(b); return w.ResponseWriter.Write(b) }
func (w *teeWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (rc *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	tw := &teeWriter{ResponseWriter: w, status: http.StatusOK}
	rc.next.ServeHTTP(tw, r)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.log = append(rc.log, &exchange{method: r.Method, header: r.Header.Clone(), body: body, status: tw.status,
		contentType: tw.Header().Get("Content-Type"), response: tw.buf.Bytes()})
}

func (rc *recorder) exchanges() []*exchange {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]*exchange(nil), rc.log...)
}

var regionTool = &mcp.Tool{
	Name: "orders_in_region",
	InputSchema: json.RawMessage(`{"type":"object","properties":{` +
		`"region":{"type":"string","x-mcp-header":"Region"},` +
		`"filter":{"type":"object","properties":{"vip":{"type":"boolean","x-mcp-header":"Vip"}}},` +
		`"limit":{"type":"integer","x-mcp-header":"Limit"}}}`),
}

func testServer() *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "shop", Version: "1"}, nil)
	text := func(s string) *mcp.CallToolResult {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: s}}}
	}
	s.AddTool(&mcp.Tool{Name: "get_customer", InputSchema: json.RawMessage(`{"type":"object","properties":{"id":{"type":"integer"}}}`)},
		func(ctx context.Context, r *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			res := text(`{"id":7,"ssn":"123-45-6789"}`)
			res.StructuredContent = json.RawMessage(`{"id":7,"ssn":"123-45-6789"}`)
			return res, nil
		})
	s.AddTool(regionTool, func(ctx context.Context, r *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return text("[]"), nil
	})
	s.AddPrompt(&mcp.Prompt{Name: "greet"}, func(ctx context.Context, r *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
		return &mcp.GetPromptResult{Messages: []*mcp.PromptMessage{{Role: "user", Content: &mcp.TextContent{Text: "hi"}}}}, nil
	})
	s.AddResource(&mcp.Resource{URI: "shop://catalog", Name: "catalog"}, func(ctx context.Context, r *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
		return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: "shop://catalog", Text: "x"}}}, nil
	})
	return s
}

// capture runs a go-sdk client through a session of every kind of request against a go-sdk server
// and returns what went over the wire.
func capture(t *testing.T, stateless bool, version string, jsonResponse bool) []*exchange {
	t.Helper()
	srv := testServer()
	rc := &recorder{next: mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv },
		&mcp.StreamableHTTPOptions{Stateless: stateless, JSONResponse: jsonResponse})}
	hs := httptest.NewServer(rc)
	t.Cleanup(hs.Close)
	ctx := t.Context()
	client := mcp.NewClient(&mcp.Implementation{Name: "agent", Version: "1"}, nil)
	cs, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: hs.URL, DisableStandaloneSSE: stateless},
		&mcp.ClientSessionOptions{ProtocolVersion: version})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.ListTools(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "get_customer", Arguments: map[string]any{"id": 7}}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "orders_in_region", Arguments: map[string]any{
		"region": " Zürich ", "filter": map[string]any{"vip": true}, "limit": 5}}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.ListPrompts(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.GetPrompt(ctx, &mcp.GetPromptParams{Name: "greet"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.ListResources(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: "shop://catalog"}); err != nil {
		t.Fatal(err)
	}
	// The SDK's client sends ping without the _meta its own 2026-07-28 server requires.
	if !stateless {
		if err := cs.Ping(ctx, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := cs.Close(); err != nil {
		t.Fatal(err)
	}
	hs.Close() // waits for the handlers, so that every exchange is logged
	return rc.exchanges()
}

// Every POST a real go-sdk client sends passes ParsePost, in each protocol version it speaks, and
// every response the server sends relays through ServerMessages unchanged in meaning.
func TestSDKClientTraffic(t *testing.T) {
	for _, tc := range []struct {
		name      string
		stateless bool
		ask       string // the version the client asks for
		want      string // the version its calls run under
		json      bool   // the server answers application/json rather than text/event-stream
	}{
		{"2026-07-28 stateless", true, "", "2026-07-28", false},
		{"2026-07-28 stateless, JSON responses", true, "", "2026-07-28", true},
		{"fallback to 2025-11-25 with sessions", false, "", "2025-11-25", false},
		{"2025-11-25 with sessions, JSON responses", false, "2025-11-25", "2025-11-25", true},
		{"2025-06-18 with sessions", false, "2025-06-18", "2025-06-18", false},
		{"2025-03-26 with sessions", false, "2025-03-26", "2025-03-26", false},
		{"2024-11-05 with sessions", false, "2024-11-05", "2024-11-05", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			methods := map[string]bool{}
			relayed := map[string]bool{}
			for _, ex := range capture(t, tc.stateless, tc.ask, tc.json) {
				if ex.method == http.MethodGet {
					if _, err := ParseGet(ex.header); err != nil {
						t.Fatalf("refused the SDK client's GET %v: %v", ex.header, err)
					}
					methods["GET"] = true
					continue
				}
				if ex.method != http.MethodPost {
					continue
				}
				p, err := ParsePost(ex.header, ex.body, Limits{})
				if err != nil {
					t.Fatalf("refused what the SDK client sent:\n%s %s\n%v", ex.header, ex.body, err)
				}
				m := p.Messages[0]
				methods[m.Method()] = true
				if m.Method() == "tools/call" {
					if p.Version != tc.want {
						t.Errorf("tools/call under %s, want %s", p.Version, tc.want)
					}
					call, err := CallParams(m.Req)
					if err != nil {
						t.Fatal(err)
					}
					tool := &mcp.Tool{Name: call.Name}
					if call.Name == regionTool.Name {
						tool = regionTool
					}
					if err := CheckParamHeaders(ex.header, m.Req, tool); err != nil {
						t.Errorf("Mcp-Param-* headers the SDK sent: %v", err)
					}
					if tc.want == "2026-07-28" && call.Name == regionTool.Name && ex.header.Get("Mcp-Param-Region") == "" {
						t.Errorf("the SDK sent no Mcp-Param-Region: %v", ex.header)
					}
				}
				if ex.status < 300 && len(ex.response) > 0 && p.Messages[0].Req.IsCall() {
					relayed[mediaType(ex.contentType)] = true
				}
				checkRelay(t, ex)
			}
			want := []string{"tools/list", "tools/call", "prompts/get", "resources/read"}
			if !tc.stateless {
				want = append(want, "initialize", "notifications/initialized", "ping", "GET")
			}
			wantType := "text/event-stream"
			if tc.json {
				wantType = "application/json"
			}
			if !relayed[wantType] {
				t.Errorf("no %s response relayed (got %v)", wantType, relayed)
			}
			for _, m := range want {
				if !methods[m] {
					t.Errorf("no %s captured (got %v)", m, methods)
				}
			}
		})
	}
}

// checkRelay passes a captured response through ServerMessages and compares message by message.
func checkRelay(t *testing.T, ex *exchange) {
	t.Helper()
	if ex.status >= 300 || len(ex.response) == 0 {
		return
	}
	var out bytes.Buffer
	var seen []Message
	err := ServerMessages(t.Context(), ex.contentType, bytes.NewReader(ex.response), &out, nil, Limits{},
		func(m Message, _ string) ([]byte, error) { seen = append(seen, m); return m.Raw, nil })
	if err != nil {
		t.Fatalf("relaying %s %q: %v", ex.contentType, ex.response, err)
	}
	if len(seen) == 0 {
		t.Fatalf("no message in %q", ex.response)
	}
	var again []Message
	if err := ServerMessages(t.Context(), ex.contentType, &out, io.Discard, nil, Limits{},
		func(m Message, _ string) ([]byte, error) { again = append(again, m); return m.Raw, nil }); err != nil {
		t.Fatal(err)
	}
	if len(again) != len(seen) {
		t.Fatalf("relayed %d messages, read back %d", len(seen), len(again))
	}
	for i := range seen {
		a, _ := jsonrpc.EncodeMessage(msgOf(seen[i]))
		b, _ := jsonrpc.EncodeMessage(msgOf(again[i]))
		if !bytes.Equal(a, b) {
			t.Fatalf("message %d changed: %s -> %s", i, a, b)
		}
	}
}

func msgOf(m Message) jsonrpc.Message {
	if m.Req != nil {
		return m.Req
	}
	return m.Resp
}

// findCall returns the captured tools/call of the named tool.
func findCall(t *testing.T, exs []*exchange, tool string) *exchange {
	t.Helper()
	for _, ex := range exs {
		if ex.method == http.MethodPost && bytes.Contains(ex.body, []byte(`"method":"tools/call"`)) && bytes.Contains(ex.body, []byte(`"name":"`+tool+`"`)) {
			return ex
		}
	}
	t.Fatalf("no tools/call of %s captured", tool)
	return nil
}

// Real requests with one header or member changed are refused; the untouched request is the control.
func TestSDKTrafficTampered(t *testing.T) {
	exs := capture(t, true, "", false)
	ex := findCall(t, exs, regionTool.Name)
	check := func(h http.Header, body []byte) error {
		p, err := ParsePost(h, body, Limits{})
		if err != nil {
			return err
		}
		return CheckParamHeaders(h, p.Messages[0].Req, regionTool)
	}
	if err := check(ex.header, ex.body); err != nil {
		t.Fatalf("control: %v", err)
	}
	if got := ex.header.Get("Mcp-Param-Region"); got != EncodeHeaderValue(" Zürich ") || !strings.HasPrefix(got, "=?base64?") {
		t.Fatalf("the SDK encoded the region as %q", got)
	}
	for _, tc := range []struct {
		name string
		edit func(h http.Header) []byte
	}{
		{"Mcp-Param-Region of another region", func(h http.Header) []byte { h.Set("Mcp-Param-Region", "Bern"); return ex.body }},
		{"Mcp-Param-Region plain instead of encoded value", func(h http.Header) []byte { h.Set("Mcp-Param-Region", "Zürich"); return ex.body }},
		{"Mcp-Param-Limit dropped", func(h http.Header) []byte { h.Del("Mcp-Param-Limit"); return ex.body }},
		{"Mcp-Param-Limit changed", func(h http.Header) []byte { h.Set("Mcp-Param-Limit", "500"); return ex.body }},
		{"Mcp-Param-Vip changed", func(h http.Header) []byte { h.Set("Mcp-Param-Vip", "false"); return ex.body }},
		{"undeclared Mcp-Param header", func(h http.Header) []byte { h.Set("Mcp-Param-Tenant", "acme"); return ex.body }},
		{"body's region changed", func(h http.Header) []byte {
			return bytes.Replace(ex.body, []byte(`" Zürich "`), []byte(`"Bern"`), 1)
		}},
		{"body's limit dropped", func(h http.Header) []byte { return bytes.Replace(ex.body, []byte(`"limit":5,`), nil, 1) }},
		{"Mcp-Name of another tool", func(h http.Header) []byte { h.Set("Mcp-Name", "get_customer"); return ex.body }},
		{"body names another tool", func(h http.Header) []byte {
			return bytes.Replace(ex.body, []byte(`"name":"orders_in_region"`), []byte(`"name":"get_customer"`), 1)
		}},
		{"Mcp-Method of another method", func(h http.Header) []byte { h.Set("Mcp-Method", "tools/list"); return ex.body }},
		{"Mcp-Name dropped", func(h http.Header) []byte { h.Del("Mcp-Name"); return ex.body }},
		{"_meta version changed", func(h http.Header) []byte {
			return bytes.Replace(ex.body, []byte(`protocolVersion":"2026-07-28"`), []byte(`protocolVersion":"2025-11-25"`), 1)
		}},
		{"session id added", func(h http.Header) []byte { h.Set("Mcp-Session-Id", "x"); return ex.body }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := ex.header.Clone()
			body := tc.edit(h)
			err := check(h, body)
			var e *Error
			if !errors.As(err, &e) || e.HTTPStatus != http.StatusBadRequest {
				t.Fatalf("got %v", err)
			}
			if strings.Contains(e.Message, "Zürich") || strings.Contains(e.Message, "Bern") {
				t.Fatalf("the error quotes an argument: %s", e.Message)
			}
		})
	}
	// Regenerating the headers from the checked body gives what the client sent.
	p, _ := ParsePost(ex.header, ex.body, Limits{})
	call, _ := CallParams(p.Messages[0].Req)
	regen, err := ParamHeaders(call, regionTool)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"Mcp-Param-Region", "Mcp-Param-Limit", "Mcp-Param-Vip"} {
		if regen.Get(k) != ex.header.Get(k) {
			t.Errorf("%s: regenerated %q, sent %q", k, regen.Get(k), ex.header.Get(k))
		}
	}
}

func mediaType(ct string) string {
	mt, _, _ := strings.Cut(ct, ";")
	return strings.TrimSpace(mt)
}

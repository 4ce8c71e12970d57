package wire

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func request(t *testing.T, raw string) *jsonrpc.Request {
	t.Helper()
	p, err := ParsePost(hdr(), []byte(raw), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	return p.Messages[0].Req
}

func TestCallParams(t *testing.T) {
	c, err := CallParams(request(t, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"refund",`+
		`"arguments":{"order_id":12345678901234567890,"amount":10.50,"tags":["a"],"note":null},`+
		`"_meta":{"progressToken":"p-1","traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","x":1}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "refund" || c.ProgressToken != "p-1" || !strings.HasPrefix(c.Traceparent, "00-0af7") || c.Tracestate != "" {
		t.Fatalf("got %+v", c)
	}
	// Numbers are kept as written: no float rounding of a large id, no reformatting of 10.50.
	if c.Arguments["order_id"] != json.Number("12345678901234567890") || c.Arguments["amount"] != json.Number("10.50") {
		t.Fatalf("arguments %#v", c.Arguments)
	}
	if _, ok := c.Meta["x"]; !ok {
		t.Fatal("_meta members lost")
	}
	n, err := CallParams(request(t, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","_meta":{"progressToken":7}}}`))
	if err != nil || n.ProgressToken != json.Number("7") || n.Arguments != nil {
		t.Fatalf("numeric token: %+v, %v", n, err)
	}

	for _, tc := range []struct{ name, params, has string }{
		{"no name", `{"arguments":{}}`, "params.name"},
		{"empty name", `{"name":""}`, "params.name"},
		{"name not a string", `{"name":1}`, "params.name"},
		{"name in other case only", `{"Name":"refund"}`, "params.name"},
		{"arguments an array", `{"name":"a","arguments":[1]}`, "arguments"},
		{"arguments null", `{"name":"a","arguments":null}`, "arguments"},
		{"_meta not an object", `{"name":"a","_meta":1}`, "_meta"},
		{"progressToken an object", `{"name":"a","_meta":{"progressToken":{}}}`, "progressToken"},
		{"traceparent a number", `{"name":"a","_meta":{"traceparent":1}}`, "traceparent"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Built directly: ParsePost already refuses most of these bodies.
			_, err := CallParams(&jsonrpc.Request{ID: mustID(t, 1), Method: "tools/call", Params: json.RawMessage(tc.params)})
			var e *Error
			if !errors.As(err, &e) || e.Code != jsonrpc.CodeInvalidParams || !strings.Contains(e.Message, tc.has) {
				t.Fatalf("got %v", err)
			}
		})
	}
	if _, err := CallParams(request(t, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)); err == nil {
		t.Fatal("tools/list read as a call")
	}
}

func TestArgsDigest(t *testing.T) {
	digest := func(raw string) string {
		t.Helper()
		c, err := CallParams(request(t, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":`+raw+`}}`))
		if err != nil {
			t.Fatal(err)
		}
		d, err := ArgsDigest(c.Arguments)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	a := digest(`{"b":1,"a":{"y":[1,"<x>"],"x":true}}`)
	if b := digest(` { "a" : { "x" : true , "y" : [ 1 , "<x>" ] } , "b" : 1 } `); a != b {
		t.Fatalf("member order and spacing changed the digest: %s %s", a, b)
	}
	if !strings.HasPrefix(a, "sha256:") || len(a) != len("sha256:")+64 {
		t.Fatalf("digest %q", a)
	}
	for _, other := range []string{`{"b":2,"a":{"y":[1,"<x>"],"x":true}}`, `{"b":1,"a":{"y":["<x>",1],"x":true}}`,
		`{"b":1.0,"a":{"y":[1,"<x>"],"x":true}}`, `{"b":"1","a":{"y":[1,"<x>"],"x":true}}`} {
		if digest(other) == a {
			t.Errorf("%s digests as %s", other, a)
		}
	}
	canon, err := Canonical(map[string]any{"z": json.Number("1e3"), "a": []any{"é<>", nil, false}})
	if err != nil || string(canon) != `{"a":["é<>",null,false],"z":1e3}` {
		t.Fatalf("canonical %s, %v", canon, err)
	}
	if empty, _ := ArgsDigest(nil); empty != digest(`{}`) {
		t.Fatal("no arguments and {} digest differently")
	}
	if _, err := Canonical(map[string]any{"f": 1.5}); err == nil {
		t.Fatal("a float64 (not decoded with UseNumber) was encoded")
	}
}

func TestListsAndResults(t *testing.T) {
	raw := json.RawMessage(`{"tools":[{"name":"get_customer","description":"d","inputSchema":{"type":"object"}},` +
		`{"name":"secret_tool","description":"hidden","inputSchema":{"type":"object"}}],"nextCursor":"c2"}`)
	l, err := DecodeList[mcp.ListToolsResult](raw)
	if err != nil || len(l.Tools) != 2 {
		t.Fatalf("%+v %v", l, err)
	}
	l.Tools = l.Tools[:1]
	out, err := EncodeResponse(mustID(t, 4), l)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "secret_tool") || strings.Contains(string(out), "hidden") || !strings.Contains(string(out), `"nextCursor":"c2"`) {
		t.Fatalf("filtered list %s", out)
	}
	m, e := parseMessage(out, Limits{}.WithDefaults())
	if e != nil || m.Resp == nil || m.Resp.ID != mustID(t, 4) {
		t.Fatalf("encoded response %s: %v", out, e)
	}
	if _, err := DecodeList[mcp.ListPromptsResult](json.RawMessage(`{"prompts":[{"name":"p"}]}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeList[mcp.ListResourcesResult](json.RawMessage(`{"resources":"x"}`)); !errors.Is(err, ErrServerMessage) {
		t.Fatalf("malformed list: %v", err)
	}

	r, err := DecodeToolResult(json.RawMessage(`{"content":[{"type":"text","text":"{\"ssn\":\"1\"}"},{"type":"image","data":"AA==","mimeType":"image/png"}],` +
		`"structuredContent":{"id":12345678901234567890,"ssn":"123-45-6789"},"isError":false}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Content) != 2 || string(r.Structured) != `{"id":12345678901234567890,"ssn":"123-45-6789"}` {
		t.Fatalf("%+v %s", r.CallToolResult, r.Structured)
	}
	r.Structured = json.RawMessage(`{"id":12345678901234567890,"ssn":"***"}`)
	r.Content = r.Content[1:]
	enc, err := EncodeToolResult(r)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(enc), "123-45-6789") || !strings.Contains(string(enc), `"id":12345678901234567890`) || strings.Contains(string(enc), `ssn\"`) {
		t.Fatalf("masked result %s", enc)
	}
	back, err := DecodeToolResult(enc)
	if err != nil || len(back.Content) != 1 || string(back.Structured) != string(r.Structured) {
		t.Fatalf("round trip %+v %v", back, err)
	}
}

func mustID(t *testing.T, n int) jsonrpc.ID {
	t.Helper()
	id, err := jsonrpc.MakeID(float64(n))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestSessionVersion(t *testing.T) {
	post := func(h http.Header, body string) *Post {
		t.Helper()
		p, err := ParsePost(h, []byte(body), Limits{})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name       string
		p          *Post
		negotiated string
		ok         bool
	}{
		{"ok: header names the session's version", post(hdr("Mcp-Protocol-Version", "2025-11-25"), call25), "2025-11-25", true},
		{"header names another version", post(hdr("Mcp-Protocol-Version", "2025-06-18"), call25), "2025-11-25", false},
		{"header missing where required", post(hdr(), call25), "2025-06-18", false},
		{"ok: header optional on 2025-03-26", post(hdr(), call25), "2025-03-26", true},
		{"batch without header in a 2024-11-05 session", post(hdr(), "["+call25+"]"), "2024-11-05", false},
		{"ok: batch in a 2025-03-26 session", post(hdr(), "["+call25+"]"), "2025-03-26", true},
		{"initialize again", post(hdr(), init25), "2025-11-25", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckSessionVersion(tc.p, tc.negotiated)
			if tc.ok != (err == nil) {
				t.Fatalf("got %v", err)
			}
			if err == nil && tc.p.Version != tc.negotiated {
				t.Fatalf("version %s", tc.p.Version)
			}
		})
	}
	if v, err := InitializeResultVersion(json.RawMessage(`{"protocolVersion":"2025-06-18","capabilities":{},"serverInfo":{"name":"s","version":"1"}}`)); err != nil || v != "2025-06-18" {
		t.Fatalf("%q %v", v, err)
	}
	if _, err := InitializeResultVersion(json.RawMessage(`{"protocolVersion":"2030-01-01","capabilities":{},"serverInfo":{"name":"s","version":"1"}}`)); !errors.Is(err, ErrServerMessage) {
		t.Fatalf("unknown settled version: %v", err)
	}
}

func TestParseGet(t *testing.T) {
	g := func(kv ...string) http.Header {
		h := http.Header{"Accept": {"text/event-stream"}}
		for i := 0; i+1 < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	for _, tc := range []struct {
		name   string
		h      http.Header
		status int
	}{
		{"ok: new stream", g("Mcp-Protocol-Version", "2025-11-25"), 0},
		{"ok: resumption", g("Mcp-Protocol-Version", "2025-11-25", "Last-Event-ID", "abc_3"), 0},
		{"accept json only", g("Accept", "application/json"), 406},
		{"2026-07-28 has no GET stream", g("Mcp-Protocol-Version", "2026-07-28"), 405},
		{"unknown version", g("Mcp-Protocol-Version", "1.0"), 400},
		{"event id with a line break", g("Last-Event-ID", "a\nb"), 400},
		{"event id too long", g("Last-Event-ID", strings.Repeat("a", MaxEventIDBytes+1)), 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseGet(tc.h)
			if tc.status == 0 {
				if err != nil || got.LastEventID != tc.h.Get("Last-Event-ID") {
					t.Fatalf("%+v %v", got, err)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) || e.HTTPStatus != tc.status {
				t.Fatalf("got %v", err)
			}
		})
	}
}

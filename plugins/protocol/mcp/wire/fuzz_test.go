package wire

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
)

func FuzzParsePost(f *testing.F) {
	for _, s := range []struct{ body, version, method, name string }{
		{call26, "2026-07-28", "tools/call", "get_customer"},
		{call25, "2025-11-25", "", ""},
		{init25, "", "", ""},
		{"[" + call25 + "," + notif + "]", "2025-03-26", "", ""},
		{`{"jsonrpc":"2.0","id":1.5,"method":"ping"}`, "", "", ""},
		{`{"jsonrpc":"2.0","id":null,"method":"tools/call","params":{"name":"a","NAME":"b"}}`, "", "", ""},
		{`{"jsonrpc":"2.0","id":5,"result":{},"error":{"code":1,"message":"x"}}`, "", "", ""},
		{`[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":1,"method":"ping"}]`, "", "", ""},
		{`{"jsonrpc":"2.0","method":"tools/call","params":{"name":"a\ud800"}}`, "2026-07-28", "tools/call", "a"},
	} {
		f.Add([]byte(s.body), s.version, s.method, s.name)
	}
	f.Fuzz(func(t *testing.T, body []byte, version, method, name string) {
		h := hdr("Mcp-Protocol-Version", version, "Mcp-Method", method, "Mcp-Name", name)
		p, err := ParsePost(h, body, Limits{MaxMessageBytes: 4096, MaxBatch: 8, MaxDepth: 16})
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.HTTPStatus < 400 || e.HTTPStatus > 499 || e.Message == "" {
				t.Fatalf("refusal %v (%T) is not a 4xx *Error", err, err)
			}
			return
		}
		// What was accepted holds, read again by a different parser, to what the checks promise.
		if !json.Valid(body) {
			t.Fatalf("accepted invalid JSON %q", body)
		}
		if _, ok := VersionRules(p.Version); !ok {
			t.Fatalf("version %q in force is not known", p.Version)
		}
		if p.Batch && !p.Rules().Batches {
			t.Fatalf("batch accepted under %s", p.Version)
		}
		if len(p.Messages) == 0 || len(p.Messages) > 8 {
			t.Fatalf("%d messages", len(p.Messages))
		}
		calls := map[any]bool{}
		for _, m := range p.Messages {
			var members map[string]json.RawMessage
			d := json.NewDecoder(bytes.NewReader(m.Raw))
			d.UseNumber()
			if err := d.Decode(&members); err != nil {
				t.Fatalf("accepted message %q: %v", m.Raw, err)
			}
			if string(members["jsonrpc"]) != `"2.0"` {
				t.Fatalf("accepted jsonrpc %s", members["jsonrpc"])
			}
			if (m.Req == nil) == (m.Resp == nil) {
				t.Fatalf("message %q is neither or both request and response", m.Raw)
			}
			if id, ok := members["id"]; ok {
				var v any
				d := json.NewDecoder(bytes.NewReader(id))
				d.UseNumber()
				_ = d.Decode(&v)
				switch v := v.(type) {
				case string:
				case json.Number:
					if strings.ContainsAny(string(v), ".eE") {
						t.Fatalf("accepted id %s", v)
					}
				default:
					t.Fatalf("accepted id %s", id)
				}
			}
			if m.Req != nil {
				notification := strings.HasPrefix(m.Req.Method, "notifications/")
				if notification == m.Req.IsCall() {
					t.Fatalf("accepted %s with id %v", m.Req.Method, m.Req.ID)
				}
				if m.Req.IsCall() {
					if calls[m.Req.ID.Raw()] {
						t.Fatalf("accepted duplicate id %v", m.Req.ID)
					}
					calls[m.Req.ID.Raw()] = true
				}
			}
		}
		if method != "" && (len(p.Messages) != 1 || p.Messages[0].Method() != method) {
			t.Fatalf("accepted Mcp-Method %q for %q", method, body)
		}
		if version == "2026-07-28" && p.Messages[0].Req != nil && p.Messages[0].Method() != method {
			t.Fatalf("accepted a 2026-07-28 request without its Mcp-Method")
		}
	})
}

func FuzzServerMessages(f *testing.F) {
	for _, s := range []struct {
		body string
		sse  bool
	}{
		{resp1, false},
		{"[" + resp1 + "," + progN + "]", false},
		{"id: s_1\nevent: message\ndata: " + progN + "\n\nid: s_2\ndata: " + resp1 + "\n\n", true},
		{"id: p\nevent: prime\ndata: \n\n: ping\n\nretry: 100\n\n", true},
		{"data: {\"jsonrpc\":\"2.0\",\ndata: \"id\":1,\"result\":{}}\r\n\r\n", true},
		{"event: other\ndata: not json\n\n", true},
		{"data: " + sreq + "\n\n", true},
		{`{"jsonrpc":"2.0","id":1,"result":{},"result":{}}`, false},
	} {
		f.Add([]byte(s.body), s.sse)
	}
	f.Fuzz(func(t *testing.T, body []byte, stream bool) {
		ct := "application/json"
		if stream {
			ct = "text/event-stream"
		}
		l := Limits{MaxMessageBytes: 2048, MaxBatch: 8, MaxDepth: 16}
		var first []string
		var out bytes.Buffer
		err := ServerMessages(context.Background(), ct, bytes.NewReader(body), &out, nil, l, func(m Message, id string) ([]byte, error) {
			if (m.Req == nil) == (m.Resp == nil) || !json.Valid(m.Raw) {
				t.Fatalf("fn got %q", m.Raw)
			}
			first = append(first, id+"\x00"+string(m.Raw))
			return m.Raw, nil
		})
		if err != nil {
			if out.Len() > 0 && !stream {
				t.Fatalf("a JSON body written in part before failing: %q", out.String())
			}
			return
		}
		// What was written reads back as the same messages (compacted), with the same event ids.
		var second []string
		err = ServerMessages(context.Background(), ct, bytes.NewReader(out.Bytes()), io.Discard, nil, l, func(m Message, id string) ([]byte, error) {
			second = append(second, id+"\x00"+string(m.Raw))
			return m.Raw, nil
		})
		if err != nil {
			t.Fatalf("output %q does not read back: %v", out.String(), err)
		}
		if len(first) != len(second) {
			t.Fatalf("%d messages relayed, %d read back from %q", len(first), len(second), out.String())
		}
		for i := range first {
			a, b := strings.SplitN(first[i], "\x00", 2), strings.SplitN(second[i], "\x00", 2)
			var ca, cb bytes.Buffer
			_ = json.Compact(&ca, []byte(a[1]))
			_ = json.Compact(&cb, []byte(b[1]))
			if a[0] != b[0] || ca.String() != cb.String() {
				t.Fatalf("message %d: %q became %q", i, first[i], second[i])
			}
		}
	})
}

func FuzzCallParams(f *testing.F) {
	for _, s := range []string{
		`{"name":"a","arguments":{"b":1,"a":{"y":[1.0,"<x>"],"x":true}}}`,
		`{"name":"a","arguments":{"n":12345678901234567890,"e":1e400,"s":"\u00e9\ud83d\ude00"},"_meta":{"progressToken":3}}`,
		`{"name":"a","arguments":{}}`,
		`{"name":"a","arguments":{"k":null,"K":[]}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, params []byte) {
		body := []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":` + string(params) + `}`)
		p, err := ParsePost(hdr(), body, Limits{MaxDepth: 16})
		if err != nil {
			return
		}
		c, err := CallParams(p.Messages[0].Req)
		if err != nil {
			return
		}
		d1, err := ArgsDigest(c.Arguments)
		if err != nil {
			t.Fatalf("digest of accepted arguments %s: %v", c.RawArguments, err)
		}
		canon, _ := Canonical(c.Arguments)
		if !json.Valid(canon) {
			t.Fatalf("canonical form %q is not JSON", canon)
		}
		// Read back, re-encoded in another member order and spacing: the same digest.
		var again map[string]any
		dec := json.NewDecoder(bytes.NewReader(canon))
		dec.UseNumber()
		if err := dec.Decode(&again); err != nil && c.Arguments != nil {
			t.Fatalf("canonical form %q does not decode: %v", canon, err)
		}
		if c.Arguments == nil {
			again = nil
		}
		if d2, _ := ArgsDigest(again); d2 != d1 {
			t.Fatalf("digest changed after a round trip: %q", canon)
		}
	})
}

func FuzzHeaderValue(f *testing.F) {
	for _, s := range []string{"get_customer", " Zürich ", "=?base64?eA==?=", "a\nb", "", "\t"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		enc := EncodeHeaderValue(s)
		for i := 0; i < len(enc); i++ {
			if enc[i] < 0x20 || enc[i] > 0x7e {
				t.Fatalf("%q encodes to %q, not printable ASCII", s, enc)
			}
		}
		if dec, ok := DecodeHeaderValue(enc); !ok || dec != s {
			t.Fatalf("%q -> %q -> %q", s, enc, dec)
		}
		if !headerEquals(enc, s) {
			t.Fatalf("%q does not stand for %q", enc, s)
		}
	})
}

// FuzzMessageMatchesSDK holds parseMessage's decoding (fromMembers) to the SDK's own: every message
// the strict checks admit decodes with jsonrpc.DecodeMessage to the same request or response.
func FuzzMessageMatchesSDK(f *testing.F) {
	for _, s := range []string{
		call26, call25, init25, notif, resp1, progN, sreq,
		`{"jsonrpc":"2.0","id":"a\u00e9","method":"tools\/call","params":{"name":"x"}}`,
		`{"params":{},"method":"ping","id":9007199254740991,"jsonrpc":"2.0"}`,
		`{"jsonrpc":"2.0","id":-3,"error":{"code":-32010,"message":"no \"way\"","data":{"policy":["p"]}}}`,
		`{"jsonrpc":"2.0","id":"r","result":{ "content" : [ ] }}`,
		`{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		got, perr := parseMessage(raw, Limits{MaxMessageBytes: DefaultMaxMessageBytes, MaxDepth: 64})
		if perr != nil {
			return
		}
		want, err := jsonrpc.DecodeMessage(raw)
		if err != nil {
			t.Fatalf("admitted %q, which the SDK does not decode: %v", raw, err)
		}
		same := func(a, b json.RawMessage) bool {
			if (a == nil) != (b == nil) {
				return false
			}
			var x, y any
			ea, eb := json.Unmarshal(a, &x), json.Unmarshal(b, &y)
			return (a == nil && b == nil) || (ea == nil && eb == nil && reflect.DeepEqual(x, y))
		}
		switch w := want.(type) {
		case *jsonrpc.Request:
			if got.Req == nil || got.Req.ID != w.ID || got.Req.Method != w.Method || !same(got.Req.Params, w.Params) {
				t.Fatalf("%q: got %+v, the SDK reads %+v", raw, got.Req, w)
			}
		case *jsonrpc.Response:
			if got.Resp == nil || got.Resp.ID != w.ID || !same(got.Resp.Result, w.Result) || (got.Resp.Error == nil) != (w.Error == nil) {
				t.Fatalf("%q: got %+v, the SDK reads %+v", raw, got.Resp, w)
			}
			if w.Error != nil {
				ge, we := got.Resp.Error.(*jsonrpc.Error), w.Error.(*jsonrpc.Error)
				if ge.Code != we.Code || ge.Message != we.Message || !same(ge.Data, we.Data) {
					t.Fatalf("%q: error %+v, the SDK reads %+v", raw, ge, we)
				}
			}
		default:
			t.Fatalf("%q: the SDK reads %T", raw, want)
		}
	})
}

package wire

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
)

// hdr builds client headers: the standard content headers plus pairs of name, value.
func hdr(kv ...string) http.Header {
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("Accept", "application/json, text/event-stream")
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			h.Del(kv[i])
			continue
		}
		h.Add(kv[i], kv[i+1])
	}
	return h
}

const (
	call26 = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_customer","arguments":{"id":7},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`
	call25 = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_customer","arguments":{"id":7}}}`
	init25 = `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"c","version":"1"}}}`
	notif  = `{"jsonrpc":"2.0","method":"notifications/initialized","params":{}}`
)

var v26 = []string{"Mcp-Protocol-Version", "2026-07-28", "Mcp-Method", "tools/call", "Mcp-Name", "get_customer"}

func with(base []string, kv ...string) []string { return append(append([]string{}, base...), kv...) }

// Each refusal class beside the legitimate form it imitates: the "ok" rows are the controls.
func TestParsePost(t *testing.T) {
	tests := []struct {
		name   string
		h      http.Header
		body   string
		ok     bool
		status int
		code   int64
		has    string // in the message
	}{
		// Content-Type and Accept.
		{"ok: 2026-07-28 tools/call", hdr(v26...), call26, true, 0, 0, ""},
		{"ok: charset utf-8", hdr(with(v26, "Content-Type", "", "Content-Type", "application/json; charset=UTF-8")...), call26, true, 0, 0, ""},
		{"content type text/plain", hdr(with(v26, "Content-Type", "", "Content-Type", "text/plain")...), call26, false, 415, jsonrpc.CodeInvalidRequest, "Content-Type"},
		{"content type other charset", hdr(with(v26, "Content-Type", "", "Content-Type", "application/json; charset=latin1")...), call26, false, 415, jsonrpc.CodeInvalidRequest, "charset"},
		{"content type twice", hdr(with(v26, "Content-Type", "application/json")...), call26, false, 415, jsonrpc.CodeInvalidRequest, "Content-Type"},
		{"accept json only", hdr(with(v26, "Accept", "", "Accept", "application/json")...), call26, false, 406, jsonrpc.CodeInvalidRequest, "Accept"},
		{"ok: accept */*", hdr(with(v26, "Accept", "", "Accept", "*/*")...), call26, true, 0, 0, ""},
		{"last-event-id on POST", hdr(with(v26, "Last-Event-ID", "x_1")...), call26, false, 400, jsonrpc.CodeInvalidRequest, "Last-Event-ID"},

		// Versions.
		{"unknown version header", hdr("Mcp-Protocol-Version", "2099-01-01"), call25, false, 400, CodeUnsupportedProtocolVersion, "2025-11-25"},
		{"version header twice", hdr("Mcp-Protocol-Version", "2025-11-25", "Mcp-Protocol-Version", "2025-06-18"), call25, false, 400, jsonrpc.CodeInvalidRequest, "more than once"},
		{"ok: 2025-11-25 tools/call", hdr("Mcp-Protocol-Version", "2025-11-25"), call25, true, 0, 0, ""},
		{"ok: initialize", hdr(), init25, true, 0, 0, ""},
		{"initialize asks unknown version", hdr(), strings.Replace(init25, "2025-11-25", "1999-01-01", 1), false, 400, CodeUnsupportedProtocolVersion, "protocolVersion"},
		{"initialize in a batch", hdr(), "[" + init25 + "]", false, 400, jsonrpc.CodeInvalidRequest, "alone"},

		// Framing.
		{"empty body", hdr(), "", false, 400, jsonrpc.CodeParseError, "empty"},
		{"not JSON", hdr(), "{", false, 400, jsonrpc.CodeParseError, "JSON"},
		{"two values", hdr(), call25 + call25, false, 400, jsonrpc.CodeParseError, "more than one"},
		{"scalar body", hdr(), `"x"`, false, 400, jsonrpc.CodeParseError, "neither"},
		{"missing jsonrpc", hdr(), `{"id":1,"method":"ping"}`, false, 400, jsonrpc.CodeInvalidRequest, `"jsonrpc"`},
		{"jsonrpc 1.0", hdr(), `{"jsonrpc":"1.0","id":1,"method":"ping"}`, false, 400, jsonrpc.CodeInvalidRequest, `"jsonrpc"`},
		{"ok: ping", hdr(), `{"jsonrpc":"2.0","id":1,"method":"ping"}`, true, 0, 0, ""},
		{"extra member", hdr(), `{"jsonrpc":"2.0","id":1,"method":"ping","x":1}`, false, 400, jsonrpc.CodeInvalidRequest, `"x"`},
		{"duplicate method", hdr(), `{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call"}`, false, 400, jsonrpc.CodeParseError, "same name"},
		{"duplicate name in params", hdr(), `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}`, false, 400, jsonrpc.CodeParseError, "same name"},
		{"case-folded duplicate", hdr(), `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","NAME":"b"}}`, false, 400, jsonrpc.CodeParseError, "case"},
		{"case-folded duplicate (kelvin sign)", hdr(), `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"k":1,"\u212a":2}}}`, false, 400, jsonrpc.CodeParseError, "case"},
		{"ok: a value equal to a member name but for case", hdr(), `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"NAME","arguments":{"name":"Name"}}}`, true, 0, 0, ""},
		{"ok: distinct names", hdr(), `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"k":1,"kk":2}}}`, true, 0, 0, ""},
		{"invalid UTF-8", hdr(), "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"a\xff\"}}", false, 400, jsonrpc.CodeParseError, "UTF-8"},
		{"lone surrogate", hdr(), `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a\ud800"}}`, false, 400, jsonrpc.CodeParseError, "UTF-8"},
		{"too deep", hdr(), `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"x":` + strings.Repeat("[", 70) + strings.Repeat("]", 70) + `}}}`, false, 400, jsonrpc.CodeParseError, "deeper"},
		{"params array", hdr(), `{"jsonrpc":"2.0","id":1,"method":"ping","params":[]}`, false, 400, jsonrpc.CodeInvalidRequest, "params"},
		{"request with result", hdr(), `{"jsonrpc":"2.0","id":1,"method":"ping","result":{}}`, false, 400, jsonrpc.CodeInvalidRequest, "result"},
		{"empty method", hdr(), `{"jsonrpc":"2.0","id":1,"method":""}`, false, 400, jsonrpc.CodeInvalidRequest, "method"},

		// Ids.
		{"null id", hdr(), `{"jsonrpc":"2.0","id":null,"method":"tools/call","params":{"name":"a"}}`, false, 400, jsonrpc.CodeInvalidRequest, "null"},
		{"float id", hdr(), `{"jsonrpc":"2.0","id":1.5,"method":"ping"}`, false, 400, jsonrpc.CodeInvalidRequest, "integer"},
		{"exponent id", hdr(), `{"jsonrpc":"2.0","id":1e2,"method":"ping"}`, false, 400, jsonrpc.CodeInvalidRequest, "integer"},
		{"huge id", hdr(), `{"jsonrpc":"2.0","id":9007199254740993,"method":"ping"}`, false, 400, jsonrpc.CodeInvalidRequest, "outside"},
		{"bool id", hdr(), `{"jsonrpc":"2.0","id":true,"method":"ping"}`, false, 400, jsonrpc.CodeInvalidRequest, "boolean"},
		{"object id", hdr(), `{"jsonrpc":"2.0","id":{},"method":"ping"}`, false, 400, jsonrpc.CodeInvalidRequest, "object"},
		{"ok: string id", hdr(), `{"jsonrpc":"2.0","id":"a-1","method":"ping"}`, true, 0, 0, ""},
		{"ok: largest safe id", hdr(), `{"jsonrpc":"2.0","id":-9007199254740991,"method":"ping"}`, true, 0, 0, ""},

		// Requests and notifications.
		{"notification with id", hdr(), `{"jsonrpc":"2.0","id":3,"method":"notifications/cancelled","params":{"requestId":1}}`, false, 400, jsonrpc.CodeInvalidRequest, "notification"},
		{"request without id", hdr(), `{"jsonrpc":"2.0","method":"tools/call","params":{"name":"a"}}`, false, 400, jsonrpc.CodeInvalidRequest, "needs an id"},
		{"ok: notification", hdr(), notif, true, 0, 0, ""},

		// Responses from the client.
		{"ok: response", hdr(), `{"jsonrpc":"2.0","id":5,"result":{}}`, true, 0, 0, ""},
		{"ok: error response", hdr(), `{"jsonrpc":"2.0","id":5,"error":{"code":-1,"message":"no"}}`, true, 0, 0, ""},
		{"response with result and error", hdr(), `{"jsonrpc":"2.0","id":5,"result":{},"error":{"code":1,"message":"x"}}`, false, 400, jsonrpc.CodeInvalidRequest, "exactly one"},
		{"response without id", hdr(), `{"jsonrpc":"2.0","result":{}}`, false, 400, jsonrpc.CodeInvalidRequest, "neither"},
		{"response with params", hdr(), `{"jsonrpc":"2.0","id":5,"result":{},"params":{}}`, false, 400, jsonrpc.CodeInvalidRequest, "params"},
		{"error without code", hdr(), `{"jsonrpc":"2.0","id":5,"error":{"message":"x"}}`, false, 400, jsonrpc.CodeInvalidRequest, "code"},
		{"error extra member", hdr(), `{"jsonrpc":"2.0","id":5,"error":{"code":1,"message":"x","y":1}}`, false, 400, jsonrpc.CodeInvalidRequest, "only"},

		// Batches.
		{"ok: batch on 2025-03-26", hdr("Mcp-Protocol-Version", "2025-03-26"), "[" + call25 + "," + notif + "]", true, 0, 0, ""},
		{"ok: batch without header (2025-03-26 assumed)", hdr(), "[" + call25 + "]", true, 0, 0, ""},
		{"batch on 2025-06-18", hdr("Mcp-Protocol-Version", "2025-06-18"), "[" + call25 + "]", false, 400, jsonrpc.CodeInvalidRequest, "batches"},
		{"batch on 2024-11-05", hdr("Mcp-Protocol-Version", "2024-11-05"), "[" + call25 + "]", false, 400, jsonrpc.CodeInvalidRequest, "batches"},
		{"empty batch", hdr(), "[]", false, 400, jsonrpc.CodeInvalidRequest, "empty"},
		{"duplicate ids in batch", hdr(), "[" + call25 + "," + call25 + "]", false, 400, jsonrpc.CodeInvalidRequest, "share an id"},
		{"ok: same id request and response", hdr(), "[" + call25 + `,{"jsonrpc":"2.0","id":1,"result":{}}]`, true, 0, 0, ""},
		{"duplicate response ids", hdr(), `[{"jsonrpc":"2.0","id":1,"result":{}},{"jsonrpc":"2.0","id":1,"result":{}}]`, false, 400, jsonrpc.CodeInvalidRequest, "same id"},
		{"headers with a batch", hdr("Mcp-Method", "tools/call"), "[" + call25 + "]", false, 400, CodeHeaderMismatch, "batch"},

		// Standard headers.
		{"2026 without Mcp-Method", hdr(with(v26, "Mcp-Method", "")...), call26, false, 400, CodeHeaderMismatch, "requires the Mcp-Method"},
		{"2026 without Mcp-Name", hdr(with(v26, "Mcp-Name", "")...), call26, false, 400, CodeHeaderMismatch, "requires the Mcp-Name"},
		{"Mcp-Method disagrees", hdr(with(v26, "Mcp-Method", "", "Mcp-Method", "tools/list")...), call26, false, 400, CodeHeaderMismatch, "Mcp-Method"},
		{"Mcp-Name disagrees", hdr(with(v26, "Mcp-Name", "", "Mcp-Name", "list_orders")...), call26, false, 400, CodeHeaderMismatch, "Mcp-Name"},
		{"Mcp-Name disagrees on old version", hdr("Mcp-Protocol-Version", "2025-11-25", "Mcp-Name", "other"), call25, false, 400, CodeHeaderMismatch, "Mcp-Name"},
		{"Mcp-Method disagrees on old version", hdr("Mcp-Protocol-Version", "2025-11-25", "Mcp-Method", "ping"), call25, false, 400, CodeHeaderMismatch, "Mcp-Method"},
		{"ok: matching headers on old version", hdr("Mcp-Protocol-Version", "2025-11-25", "Mcp-Method", "tools/call", "Mcp-Name", "get_customer"), call25, true, 0, 0, ""},
		{"ok: base64 Mcp-Name", hdr(with(v26, "Mcp-Name", "", "Mcp-Name", "=?base64?Z2V0X2N1c3RvbWVy?=")...), call26, true, 0, 0, ""},
		{"base64 Mcp-Name of another name", hdr(with(v26, "Mcp-Name", "", "Mcp-Name", "=?base64?b3RoZXI=?=")...), call26, false, 400, CodeHeaderMismatch, "Mcp-Name"},
		{"Mcp-Name on ping", hdr("Mcp-Name", "x"), `{"jsonrpc":"2.0","id":1,"method":"ping"}`, false, 400, CodeHeaderMismatch, "only with"},
		{"Mcp-Method twice", hdr(with(v26, "Mcp-Method", "tools/call")...), call26, false, 400, jsonrpc.CodeInvalidRequest, "more than once"},
		{"Mcp-Method on a response", hdr("Mcp-Method", "ping"), `{"jsonrpc":"2.0","id":5,"result":{}}`, false, 400, CodeHeaderMismatch, "response"},
		{"ok: Mcp-Param on tools/call", hdr(with(v26, "Mcp-Param-Region", "eu")...), call26, true, 0, 0, ""},
		{"Mcp-Param on ping", hdr("Mcp-Param-Region", "eu"), `{"jsonrpc":"2.0","id":1,"method":"ping"}`, false, 400, CodeHeaderMismatch, "tools/call"},
		{"Mcp-Param malformed base64", hdr(with(v26, "Mcp-Param-Region", "=?base64?***?=")...), call26, false, 400, CodeHeaderMismatch, "malformed"},

		// _meta protocol version (2026-07-28).
		{"2026 call without meta version", hdr(v26...), call25, false, 400, jsonrpc.CodeInvalidParams, "_meta"},
		{"meta version disagrees", hdr(v26...), strings.Replace(call26, `"2026-07-28"`, `"2025-11-25"`, 1), false, 400, CodeHeaderMismatch, "different"},
		{"meta version without header", hdr(), call26, false, 400, CodeHeaderMismatch, "needs the Mcp-Protocol-Version"},
		{"ok: 2026 notification without meta", hdr("Mcp-Protocol-Version", "2026-07-28", "Mcp-Method", "notifications/cancelled"), `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}`, true, 0, 0, ""},

		// Sessions.
		{"session id on 2026", hdr(with(v26, "Mcp-Session-Id", "abc")...), call26, false, 400, jsonrpc.CodeInvalidRequest, "no sessions"},
		{"ok: session id on 2025-11-25", hdr("Mcp-Protocol-Version", "2025-11-25", "Mcp-Session-Id", "abc"), call25, true, 0, 0, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParsePost(tc.h, []byte(tc.body), Limits{})
			if tc.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if len(p.Messages) == 0 {
					t.Fatal("no messages")
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("got %v (%T), want *Error", err, err)
			}
			if e.HTTPStatus != tc.status || e.Code != tc.code || !strings.Contains(e.Message, tc.has) {
				t.Fatalf("got %d/%d %q, want %d/%d containing %q", e.HTTPStatus, e.Code, e.Message, tc.status, tc.code, tc.has)
			}
		})
	}
}

func TestParsePostVersion(t *testing.T) {
	for _, tc := range []struct {
		h    http.Header
		body string
		want string
	}{
		{hdr(), call25, DefaultVersion},
		{hdr("Mcp-Protocol-Version", "2025-06-18"), call25, "2025-06-18"},
		{hdr(), init25, "2025-11-25"},
		{hdr(v26...), call26, "2026-07-28"},
	} {
		p, err := ParsePost(tc.h, []byte(tc.body), Limits{})
		if err != nil || p.Version != tc.want {
			t.Errorf("%s: version %v, %v; want %s", tc.body, p, err, tc.want)
		}
	}
}

func TestParsePostLimits(t *testing.T) {
	big := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"s":"` + strings.Repeat("x", 200) + `"}}}`
	_, err := ParsePost(hdr(), []byte(big), Limits{MaxMessageBytes: 100})
	var e *Error
	if !errors.As(err, &e) || e.HTTPStatus != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized body: %v", err)
	}
	if _, err := ParsePost(hdr(), []byte(big), Limits{MaxMessageBytes: 1000}); err != nil {
		t.Fatalf("control: %v", err)
	}
	batch := "[" + strings.TrimSuffix(strings.Repeat(notif+",", 5), ",") + "]"
	if _, err := ParsePost(hdr(), []byte(batch), Limits{MaxBatch: 4}); !errors.As(err, &e) || e.HTTPStatus != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized batch: %v", err)
	}
	if _, err := ParsePost(hdr(), []byte(batch), Limits{MaxBatch: 5}); err != nil {
		t.Fatalf("control: %v", err)
	}
}

// Error messages never repeat argument values, whatever the refusal.
func TestErrorsDoNotQuoteArguments(t *testing.T) {
	const secret = "123-45-6789"
	for _, body := range []string{
		`{"jsonrpc":"2.0","id":1.5,"method":"tools/call","params":{"name":"a","arguments":{"ssn":"` + secret + `"}}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"ssn":"` + secret + `","ssn":"` + secret + `"}}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"` + secret + `":1,"` + secret + `":2}}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"ssn":"` + secret + "\xff" + `"}}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"ssn":"` + secret + `}}}`,
	} {
		_, err := ParsePost(hdr(), []byte(body), Limits{})
		if err == nil {
			t.Fatalf("accepted %s", body)
		}
		if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "6789") {
			t.Errorf("error quotes an argument: %v", err)
		}
	}
}

func TestWriteError(t *testing.T) {
	id, _ := jsonrpc.MakeID(float64(7))
	rec := httptest.NewRecorder()
	WriteError(rec, &Error{HTTPStatus: 400, Code: CodeHeaderMismatch, Message: "fix the header", ID: id})
	if rec.Code != 400 || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, content type %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	msg, err := jsonrpc.DecodeMessage(rec.Body.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	resp, ok := msg.(*jsonrpc.Response)
	var we *jsonrpc.Error
	if !ok || resp.ID != id || !errors.As(resp.Error, &we) || we.Code != CodeHeaderMismatch || we.Message != "fix the header" {
		t.Fatalf("got %+v", msg)
	}
	// Without an id there is nothing a JSON-RPC response could answer: a plain HTTP error.
	rec = httptest.NewRecorder()
	WriteError(rec, &Error{HTTPStatus: 415, Code: jsonrpc.CodeInvalidRequest, Message: "send JSON"})
	if rec.Code != 415 || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/plain") || !strings.Contains(rec.Body.String(), "send JSON") {
		t.Fatalf("got %d %q %q", rec.Code, rec.Header().Get("Content-Type"), rec.Body.String())
	}
}

func TestStandardHeaders(t *testing.T) {
	for _, tc := range []struct{ body, method, name string }{
		{call26, "tools/call", "get_customer"},
		{`{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"shop://a b"}}`, "resources/read", "shop://a b"},
		{`{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"line\nbreak"}}`, "prompts/get", "=?base64?bGluZQpicmVhaw==?="},
		{`{"jsonrpc":"2.0","id":1,"method":"ping"}`, "ping", ""},
	} {
		h := hdr()
		if strings.Contains(tc.body, "2026-07-28") {
			h = hdr("Mcp-Protocol-Version", "2026-07-28", "Mcp-Method", tc.method, "Mcp-Name", tc.name)
		}
		p, err := ParsePost(h, []byte(tc.body), Limits{})
		if err != nil {
			t.Fatal(err)
		}
		got := StandardHeaders(p.Messages[0])
		if got.Get("Mcp-Method") != tc.method || got.Get("Mcp-Name") != tc.name {
			t.Errorf("%s: %v", tc.body, got)
		}
		// What it builds passes ParsePost's own check.
		for k, v := range got {
			h[k] = v
		}
		if _, err := ParsePost(h, []byte(tc.body), Limits{}); err != nil {
			t.Errorf("%s with built headers: %v", tc.body, err)
		}
	}
}

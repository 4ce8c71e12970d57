package wire

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
)

func pass(m Message, _ string) ([]byte, error) { return m.Raw, nil }

const (
	resp1 = `{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"hi"}]}}`
	progN = `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"t","progress":1}}`
	sreq  = `{"jsonrpc":"2.0","id":9,"method":"sampling/createMessage","params":{"messages":[],"maxTokens":10}}`
)

func relay(t *testing.T, ct, in string, l Limits, fn func(Message, string) ([]byte, error)) (string, int, error) {
	t.Helper()
	var out bytes.Buffer
	flushes := 0
	err := ServerMessages(context.Background(), ct, strings.NewReader(in), &out, func() { flushes++ }, l, fn)
	return out.String(), flushes, err
}

func TestServerMessagesJSON(t *testing.T) {
	out, _, err := relay(t, "application/json", resp1, Limits{}, pass)
	if err != nil || out != resp1 {
		t.Fatalf("single: %q, %v", out, err)
	}
	// A batch keeps its framing; a dropped message leaves the array.
	in := "[" + resp1 + "," + progN + "]"
	out, _, err = relay(t, "application/json; charset=utf-8", in, Limits{}, func(m Message, _ string) ([]byte, error) {
		if m.Method() == "notifications/progress" {
			return nil, nil
		}
		return m.Raw, nil
	})
	if err != nil || out != "["+resp1+"]" {
		t.Fatalf("batch: %q, %v", out, err)
	}
	// Replacements are compacted.
	out, _, err = relay(t, "application/json", resp1, Limits{}, func(m Message, _ string) ([]byte, error) {
		return []byte("{\n \"jsonrpc\": \"2.0\", \"id\": 1, \"result\": {}\n}"), nil
	})
	if err != nil || out != `{"jsonrpc":"2.0","id":1,"result":{}}` {
		t.Fatalf("replaced: %q, %v", out, err)
	}
}

func TestServerMessagesSSE(t *testing.T) {
	in := "id: s_0\nevent: prime\ndata: \n\n" +
		": keep-alive\n\n" +
		"id: s_1\ndata: " + progN + "\n\n" +
		"id: s_2\ndata: " + sreq + "\n\n" +
		"id: s_3\ndata: {\"jsonrpc\":\"2.0\",\ndata: \"id\":1,\"result\":{}}\n\n"
	var ids []string
	out, flushes, err := relay(t, "text/event-stream", in, Limits{}, func(m Message, id string) ([]byte, error) {
		ids = append(ids, id)
		if m.Method() == "sampling/createMessage" {
			return nil, nil // refused server request: dropped, its event id kept
		}
		return m.Raw, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "id: s_0\nevent: prime\n\n" +
		":\n\n" +
		"id: s_1\ndata: " + progN + "\n\n" +
		"id: s_2\n\n" +
		"id: s_3\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n"
	if out != want {
		t.Fatalf("got\n%q\nwant\n%q", out, want)
	}
	if strings.Join(ids, ",") != "s_1,s_2,s_3" || flushes != 5 {
		t.Fatalf("ids %v, %d flushes", ids, flushes)
	}
}

// Anything the relay cannot read ends it: the engine cuts the stream.
func TestServerMessagesFailClosed(t *testing.T) {
	for _, tc := range []struct{ name, ct, in string }{
		{"sse not JSON", "text/event-stream", "data: hello\n\n"},
		{"sse duplicate member", "text/event-stream", `data: {"jsonrpc":"2.0","id":1,"result":{},"result":{}}` + "\n\n"},
		{"sse float id", "text/event-stream", `data: {"jsonrpc":"2.0","id":1.5,"result":{}}` + "\n\n"},
		{"sse oversized", "text/event-stream", `data: {"jsonrpc":"2.0","id":1,"result":{"t":"` + strings.Repeat("x", 300) + `"}}` + "\n\n"},
		{"json malformed", "application/json", `{"jsonrpc":"2.0",`},
		{"json oversized", "application/json", `{"jsonrpc":"2.0","id":1,"result":{"t":"` + strings.Repeat("x", 300) + `"}}`},
		{"other content type", "text/html", resp1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := relay(t, tc.ct, tc.in, Limits{MaxMessageBytes: 200}, pass)
			if !errors.Is(err, ErrServerMessage) {
				t.Fatalf("got %v", err)
			}
			if out != "" {
				t.Fatalf("wrote %q", out)
			}
		})
	}
	// Control: the same sizes under a larger limit pass.
	in := `{"jsonrpc":"2.0","id":1,"result":{"t":"` + strings.Repeat("x", 300) + `"}}`
	if out, _, err := relay(t, "application/json", in, Limits{MaxMessageBytes: 1000}, pass); err != nil || out != in {
		t.Fatalf("control: %v", err)
	}
}

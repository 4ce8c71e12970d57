package wire_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/svidbroker/svidbroker/plugins/protocol/mcp/wire"
)

func ExampleParsePost() {
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("Accept", "application/json, text/event-stream")
	h.Set("Mcp-Protocol-Version", "2025-11-25")
	h.Set("Mcp-Name", "refund") // disagrees with the body
	body := []byte(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"get_customer","arguments":{"id":1}}}`)

	_, err := wire.ParsePost(h, body, wire.Limits{})
	rec := httptest.NewRecorder()
	wire.WriteError(rec, err.(*wire.Error))
	fmt.Println(rec.Code, rec.Body.String())

	h.Set("Mcp-Name", "get_customer")
	p, err := wire.ParsePost(h, body, wire.Limits{})
	if err != nil {
		panic(err)
	}
	call, _ := wire.CallParams(p.Messages[0].Req)
	fmt.Println(p.Version, call.Name, call.Arguments["id"])
	// Output:
	// 400 {"jsonrpc":"2.0","id":7,"error":{"code":-32020,"message":"the Mcp-Name header does not match params.name of the body; send the same value in both"}}
	// 2025-11-25 get_customer 1
}

func ExampleServerMessages() {
	stream := "id: s_1\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"sampling/createMessage\",\"params\":{}}\n\n" +
		"id: s_2\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"content\":[]}}\n\n"
	var out bytes.Buffer
	err := wire.ServerMessages(context.Background(), "text/event-stream", strings.NewReader(stream), &out, nil, wire.Limits{},
		func(m wire.Message, eventID string) ([]byte, error) {
			if m.Method() == "sampling/createMessage" {
				return nil, nil // not permitted: dropped (the engine answers the server itself)
			}
			return m.Raw, nil
		})
	fmt.Print(out.String(), err)
	// Output:
	// id: s_1
	//
	// id: s_2
	// event: message
	// data: {"jsonrpc":"2.0","id":1,"result":{"content":[]}}
	//
	// <nil>
}

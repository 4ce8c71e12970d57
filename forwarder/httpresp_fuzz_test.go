package forwarder

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"testing"
)

// FuzzResponseRelay: whatever the broker answers, what reaches the client is, when the relay
// succeeds, exactly the broker's final response (its interim ones before it) as net/http reads it:
// same status and body, one framing, and nothing after it.
func FuzzResponseRelay(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n2\r\nhi\r\n0\r\nX-T: 1\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: 1\n\ndata: 2\n\n",
		"HTTP/1.1 204 No Content\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\n\r\n",
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
	} {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, in []byte, head bool) {
		method := "GET"
		if head {
			method = "HEAD"
		}
		var out bytes.Buffer
		_, _, err := relayResponse(bufio.NewReaderSize(bytes.NewReader(in), 4096), 4096, &out, &clientRequest{method: method}, func() (bool, error) { return true, nil })
		if err != nil {
			return
		}
		rd := bufio.NewReader(&out)
		got, gerr := http.ReadResponse(rd, &http.Request{Method: method})
		for gerr == nil && got.StatusCode < 200 {
			got, gerr = http.ReadResponse(rd, &http.Request{Method: method})
		}
		if gerr != nil {
			t.Fatalf("the client cannot read what the forwarder relayed %q: %v", out.Bytes(), gerr)
		}
		body, berr := io.ReadAll(got.Body)
		if berr != nil {
			t.Fatalf("the client cannot read the relayed body of %q: %v", out.Bytes(), berr)
		}
		if rest, _ := io.ReadAll(rd); len(rest) != 0 {
			t.Fatalf("the relayed response %q is followed by %q", out.Bytes(), rest)
		}
		if len(got.Header.Values("Content-Length")) > 1 || len(got.TransferEncoding) > 0 && got.Header.Get("Content-Length") != "" {
			t.Fatalf("ambiguous framing relayed: %q", out.Bytes())
		}
		// The reference: the broker's final response and body as net/http reads them from the input.
		ref := bufio.NewReader(bytes.NewReader(in))
		r, err := http.ReadResponse(ref, &http.Request{Method: method})
		for err == nil && r.StatusCode < 200 {
			r, err = http.ReadResponse(ref, &http.Request{Method: method})
		}
		if err != nil {
			t.Fatalf("the relay succeeded on a response net/http refuses: %v", err)
		}
		refBody, err := io.ReadAll(r.Body)
		if err != nil {
			t.Fatalf("the relay succeeded on a body net/http refuses: %v", err)
		}
		if r.StatusCode != got.StatusCode || !bytes.Equal(refBody, body) {
			t.Fatalf("broker sent %d %q, client got %d %q", r.StatusCode, refBody, got.StatusCode, body)
		}
	})
}

package proxy

import (
	"bufio"
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// A request whose body does not arrive is answered 408 once Limits.ReadBody passes, and nothing is
// forwarded; a body read whole lifts the deadline, so a slow upstream's answer still arrives.
func TestRequestBodyIsReadWithinItsDeadline(t *testing.T) {
	const readBody = 200 * time.Millisecond
	r := newRig(t, rigOptions{routes: customerRoutes, config: func(c *Config) { c.Limits.ReadBody = readBody },
		handler: func(w http.ResponseWriter, req *http.Request) {
			time.Sleep(3 * readBody) // longer than the body's deadline: it must not cut this request
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"refund":1}`)
		}})
	conn, err := tls.Dial("tcp", r.addr, r.tlsConfig(t, agentID))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	// The head announces 100 bytes; one comes.
	io.WriteString(conn, "POST /v1/refunds HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a stalled body: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(body), "did not arrive in time") {
		t.Fatalf("got %d %s", resp.StatusCode, body)
	}
	// What remains of the body on the wire is never read as a request: the connection closes.
	if !resp.Close {
		t.Fatal("the connection was kept after a body that did not arrive")
	}
	if n := len(r.up.requests()); n != 0 {
		t.Fatalf("%d requests reached the upstream", n)
	}
	// Control: a body sent whole is forwarded, and the answer of an upstream slower than the body's
	// deadline reaches the agent.
	status, got, _ := get(t, r.client(t, agentID), newReq(t, "POST", r.url("/v1/refunds"), `{"order_id":1,"amount":5,"reason":"late"}`))
	if status != http.StatusOK || got != `{"refund":1}` {
		t.Fatalf("control: %d %s", status, got)
	}
}

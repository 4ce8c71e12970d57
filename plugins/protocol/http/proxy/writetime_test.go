package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/svidbroker/svidbroker/broker/audit"
)

// A client that stops reading its response is cut off once a write to it waits Limits.Write, its
// request ends and is recorded as cut off; a client that reads gets the whole response, and a
// refused head on that connection after a while still gets its answer.
func TestResponseToAClientThatStopsReadingIsCutOff(t *testing.T) {
	chunk := bytes.Repeat([]byte("x"), 1<<20)
	r := newRig(t, rigOptions{routes: customerRoutes, config: func(c *Config) { c.Limits.Write = 2 * time.Second },
		handler: func(w http.ResponseWriter, req *http.Request) {
			w.Header().Set("Content-Type", "application/octet-stream")
			for range 64 { // far more than the connection's buffers hold
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		}})
	conn, err := tls.Dial("tcp", r.addr, r.tlsConfig(t, agentID))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET /v1/orders/1 HTTP/1.1\r\nHost: localhost\r\n\r\n") // and never read
	cut := func() bool {
		for _, rec := range r.sink.all() {
			if rec.Kind == audit.KindResult && strings.HasPrefix(rec.Detail["error"], "response cut off") {
				return true
			}
		}
		return false
	}
	for deadline := time.Now().Add(20 * time.Second); !cut(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the request of a client that stopped reading never ended")
		}
	}
	// Control: a client that reads gets all 64 MiB, each write well within the limit (a limit far
	// above a write's time even on a loaded machine: the cut-off above waits for it, unhurried).
	resp, err := r.client(t, agentID).Do(newReq(t, "GET", r.url("/v1/orders/1"), ""))
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || n != 64<<20 {
		t.Fatalf("control: %d bytes, %v", n, err)
	}
}

// Control: a write deadline a response set (net/http lifts it once the response is out) does not
// keep a later refusal on the connection from its answer.
func TestRefusedHeadIsAnsweredAfterTheLastResponsesDeadline(t *testing.T) {
	r := newRig(t, rigOptions{routes: customerRoutes, config: func(c *Config) { c.Limits.Write = 100 * time.Millisecond }})
	conn, err := tls.Dial("tcp", r.addr, r.tlsConfig(t, agentID))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	io.WriteString(conn, "GET /v1/orders/1 HTTP/1.1\r\nHost: localhost\r\n\r\n")
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("first request: %v", err)
	} else {
		io.Copy(io.Discard, resp.Body)
	}
	time.Sleep(300 * time.Millisecond) // past the first response's write deadline
	io.WriteString(conn, "GET /v1/orders/1 HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("the refused head got no answer: %v", err)
	}
	// And an ordinary request after a pause on a fresh connection is answered (control).
	status, _, _ := get(t, r.client(t, agentID), newReq(t, "GET", r.url("/v1/orders/1"), ""))
	if status != 200 {
		t.Fatalf("control: %d", status)
	}
}

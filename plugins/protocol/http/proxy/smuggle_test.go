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

// raw sends bytes over TLS with the agent's SVID and reads every response until the broker closes.
func (r *rig) raw(t *testing.T, payload string) []*http.Response {
	t.Helper()
	conn, err := tls.Dial("tcp", r.addr, r.tlsConfig(t, agentID))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, payload); err != nil {
		t.Fatal(err)
	}
	// Half-close is not available on TLS; the payloads end with Connection: close or are refused.
	br := bufio.NewReader(conn)
	var out []*http.Response
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return out
		}
		_, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		out = append(out, resp)
	}
}

func TestHeaderSmugglingIsRefused(t *testing.T) {
	r := newRig(t, rigOptions{routes: customerRoutes})
	h := r.addr
	refund := `{"order_id":1,"amount":1}`
	smuggled := "GET /v1/customers/1 HTTP/1.1\r\nHost: " + h + "\r\n\r\n"
	cases := []struct{ name, payload string }{
		{"duplicate Content-Length", "POST /v1/refunds HTTP/1.1\r\nHost: " + h + "\r\nContent-Type: application/json\r\nContent-Length: 25\r\nContent-Length: 4\r\nConnection: close\r\n\r\n" + refund},
		{"Transfer-Encoding and Content-Length", "POST /v1/refunds HTTP/1.1\r\nHost: " + h + "\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n" + smuggled},
		{"chunked body", "POST /v1/refunds HTTP/1.1\r\nHost: " + h + "\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n19\r\n" + refund + "\r\n0\r\n\r\n"},
		{"obs-fold", "GET /v1/orders/1 HTTP/1.1\r\nHost: " + h + "\r\nX-A: b\r\n Content-Length: 40\r\nConnection: close\r\n\r\n"},
		{"whitespace before colon", "GET /v1/orders/1 HTTP/1.1\r\nHost: " + h + "\r\nContent-Length : 40\r\nConnection: close\r\n\r\n"},
		{"bare LF", "GET /v1/orders/1 HTTP/1.1\nHost: " + h + "\nConnection: close\n\n"},
		{"two Hosts", "GET /v1/orders/1 HTTP/1.1\r\nHost: " + h + "\r\nHost: evil.example\r\nConnection: close\r\n\r\n"},
		{"absolute URI for another host", "GET https://evil.example/v1/orders/1 HTTP/1.1\r\nHost: " + h + "\r\nConnection: close\r\n\r\n"},
		{"Host other than the absolute URI", "GET https://" + h + "/v1/orders/1 HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"},
		{"HTTP/1.0", "GET /v1/orders/1 HTTP/1.0\r\nHost: " + h + "\r\n\r\n"},
		{"encoded slash", "GET /v1/orders/1%2F..%2F..%2Fcustomers%2F1 HTTP/1.1\r\nHost: " + h + "\r\nConnection: close\r\n\r\n"},
		{"dot dot encoded slash", "GET /v1/orders/..%2fcustomers/1 HTTP/1.1\r\nHost: " + h + "\r\nConnection: close\r\n\r\n"},
		{"dot segments", "GET /v1/orders/../customers/1 HTTP/1.1\r\nHost: " + h + "\r\nConnection: close\r\n\r\n"},
		{"encoded dot segments", "GET /v1/orders/%2e%2e/%2e%2e/v1/customers/1 HTTP/1.1\r\nHost: " + h + "\r\nConnection: close\r\n\r\n"},
		{"control byte in a header", "GET /v1/orders/1 HTTP/1.1\r\nHost: " + h + "\r\nX-A: a\x00b\r\nConnection: close\r\n\r\n"},
		{"oversized head", "GET /v1/orders/1 HTTP/1.1\r\nHost: " + h + "\r\nX-A: " + strings.Repeat("a", DefaultMaxHeaderBytes) + "\r\n\r\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := len(r.up.requests())
			resps := r.raw(t, tc.payload)
			if len(resps) != 1 || resps[0].StatusCode < 400 || resps[0].StatusCode >= 500 && resps[0].StatusCode != 505 {
				var codes []int
				for _, x := range resps {
					codes = append(codes, x.StatusCode)
				}
				t.Fatalf("responses %v; want one refusal", codes)
			}
			if n := len(r.up.requests()) - before; n != 0 {
				t.Fatalf("%d requests reached the upstream", n)
			}
		})
	}
	// Controls: the legitimate forms pass, pipelined on one connection too.
	for _, tc := range []struct {
		name, payload string
		n             int
	}{
		{"GET", "GET /v1/orders/1 HTTP/1.1\r\nHost: " + h + "\r\nConnection: close\r\n\r\n", 1},
		{"POST with Content-Length", "POST /v1/refunds HTTP/1.1\r\nHost: " + h + "\r\nContent-Type: application/json\r\nContent-Length: 25\r\nConnection: close\r\n\r\n" + refund, 1},
		{"absolute URI for the Host", "GET https://" + h + "/v1/orders/1 HTTP/1.1\r\nHost: " + h + "\r\nConnection: close\r\n\r\n", 1},
		{"two requests", "GET /v1/orders/1 HTTP/1.1\r\nHost: " + h + "\r\n\r\nGET /v1/orders/2 HTTP/1.1\r\nHost: " + h + "\r\nConnection: close\r\n\r\n", 2},
	} {
		t.Run("control "+tc.name, func(t *testing.T) {
			before := len(r.up.requests())
			resps := r.raw(t, tc.payload)
			if len(resps) != tc.n || resps[0].StatusCode != 200 {
				t.Fatalf("got %d responses (%v)", len(resps), resps)
			}
			if n := len(r.up.requests()) - before; n != tc.n {
				t.Fatalf("%d requests reached the upstream, want %d", n, tc.n)
			}
		})
	}
}

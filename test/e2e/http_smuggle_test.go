package e2e

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/test/stack"
)

// rawExchange writes payload as is over TLS with the persona's client certificate and reads every
// response until the broker closes the connection.
func (h *httpStack) rawExchange(t *testing.T, persona, payload string) []*http.Response {
	t.Helper()
	f := clientFiles(t, h.s, persona)
	conn, err := tls.Dial("tcp", h.listen, tlsFor(t, f, f.RootCert))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := io.WriteString(conn, payload); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	var out []*http.Response
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !strings.Contains(err.Error(), "connection reset") {
				t.Fatalf("after %d responses: %v", len(out), err)
			}
			return out
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		out = append(out, resp)
		if resp.Close {
			return out
		}
	}
}

// TestHTTPHeaderSmugglingRefused sends a smuggling corpus as raw bytes over TLS with support's
// SVID: each is refused with one 4xx (or 505) and the API serves nothing (no token lookup in
// PostgreSQL's log). The controls, legitimate forms of the same requests, pass, and Cedar's record
// holds the path the API served: a percent-encoded segment is decoded once and forwarded in one
// canonical form, which is what the record and the decision name.
func TestHTTPHeaderSmugglingRefused(t *testing.T) {
	h := httpShared(t)
	up := h.watchUpstream(t)
	host := "localhost" + h.listen[strings.LastIndexByte(h.listen, ':'):]
	const refund = `{"order_id":10,"amount":1}`
	smuggled := "GET /v1/customers/1 HTTP/1.1\r\nHost: " + host + "\r\n\r\n"
	for _, tc := range []struct{ name, payload string }{
		{"duplicate Content-Length", "POST /v1/refunds HTTP/1.1\r\nHost: " + host + "\r\nContent-Type: application/json\r\nContent-Length: 26\r\nContent-Length: 4\r\nConnection: close\r\n\r\n" + refund},
		{"Transfer-Encoding and Content-Length", "POST /v1/refunds HTTP/1.1\r\nHost: " + host + "\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n" + smuggled},
		{"obs-fold", "GET /v1/orders/10 HTTP/1.1\r\nHost: " + host + "\r\nX-A: b\r\n Content-Length: 40\r\nConnection: close\r\n\r\n"},
		{"two Hosts", "GET /v1/orders/10 HTTP/1.1\r\nHost: " + host + "\r\nHost: evil.example\r\nConnection: close\r\n\r\n"},
		{"absolute URI for another host", "GET https://evil.example/v1/orders/10 HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n"},
		{"Host other than the absolute URI", "GET https://" + host + "/v1/orders/10 HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"},
		{"encoded slash", "GET /v1/orders/10%2F..%2F..%2Fcustomers%2F1 HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n"},
		{"dot dot encoded slash", "GET /v1/orders/..%2fcustomers/1 HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n"},
		{"dot segments", "GET /v1/orders/../customers/1 HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n"},
		{"encoded dot segments", "GET /v1/orders/%2e%2e/%2e%2e/v1/customers/1 HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n"},
		{"backslash", "GET /v1/orders/10%5C..%5Ccustomers HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mark := up.mark(t)
			resps := h.rawExchange(t, stack.PersonaSupport, tc.payload)
			var codes []int
			for _, r := range resps {
				codes = append(codes, r.StatusCode)
			}
			if len(resps) != 1 || resps[0].StatusCode < 400 || (resps[0].StatusCode >= 500 && resps[0].StatusCode != 505) {
				t.Fatalf("responses %v; want one refusal", codes)
			}
			if n := up.lookupsSince(t, mark); len(n) != 0 {
				t.Fatalf("the API served %d request(s) of a refused payload (responses %v)", len(n), codes)
			}
		})
	}
	for _, tc := range []struct {
		name, payload string
		served        int    // requests the API serves
		record        string // the statement recorded for the (last) request
	}{
		{"GET", "GET /v1/orders/10 HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n", 1, "GET /v1/orders/10"},
		{"percent-encoded digits are decoded once", "GET /v1/orders/%31%31 HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n", 1, "GET /v1/orders/11"},
		{"absolute URI for the Host", "GET https://" + host + "/v1/orders/20 HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n", 1, "GET /v1/orders/20"},
		{"two pipelined requests", "GET /v1/orders/10 HTTP/1.1\r\nHost: " + host + "\r\n\r\nGET /v1/orders/21 HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n", 2, "GET /v1/orders/21"},
	} {
		t.Run("control "+tc.name, func(t *testing.T) {
			mark := up.mark(t)
			resps := h.rawExchange(t, stack.PersonaSupport, tc.payload)
			if len(resps) != tc.served {
				t.Fatalf("%d responses, want %d", len(resps), tc.served)
			}
			for _, r := range resps {
				if r.StatusCode != http.StatusOK {
					t.Fatalf("status %d", r.StatusCode)
				}
			}
			if n := up.lookupsSince(t, mark); len(n) != tc.served {
				t.Fatalf("the API served %d requests, want %d", len(n), tc.served)
			}
			h.waitRecord(t, tc.record, func(r audit.Record) bool {
				return r.Kind == audit.KindStatement && r.Statement != nil && r.Statement.Text == tc.record && r.Decision != nil && r.Decision.Allow &&
					r.Detail["route"] == "GET /v1/orders/{id}"
			})
		})
	}
	// A route that differs by the percent-encoded form of a slash is not some other route.
	t.Run("encoded slash does not reach customers", func(t *testing.T) {
		resps := h.rawExchange(t, stack.PersonaSupport, "GET /v1%2Fcustomers%2F1 HTTP/1.1\r\nHost: "+host+"\r\nConnection: close\r\n\r\n")
		if len(resps) != 1 || resps[0].StatusCode < 400 {
			t.Fatalf("responses %d, want one refusal", len(resps))
		}
	})
}

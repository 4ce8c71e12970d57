package forwarder

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"testing"
)

// rewrite is what the forwarder makes of one client request in JWT mode: the canonical request
// written for the broker, or a refusal.
func rewrite(in []byte) (out []byte, decoded []byte, re *requestError) {
	br := bufio.NewReaderSize(bytes.NewReader(in), 4096)
	r, re := readClientRequest(br, 4096)
	if re != nil {
		return nil, nil, re
	}
	if re := r.settle(); re != nil {
		return nil, nil, re
	}
	if r.host == "" {
		r.host = "fwd.test"
	}
	var body bytes.Buffer
	if r.body != nil {
		r.body = io.TeeReader(r.body, &body)
	}
	var w bytes.Buffer
	if err := r.writeTo(&w, "dG9rZW4.Ym9keQ.c2ln"); err != nil {
		if re, ok := err.(*requestError); ok {
			return nil, nil, re
		}
		panic(err) // a bytes.Buffer does not fail
	}
	return w.Bytes(), body.Bytes(), nil
}

// FuzzRequestRewrite: whatever a client sends, what the forwarder writes for the broker is exactly
// one request, which net/http reads with the forwarder's bearer as its only credential, the same
// method, target and body, and unambiguous framing; and rewriting it again changes nothing.
func FuzzRequestRewrite(f *testing.F) {
	for _, s := range []string{
		"GET /v1/customers/1 HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer x\r\n\r\n",
		"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
		"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;x=1\r\nabc\r\n0\r\nT: 1\r\n\r\n",
		"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
		"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\r\n b\r\n\r\n",
		"GET http://a/x%2Fy?q HTTP/1.1\r\nHost: a\r\nConnection: close, X-B\r\nX-B: 1\r\n\r\n",
		"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nProxy-Authorization: Basic eA==\r\n\r\nGET /next HTTP/1.1\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out, body, re := rewrite(in)
		if re != nil {
			if re.status < 400 || re.status > 599 || re.msg == "" {
				t.Fatalf("refusal with status %d and text %q", re.status, re.msg)
			}
			return
		}
		rd := bufio.NewReader(bytes.NewReader(out))
		req, err := http.ReadRequest(rd)
		if err != nil {
			t.Fatalf("net/http cannot read the rewritten request %q: %v", out, err)
		}
		got, err := io.ReadAll(req.Body)
		if err != nil {
			t.Fatalf("net/http cannot read the rewritten body of %q: %v", out, err)
		}
		if rest, _ := io.ReadAll(rd); len(rest) != 0 {
			t.Fatalf("the rewritten request %q is followed by %q: two requests where the client sent one", out, rest)
		}
		if !bytes.Equal(got, body) {
			t.Fatalf("body %q reached the broker as %q", body, got)
		}
		if a := req.Header.Values("Authorization"); len(a) != 1 || a[0] != "Bearer dG9rZW4.Ym9keQ.c2ln" {
			t.Fatalf("Authorization %q in %q", a, out)
		}
		if len(req.Header.Values("Proxy-Authorization")) != 0 || len(req.Header.Values("Upgrade")) != 0 {
			t.Fatalf("a credential or an upgrade passed: %q", out)
		}
		if len(req.Header.Values("Content-Length")) > 1 || len(req.TransferEncoding) > 0 && req.Header.Get("Content-Length") != "" {
			t.Fatalf("ambiguous framing written: %q", out)
		}
		again, body2, re := rewrite(out)
		if re != nil {
			t.Fatalf("the rewritten request %q is refused when read again: %s", out, re.msg)
		}
		if !bytes.Equal(body2, body) {
			t.Fatalf("rewriting again changed the body: %q, then %q", body, body2)
		}
		if len(req.TransferEncoding) == 0 && !bytes.Equal(again, out) {
			t.Fatalf("rewriting is not a fixed point:\n%q\n%q", out, again)
		}
	})
}

package proxy

import (
	"bufio"
	"bytes"
	"net/http"
	"strings"
	"testing"
)

var headSeeds = []string{
	"GET /v1/orders/1 HTTP/1.1\r\nHost: a\r\n\r\n",
	"POST /v1/refunds HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}GET / HTTP/1.1\r\nHost: a\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc",
	"GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n c\r\n\r\n",
	"GET https://a/x HTTP/1.1\r\nHost: b\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
	"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET / HTTP/1.1\nHost: a\n\n",
	"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\nx",
}

// FuzzGuard holds the guard to two references: its output does not depend on how the input is cut
// into reads, and every head it passes reads, to net/http, with the same Host, the same body length
// and no Transfer-Encoding.
func FuzzGuard(f *testing.F) {
	for _, s := range headSeeds {
		f.Add([]byte(s), uint8(7))
	}
	f.Fuzz(func(t *testing.T, in []byte, cut uint8) {
		whole := newGuard(nil, 4096)
		whole.feed(in)
		pieces := newGuard(nil, 4096)
		step := int(cut%16) + 1
		for i := 0; i < len(in); i += step {
			pieces.feed(in[i:min(i+step, len(in))])
		}
		if !bytes.Equal(whole.out, pieces.out) || (whole.refused == nil) != (pieces.refused == nil) {
			t.Fatalf("reads of %d bytes changed the output: %q (%v) vs %q (%v)", step, whole.out, whole.refused, pieces.out, pieces.refused)
		}
		// Every head passed, as net/http reads it.
		br := bufio.NewReader(bytes.NewReader(whole.out))
		for {
			if _, err := br.Peek(1); err != nil {
				return
			}
			start := whole.out[len(whole.out)-br.Buffered():]
			end := bytes.Index(start, []byte("\r\n\r\n"))
			if end < 0 {
				return // a body cut short
			}
			head := string(start[:end+4])
			n, herr := checkHead([]byte(head))
			if herr != nil {
				t.Fatalf("passed a head checkHead refuses: %q", head)
			}
			req, err := http.ReadRequest(br)
			if err != nil {
				return // net/http refuses more (its URI parsing): refused either way
			}
			if req.ContentLength != n && !(n == 0 && req.ContentLength <= 0) || len(req.TransferEncoding) > 0 {
				t.Fatalf("%q: net/http reads length %d (TE %v), the guard %d", head, req.ContentLength, req.TransferEncoding, n)
			}
			if !strings.EqualFold(req.Host, headerValue(head, "Host")) {
				t.Fatalf("%q: net/http reads host %q", head, req.Host)
			}
			body := make([]byte, n)
			if _, err := bufioReadFull(br, body); err != nil {
				return
			}
		}
	})
}

func headerValue(head, name string) string {
	for _, line := range strings.Split(head, "\r\n")[1:] {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.EqualFold(k, name) {
			return strings.Trim(v, " \t")
		}
	}
	return ""
}

func bufioReadFull(br *bufio.Reader, p []byte) (int, error) {
	n := 0
	for n < len(p) {
		k, err := br.Read(p[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

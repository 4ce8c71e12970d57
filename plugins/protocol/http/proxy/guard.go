package proxy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

// guard reads a client connection for net/http, one request head at a time: a head reaches net/http
// only once it is whole and checkHead accepted it, and then exactly the body its Content-Length
// announces. A refused head ends the stream there (net/http sees EOF, answers what it already
// read, and closes), and Close tells the client why before the connection closes.
type guard struct {
	net.Conn
	maxHead int

	in      []byte // the head being read
	out     []byte // checked bytes net/http has not read yet
	body    int64  // body bytes of the last head still to pass
	rbuf    []byte
	readErr error

	mu      sync.Mutex
	refused *headError
	closed  bool
}

// headError is a request head guard refused: the status and what the client should fix.
type headError struct {
	status int
	msg    string
}

func (e *headError) Error() string { return e.msg }

func newGuard(c net.Conn, maxHead int) *guard {
	return &guard{Conn: c, maxHead: maxHead, rbuf: make([]byte, 16<<10)}
}

func (g *guard) Read(p []byte) (int, error) {
	for len(g.out) == 0 {
		if g.refusal() != nil {
			return 0, io.EOF
		}
		if err := g.readErr; err != nil {
			// Not kept: net/http ends its background read with a deadline in the past, then reads on.
			g.readErr = nil
			return 0, err
		}
		n, err := g.Conn.Read(g.rbuf)
		g.feed(g.rbuf[:n])
		g.readErr = err
	}
	n := copy(p, g.out)
	g.out = g.out[n:]
	if len(g.out) == 0 {
		g.out = g.out[:0:cap(g.out)]
	}
	return n, nil
}

func (g *guard) refusal() *headError {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.refused
}

// feed takes bytes from the client.
func (g *guard) feed(b []byte) {
	for len(b) > 0 && g.refusal() == nil {
		if g.body > 0 {
			n := int(min(int64(len(b)), g.body))
			g.out = append(g.out, b[:n]...)
			b, g.body = b[n:], g.body-int64(n)
			continue
		}
		start := len(g.in)
		g.in = append(g.in, b...)
		b = nil
		if len(g.in) == start {
			return
		}
		// Leading empty lines before a request line are ignored (RFC 9112 §2.2).
		for bytes.HasPrefix(g.in, []byte("\r\n")) {
			g.in = g.in[2:]
		}
		end := bytes.Index(g.in, []byte("\r\n\r\n"))
		limit := len(g.in)
		if end >= 0 {
			limit = end + 4
		}
		if i := bareLF(g.in[:limit]); i >= 0 {
			g.refuse(&headError{http.StatusBadRequest, "a line of the request head ends in a bare LF; end every line with CRLF"})
			return
		}
		if end < 0 {
			if len(g.in) > g.maxHead {
				g.refuse(&headError{http.StatusRequestHeaderFieldsTooLarge, fmt.Sprintf("the request head is larger than %d bytes", g.maxHead)})
			}
			return
		}
		head := g.in[:end+4]
		if len(head) > g.maxHead {
			g.refuse(&headError{http.StatusRequestHeaderFieldsTooLarge, fmt.Sprintf("the request head is larger than %d bytes", g.maxHead)})
			return
		}
		cl, err := checkHead(head)
		if err != nil {
			g.refuse(err)
			return
		}
		g.out = append(g.out, head...)
		g.body = cl
		b = bytes.Clone(g.in[end+4:])
		g.in = g.in[:0]
	}
}

// bareLF returns the index of an LF not preceded by CR, or -1.
func bareLF(b []byte) int {
	for i := bytes.IndexByte(b, '\n'); i >= 0; {
		if i == 0 || b[i-1] != '\r' {
			return i
		}
		j := bytes.IndexByte(b[i+1:], '\n')
		if j < 0 {
			return -1
		}
		i += 1 + j
	}
	return -1
}

func (g *guard) refuse(e *headError) {
	g.mu.Lock()
	if g.refused == nil {
		g.refused = e
	}
	g.mu.Unlock()
	g.in = nil
}

// Close tells the client why its request was refused, if one was, then closes.
func (g *guard) Close() error {
	g.mu.Lock()
	e, closed := g.refused, g.closed
	g.closed = true
	g.mu.Unlock()
	if e != nil && !closed {
		body, _ := json.Marshal(errorBody{Error: "svidbroker: request refused: " + e.msg})
		body = append(body, '\n')
		fmt.Fprintf(g.Conn, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
			e.status, http.StatusText(e.status), len(body), body)
	}
	return g.Conn.Close()
}

// checkHead checks one request head (request line, header lines, the empty line; every line ends
// in CRLF) and returns its body's length. It accepts only what has one reading: HTTP/1.1, a token
// method, a target without spaces or control bytes, header names that are tokens followed at once
// by ":", values without control bytes, no obs-fold, exactly one Host, at most one Content-Length of
// digits, no Transfer-Encoding, and an absolute-form target only for the Host it names.
func checkHead(head []byte) (int64, *headError) {
	bad := func(format string, a ...any) (int64, *headError) {
		return 0, &headError{http.StatusBadRequest, fmt.Sprintf(format, a...)}
	}
	lines := strings.Split(string(head[:len(head)-4]), "\r\n")
	method, rest, ok1 := strings.Cut(lines[0], " ")
	target, version, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 || method == "" || target == "" {
		return bad("the request line must be METHOD SP target SP HTTP/1.1")
	}
	for i := 0; i < len(method); i++ {
		if !tokenByte(method[i]) {
			return bad("the method is not a token")
		}
	}
	for i := 0; i < len(target); i++ {
		if c := target[i]; c <= ' ' || c == 0x7f {
			return bad("the request target holds a space or a control byte")
		}
	}
	if version != "HTTP/1.1" {
		return 0, &headError{http.StatusHTTPVersionNotSupported, "only HTTP/1.1 is served; send HTTP/1.1"}
	}
	var host, contentLength []string
	for _, line := range lines[1:] {
		if line == "" || line[0] == ' ' || line[0] == '\t' {
			return bad("a header line is folded (obs-fold) or empty; send each header on one line")
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			return bad("a header line has no colon")
		}
		for i := 0; i < len(name); i++ {
			if !tokenByte(name[i]) {
				return bad("a header name is not a token, or has whitespace before its colon")
			}
		}
		for i := 0; i < len(value); i++ {
			if c := value[i]; c < ' ' && c != '\t' || c == 0x7f {
				return bad("header %s holds a control byte", http.CanonicalHeaderKey(name))
			}
		}
		value = strings.Trim(value, " \t")
		switch http.CanonicalHeaderKey(name) {
		case "Host":
			host = append(host, value)
		case "Content-Length":
			contentLength = append(contentLength, value)
		case "Transfer-Encoding":
			return bad("Transfer-Encoding is not accepted on requests; send the body with Content-Length")
		}
	}
	if len(host) != 1 {
		return bad("the request must carry exactly one Host header, it has %d", len(host))
	}
	if !strings.HasPrefix(target, "/") && target != "*" {
		authority, ok := absoluteAuthority(target)
		if !ok || !strings.EqualFold(authority, host[0]) {
			return bad("the absolute-form request target names another host than the Host header; send the path alone")
		}
	}
	switch len(contentLength) {
	case 0:
		return 0, nil
	case 1:
	default:
		return bad("the request carries %d Content-Length headers; send one", len(contentLength))
	}
	v := contentLength[0]
	if v == "" || len(v) > 18 || strings.Trim(v, "0123456789") != "" {
		return bad("Content-Length must be decimal digits")
	}
	n, _ := strconv.ParseInt(v, 10, 64)
	return n, nil
}

// absoluteAuthority returns the authority of an absolute-form target ("https://host:port/...").
func absoluteAuthority(target string) (string, bool) {
	for _, s := range []string{"https://", "http://"} {
		if len(target) > len(s) && strings.EqualFold(target[:len(s)], s) {
			a, _, _ := strings.Cut(target[len(s):], "/")
			a, _, _ = strings.Cut(a, "?")
			return a, a != ""
		}
	}
	return "", false
}

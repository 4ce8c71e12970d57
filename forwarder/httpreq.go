package forwarder

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"os"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// In JWT mode the forwarder must add a header to each request, so it parses HTTP. It does so strictly,
// and writes every request again in one canonical form, so that it never passes on framing that the
// broker could read differently (the way requests are smuggled between two parsers):
//
//   - the header block is bounded, its lines end in CRLF, hold no control character but HT, and none
//     is folded (obs-fold); net/http parses it, and textproto (net/http's own header parser) counts the
//     fields that must not repeat;
//   - Content-Length appears at most once; Transfer-Encoding only as exactly "chunked", only in
//     HTTP/1.1, and never with Content-Length; Host exactly once (at most once in HTTP/1.0);
//   - the body is decoded and encoded anew: with Content-Length when its length is known, else chunked
//     with no extensions and no trailers;
//   - hop-by-hop fields, and any Authorization or Proxy-Authorization, are dropped; the forwarder's own
//     Authorization is added.
//
// Upgrades and CONNECT are refused: past them the bytes are no longer HTTP, and a bearer cannot be
// added to them.

// settleLimit is how much of a chunked request body is read whole before anything is sent: a body
// that ends within it is checked entirely and sent with a Content-Length; a longer one is streamed.
const settleLimit = 64 << 10

// requestError is a request refused before it reached the broker.
type requestError struct {
	status int
	msg    string // for the client and the log: names the rule, quotes nothing the client sent
	detail string // for the client only (the parser's words may quote its header line)
}

func (e *requestError) Error() string { return e.msg }

func refused(status int, format string, args ...any) *requestError {
	return &requestError{status: status, msg: fmt.Sprintf(format, args...)}
}

var errHeaderTooLarge = errors.New("header block over the limit")

// peekHeaderBlock returns the next message's start line and header fields, through the empty line
// that ends them, without consuming them. br must be able to buffer limit bytes.
func peekHeaderBlock(br *bufio.Reader, limit int) ([]byte, error) {
	from := 0
	for {
		buf, _ := br.Peek(br.Buffered())
		if i := bytes.Index(buf[from:], []byte("\r\n\r\n")); i >= 0 {
			return buf[:from+i+4], nil
		}
		if len(buf) >= limit {
			return nil, errHeaderTooLarge
		}
		from = max(0, len(buf)-3)
		if _, err := br.Peek(len(buf) + 1); err != nil {
			if errors.Is(err, io.EOF) && len(buf) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
}

// checkFieldLines checks a header block (or a trailer section) without its final CRLF: CRLF line
// ends only, no control character but HT, no line folded onto the one before (obs-fold), and after
// the start line (skip it) every line a field name, a token, right before its colon.
func checkFieldLines(block []byte, skip bool) *requestError {
	for line := range bytes.SplitSeq(block, []byte("\r\n")) {
		if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
			return refused(400, "a header line is folded onto the one before (obs-fold); send each field on one line")
		}
		if skip {
			skip = false
		} else if i := bytes.IndexByte(line, ':'); i < 0 || !httpguts.ValidHeaderFieldName(string(line[:i])) {
			return refused(400, "a header line is not a field name (a token, with no space before its colon) then a value")
		}
		for _, b := range line {
			if b < 0x20 && b != '\t' || b == 0x7f {
				return refused(400, "a header line holds a control character (a bare CR or LF, NUL, ...); end lines with CRLF")
			}
		}
	}
	return nil
}

// clientRequest is one request read from a client, checked, and ready to be written to the broker.
type clientRequest struct {
	method, target, host string
	header               http.Header // what is passed on: no hop-by-hop field, no credential
	proto10              bool
	close                bool // the client asked to close after this exchange
	expectContinue       bool
	dropped              int // Authorization and Proxy-Authorization fields dropped

	// length is the body's length, or -1 while it is chunked and its length unknown.
	length int64
	body   io.Reader // the decoded body; nil when there is none
}

// hopByHop are the fields that belong to one connection, or that the forwarder writes itself.
var hopByHop = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding",
	"Upgrade", "Content-Length", "Host", "Expect", "Authorization", "Proxy-Authorization"}

// readClientRequest reads and checks the next request's header block from br (which must buffer
// maxHeader bytes). The body is left in br, to be read through the returned request.
func readClientRequest(br *bufio.Reader, maxHeader int) (*clientRequest, *requestError) {
	block, err := peekHeaderBlock(br, maxHeader)
	switch {
	case errors.Is(err, errHeaderTooLarge):
		return nil, refused(431, "the request's header block is over %d bytes", maxHeader)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return nil, refused(408, "the request's header block did not arrive in time")
	case err != nil:
		return nil, refused(400, "the request ended inside its header block")
	}
	first := bytes.Index(block, []byte("\r\n"))
	if re := checkFieldLines(block[:len(block)-4], true); re != nil {
		return nil, re
	}
	// net/http's header parser, keeping what repeats: ReadRequest merges duplicate Content-Lengths
	// and drops Content-Length beside chunked, so the counts are taken here.
	fields, err := textproto.NewReader(bufio.NewReader(bytes.NewReader(block[first+2:]))).ReadMIMEHeader()
	if err != nil {
		return nil, &requestError{status: 400, msg: "a header field is malformed", detail: err.Error()}
	}
	cl, te, hosts := fields["Content-Length"], fields["Transfer-Encoding"], fields["Host"]
	switch {
	case len(cl) > 1:
		return nil, refused(400, "the request has %d Content-Length fields; send one", len(cl))
	case len(te) > 0 && len(cl) > 0:
		return nil, refused(400, "the request has both Transfer-Encoding and Content-Length; send one")
	case len(te) > 1 || len(te) == 1 && !strings.EqualFold(textproto.TrimString(te[0]), "chunked"):
		return nil, refused(501, "Transfer-Encoding other than chunked is not forwarded")
	case len(hosts) > 1:
		return nil, refused(400, "the request has %d Host fields; send one", len(hosts))
	}
	req, err := http.ReadRequest(br)
	if err != nil {
		return nil, &requestError{status: 400, msg: "the request is not valid HTTP/1.1", detail: err.Error()}
	}
	if req.ProtoMajor != 1 {
		return nil, refused(505, "HTTP/%d.%d is not forwarded; send HTTP/1.1", req.ProtoMajor, req.ProtoMinor)
	}
	r := &clientRequest{method: req.Method, proto10: req.ProtoMinor == 0, close: req.Close, length: 0}
	switch {
	case len(te) > 0 && r.proto10:
		return nil, refused(400, "Transfer-Encoding in an HTTP/1.0 request; send HTTP/1.1 or a Content-Length")
	case len(hosts) == 0 && !r.proto10:
		return nil, refused(400, "an HTTP/1.1 request without a Host field")
	}
	if !httpguts.ValidHostHeader(req.Host) {
		return nil, refused(400, "the request's Host is not a valid host[:port]")
	}
	if req.Method == http.MethodConnect {
		return nil, refused(501, "CONNECT is not forwarded")
	}
	if len(fields["Upgrade"]) > 0 || httpguts.HeaderValuesContainsToken(fields["Connection"], "upgrade") {
		return nil, refused(501, "protocol upgrades (Connection: Upgrade, such as WebSocket) are not forwarded with --jwt-audience: "+
			"a bearer token cannot be added past the upgrade; use svidbroker connect without --jwt-audience (mutual TLS) for them")
	}
	if ex := fields["Expect"]; len(ex) > 0 {
		if len(ex) > 1 || !strings.EqualFold(textproto.TrimString(ex[0]), "100-continue") {
			return nil, refused(417, "the only expectation forwarded is 100-continue")
		}
		r.expectContinue = !r.proto10
	}
	if r.target, r.host, err = requestTarget(req, hosts); err != nil {
		return nil, refused(400, "%v", err)
	}

	r.header = req.Header.Clone()
	for _, name := range fields["Connection"] {
		for tok := range strings.SplitSeq(name, ",") {
			if tok = textproto.TrimString(tok); tok != "" {
				r.header.Del(tok)
			}
		}
	}
	r.dropped = len(fields["Authorization"]) + len(fields["Proxy-Authorization"])
	for _, name := range hopByHop {
		r.header.Del(name)
	}
	switch {
	case len(te) > 0:
		r.length = -1
		r.body = &chunkedBody{br: br, cr: httputil.NewChunkedReader(br), max: maxHeader}
	case len(cl) == 1:
		r.length = req.ContentLength
		if r.length > 0 {
			r.body = req.Body // net/http's reader, bounded to the length
		}
	}
	return r, nil
}

// requestTarget is the target to send (origin-form, as the client wrote it when it wrote it so) and
// the host. An absolute-form target must name the same host as the Host field, if there is one.
func requestTarget(req *http.Request, hosts []string) (target, host string, err error) {
	raw := req.RequestURI
	switch {
	case strings.IndexByte(raw, '#') >= 0:
		return "", "", errors.New("the request target holds a fragment ('#'), which HTTP does not send")
	case strings.HasPrefix(raw, "/"):
		return raw, req.Host, nil
	case raw == "*":
		if req.Method != http.MethodOptions {
			return "", "", errors.New("the target * is only for OPTIONS")
		}
		return raw, req.Host, nil
	}
	u := req.URL
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.Opaque != "" {
		return "", "", errors.New("the request target is neither a path (/...) nor an absolute http URL without user info")
	}
	if len(hosts) > 0 && !strings.EqualFold(textproto.TrimString(hosts[0]), u.Host) {
		return "", "", errors.New("the absolute-form target names another host than the Host field")
	}
	return u.RequestURI(), u.Host, nil
}

// settle reads a chunked body of up to settleLimit bytes whole, so that all of it is checked before
// anything is sent, and it is sent with a Content-Length. A longer body, or one the client sends only
// after a 100 Continue, stays chunked and is streamed.
func (r *clientRequest) settle() *requestError {
	if r.length >= 0 || r.expectContinue {
		return nil
	}
	buf, err := io.ReadAll(io.LimitReader(r.body, settleLimit+1))
	if err != nil {
		return bodyError(err)
	}
	if len(buf) > settleLimit {
		r.body = io.MultiReader(bytes.NewReader(buf), r.body)
		return nil
	}
	r.length, r.body = int64(len(buf)), bytes.NewReader(buf)
	if len(buf) == 0 {
		r.body = nil
	}
	return nil
}

// bodyError is the refusal for a request body that could not be read.
func bodyError(err error) *requestError {
	var re *requestError
	switch {
	case errors.As(err, &re):
		return re
	case errors.Is(err, os.ErrDeadlineExceeded):
		return refused(408, "the request body did not arrive in time")
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return refused(400, "the request body ended before its length")
	}
	return refused(400, "the request body's chunked encoding is malformed")
}

// head is the canonical request line and header block: Host first, the fields in sorted order, the
// bearer, then the framing the forwarder chose.
func (r *clientRequest) head(bearer string) []byte {
	var b bytes.Buffer
	b.WriteString(r.method + " " + r.target + " HTTP/1.1\r\n")
	if r.host != "" {
		b.WriteString("Host: " + r.host + "\r\n")
	}
	_ = r.header.Write(&b)
	b.WriteString("Authorization: Bearer " + bearer + "\r\n")
	switch {
	case r.length < 0:
		b.WriteString("Transfer-Encoding: chunked\r\n")
	case r.body != nil || r.length > 0 || slices.Contains([]string{"POST", "PUT", "PATCH"}, r.method):
		b.WriteString("Content-Length: " + strconv.FormatInt(r.length, 10) + "\r\n")
	}
	if r.expectContinue {
		b.WriteString("Expect: 100-continue\r\n")
	}
	if r.close || r.proto10 {
		b.WriteString("Connection: close\r\n")
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

// writeTo writes the request to w: the head, then the body in the chosen framing. A body that
// breaks off or turns out malformed is returned as a *requestError; what was written of it is then
// an incomplete request, which the caller ends by closing the connection. A body that the caller
// stopped (errBodyStopped) is returned as it is. Other errors are w's.
func (r *clientRequest) writeTo(w io.Writer, bearer string) error {
	if _, err := w.Write(r.head(bearer)); err != nil {
		return err
	}
	if r.body == nil {
		return nil
	}
	chunked := r.length < 0
	buf := make([]byte, 32<<10)
	var frame []byte
	var sent int64
	for {
		n, err := r.body.Read(buf)
		if n > 0 {
			out := buf[:n]
			if chunked {
				frame = strconv.AppendInt(frame[:0], int64(n), 16)
				frame = append(frame, "\r\n"...)
				frame = append(frame, out...)
				frame = append(frame, "\r\n"...)
				out = frame
			}
			if _, werr := w.Write(out); werr != nil {
				return werr
			}
			sent += int64(n)
		}
		switch {
		case errors.Is(err, io.EOF) && chunked:
			_, werr := w.Write([]byte("0\r\n\r\n"))
			return werr
		case errors.Is(err, io.EOF) && sent < r.length:
			return bodyError(io.ErrUnexpectedEOF)
		case errors.Is(err, io.EOF):
			return nil
		case errors.Is(err, errBodyStopped):
			return err
		case err != nil:
			return bodyError(err)
		}
	}
}

// chunkedBody decodes a chunked body with net/http's chunked reader, then reads the trailer section
// (bounded like a header block, checked like one, and dropped: trailers are not forwarded).
type chunkedBody struct {
	br   *bufio.Reader
	cr   io.Reader
	max  int
	done bool
}

func (c *chunkedBody) Read(p []byte) (int, error) {
	if c.done {
		return 0, io.EOF
	}
	n, err := c.cr.Read(p)
	if errors.Is(err, io.EOF) {
		if terr := c.readTrailer(); terr != nil {
			return n, terr
		}
		c.done = true
	}
	return n, err
}

func (c *chunkedBody) readTrailer() error {
	if b, err := c.br.Peek(2); err != nil {
		return io.ErrUnexpectedEOF
	} else if string(b) == "\r\n" {
		_, _ = c.br.Discard(2)
		return nil
	}
	block, err := peekHeaderBlock(c.br, c.max)
	if err != nil {
		if errors.Is(err, errHeaderTooLarge) {
			return refused(431, "the request's trailer section is over %d bytes", c.max)
		}
		return err
	}
	if re := checkFieldLines(block[:len(block)-4], false); re != nil {
		return re
	}
	if _, err := textproto.NewReader(bufio.NewReader(bytes.NewReader(block))).ReadMIMEHeader(); err != nil {
		return refused(400, "a trailer field is malformed")
	}
	_, _ = c.br.Discard(len(block))
	return nil
}

package forwarder

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// responseHopByHop are the response fields that belong to the broker's connection, or that the
// forwarder writes itself for the client's.
var responseHopByHop = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Transfer-Encoding", "Upgrade", "Content-Length"}

// relayResponse reads the broker's answer to r from bbr (which must buffer maxHeader bytes) and
// writes it to the client, streaming: each piece of the body is written as it arrives, so chunked
// bodies and server-sent events pass event by event. Interim 1xx responses pass first (to an HTTP/1.1
// client). It reports whether the client connection may carry another request, and whether any
// byte of the final response went to the client (after which a failure can only close the
// connection; interim responses leave room for the forwarder's own final one). ready is called
// before anything of the final response is written: it says whether the exchange left the
// connection usable, or, with an error, that the response must not be relayed (the error is
// returned).
func relayResponse(bbr *bufio.Reader, maxHeader int, client io.Writer, r *clientRequest, ready func() (bool, error)) (keep, wrote bool, err error) {
	var resp *http.Response
	for {
		block, err := peekHeaderBlock(bbr, maxHeader)
		if err != nil {
			if errors.Is(err, errHeaderTooLarge) {
				return false, wrote, fmt.Errorf("the broker's response header block is over %d bytes", maxHeader)
			}
			return false, wrote, fmt.Errorf("reading the broker's response: %w", err)
		}
		// The broker's header block is held to the rules of a client's (it is net/http's server).
		if re := checkFieldLines(block[:len(block)-4], true); re != nil {
			return false, wrote, fmt.Errorf("the broker's response: %s", re.msg)
		}
		resp, err = http.ReadResponse(bbr, &http.Request{Method: r.method})
		if err != nil {
			return false, wrote, fmt.Errorf("the broker's response is not valid HTTP/1.1: %w", err)
		}
		if resp.ProtoMajor != 1 || resp.StatusCode < 100 || resp.StatusCode > 599 {
			return false, wrote, fmt.Errorf("the broker's response is %s %d, not HTTP/1.x with a status from 100 to 599", resp.Proto, resp.StatusCode)
		}
		if resp.StatusCode == http.StatusSwitchingProtocols {
			return false, wrote, errors.New("the broker switched protocols, which the forwarder never asks for in JWT mode")
		}
		if resp.StatusCode >= 200 {
			break
		}
		if !r.proto10 {
			if _, err := client.Write(responseHead(resp, "")); err != nil {
				return false, wrote, err
			}
		}
	}
	defer resp.Body.Close()

	keepable, err := ready()
	if err != nil {
		return false, wrote, err
	}
	keep = !r.close && !r.proto10 && !resp.Close && keepable
	bodyless := r.method == http.MethodHead || resp.StatusCode == http.StatusNoContent || resp.StatusCode == http.StatusNotModified
	var framing string
	chunked := false
	switch {
	case bodyless:
		if cl := resp.Header.Get("Content-Length"); cl != "" && resp.StatusCode != http.StatusNoContent {
			if _, err := strconv.ParseUint(cl, 10, 63); err == nil {
				framing = "Content-Length: " + cl + "\r\n"
			}
		}
	case resp.ContentLength >= 0 && len(resp.TransferEncoding) == 0:
		framing = "Content-Length: " + strconv.FormatInt(resp.ContentLength, 10) + "\r\n"
	case !r.proto10:
		framing, chunked = "Transfer-Encoding: chunked\r\n", true
	default: // an HTTP/1.0 client: the body ends with the connection
		keep = false
	}
	if !keep {
		framing += "Connection: close\r\n"
	}
	wrote = true
	if _, err := client.Write(responseHead(resp, framing)); err != nil {
		return false, wrote, err
	}
	if bodyless {
		return keep, wrote, nil
	}
	buf := make([]byte, 32<<10)
	var frame []byte
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			out := buf[:n]
			if chunked {
				frame = strconv.AppendInt(frame[:0], int64(n), 16)
				frame = append(frame, "\r\n"...)
				frame = append(frame, out...)
				frame = append(frame, "\r\n"...)
				out = frame
			}
			if _, err := client.Write(out); err != nil {
				return false, wrote, err
			}
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			return false, wrote, fmt.Errorf("the broker's response body broke off: %w", rerr)
		}
	}
	if chunked {
		var end bytes.Buffer
		end.WriteString("0\r\n")
		for name, vs := range resp.Trailer {
			if !httpguts.ValidTrailerHeader(name) || !httpguts.ValidHeaderFieldName(name) {
				continue
			}
			for _, v := range vs {
				if httpguts.ValidHeaderFieldValue(v) {
					end.WriteString(name + ": " + v + "\r\n")
				}
			}
		}
		end.WriteString("\r\n")
		if _, err := client.Write(end.Bytes()); err != nil {
			return false, wrote, err
		}
	}
	return keep, wrote, nil
}

// responseHead is the status line and header block for the client: the broker's fields without the
// hop-by-hop ones (and those its Connection field names), then framing.
func responseHead(resp *http.Response, framing string) []byte {
	h := resp.Header.Clone()
	for _, v := range resp.Header["Connection"] {
		for tok := range strings.SplitSeq(v, ",") {
			if tok = strings.TrimSpace(tok); tok != "" {
				h.Del(tok)
			}
		}
	}
	for _, name := range responseHopByHop {
		h.Del(name)
	}
	status := resp.Status
	if !httpguts.ValidHeaderFieldValue(status) || !strings.HasPrefix(status, strconv.Itoa(resp.StatusCode)+" ") {
		status = strconv.Itoa(resp.StatusCode) + " " + http.StatusText(resp.StatusCode)
	}
	var b bytes.Buffer
	b.WriteString("HTTP/1.1 " + status + "\r\n")
	_ = h.Write(&b)
	b.WriteString(framing)
	b.WriteString("\r\n")
	return b.Bytes()
}

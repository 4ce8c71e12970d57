package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/svidbroker/svidbroker/broker/session"
)

// ServeFunc serves one request of a protocol carried over HTTP (MCP's Streamable HTTP), once its
// principal's session is known: Config.Serve. ctx ends with the request or its session; w bounds each
// write by Limits.Write.
type ServeFunc func(ctx context.Context, w http.ResponseWriter, r *http.Request, s *session.Session)

// ErrBodyTooLarge and ErrBodyLate are ReadBody's refusals of a body over Limits.MaxBodyBytes and of
// one that did not arrive within Limits.ReadBody.
var (
	ErrBodyTooLarge = errors.New("the request body is too large")
	ErrBodyLate     = errors.New("the request body did not arrive in time; send it whole right after the head")
)

// Limits are the engine's limits, defaults filled in.
func (e *Engine) Limits() Limits { return e.cfg.Limits }

// ReadBody reads r's body whole: at most Limits.MaxBodyBytes, within Limits.ReadBody.
func (e *Engine) ReadBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	max := e.cfg.Limits.MaxBodyBytes
	if r.ContentLength > int64(max) {
		return nil, fmt.Errorf("%w: %d bytes; at most %d are inspected", ErrBodyTooLarge, r.ContentLength, max)
	}
	if r.ContentLength != 0 {
		if err := http.NewResponseController(w).SetReadDeadline(time.Now().Add(e.cfg.Limits.ReadBody)); err != nil {
			return nil, err
		}
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, int64(max)+1))
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return nil, ErrBodyLate
	case err != nil:
		return nil, err
	case len(b) > max:
		return nil, fmt.Errorf("%w: at most %d bytes are inspected", ErrBodyTooLarge, max)
	}
	return b, nil
}

// UpstreamRequest builds a request to the upstream for r, a permitted request of session s: method
// and target (path and query) as given, body (nil for none), the agent's headers less those that
// stay behind (its credentials, the connection's, forwarding claims), and the session's credential.
func (e *Engine) UpstreamRequest(ctx context.Context, r *http.Request, s *session.Session, method, target string, body []byte) (*http.Request, error) {
	out, err := http.NewRequestWithContext(ctx, method, "https://"+e.cfg.Upstream.Address+target, nil)
	if err != nil {
		return nil, err
	}
	if r != nil {
		listed := connectionListed(r.Header)
		for k, vs := range r.Header {
			if !dropRequestHeader(k, listed) {
				out.Header[k] = vs
			}
		}
	}
	if body != nil {
		out.ContentLength = int64(len(body))
		out.Body = readCloser{bytes.NewReader(body)}
		out.GetBody = func() (io.ReadCloser, error) { return readCloser{bytes.NewReader(body)}, nil }
	}
	e.setCredential(out.Header, s)
	return out, nil
}

// setCredential sets the session's credential in h, or removes the credential header (the agent's
// own, if it sent one) when the session has no lease.
func (e *Engine) setCredential(h http.Header, s *session.Session) {
	if l := s.Lease(); l != nil {
		h.Set(e.cfg.Upstream.CredentialHeader, e.cfg.Upstream.CredentialPrefix+l.Lease.Password)
	} else {
		h.Del(e.cfg.Upstream.CredentialHeader)
	}
}

// RoundTrip sends out, built by UpstreamRequest, on the engine's transport, in an upstream span whose
// route attribute is name (a fixed name, never the agent's text); out gets the span's traceparent.
func (e *Engine) RoundTrip(ctx context.Context, out *http.Request, name string) (*http.Response, error) {
	up := e.startUpstream(ctx, out, " "+name)
	resp, err := e.transport.RoundTrip(out)
	endUpstream(up, resp, err)
	return resp, err
}

package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/broker/session"
	"github.com/svidbroker/svidbroker/plugins/protocol/http/jsonmask"
	"github.com/svidbroker/svidbroker/plugins/protocol/http/sse"
)

// Bounds of what the engine holds of a response.
const (
	// commitBytes of a masked JSON body are held before its headers go: a body refused within them
	// gets a clean 502; one refused later is cut off (the connection closes mid-body).
	commitBytes = 32 << 10
	// maxRecordedBody caps a body recorded with @record("full").
	maxRecordedBody = 64 << 10
)

var errUpstreamStalled = errors.New("the upstream stopped sending its response")

// forward sends a permitted request upstream and relays the response, masked.
func (e *Engine) forward(ctx context.Context, w http.ResponseWriter, r *http.Request, s *session.Session, f forwarding) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	out, err := e.upstreamRequest(ctx, r, s, f)
	if err != nil {
		writeError(w, http.StatusInternalServerError, errorBody{Error: "svidbroker: the request could not be built"})
		return
	}
	up := e.startUpstream(ctx, out, f.m.Route.Pattern) // sets out's traceparent (trace.go)
	resp, err := e.transport.RoundTrip(out)
	endUpstream(up, resp, err)
	if err != nil {
		if r.Context().Err() != nil {
			return
		}
		cause := context.Cause(ctx)
		s.Log().WarnContext(ctx, "upstream request failed", "route", f.m.Route.Pattern, "error", err, "cause", cause)
		s.Record(audit.Record{Kind: audit.KindError, Error: "upstream unavailable", Detail: map[string]string{"route": f.m.Route.Pattern}})
		status, msg := http.StatusBadGateway, fmt.Sprintf("svidbroker: the upstream of target %q did not answer", e.cfg.Target)
		if _, ok := errors.AsType[*session.Ended](cause); ok {
			status, msg = http.StatusServiceUnavailable, "svidbroker: "+cause.Error()+"; send the request again"
		}
		writeError(w, status, errorBody{Error: msg, Route: f.m.Route.Pattern})
		return
	}
	defer resp.Body.Close()
	body := &stallReader{r: resp.Body, d: e.cfg.Limits.Upstream, stall: func() { cancel(errUpstreamStalled) }}
	defer body.stop()

	secret := ""
	if l := s.Lease(); l != nil {
		secret = l.Lease.Password
	}
	var src io.Reader = body
	if secret != "" {
		src = newWithholdSecret(body, secret, bodyBuffer(resp.ContentLength))
	}
	copyResponseHeader(w.Header(), resp.Header, secret, f.describesMasked)
	res := &audit.Result{Tag: fmt.Sprintf("HTTP %d", resp.StatusCode), Unit: "masked values"}
	detail := map[string]string{"route": f.m.Route.Pattern, "request": f.text}
	if len(f.plan.masked) > 0 {
		detail["masked"] = strings.Join(f.plan.masked, ",")
	}
	var rec *capped
	if f.full {
		rec = &capped{max: maxRecordedBody}
	}
	defer func() {
		if rec != nil {
			detail["body"] = rec.buf.String()
			if rec.cut {
				detail["body_truncated"] = "true"
			}
		}
		s.Record(audit.Record{Kind: audit.KindResult, Result: res, Detail: detail})
	}()
	ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	bodyless := r.Method == http.MethodHead || resp.StatusCode == http.StatusNoContent || resp.StatusCode == http.StatusNotModified
	if f.plan.filter == nil || bodyless {
		w.WriteHeader(resp.StatusCode)
		n, err := relay(w, src, rec, ct == "text/event-stream", bodyBuffer(resp.ContentLength))
		res.Bytes = n
		if err != nil {
			detail["error"] = "response cut off: " + err.Error()
			panic(http.ErrAbortHandler)
		}
		return
	}
	refuse := func(why string) {
		detail["refused"] = why
		res.Tag = "refused (upstream HTTP " + fmt.Sprint(resp.StatusCode) + ")"
		for k := range w.Header() {
			delete(w.Header(), k)
		}
		writeError(w, http.StatusBadGateway, errorBody{Error: "svidbroker: " + why, Route: f.m.Route.Pattern})
	}
	ct, err = maskedMediaType(resp.StatusCode, resp.Header)
	if err != nil {
		refuse(fmt.Sprintf("%v, and fields of route %q are masked", err, f.m.Route.Pattern))
		return
	}
	w.Header()["Content-Type"] = []string{ct}
	filter := f.plan.filter
	switch {
	case ct == "application/json" || strings.HasSuffix(ct, "+json"):
		lw := &lazyWriter{w: w, status: resp.StatusCode}
		var dst io.Writer = lw
		if rec != nil {
			dst = io.MultiWriter(lw, rec)
		}
		// Reading the upstream and writing to the agent overlap with the masking (maskpipe.go).
		in := src
		if resp.ContentLength < 0 || resp.ContentLength > readBuffer {
			ra := newReadAhead(ctx, src, func() { resp.Body.Close() })
			defer ra.stop()
			in = ra
		}
		wb := newWriteBehind(ctx, dst)
		defer wb.close(true)
		n, err := filter.Copy(wb, in)
		res.Rows = int64(n)
		if werr := wb.close(err != nil); err == nil {
			err = werr
		}
		if err == nil {
			err = lw.commit()
		}
		res.Bytes = lw.n
		if err != nil {
			if !lw.committed {
				refuse(fmt.Sprintf("the upstream's JSON response to route %q could not be masked (%v), so it is withheld", f.m.Route.Pattern, err))
				return
			}
			detail["error"] = "response cut off: " + err.Error()
			panic(http.ErrAbortHandler)
		}
	case ct == "text/event-stream":
		w.WriteHeader(resp.StatusCode)
		n, bytes, err := maskEvents(w, src, filter, e.cfg.Limits.MaxEventBytes, rec)
		res.Rows, res.Bytes = int64(n), bytes // masked values, across the stream's events
		if err != nil {
			detail["error"] = "event stream cut off: " + err.Error()
			panic(http.ErrAbortHandler)
		}
	default:
		refuse(fmt.Sprintf("the upstream answered route %q with %q, which cannot be parsed, and fields of the route are masked; the upstream must answer with JSON", f.m.Route.Pattern, ct))
	}
}

// copyResponseHeader copies the upstream's response headers the agent may see: not the
// connection's, not Set-Cookie, none that holds the credential, and, when the body is masked, none
// that describes the unmasked body.
func copyResponseHeader(dst, src http.Header, secret string, masking bool) {
	listed := connectionListed(src)
	for k, vs := range src {
		if hopByHop[k] || listed[k] || k == "Set-Cookie" || k == "Set-Cookie2" || strings.HasPrefix(k, "Proxy-") {
			continue
		}
		if masking && (k == "Content-Length" || k == "Content-Md5" || k == "Digest" || k == "Content-Digest" || k == "Repr-Digest" || k == "Etag") {
			continue
		}
		if secret != "" && holds(vs, secret) {
			continue
		}
		dst[k] = vs
	}
}

func holds(vs []string, secret string) bool {
	for _, v := range vs {
		if strings.Contains(v, secret) {
			return true
		}
	}
	return false
}

// bodyBuffer is the size of the buffers that read a response body of length n (-1: unknown): 32 KiB,
// or, for a shorter body of known length, enough for it whole and the end (a small JSON document
// then costs its own size, not 32 KiB, per buffer). The length only sizes buffers: a body that runs
// longer is still read whole, in more reads.
func bodyBuffer(n int64) int {
	const most, least = 32 << 10, 512
	if n < 0 || n >= most {
		return most
	}
	return max(int(n)+1, least)
}

// relay copies an unmasked body, size bytes at a time (bodyBuffer), flushing each read of a stream.
func relay(w http.ResponseWriter, src io.Reader, rec *capped, stream bool, size int) (int64, error) {
	rc := http.NewResponseController(w)
	buf := make([]byte, size)
	var n int64
	for {
		k, err := src.Read(buf)
		if k > 0 {
			if _, werr := w.Write(buf[:k]); werr != nil {
				return n, werr
			}
			if rec != nil {
				rec.Write(buf[:k])
			}
			n += int64(k)
			if stream {
				_ = rc.Flush()
			}
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// maskEvents relays a text/event-stream event by event, each event's data masked as JSON. An event
// whose data cannot be masked ends the stream before it is sent.
func maskEvents(w http.ResponseWriter, src io.Reader, f *jsonmask.Filter, maxEvent int, rec *capped) (masked int, n int64, err error) {
	rc := http.NewResponseController(w)
	rd := sse.NewReader(src, maxEvent)
	var in, data, out []byte
	for {
		ev, err := rd.Next()
		if err == io.EOF {
			return masked, n, nil
		}
		if err != nil {
			return masked, n, err
		}
		if ev.HasData {
			in = append(in[:0], ev.Data...)
			var k int
			data, k, err = f.Append(data[:0], in)
			if err != nil {
				return masked, n, fmt.Errorf("an event's data could not be masked: %w", err)
			}
			masked += k
			ev.Data = string(data)
		}
		out, err = sse.AppendEvent(out[:0], ev)
		if err != nil {
			return masked, n, err
		}
		if _, err := w.Write(out); err != nil {
			return masked, n, err
		}
		if rec != nil {
			rec.Write(out)
		}
		n += int64(len(out))
		_ = rc.Flush()
	}
}

// lazyWriter holds the start of a body, up to commitBytes, before sending the headers, so that a body
// refused early gets an error response instead.
type lazyWriter struct {
	w         http.ResponseWriter
	status    int
	buf       []byte
	committed bool
	n         int64
}

func (l *lazyWriter) Write(p []byte) (int, error) {
	if !l.committed {
		if len(l.buf)+len(p) <= commitBytes {
			l.buf = append(l.buf, p...)
			return len(p), nil
		}
		if err := l.commit(); err != nil {
			return 0, err
		}
	}
	k, err := l.w.Write(p)
	l.n += int64(k)
	return k, err
}

func (l *lazyWriter) commit() error {
	if l.committed {
		return nil
	}
	l.committed = true
	l.w.WriteHeader(l.status)
	k, err := l.w.Write(l.buf)
	l.n += int64(k)
	l.buf = nil
	return err
}

// capped keeps the first max bytes written to it.
type capped struct {
	buf bytes.Buffer
	max int
	cut bool
}

func (c *capped) Write(p []byte) (int, error) {
	n := len(p)
	if room := c.max - c.buf.Len(); room < len(p) {
		c.cut = true
		p = p[:max(room, 0)]
	}
	c.buf.Write(p)
	return n, nil
}

// stallReader ends the request (stall) when one read waits longer than d.
type stallReader struct {
	r     io.Reader
	d     time.Duration
	stall func()
	t     *time.Timer
}

func (s *stallReader) Read(p []byte) (int, error) {
	if s.t == nil {
		s.t = time.AfterFunc(s.d, s.stall)
	} else {
		s.t.Reset(s.d)
	}
	n, err := s.r.Read(p)
	s.t.Stop()
	return n, err
}

func (s *stallReader) stop() {
	if s.t != nil {
		s.t.Stop()
	}
}

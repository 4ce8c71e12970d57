package proxy

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/svidbroker/svidbroker/broker/session"
	"github.com/svidbroker/svidbroker/broker/tracing"
)

// spanUpstream names the span of a request's round trip to the upstream, until its response's head.
const spanUpstream = "svidbroker.upstream"

// noSpan is a span that records nothing, for tracing off.
var noSpan = trace.SpanFromContext(context.Background())

// startRequest starts the request's server span when tracing is on, continuing its caller's trace
// (the W3C traceparent it sent) and returning r with the span in its context. Until a route
// matches, the span is named by the method only.
func (e *Engine) startRequest(r *http.Request) (*http.Request, trace.Span) {
	t := e.cfg.Session.Tracing
	if !t.On() {
		return r, noSpan
	}
	method := spanMethod(r.Method)
	ctx, span := t.Start(t.Extract(r.Context(), r.Header), method, trace.SpanKindServer,
		semconv.HTTPRequestMethodKey.String(method), tracing.TargetKey.String(e.cfg.Target))
	return r.WithContext(ctx), span
}

// endRequest ends the request's span with the status written to the agent; a 5xx fails it.
func endRequest(span trace.Span, w *writeDeadline) {
	if !span.IsRecording() {
		return
	}
	status := w.status
	if status == 0 {
		status = http.StatusOK // net/http's, for a handler that wrote nothing
	}
	span.SetAttributes(semconv.HTTPResponseStatusCode(status))
	if status >= 500 {
		span.SetStatus(codes.Error, http.StatusText(status))
	}
	span.End()
}

// linkSession links the request's span to its session's, which another request's trace may hold.
func linkSession(span trace.Span, s *session.Session) {
	if sc := s.SpanContext(); span.IsRecording() && sc.IsValid() && sc.TraceID() != span.SpanContext().TraceID() {
		span.AddLink(trace.Link{SpanContext: sc})
	}
}

// routeSpan names the request's span by its route, now that one matched: the route's pattern, never
// the path, unless the tracing settings allow paths (statement_text), which may name records.
func (e *Engine) routeSpan(ctx context.Context, method, pattern, path string) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	_, template, _ := strings.Cut(pattern, " ")
	span.SetName(spanMethod(method) + " " + template)
	span.SetAttributes(semconv.HTTPRoute(template))
	if e.cfg.Session.Tracing.StatementText() {
		span.SetAttributes(semconv.URLPath(path))
	}
}

// startUpstream starts the span of out's round trip to the upstream, a child of the request's, and
// sets out's traceparent to it: the upstream continues the broker's trace, and gets no trace
// context the agent sent unchecked. With tracing off, out keeps the agent's headers as they were.
func (e *Engine) startUpstream(ctx context.Context, out *http.Request, pattern string) trace.Span {
	t := e.cfg.Session.Tracing
	if !t.On() {
		return noSpan
	}
	_, template, _ := strings.Cut(pattern, " ")
	attrs := []attribute.KeyValue{semconv.HTTPRequestMethodKey.String(spanMethod(out.Method)), semconv.HTTPRoute(template)}
	if host, port, err := net.SplitHostPort(e.cfg.Upstream.Address); err == nil {
		attrs = append(attrs, semconv.ServerAddress(host))
		if p, err := strconv.Atoi(port); err == nil {
			attrs = append(attrs, semconv.ServerPort(p))
		}
	}
	ctx, span := t.Start(ctx, spanUpstream, trace.SpanKindClient, attrs...)
	t.Inject(ctx, out.Header)
	return span
}

// endUpstream ends the upstream span once the response's head came, or the round trip failed.
func endUpstream(span trace.Span, resp *http.Response, err error) {
	if !span.IsRecording() {
		return
	}
	switch {
	case err != nil:
		span.SetStatus(codes.Error, "the upstream did not answer")
	default:
		span.SetAttributes(semconv.HTTPResponseStatusCode(resp.StatusCode))
		if resp.StatusCode >= 400 {
			span.SetStatus(codes.Error, http.StatusText(resp.StatusCode))
		}
	}
	span.End()
}

// spanMethod is an agent's method as spans name it: one of HTTP's, else "_OTHER", so that span names
// and attributes take no text of the agent's choosing.
func spanMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete,
		http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "_OTHER"
}

package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/svidbroker/svidbroker/broker/tracing"
)

// tracedRig is a rig whose engine traces into an in-memory recorder (statementText: paths in spans).
func tracedRig(t *testing.T, statementText bool, policy func(*fakePolicy)) (*rig, *tracetest.SpanRecorder) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	r := newRig(t, rigOptions{routes: customerRoutes, config: func(c *Config) {
		c.Session.Tracing = tracing.WithProvider(tp, statementText)
	}})
	if policy != nil {
		policy(r.policy)
	}
	return r, rec
}

func attrOf(span sdktrace.ReadOnlySpan, key attribute.Key) (attribute.Value, bool) {
	for _, kv := range span.Attributes() {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

func named(spans []sdktrace.ReadOnlySpan, name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

// callerTrace is the trace context an agent's own instrumentation sends.
func callerTrace(n byte) (trace.TraceID, trace.SpanID, string) {
	tid := trace.TraceID{0xa1, n, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	sid := trace.SpanID{0xb2, n, 3, 4, 5, 6, 7, 8}
	return tid, sid, fmt.Sprintf("00-%s-%s-01", tid, sid)
}

// TestTracingContinuesTheCallersTrace: a request's span is the child of the caller's traceparent,
// named by its route; its decision and its upstream round trip are its children; the upstream gets a
// traceparent of the same trace whose parent is the broker's upstream span, not the agent's; the
// session's span holds the credential's lease, and a later request in another trace links to it.
// Paths stay out of spans by default.
func TestTracingContinuesTheCallersTrace(t *testing.T) {
	r, rec := tracedRig(t, false, nil)
	c := r.client(t, "spiffe://example.org/agent/a")
	tid, sid, tp := callerTrace(1)
	req := newReq(t, "GET", r.url("/v1/orders/7"), "")
	req.Header.Set("Traceparent", tp)
	if status, body, _ := get(t, c, req); status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	tid2, _, tp2 := callerTrace(2)
	req = newReq(t, "GET", r.url("/v1/orders/8"), "")
	req.Header.Set("Traceparent", tp2)
	if status, body, _ := get(t, c, req); status != http.StatusOK {
		t.Fatalf("second request: status %d: %s", status, body)
	}

	spans := rec.Ended()
	var first, second sdktrace.ReadOnlySpan
	for _, s := range named(spans, "GET /v1/orders/{id}") {
		switch s.SpanContext().TraceID() {
		case tid:
			first = s
		case tid2:
			second = s
		}
	}
	if first == nil || second == nil {
		t.Fatalf("request spans in the callers' traces missing: %v", spans)
	}
	if first.Parent().SpanID() != sid || first.SpanKind() != trace.SpanKindServer {
		t.Errorf("request span's parent %v (kind %v), want the caller's %v", first.Parent().SpanID(), first.SpanKind(), sid)
	}
	for key, want := range map[attribute.Key]attribute.Value{
		semconv.HTTPRequestMethodKey: attribute.StringValue("GET"), semconv.HTTPRouteKey: attribute.StringValue("/v1/orders/{id}"),
		semconv.HTTPResponseStatusCodeKey: attribute.IntValue(200), tracing.TargetKey: attribute.StringValue("api"),
	} {
		if got, ok := attrOf(first, key); !ok || got != want {
			t.Errorf("request span's %s = %v, want %v", key, got.Emit(), want.Emit())
		}
	}
	childOf := func(span, parent sdktrace.ReadOnlySpan) bool {
		return span.Parent().SpanID() == parent.SpanContext().SpanID() && span.SpanContext().TraceID() == parent.SpanContext().TraceID()
	}
	var decide, upstream sdktrace.ReadOnlySpan
	for _, s := range spans {
		if childOf(s, first) {
			switch s.Name() {
			case "svidbroker.decide":
				decide = s
			case spanUpstream:
				upstream = s
			}
		}
	}
	if decide == nil || upstream == nil {
		t.Fatalf("the request span's children: decide %v, upstream %v", decide, upstream)
	}
	if v, _ := attrOf(decide, tracing.OutcomeKey); v.AsString() != "allow" {
		t.Errorf("decide span's outcome %q", v.AsString())
	}
	if v, _ := attrOf(upstream, semconv.ServerAddressKey); v.AsString() != "127.0.0.1" || upstream.SpanKind() != trace.SpanKindClient {
		t.Errorf("upstream span: server.address %q, kind %v", v.AsString(), upstream.SpanKind())
	}
	if v, _ := attrOf(upstream, semconv.HTTPResponseStatusCodeKey); v.AsInt64() != 200 {
		t.Errorf("upstream span's status code %v", v.AsInt64())
	}

	// What reached the upstream: the broker's upstream span as parent, in the caller's trace.
	got := r.up.requests()
	if len(got) != 2 {
		t.Fatalf("upstream got %d requests", len(got))
	}
	want := fmt.Sprintf("00-%s-%s-01", tid, upstream.SpanContext().SpanID())
	if tps := got[0].Header.Values("Traceparent"); len(tps) != 1 || tps[0] != want {
		t.Errorf("upstream's traceparent %q, want %q (the broker's span in the caller's trace)", tps, want)
	}

	// The session: opened by the first request (its child), its credential its own child; the second
	// request, in another trace, links to it. It lasts as long as the connection, which is open.
	var started []sdktrace.ReadOnlySpan
	for _, s := range rec.Started() {
		started = append(started, s)
	}
	sessions := named(started, "svidbroker.session")
	if len(sessions) != 1 || !childOf(sessions[0], first) {
		t.Fatalf("session spans %v: want one, the first request's child", sessions)
	}
	if creds := named(spans, "svidbroker.credential"); len(creds) != 1 || !childOf(creds[0], sessions[0]) {
		t.Errorf("credential spans %v: want one, the session's child", creds)
	}
	linked := false
	for _, l := range second.Links() {
		linked = linked || l.SpanContext.SpanID() == sessions[0].SpanContext().SpanID()
	}
	if !linked {
		t.Errorf("the second request's span does not link to its session's: %v", second.Links())
	}
	for _, s := range spans {
		for _, kv := range s.Attributes() {
			if strings.Contains(kv.Value.Emit(), "/v1/orders/7") || strings.Contains(kv.Value.Emit(), "api-token") {
				t.Errorf("span %s carries %s = %q: paths are off by default, credentials always", s.Name(), kv.Key, kv.Value.Emit())
			}
		}
	}
}

// TestTracingPathsWhenStatementTextIsOn: with statement_text, the request's span names its path.
func TestTracingPathsWhenStatementTextIsOn(t *testing.T) {
	r, rec := tracedRig(t, true, nil)
	if status, body, _ := get(t, r.client(t, "spiffe://example.org/agent/a"), newReq(t, "GET", r.url("/v1/orders/7"), "")); status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	reqs := named(rec.Ended(), "GET /v1/orders/{id}")
	if len(reqs) != 1 {
		t.Fatalf("%d request spans", len(reqs))
	}
	if v, ok := attrOf(reqs[0], semconv.URLPathKey); !ok || v.AsString() != "/v1/orders/7" {
		t.Errorf("url.path = %q, want the request's path", v.AsString())
	}
	// Without a caller's trace context the request starts a trace of its own, and the upstream
	// continues it.
	if reqs[0].Parent().IsValid() {
		t.Errorf("a request without traceparent has parent %v", reqs[0].Parent())
	}
	if tp := r.up.requests()[0].Header.Get("Traceparent"); !strings.Contains(tp, reqs[0].SpanContext().TraceID().String()) {
		t.Errorf("upstream's traceparent %q is not of the request's trace", tp)
	}
}

// TestTracingRefusedRequest: a refused request's decision fails with the refusing policy, nothing
// reaches the upstream, and the request's span reports the 403 without failing (a 4xx is the
// caller's).
func TestTracingRefusedRequest(t *testing.T) {
	r, rec := tracedRig(t, false, func(p *fakePolicy) {
		p.deny = func(Request) error { return errors.New("DELETE denied by forbid-test") }
	})
	req := newReq(t, "DELETE", r.url("/v1/orders/7"), "")
	if status, body, _ := get(t, r.client(t, "spiffe://example.org/agent/a"), req); status != http.StatusForbidden {
		t.Fatalf("status %d: %s", status, body)
	}
	spans := rec.Ended()
	if len(named(spans, spanUpstream)) != 0 || len(r.up.requests()) != 0 {
		t.Fatalf("a refused request reached the upstream")
	}
	decides := named(spans, "svidbroker.decide")
	if len(decides) != 1 || decides[0].Status().Code != codes.Error {
		t.Fatalf("decide spans %v: want one, failed", decides)
	}
	if v, _ := attrOf(decides[0], tracing.PoliciesKey); len(v.AsStringSlice()) != 1 || v.AsStringSlice()[0] != "forbid-test" {
		t.Errorf("decide span's policies %v", v.AsStringSlice())
	}
	reqs := named(spans, "DELETE /v1/orders/{id}")
	if len(reqs) != 1 || reqs[0].Status().Code == codes.Error {
		t.Fatalf("request spans %v", reqs)
	}
	if v, _ := attrOf(reqs[0], semconv.HTTPResponseStatusCodeKey); v.AsInt64() != http.StatusForbidden {
		t.Errorf("request span's status code %v", v.AsInt64())
	}
}

// TestTracingOffPassesTraceContextThrough: with tracing off the engine makes no spans and forwards
// the agent's traceparent as it forwards its other headers.
func TestTracingOffPassesTraceContextThrough(t *testing.T) {
	r := newRig(t, rigOptions{routes: customerRoutes})
	_, _, tp := callerTrace(3)
	req := newReq(t, "GET", r.url("/v1/orders/7"), "")
	req.Header.Set("Traceparent", tp)
	if status, body, _ := get(t, r.client(t, "spiffe://example.org/agent/a"), req); status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	if got := r.up.requests()[0].Header.Get("Traceparent"); got != tp {
		t.Errorf("upstream's traceparent %q, want the agent's %q", got, tp)
	}
}

package proxy

import (
	"context"
	"encoding/json"
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// methodKey is the span attribute of an MCP message's method (one of spanMethod's).
const methodKey = attribute.Key("mcp.method.name")

// traceMessage names the request's span by the message's method and, when the agent sent its trace
// context in params._meta (traceparent, tracestate) rather than in the HTTP headers, continues that
// trace: a span of the message, a child of the agent's, linked to the HTTP request's. end ends it.
func (x *exchange) traceMessage(ctx context.Context, m message) (_ context.Context, end func()) {
	t := x.e.cfg.HTTP.Session.Tracing
	if !t.On() || m.req == nil {
		return ctx, func() {}
	}
	method := spanMethod(m.req.Method)
	span := trace.SpanFromContext(ctx)
	span.SetName("mcp " + method)
	span.SetAttributes(methodKey.String(method))
	carrier := metaTrace(m.req.Params)
	if carrier == nil || x.r.Header.Get("Traceparent") != "" {
		return ctx, func() {}
	}
	parent := t.Extract(context.Background(), carrier)
	if !trace.SpanContextFromContext(parent).IsValid() {
		return ctx, func() {}
	}
	_, ms := t.StartLinked(parent, "mcp "+method, trace.SpanKindServer, span.SpanContext(), methodKey.String(method))
	// The message's span carries on in the request's context (its deadline, its cancellation).
	return trace.ContextWithSpan(ctx, ms), func() { ms.End() }
}

// metaTrace is the W3C trace context of params._meta, as headers; nil without a traceparent.
func metaTrace(params json.RawMessage) http.Header {
	var p struct {
		Meta struct {
			Traceparent string `json:"traceparent"`
			Tracestate  string `json:"tracestate"`
		} `json:"_meta"`
	}
	if json.Unmarshal(params, &p) != nil || p.Meta.Traceparent == "" || len(p.Meta.Traceparent) > 128 || len(p.Meta.Tracestate) > 512 {
		return nil
	}
	h := http.Header{"Traceparent": {p.Meta.Traceparent}}
	if p.Meta.Tracestate != "" {
		h.Set("Tracestate", p.Meta.Tracestate)
	}
	return h
}

// withTrace is a request's bytes with params._meta's traceparent and tracestate set to ctx's span:
// the upstream continues the broker's trace from the message as from the headers. raw unchanged when
// tracing is off or the message has no params object.
func (x *exchange) withTrace(ctx context.Context, raw json.RawMessage) json.RawMessage {
	t := x.e.cfg.HTTP.Session.Tracing
	if !t.On() {
		return raw
	}
	carrier := http.Header{}
	t.Inject(ctx, carrier)
	if carrier.Get("Traceparent") == "" {
		return raw
	}
	var msg map[string]json.RawMessage
	if json.Unmarshal(raw, &msg) != nil {
		return raw
	}
	var params map[string]json.RawMessage
	if p, ok := msg["params"]; ok {
		if json.Unmarshal(p, &params) != nil || params == nil {
			return raw
		}
	} else {
		params = map[string]json.RawMessage{}
	}
	meta := map[string]json.RawMessage{}
	if m, ok := params["_meta"]; ok && json.Unmarshal(m, &meta) != nil {
		return raw
	}
	meta["traceparent"], _ = json.Marshal(carrier.Get("Traceparent"))
	delete(meta, "tracestate")
	if ts := carrier.Get("Tracestate"); ts != "" {
		meta["tracestate"], _ = json.Marshal(ts)
	}
	params["_meta"], _ = json.Marshal(meta)
	msg["params"], _ = json.Marshal(params)
	out, err := json.Marshal(msg)
	if err != nil {
		return raw
	}
	return out
}

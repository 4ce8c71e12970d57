package session

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/svidbroker/svidbroker/broker/tracing"
)

// Span names: one span per session, with a child per operation decided, per hold and for the
// credential's lease; engines add their own ("upstream").
const (
	spanSession    = "svidbroker.session"
	spanDecide     = "svidbroker.decide"
	spanHold       = "svidbroker.hold"
	spanCredential = "svidbroker.credential"
)

// startSpan starts the span of a session being opened, a child of the span in ctx (the HTTP request
// that opened it, continuing its caller's trace), if any.
func (c *Core) startSpan(ctx context.Context) (context.Context, trace.Span) {
	t := c.cfg.Tracing
	if !t.On() {
		return ctx, trace.SpanFromContext(context.Background())
	}
	attrs := append([]attribute.KeyValue{tracing.TargetKey.String(c.cfg.Target)}, c.cfg.SpanAttributes...)
	return t.Start(ctx, spanSession, trace.SpanKindServer, attrs...)
}

// refusedSpan ends the span of a session refused for kind.
func refusedSpan(span trace.Span, kind error) {
	if !span.IsRecording() {
		return
	}
	reason := refusalReasons[kind]
	span.SetAttributes(tracing.OutcomeKey.String(reason))
	span.SetStatus(codes.Error, "session refused: "+reason)
	span.End()
}

// endSpan ends the session's span with outcome (metrics' word for how it ended).
func (s *Session) endSpan(outcome string) {
	if s.span == nil || !s.span.IsRecording() {
		return
	}
	s.span.SetAttributes(tracing.OutcomeKey.String(outcome))
	switch outcome {
	case "client_ended", "shutdown":
	default:
		s.span.SetStatus(codes.Error, "session ended: "+outcome)
	}
	s.span.End()
}

// Tracing is the core's tracing (nil when off), for an engine that keeps a Decider or holds
// operations itself; nil on a nil *Session.
func (s *Session) Tracing() *tracing.Tracing {
	if s == nil {
		return nil
	}
	return s.core.cfg.Tracing
}

// SpanContext is the session's span's, zero when tracing is off: an engine's spans of the session's
// operations are its children, or link to it (an HTTP request's, in its caller's trace).
func (s *Session) SpanContext() trace.SpanContext {
	if s == nil || s.span == nil {
		return trace.SpanContext{}
	}
	return s.span.SpanContext()
}

// startDecide starts the span of op's decision: a child of op.Parent if set, else of session's span.
func startDecide(ctx context.Context, t *tracing.Tracing, op *Operation, session trace.SpanContext, kind string) (context.Context, trace.Span) {
	parent := op.Parent
	if !parent.IsValid() {
		parent = session
	}
	if parent.IsValid() {
		ctx = trace.ContextWithSpanContext(ctx, parent)
	}
	if op.Kind != "" {
		kind = op.Kind
	}
	attrs := append([]attribute.KeyValue{tracing.OperationKindKey.String(kind)}, op.SpanAttributes...)
	return t.Start(ctx, spanDecide, trace.SpanKindInternal, attrs...)
}

// endDecide ends a decision's span with its verdict: the outcome, the deciding policies, the
// approval request. A refusal's reason stays in the audit log: it can quote the operation.
func endDecide(span trace.Span, v Verdict) {
	attrs := []attribute.KeyValue{tracing.OutcomeKey.String(v.Outcome.String())}
	if len(v.Decision.Reasons) > 0 {
		attrs = append(attrs, tracing.PoliciesKey.StringSlice(v.Decision.Reasons))
	}
	if v.Request != "" {
		attrs = append(attrs, tracing.ApprovalKey.String(v.Request))
	}
	span.SetAttributes(attrs...)
	if v.Outcome == Block {
		span.SetStatus(codes.Error, "operation refused")
	}
	span.End()
}

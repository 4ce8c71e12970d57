package tracing

import (
	"context"
	"reflect"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
)

// StartLeaf starts a span named name, a child of parent, that has no children in the broker (a
// statement's relay to its backend): the broker's hottest span, one per statement.
//
// With a Tracing made by New, a leaf span is the broker's own (leafSpan): one allocation, its
// attributes attrs itself (not copied: the caller never changes attrs afterwards), queued straight to
// the batcher when it ends. An SDK span costs several allocations and copies at its start and its end
// (its configuration, its attributes twice, a snapshot), which on a statement of a few tens of
// microseconds was most of what tracing cost it. It is sampled as the SDK's parent-based sampler
// samples a child: exactly when parent is. A Tracing made by WithProvider, or a parent that is not
// valid, gets an SDK span from ctx with parent as its parent, as Start makes.
func (t *Tracing) StartLeaf(ctx context.Context, parent trace.SpanContext, name string, kind trace.SpanKind, attrs []attribute.KeyValue) trace.Span {
	if t == nil {
		return noSpan
	}
	if t.leaves == nil || !parent.IsValid() {
		_, span := t.Start(trace.ContextWithSpanContext(ctx, parent), name, kind, attrs...)
		return span
	}
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: parent.TraceID(), SpanID: newSpanID(),
		TraceFlags: parent.TraceFlags(), TraceState: parent.TraceState()})
	s := &leafSpan{t: t, name: name, sc: sc, parent: parent, kind: kind, start: time.Now(), recording: parent.IsSampled()}
	if s.recording && len(attrs) > 0 {
		s.attrs, s.shared = attrs, true
		if len(attrs) > leafLimit {
			s.attrs, s.droppedAttrs = attrs[:leafLimit:leafLimit], len(attrs)-leafLimit
		}
	}
	return s
}

// leafLimit bounds a leaf span's attributes, events and links, each, and an event's or link's
// attributes, as the SDK's default span limits do (128); beyond it they are counted as dropped
// (the oldest events and links, the newest attributes).
const leafLimit = 128

// leafSpan is a span the broker records without the SDK's span (StartLeaf): it has what an SDK span
// records — name, kind, times, attributes, events, links, status — and the encoder reads it as it
// reads the SDK's ended spans (spanData). After End it records nothing more.
type leafSpan struct {
	embedded.Span

	t            *Tracing
	sc, parent   trace.SpanContext
	kind         trace.SpanKind
	start        time.Time
	recording    bool // sampled, and not ended
	mu           sync.Mutex
	name         string
	end          time.Time
	attrs        []attribute.KeyValue
	shared       bool // attrs is the caller's: copy before changing it
	droppedAttrs int
	events       []sdktrace.Event
	droppedEvent int
	links        []sdktrace.Link
	droppedLinks int
	status       sdktrace.Status
}

// End ends the span and queues it for export, once.
func (s *leafSpan) End(options ...trace.SpanEndOption) {
	if s == nil {
		return
	}
	end := time.Now()
	if len(options) > 0 {
		if cfg := trace.NewSpanEndConfig(options...); !cfg.Timestamp().IsZero() {
			end = cfg.Timestamp()
		}
	}
	s.mu.Lock()
	if !s.recording {
		s.mu.Unlock()
		return
	}
	s.recording, s.end = false, end
	s.mu.Unlock()
	s.t.leaves.enqueue(s)
}

// AddEvent records an event named name.
func (s *leafSpan) AddEvent(name string, options ...trace.EventOption) {
	cfg := trace.NewEventConfig(options...)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.recording {
		return
	}
	attrs := cfg.Attributes()
	dropped := 0
	if len(attrs) > leafLimit {
		attrs, dropped = attrs[:leafLimit], len(attrs)-leafLimit
	}
	s.events = evict(s.events, &s.droppedEvent)
	s.events = append(s.events, sdktrace.Event{Name: name, Attributes: attrs, DroppedAttributeCount: dropped, Time: cfg.Timestamp()})
}

// AddLink records a link to link's span, when that is valid.
func (s *leafSpan) AddLink(link trace.Link) {
	if !link.SpanContext.IsValid() {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.recording {
		return
	}
	attrs, dropped := link.Attributes, 0
	if len(attrs) > leafLimit {
		attrs, dropped = attrs[:leafLimit], len(attrs)-leafLimit
	}
	s.links = evict(s.links, &s.droppedLinks)
	s.links = append(s.links, sdktrace.Link{SpanContext: link.SpanContext, Attributes: attrs, DroppedAttributeCount: dropped})
}

// evict makes room for one more in q, full at leafLimit, by dropping its oldest and counting it in
// dropped: as the SDK's span keeps the latest events and links.
func evict[T any](q []T, dropped *int) []T {
	if len(q) < leafLimit {
		return q
	}
	*dropped++
	return append(q[:0], q[1:]...)
}

// IsRecording says whether the span records what it is given: sampled, and not yet ended.
func (s *leafSpan) IsRecording() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.recording
}

// RecordError records err as an exception event, as the SDK's span does (its type and message).
func (s *leafSpan) RecordError(err error, options ...trace.EventOption) {
	if err == nil {
		return
	}
	options = append(options, trace.WithAttributes(semconv.ExceptionType(errorType(err)), semconv.ExceptionMessage(err.Error())))
	s.AddEvent(semconv.ExceptionEventName, options...)
}

// errorType names err's type by its package path and name, or as Go writes an unnamed type.
func errorType(err error) string {
	t := reflect.TypeOf(err)
	if t.PkgPath() == "" && t.Name() == "" {
		return t.String()
	}
	return t.PkgPath() + "." + t.Name()
}

// SetStatus sets the span's status; as in the SDK, Ok is final, Unset never replaces another, and
// the description is kept only with Error.
func (s *leafSpan) SetStatus(code codes.Code, description string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.recording || code == codes.Unset || s.status.Code == codes.Ok {
		return
	}
	st := sdktrace.Status{Code: code}
	if code == codes.Error {
		st.Description = description
	}
	s.status = st
}

// SetName renames the span.
func (s *leafSpan) SetName(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.recording {
		s.name = name
	}
}

// SetAttributes sets kv: an attribute whose key the span has replaces its value, as the SDK keeps
// the last value of a key; invalid attributes are dropped.
func (s *leafSpan) SetAttributes(kv ...attribute.KeyValue) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.recording {
		return
	}
	if s.shared {
		s.attrs, s.shared = append(make([]attribute.KeyValue, 0, len(s.attrs)+len(kv)), s.attrs...), false
	}
next:
	for _, a := range kv {
		if !a.Valid() {
			s.droppedAttrs++
			continue
		}
		for i := range s.attrs {
			if s.attrs[i].Key == a.Key {
				s.attrs[i] = a
				continue next
			}
		}
		if len(s.attrs) >= leafLimit {
			s.droppedAttrs++
			continue
		}
		s.attrs = append(s.attrs, a)
	}
}

// SpanContext is the span's: its parent's trace, flags and state, and an ID of its own.
func (s *leafSpan) SpanContext() trace.SpanContext { return s.sc }

// TracerProvider is the provider of the Tracing that made the span.
func (s *leafSpan) TracerProvider() trace.TracerProvider { return s.t.provider }

// What the encoder reads (spanData), once the span has ended: the batcher takes it after End, which
// wrote the last of it under mu.

func (s *leafSpan) Name() string                     { return s.name }
func (s *leafSpan) Parent() trace.SpanContext        { return s.parent }
func (s *leafSpan) SpanKind() trace.SpanKind         { return s.kind }
func (s *leafSpan) StartTime() time.Time             { return s.start }
func (s *leafSpan) EndTime() time.Time               { return s.end }
func (s *leafSpan) Attributes() []attribute.KeyValue { return s.attrs }
func (s *leafSpan) Links() []sdktrace.Link           { return s.links }
func (s *leafSpan) Events() []sdktrace.Event         { return s.events }
func (s *leafSpan) Status() sdktrace.Status          { return s.status }
func (s *leafSpan) DroppedAttributes() int           { return s.droppedAttrs }
func (s *leafSpan) DroppedLinks() int                { return s.droppedLinks }
func (s *leafSpan) DroppedEvents() int               { return s.droppedEvent }
func (s *leafSpan) Resource() *resource.Resource     { return s.t.res }
func (s *leafSpan) InstrumentationScope() instrumentation.Scope {
	return instrumentation.Scope{Name: tracerName}
}

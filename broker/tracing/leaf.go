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
// statement's relay to its backend): the broker's hottest span, one per statement. It returns the
// span's handle (Leaf), which the caller keeps by value, in memory of its own.
//
// With a Tracing made by New, a leaf span is the broker's own (leafSpan): its attributes attrs
// itself (not copied: the caller never changes attrs afterwards), queued straight to the batcher when
// it ends, and taken from a pool of ended spans whose export is done. An SDK span costs several
// allocations and copies at its start and its end (its configuration, its attributes twice, a
// snapshot), which on a statement of a few tens of microseconds was most of what tracing cost it; a
// pooled leaf costs no allocation at all. It is sampled as the SDK's parent-based sampler samples a
// child: exactly when parent is; a leaf that is not sampled has a span context and nothing else. A
// Tracing made by WithProvider, or a parent that is not valid, gets an SDK span from ctx with parent
// as its parent, as Start makes.
func (t *Tracing) StartLeaf(ctx context.Context, parent trace.SpanContext, name string, kind trace.SpanKind, attrs []attribute.KeyValue) Leaf {
	if t == nil {
		return Leaf{}
	}
	if t.leaves == nil || !parent.IsValid() {
		_, span := t.Start(trace.ContextWithSpanContext(ctx, parent), name, kind, attrs...)
		return Leaf{sdk: span, sc: span.SpanContext()}
	}
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: parent.TraceID(), SpanID: newSpanID(),
		TraceFlags: parent.TraceFlags(), TraceState: parent.TraceState()})
	if !parent.IsSampled() {
		return Leaf{sc: sc} // records nothing
	}
	s, _ := t.leafPool.Get().(*leafSpan)
	if s == nil {
		s = &leafSpan{t: t}
	}
	// Without mu: the handles of s's earlier generations may still look at it, but under mu they
	// read gen alone, which only End writes (under mu, before s was exported and went back to the
	// pool), find their generation gone and touch nothing more (lock). Taking mu here would stall on
	// a cache line the exporting goroutine last held, on every statement.
	s.sc, s.parent, s.kind, s.name, s.recording = sc, parent, kind, name, true
	s.attrs, s.shared, s.droppedAttrs = nil, false, 0
	if len(attrs) > 0 {
		s.attrs, s.shared = attrs, true
		if len(attrs) > leafLimit {
			s.attrs, s.droppedAttrs = attrs[:leafLimit:leafLimit], len(attrs)-leafLimit
		}
	}
	if s.events != nil || s.links != nil || s.droppedEvent != 0 || s.droppedLinks != 0 || s.status != (sdktrace.Status{}) {
		s.events, s.droppedEvent, s.links, s.droppedLinks, s.status = nil, 0, nil, 0, sdktrace.Status{}
	}
	s.start = time.Now()
	return Leaf{s: s, gen: s.gen, sc: sc}
}

// leafLimit bounds a leaf span's attributes, events and links, each, and an event's or link's
// attributes, as the SDK's default span limits do (128); beyond it they are counted as dropped
// (the oldest events and links, the newest attributes).
const leafLimit = 128

// Leaf is the handle of a span StartLeaf started, and a trace.Span. The zero Leaf is no span:
// it records nothing.
//
// A leaf span the broker records itself (leafSpan) goes back to its Tracing's pool once its export
// is done, and is started again as another span: a Leaf names its span and the generation of it it
// started (gen), and once the span has moved on to another generation the Leaf records nothing.
// Ending a span makes it another generation, so using its handle afterwards, as the trace API allows
// (every method a no-op), can never reach the span a later statement is recording.
type Leaf struct {
	embedded.Span

	s   *leafSpan // the broker's own span, while s.gen is gen; nil for an SDK span or none
	gen uint64
	sc  trace.SpanContext // the span's, kept here as its leafSpan is reused
	sdk trace.Span        // the SDK's span (WithProvider, or a parent that is not valid)
}

var _ trace.Span = Leaf{}

// leafSpan is a span the broker records without the SDK's span (StartLeaf): it has what an SDK span
// records — name, kind, times, attributes, events, links, status — and the encoder reads it as it
// reads the SDK's ended spans (spanData). After End it records nothing more; after its export (when
// the exporter keeps no span: batcher.recycle) it goes back to its Tracing's pool (release).
type leafSpan struct {
	t            *Tracing // set once: a pool is its Tracing's
	mu           sync.Mutex
	gen          uint64 // counts the span's ends (End), under mu: a handle acts on its generation alone
	recording    bool   // sampled, and not ended
	sc, parent   trace.SpanContext
	kind         trace.SpanKind
	start, end   time.Time
	name         string
	attrs        []attribute.KeyValue
	shared       bool // attrs is the caller's: copy before changing it
	droppedAttrs int
	events       []sdktrace.Event
	droppedEvent int
	links        []sdktrace.Link
	droppedLinks int
	status       sdktrace.Status
}

// lock locks s for the handle of generation gen, and reports whether s records for it: false (and
// s unlocked) when s has ended or moved on to another generation. It reads nothing else of s before
// it has checked gen, as StartLeaf writes the rest of a reused span without mu.
func (s *leafSpan) lock(gen uint64) bool {
	s.mu.Lock()
	if s.gen != gen || !s.recording {
		s.mu.Unlock()
		return false
	}
	return true
}

// release returns s, ended, to its pool: for spans dropped unexported, and for exported ones once the
// exporter is done with them. It writes nothing to s (End made it another generation already), so the
// exporting goroutine never takes the cache lines of the spans it exported.
func (s *leafSpan) release() {
	s.t.leafPool.Put(s)
}

// End ends the span and queues it for export, once. Its end time is its start's plus the monotonic
// clock's elapsed time, as the SDK's span ends.
func (l Leaf) End(options ...trace.SpanEndOption) {
	if l.s == nil {
		l.other().End(options...)
		return
	}
	s := l.s
	if !s.lock(l.gen) {
		return
	}
	end := s.start.Add(time.Since(s.start))
	if len(options) > 0 {
		if cfg := trace.NewSpanEndConfig(options...); !cfg.Timestamp().IsZero() {
			end = cfg.Timestamp()
		}
	}
	// A generation of its own from here: the handle that ended it, like any older one, can change
	// nothing more, even once the span is started again.
	s.recording, s.end = false, end
	s.gen++
	s.mu.Unlock()
	s.t.leaves.enqueue(s)
}

// AddEvent records an event named name.
func (l Leaf) AddEvent(name string, options ...trace.EventOption) {
	if l.s == nil {
		l.other().AddEvent(name, options...)
		return
	}
	cfg := trace.NewEventConfig(options...)
	s := l.s
	if !s.lock(l.gen) {
		return
	}
	defer s.mu.Unlock()
	attrs := cfg.Attributes()
	dropped := 0
	if len(attrs) > leafLimit {
		attrs, dropped = attrs[:leafLimit], len(attrs)-leafLimit
	}
	s.events = evict(s.events, &s.droppedEvent)
	s.events = append(s.events, sdktrace.Event{Name: name, Attributes: attrs, DroppedAttributeCount: dropped, Time: cfg.Timestamp()})
}

// AddLink records a link to link's span, when that is valid.
func (l Leaf) AddLink(link trace.Link) {
	if l.s == nil {
		l.other().AddLink(link)
		return
	}
	if !link.SpanContext.IsValid() {
		return
	}
	s := l.s
	if !s.lock(l.gen) {
		return
	}
	defer s.mu.Unlock()
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
func (l Leaf) IsRecording() bool {
	if l.s == nil {
		return l.other().IsRecording()
	}
	if !l.s.lock(l.gen) {
		return false
	}
	l.s.mu.Unlock()
	return true
}

// RecordError records err as an exception event, as the SDK's span does (its type and message).
func (l Leaf) RecordError(err error, options ...trace.EventOption) {
	if l.s == nil {
		l.other().RecordError(err, options...)
		return
	}
	if err == nil {
		return
	}
	options = append(options, trace.WithAttributes(semconv.ExceptionType(errorType(err)), semconv.ExceptionMessage(err.Error())))
	l.AddEvent(semconv.ExceptionEventName, options...)
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
func (l Leaf) SetStatus(code codes.Code, description string) {
	if l.s == nil {
		l.other().SetStatus(code, description)
		return
	}
	s := l.s
	if !s.lock(l.gen) {
		return
	}
	defer s.mu.Unlock()
	if code == codes.Unset || s.status.Code == codes.Ok {
		return
	}
	st := sdktrace.Status{Code: code}
	if code == codes.Error {
		st.Description = description
	}
	s.status = st
}

// SetName renames the span.
func (l Leaf) SetName(name string) {
	if l.s == nil {
		l.other().SetName(name)
		return
	}
	if l.s.lock(l.gen) {
		l.s.name = name
		l.s.mu.Unlock()
	}
}

// SetAttributes sets kv: an attribute whose key the span has replaces its value, as the SDK keeps
// the last value of a key; invalid attributes are dropped.
func (l Leaf) SetAttributes(kv ...attribute.KeyValue) {
	if l.s == nil {
		l.other().SetAttributes(kv...)
		return
	}
	s := l.s
	if !s.lock(l.gen) {
		return
	}
	defer s.mu.Unlock()
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
func (l Leaf) SpanContext() trace.SpanContext { return l.sc }

// TracerProvider is the provider of the Tracing that made the span; a span that records nothing has
// the no-op provider, as the trace API's non-recording span has.
func (l Leaf) TracerProvider() trace.TracerProvider {
	if l.s == nil {
		return l.other().TracerProvider()
	}
	return l.s.t.provider // s.t is set once
}

// other is the span l's methods go to when the broker does not record it itself: the SDK's span, or
// none (noSpan, which records nothing, as a span the sampler left out or the zero Leaf).
func (l Leaf) other() trace.Span {
	if l.sdk != nil {
		return l.sdk
	}
	return noSpan
}

// What the encoder reads (spanData), once the span has ended: the batcher takes it after End, which
// wrote the last of it under mu.

func (s *leafSpan) SpanContext() trace.SpanContext   { return s.sc }
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

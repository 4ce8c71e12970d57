package tracing

import (
	"context"
	"encoding/binary"
	"reflect"
	"sync"
	"sync/atomic"
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

// Spool records the leaf spans of one session: spans that have no children in the broker, the
// broker's hottest (a statement's relay to its backend, one per statement). A session's engine makes
// one (Tracing.NewSpool) and starts its leaf spans from it (StartLeaf, or StartKind); a nil *Spool,
// tracing's being off, starts spans that record nothing.
//
// A leaf span the broker records itself is encoded into its session's spool when it ends, by the
// goroutine that ends it, and the spool hands its encoded spans to the batcher spoolSpans at a time
// (or spoolBytes), copying them into a buffer whose export is done and keeping its own, which stays
// in the cache of the core that ends its spans (batcher.handOver): one lock of the batcher per
// spoolSpans spans, and the only memory of a span that two goroutines share is its Leaf, in the
// statement's queue item that the session's two sides share anyway. A span queued whole instead —
// started on a session's client side, ended on its backend side, queued and encoded on the export
// goroutine — moved its memory between cores three times, which on this path cost more than
// recording it. Spans the spool holds wait at most until the batcher's next interval (it collects
// what every spool holds then, and on ForceFlush and Shutdown), or until Flush, which the session
// calls when it ends. So a session holds at most spoolSpans spans, or spoolBytes and one span more,
// outside the batcher's bounded queue; a spool no one flushes is still collected at the interval,
// after which the batcher holds nothing of it.
type Spool struct {
	t *Tracing
	b *batcher // t.leaves; nil when t was made by WithProvider: leaf spans are the SDK's

	mu     sync.Mutex
	buf    []byte // the encoded spans waiting, each a ScopeSpans' spans field
	n      int    // spans in buf
	listed bool   // b.pending holds the spool: set whenever n > 0

	lists [spoolLists]encodedList // the encodings of attribute lists the spool's spans share
	next  int                     // the slot of lists the next list goes into

	// hdr is what the spool's latest leaf span shares with the next, most likely (StartLeaf). It
	// is written once in a session, usually, and read at each start: atomic, not under mu, which
	// the ends take.
	hdr atomic.Pointer[leafHeader]
}

// leafHeader is what a session's leaf spans have in common: their parent (whose trace, flags and
// state they take), name and kind. A Leaf points at its spool's rather than holding its own copy, so
// that the memory a span is started in, on a session's client side, and ended in, on its backend
// side, is as little as can be: each cache line of it moves between the two cores.
type leafHeader struct {
	parent trace.SpanContext
	name   string
	kind   trace.SpanKind
}

// header is the leafHeader of parent, name and kind: the spool's, made again when one differs. The
// parent is compared by its trace, span ID, flags and remoteness, not its trace state: a span's
// context never changes, so the same span ID in the same trace has the same state, and comparing
// states (SpanContext.Equal) writes both out as strings, on every statement.
func (p *Spool) header(parent trace.SpanContext, name string, kind trace.SpanKind) *leafHeader {
	if h := p.hdr.Load(); h != nil && h.name == name && h.kind == kind && sameSpan(h.parent, parent) {
		return h
	}
	h := &leafHeader{parent: parent, name: name, kind: kind}
	p.hdr.Store(h)
	return h
}

// sameSpan says whether a and b are one span's context: the same trace, span ID, flags and
// remoteness.
func sameSpan(a, b trace.SpanContext) bool {
	return a.TraceID() == b.TraceID() && a.SpanID() == b.SpanID() && a.TraceFlags() == b.TraceFlags() &&
		a.IsRemote() == b.IsRemote()
}

// encodedList is the encoding of an attribute list that spans share (StartLeaf's attrs), named by
// its first element's address and its length: the spool keeps the list alive, so no other list can
// take its address.
//
// Once a plain span of the list has ended (encodedList.appendSpan), the entry also holds that span's
// whole encoding, its template, and the header it was made for. A session's relay spans of one kind
// of statement differ only in their span IDs and times, each of a fixed width in OTLP's encoding
// (bytes of 8, fixed64): so the next plain span of the list and header is the template with those
// patched in, not a walk of its fields. The spool keeps the header alive, as it does the list.
type encodedList struct {
	first *attribute.KeyValue
	n     int
	enc   []byte

	hdr   *leafHeader // the template's; nil when there is none
	span  []byte      // the template
	holes spanHoles   // where span holds its ID and times
}

// Limits of a spool: the spans (and bytes) it encodes before it hands them to the batcher, and the
// attribute lists whose encodings it keeps (a Postgres session shares one list per kind of
// statement).
const (
	spoolSpans = 32
	spoolBytes = 8 << 10
	spoolLists = 8
)

// NewSpool returns a spool of t's leaf spans for one session; nil when t is nil.
func (t *Tracing) NewSpool() *Spool {
	if t == nil {
		return nil
	}
	return &Spool{t: t, b: t.leaves}
}

// StartLeaf starts in l, which the caller keeps (the Postgres engine, in its statement's queue
// item), a span named name, a child of parent, that has no children in the broker.
//
// With a Tracing made by New, the span is the broker's own: it holds attrs themselves (not copied:
// the caller never changes attrs afterwards), and is encoded into p when it ends (Spool). It is
// sampled as the SDK's parent-based sampler samples a child: exactly when parent is; a leaf that is
// not sampled has a span context and nothing else. A Tracing made by WithProvider, or a parent that
// is not valid, gets an SDK span from ctx with parent as its parent, as Start makes. On a nil p,
// l records nothing.
func (p *Spool) StartLeaf(l *Leaf, ctx context.Context, parent trace.SpanContext, name string, kind trace.SpanKind, attrs []attribute.KeyValue) {
	if p != nil && p.sdkSpans(parent) {
		p.startSDK(l, ctx, parent, name, kind, attrs)
		return
	}
	p.StartKind(l, ctx, p.Kind(parent, name, kind), attrs)
}

// startSDK starts in l the SDK's span named name, of kind kind, with attrs, a child of parent.
func (p *Spool) startSDK(l *Leaf, ctx context.Context, parent trace.SpanContext, name string, kind trace.SpanKind, attrs []attribute.KeyValue) {
	*l = Leaf{}
	_, span := p.t.Start(trace.ContextWithSpanContext(ctx, parent), name, kind, attrs...)
	l.more = &leafMore{sdk: span}
}

// LeafKind is what the leaf spans of one parent, name and span kind share, as Spool.Kind makes it:
// a caller that starts many such spans, as a Postgres session its statements' relay spans, keeps it
// (by value, with its own hot data) and starts each with StartKind. StartLeaf compares its parent,
// name and kind with the spool's latest at every start, which read memory nothing else of the
// statement touches and that is rarely still in the cache by then (perf put about 0.1 µs per
// statement there, most of it the first of those reads).
type LeafKind struct {
	hdr     *leafHeader // nil: its spans record nothing
	sdk     bool        // its spans are the SDK's: the Tracing was made by WithProvider, or the parent is not valid
	sampled bool        // the parent is sampled
}

// Kind returns the LeafKind of spans named name, of kind kind, children of parent, in p.
func (p *Spool) Kind(parent trace.SpanContext, name string, kind trace.SpanKind) LeafKind {
	switch {
	case p == nil:
		return LeafKind{}
	case p.sdkSpans(parent):
		return LeafKind{hdr: &leafHeader{parent: parent, name: name, kind: kind}, sdk: true}
	}
	return LeafKind{hdr: p.header(parent, name, kind), sampled: parent.IsSampled()}
}

// sdkSpans says whether p's spans that are children of parent are the SDK's: p's Tracing was made
// by WithProvider, or parent is not valid.
func (p *Spool) sdkSpans(parent trace.SpanContext) bool {
	return p.b == nil || !parent.IsValid()
}

// StartKind starts in l a span of kind k, made by Kind on p, with attrs, as StartLeaf starts one.
func (p *Spool) StartKind(l *Leaf, ctx context.Context, k LeafKind, attrs []attribute.KeyValue) {
	switch {
	case p == nil || k.hdr == nil:
		*l = Leaf{}
		return
	case k.sdk:
		p.startSDK(l, ctx, k.hdr.parent, k.hdr.name, k.hdr.kind, attrs)
		return
	}
	*l = Leaf{}
	l.hdr, l.id = k.hdr, newSpanID()
	if !k.sampled {
		return // records nothing
	}
	l.own, l.p = true, p
	if len(attrs) > 0 {
		l.attrs, l.shared = attrs, true
		if len(attrs) > leafLimit {
			l.attrs = attrs[:leafLimit:leafLimit]
			l.extra().droppedAttrs = len(attrs) - leafLimit
		}
	}
	l.start = time.Now()
}

// Flush hands the spans p holds to the batcher now, rather than at its next interval: for a session
// that ends. p is still usable.
func (p *Spool) Flush() {
	if p == nil || p.b == nil {
		return
	}
	p.mu.Lock()
	p.handOver(false)
	p.mu.Unlock()
}

// handOver hands the spans p holds, if any, to the batcher (final: its last collection), under p.mu.
func (p *Spool) handOver(final bool) {
	if p.n > 0 {
		p.b.handOver(p.buf, p.n, p.t.res, final)
		p.buf, p.n = p.buf[:0], 0
		if cap(p.buf) > maxSpareBytes {
			p.buf = nil // grown by an outsized span: not kept for the session's life
		}
	}
}

// add encodes l, ended, into p, and hands p's spans to the batcher when there are enough of them.
func (p *Spool) add(l *Leaf) {
	p.mu.Lock()
	if l.shared && len(l.attrs) > 0 {
		p.buf = p.sharedList(l.attrs).appendSpan(p.buf, l)
	} else {
		p.buf = appendSpan(p.buf, (*endedLeaf)(l), nil)
	}
	p.n++
	switch {
	case p.n >= spoolSpans || len(p.buf) >= spoolBytes:
		p.handOver(false)
	case !p.listed:
		if p.listed = p.b.list(p); !p.listed {
			p.b.dropped.Add(int64(p.n)) // shut down
			p.buf, p.n = p.buf[:0], 0
		}
	}
	p.mu.Unlock()
}

// sharedList is p's encoding of attrs, a list spans share (not empty), as a span's attributes:
// made at its first span in p and kept (in the slot used longest ago, when every slot is taken,
// which loses that slot's template).
func (p *Spool) sharedList(attrs []attribute.KeyValue) *encodedList {
	first := &attrs[0]
	for i := range p.lists {
		if e := &p.lists[i]; e.first == first && e.n == len(attrs) {
			return e
		}
	}
	e := &p.lists[p.next]
	p.next = (p.next + 1) % spoolLists
	e.first, e.n, e.enc, e.hdr = first, len(attrs), e.enc[:0], nil
	for i := range attrs {
		e.enc = appendKeyValue(e.enc, fSpanAttributes, &attrs[i])
	}
	return e
}

// appendSpan appends l, a span of e's list, to b. A plain span (one with nothing in more: no SDK
// span, new name, dropped attribute, event, link or status) whose header is the template's is the
// template with l's span ID and times in their holes; any other is encoded field by field, with e's
// encoding of the list, and a plain one whose times both have their places becomes the template.
func (e *encodedList) appendSpan(b []byte, l *Leaf) []byte {
	plain := l.more == nil
	start, end := l.start.UnixNano(), l.start.Add(l.took).UnixNano()
	at := len(b)
	if !plain || e.hdr != l.hdr || start <= 0 || end <= 0 {
		var h spanHoles
		var placed bool
		b, h, placed = appendSpanHoles(b, (*endedLeaf)(l), e.enc)
		if plain && placed {
			e.hdr, e.span, e.holes = l.hdr, append(e.span[:0], b[at:]...), h
		}
		return b
	}
	b = append(b, e.span...)
	copy(b[at+e.holes.id:at+e.holes.id+len(l.id)], l.id[:])
	binary.LittleEndian.PutUint64(b[at+e.holes.start:], uint64(start))
	binary.LittleEndian.PutUint64(b[at+e.holes.end:], uint64(end))
	return b
}

// collect takes what p holds for the batcher's interval, ForceFlush or Shutdown (final: the batcher
// is shut down, and still takes it), and leaves p unlisted. It runs on the batcher's goroutine.
func (p *Spool) collect(final bool) {
	p.mu.Lock()
	p.listed = false
	p.handOver(final)
	p.mu.Unlock()
}

// leafLimit bounds a leaf span's attributes, events and links, each, and an event's or link's
// attributes, as the SDK's default span limits do (128); beyond it they are counted as dropped
// (the oldest events and links, the newest attributes).
const leafLimit = 128

// Leaf is a span Spool.StartLeaf started, and (as a pointer) a trace.Span. The zero Leaf is no
// span: it records nothing. Its methods are safe for concurrent use; a Leaf is not copied once
// started. It is kept small (120 bytes), as each statement's queue item holds one whether tracing
// is on or not, and as every cache line of it that a session's client side writes at the start its
// backend side takes over at the end: what a session's spans share (parent, name, kind) is its
// spool's header, and what few spans have (a status, events, links, attributes dropped, a new
// name) is in more. A traced broker used about 1 µs less CPU per statement with this layout than
// with a Leaf of 216 bytes holding its own copies (brokers loaded side by side, in one run).
type Leaf struct {
	embedded.Span

	// own: the broker records the span (sampled, made by a Tracing of New), in the spool p. Both
	// are set at the start and never changed: the methods of a span that is not the broker's skip
	// mu, and go to the SDK's span (more.sdk), or do nothing.
	own    bool
	ended  bool // under mu: End was called
	shared bool // attrs is the caller's: copy before changing it

	mu  sync.Mutex
	p   *Spool
	hdr *leafHeader  // its parent, name and kind (its spool's); nil for an SDK span or none
	id  trace.SpanID // set at the start with hdr, never changed

	start time.Time
	took  time.Duration // from start to its end, set by End
	attrs []attribute.KeyValue
	more  *leafMore
}

// leafMore is what a leaf span has beyond what every statement's has: for an SDK span (set at the
// start, never changed), the span; for the broker's own, what few of them record.
type leafMore struct {
	sdk          trace.Span // the SDK's span (WithProvider, or a parent that is not valid)
	name         *string    // SetName's, when called
	droppedAttrs int
	events       []sdktrace.Event
	droppedEvent int
	links        []sdktrace.Link
	droppedLinks int
	status       sdktrace.Status
}

// extra is l.more, made on first use.
func (l *Leaf) extra() *leafMore {
	if l.more == nil {
		l.more = &leafMore{}
	}
	return l.more
}

var _ trace.Span = (*Leaf)(nil)

// lock locks l and reports whether the broker records it: false (and l unlocked) when it does not,
// or no longer does.
func (l *Leaf) lock() bool {
	if !l.own {
		return false
	}
	l.mu.Lock()
	if l.ended {
		l.mu.Unlock()
		return false
	}
	return true
}

// End ends the span and encodes it into its spool, once. Its end time is its start's plus the
// monotonic clock's elapsed time, as the SDK's span ends.
func (l *Leaf) End(options ...trace.SpanEndOption) {
	if !l.lock() {
		l.other().End(options...)
		return
	}
	took := time.Since(l.start)
	if len(options) > 0 {
		if cfg := trace.NewSpanEndConfig(options...); !cfg.Timestamp().IsZero() {
			took = cfg.Timestamp().Sub(l.start)
		}
	}
	l.ended, l.took = true, took
	l.p.add(l)
	l.mu.Unlock()
}

// AddEvent records an event named name.
func (l *Leaf) AddEvent(name string, options ...trace.EventOption) {
	if !l.lock() {
		l.other().AddEvent(name, options...)
		return
	}
	defer l.mu.Unlock()
	cfg := trace.NewEventConfig(options...)
	attrs := cfg.Attributes()
	dropped := 0
	if len(attrs) > leafLimit {
		attrs, dropped = attrs[:leafLimit], len(attrs)-leafLimit
	}
	m := l.extra()
	m.events = evict(m.events, &m.droppedEvent)
	m.events = append(m.events, sdktrace.Event{Name: name, Attributes: attrs, DroppedAttributeCount: dropped, Time: cfg.Timestamp()})
}

// AddLink records a link to link's span, when that is valid.
func (l *Leaf) AddLink(link trace.Link) {
	if !l.lock() {
		l.other().AddLink(link)
		return
	}
	defer l.mu.Unlock()
	if !link.SpanContext.IsValid() {
		return
	}
	attrs, dropped := link.Attributes, 0
	if len(attrs) > leafLimit {
		attrs, dropped = attrs[:leafLimit], len(attrs)-leafLimit
	}
	m := l.extra()
	m.links = evict(m.links, &m.droppedLinks)
	m.links = append(m.links, sdktrace.Link{SpanContext: link.SpanContext, Attributes: attrs, DroppedAttributeCount: dropped})
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
func (l *Leaf) IsRecording() bool {
	if !l.lock() {
		return l.other().IsRecording()
	}
	l.mu.Unlock()
	return true
}

// RecordError records err as an exception event, as the SDK's span does (its type and message).
func (l *Leaf) RecordError(err error, options ...trace.EventOption) {
	if !l.own {
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
func (l *Leaf) SetStatus(code codes.Code, description string) {
	if !l.lock() {
		l.other().SetStatus(code, description)
		return
	}
	defer l.mu.Unlock()
	if code == codes.Unset || (l.more != nil && l.more.status.Code == codes.Ok) {
		return
	}
	st := sdktrace.Status{Code: code}
	if code == codes.Error {
		st.Description = description
	}
	l.extra().status = st
}

// SetName renames the span.
func (l *Leaf) SetName(name string) {
	if !l.lock() {
		l.other().SetName(name)
		return
	}
	l.extra().name = &name
	l.mu.Unlock()
}

// SetAttributes sets kv: an attribute whose key the span has replaces its value, as the SDK keeps
// the last value of a key; invalid attributes are dropped.
func (l *Leaf) SetAttributes(kv ...attribute.KeyValue) {
	if !l.lock() {
		l.other().SetAttributes(kv...)
		return
	}
	defer l.mu.Unlock()
	if l.shared {
		l.attrs, l.shared = append(make([]attribute.KeyValue, 0, len(l.attrs)+len(kv)), l.attrs...), false
	}
next:
	for _, a := range kv {
		if !a.Valid() {
			l.extra().droppedAttrs++
			continue
		}
		for i := range l.attrs {
			if l.attrs[i].Key == a.Key {
				l.attrs[i] = a
				continue next
			}
		}
		if len(l.attrs) >= leafLimit {
			l.extra().droppedAttrs++
			continue
		}
		l.attrs = append(l.attrs, a)
	}
}

// SpanContext is the span's: its parent's trace, flags and state, and an ID of its own.
func (l *Leaf) SpanContext() trace.SpanContext {
	switch {
	case l.hdr != nil: // set at the start, as id, never changed
		return l.hdr.spanContext(l.id)
	case l.more != nil && l.more.sdk != nil:
		return l.more.sdk.SpanContext()
	}
	return trace.SpanContext{}
}

// spanContext is the span context of the leaf span id of h: its parent's trace, flags and state.
func (h *leafHeader) spanContext(id trace.SpanID) trace.SpanContext {
	return trace.NewSpanContext(trace.SpanContextConfig{TraceID: h.parent.TraceID(), SpanID: id,
		TraceFlags: h.parent.TraceFlags(), TraceState: h.parent.TraceState()})
}

// TracerProvider is the provider of the Tracing that made the span; a span that records nothing has
// the no-op provider, as the trace API's non-recording span has.
func (l *Leaf) TracerProvider() trace.TracerProvider {
	if l.own {
		return l.p.t.provider
	}
	return l.other().TracerProvider()
}

// other is the span l's methods go to when the broker does not record it itself: the SDK's span, or
// none (noSpan, which records nothing: an ended span, one the sampler left out, the zero Leaf).
func (l *Leaf) other() trace.Span {
	if !l.own && l.more != nil && l.more.sdk != nil { // more is set at the start when own is false
		return l.more.sdk
	}
	return noSpan
}

// endedLeaf is a Leaf that has ended, as the encoder reads it (spanFields): under its mutex, in End.
type endedLeaf Leaf

var _ spanFields = (*endedLeaf)(nil)

func (s *endedLeaf) SpanContext() trace.SpanContext { return s.hdr.spanContext(s.id) }
func (s *endedLeaf) SpanKind() trace.SpanKind       { return s.hdr.kind }
func (s *endedLeaf) StartTime() time.Time           { return s.start }
func (s *endedLeaf) EndTime() time.Time             { return s.start.Add(s.took) }
func (s *endedLeaf) Attributes() []attribute.KeyValue {
	return s.attrs
}

func (s *endedLeaf) Parent() trace.SpanContext {
	return s.hdr.parent
}

func (s *endedLeaf) Name() string {
	if s.more != nil && s.more.name != nil {
		return *s.more.name
	}
	return s.hdr.name
}

// Of more, when the span has it.

func (s *endedLeaf) Links() []sdktrace.Link {
	if s.more == nil {
		return nil
	}
	return s.more.links
}

func (s *endedLeaf) Events() []sdktrace.Event {
	if s.more == nil {
		return nil
	}
	return s.more.events
}

func (s *endedLeaf) Status() sdktrace.Status {
	if s.more == nil {
		return sdktrace.Status{}
	}
	return s.more.status
}

func (s *endedLeaf) DroppedAttributes() int {
	if s.more == nil {
		return 0
	}
	return s.more.droppedAttrs
}

func (s *endedLeaf) DroppedLinks() int {
	if s.more == nil {
		return 0
	}
	return s.more.droppedLinks
}

func (s *endedLeaf) DroppedEvents() int {
	if s.more == nil {
		return 0
	}
	return s.more.droppedEvent
}

// leafScope is the instrumentation scope of leaf spans: the broker's tracer's, as its SDK spans have.
var leafScope = instrumentation.Scope{Name: tracerName}

// chunk is encoded leaf spans that a spool handed to the batcher: n spans of the resource res and
// the scope leafScope, in b.
type chunk struct {
	b   []byte
	n   int
	res *resource.Resource
}

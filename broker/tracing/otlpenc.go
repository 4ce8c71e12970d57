package tracing

import (
	"errors"
	"fmt"
	"math"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/encoding/protowire"
)

// spanData is what the encoder reads of an SDK span: the methods of its ReadOnlySpan.
type spanData interface {
	spanFields
	InstrumentationScope() instrumentation.Scope
	Resource() *resource.Resource
}

// spanFields is what appendSpan reads of a span: an SDK span's (spanData), or an ended leaf span's
// (endedLeaf).
type spanFields interface {
	Name() string
	SpanContext() trace.SpanContext
	Parent() trace.SpanContext
	SpanKind() trace.SpanKind
	StartTime() time.Time
	EndTime() time.Time
	Attributes() []attribute.KeyValue
	Links() []sdktrace.Link
	Events() []sdktrace.Event
	Status() sdktrace.Status
	DroppedAttributes() int
	DroppedLinks() int
	DroppedEvents() int
}

var _ spanData = sdktrace.ReadOnlySpan(nil)

// encoder writes OTLP's ExportTraceServiceRequest (opentelemetry/proto/collector/trace/v1) from
// SDK spans (spanData) and leaf spans their spools encoded (chunk) with protowire, into a buffer it
// keeps between requests. The field numbers are
// OTLP's (go.opentelemetry.io/proto/otlp v1.11.0). A field at its default value is left out, as
// proto3 does, except where the official exporter sets a message that is empty (a span's status, a
// resource without attributes, an attribute's value of type EMPTY): proto3 keeps a set message, so
// this encoder does too.
//
// Nested messages are written with a one-byte length in front, fixed up when their end is known;
// a message of 128 bytes or more is moved right by the length's extra bytes.
type encoder struct {
	buf    []byte
	groups []spanGroup // by first appearance
}

// spanGroup is the spans of one resource and instrumentation scope, as OTLP groups them.
type spanGroup struct {
	res    *resource.Resource
	key    attribute.Distinct // res.Equivalent()
	scope  instrumentation.Scope
	spans  []spanData
	chunks [][]byte // leaf spans, encoded
	done   bool     // written
}

// OTLP's field numbers.
const (
	// ExportTraceServiceRequest
	fRequestResourceSpans protowire.Number = 1
	// ResourceSpans
	fResourceSpansResource   protowire.Number = 1
	fResourceSpansScopeSpans protowire.Number = 2
	fResourceSpansSchemaURL  protowire.Number = 3
	// Resource
	fResourceAttributes protowire.Number = 1
	// ScopeSpans
	fScopeSpansScope     protowire.Number = 1
	fScopeSpansSpans     protowire.Number = 2
	fScopeSpansSchemaURL protowire.Number = 3
	// InstrumentationScope
	fScopeName       protowire.Number = 1
	fScopeVersion    protowire.Number = 2
	fScopeAttributes protowire.Number = 3
	// Span
	fSpanTraceID           protowire.Number = 1
	fSpanSpanID            protowire.Number = 2
	fSpanTraceState        protowire.Number = 3
	fSpanParentSpanID      protowire.Number = 4
	fSpanName              protowire.Number = 5
	fSpanKind              protowire.Number = 6
	fSpanStart             protowire.Number = 7
	fSpanEnd               protowire.Number = 8
	fSpanAttributes        protowire.Number = 9
	fSpanDroppedAttributes protowire.Number = 10
	fSpanEvents            protowire.Number = 11
	fSpanDroppedEvents     protowire.Number = 12
	fSpanLinks             protowire.Number = 13
	fSpanDroppedLinks      protowire.Number = 14
	fSpanStatus            protowire.Number = 15
	fSpanFlags             protowire.Number = 16
	// Span.Event
	fEventTime              protowire.Number = 1
	fEventName              protowire.Number = 2
	fEventAttributes        protowire.Number = 3
	fEventDroppedAttributes protowire.Number = 4
	// Span.Link
	fLinkTraceID           protowire.Number = 1
	fLinkSpanID            protowire.Number = 2
	fLinkAttributes        protowire.Number = 4
	fLinkDroppedAttributes protowire.Number = 5
	fLinkFlags             protowire.Number = 6
	// Status
	fStatusMessage protowire.Number = 2
	fStatusCode    protowire.Number = 3
	// KeyValue
	fKeyValueKey   protowire.Number = 1
	fKeyValueValue protowire.Number = 2
	// AnyValue
	fAnyString protowire.Number = 1
	fAnyBool   protowire.Number = 2
	fAnyInt    protowire.Number = 3
	fAnyDouble protowire.Number = 4
	fAnyArray  protowire.Number = 5
	fAnyKvlist protowire.Number = 6
	fAnyBytes  protowire.Number = 7
	// ArrayValue, KeyValueList
	fListValues protowire.Number = 1
)

// SpanFlags' bits above the W3C trace flags: whether the parent's (a link's) remoteness is known,
// and whether it is remote.
const (
	flagHasIsRemote = 0x100
	flagIsRemote    = 0x200
)

// request returns the encoded request of spans and chunks and how many spans it holds (nil spans are
// skipped): resources in the order their first span comes (the chunks' after the spans'), and in
// each its scopes the same way. The returned bytes are the encoder's until reset.
func (e *encoder) request(spans []spanData, chunks []chunk) ([]byte, int) {
	n := e.group(spans, chunks)
	b := e.buf[:0]
	for i := range e.groups {
		g := &e.groups[i]
		if g.done {
			continue
		}
		var rs int
		b, rs = open(b, fRequestResourceSpans)
		if g.res != nil {
			var r int
			b, r = open(b, fResourceSpansResource)
			for it := g.res.Iter(); it.Next(); {
				kv := it.Attribute()
				b = appendKeyValue(b, fResourceAttributes, &kv)
			}
			b = closeMsg(b, r)
		}
		for j := i; j < len(e.groups); j++ {
			if h := &e.groups[j]; !h.done && h.key == g.key {
				b = e.appendScopeSpans(b, h)
				h.done = true
			}
		}
		if g.res != nil {
			b = appendString(b, fResourceSpansSchemaURL, g.res.SchemaURL())
		}
		b = closeMsg(b, rs)
	}
	e.buf = b
	return b, n
}

// group sorts spans and chunks into e.groups and returns how many spans there are.
func (e *encoder) group(spans []spanData, chunks []chunk) int {
	n, last := 0, -1
	for _, s := range spans {
		if s == nil {
			continue
		}
		n++
		res, scope := s.Resource(), s.InstrumentationScope()
		last = e.groupOf(last, res, scope)
		e.groups[last].spans = append(e.groups[last].spans, s)
	}
	for _, c := range chunks {
		n += c.n
		last = e.groupOf(last, c.res, leafScope)
		e.groups[last].chunks = append(e.groups[last].chunks, c.b)
	}
	return n
}

// groupOf is the index in e.groups of res's and scope's group, made if there is none; last is the
// previous span's, looked at first.
func (e *encoder) groupOf(last int, res *resource.Resource, scope instrumentation.Scope) int {
	key := res.Equivalent()
	if last >= 0 && e.groups[last].key == key && e.groups[last].scope == scope {
		return last
	}
	for i := range e.groups {
		if e.groups[i].key == key && e.groups[i].scope == scope {
			return i
		}
	}
	if len(e.groups) < cap(e.groups) {
		e.groups = e.groups[:len(e.groups)+1]
	} else {
		e.groups = append(e.groups, spanGroup{})
	}
	g := &e.groups[len(e.groups)-1]
	g.res, g.key, g.scope, g.spans, g.chunks, g.done = res, key, scope, g.spans[:0], g.chunks[:0], false
	return len(e.groups) - 1
}

// reset forgets the spans of the last request, and its buffer if that grew beyond keep bytes.
func (e *encoder) reset(keep int) {
	for i := range e.groups {
		g := &e.groups[i]
		clear(g.spans)
		clear(g.chunks)
		g.spans, g.chunks = g.spans[:0], g.chunks[:0]
		g.res, g.key, g.scope = nil, attribute.Distinct{}, instrumentation.Scope{}
	}
	e.groups = e.groups[:0]
	if cap(e.buf) > keep {
		e.buf = nil
	}
}

func (e *encoder) appendScopeSpans(b []byte, g *spanGroup) []byte {
	var ss int
	b, ss = open(b, fResourceSpansScopeSpans)
	if g.scope != (instrumentation.Scope{}) {
		var sc int
		b, sc = open(b, fScopeSpansScope)
		b = appendString(b, fScopeName, g.scope.Name)
		b = appendString(b, fScopeVersion, g.scope.Version)
		for it := g.scope.Attributes.Iter(); it.Next(); {
			kv := it.Attribute()
			b = appendKeyValue(b, fScopeAttributes, &kv)
		}
		b = closeMsg(b, sc)
	}
	for _, s := range g.spans {
		b = appendSpan(b, s, nil)
	}
	for _, c := range g.chunks {
		b = append(b, c...)
	}
	b = appendString(b, fScopeSpansSchemaURL, g.scope.SchemaURL)
	return closeMsg(b, ss)
}

// appendSpan appends s as a ScopeSpans' spans field; its attributes are attrs when that is not nil
// (the encoding of a list spans share: Spool.sharedList).
func appendSpan(b []byte, s spanFields, attrs []byte) []byte {
	b, _, _ = appendSpanHoles(b, s, attrs)
	return b
}

// spanHoles are where a span's encoding (appendSpan's) holds its span ID's eight bytes and its
// start and end times' (fixed64, little-endian), counted from the encoding's first byte.
type spanHoles struct{ id, start, end int }

// appendSpanHoles is appendSpan, and says where what the spans of a spool's template differ in
// lies in what it appended (encodedList.appendSpan); false when a time was left out (appendNanos), so
// that it has no place.
func appendSpanHoles(b []byte, s spanFields, attrs []byte) ([]byte, spanHoles, bool) {
	at := len(b)
	var h spanHoles
	var m int
	b, m = open(b, fScopeSpansSpans)
	sc := s.SpanContext()
	tid, sid := sc.TraceID(), sc.SpanID()
	b = protowire.AppendTag(b, fSpanTraceID, protowire.BytesType)
	b = protowire.AppendBytes(b, tid[:])
	b = protowire.AppendTag(b, fSpanSpanID, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(len(sid)))
	h.id = len(b)
	b = append(b, sid[:]...)
	if ts := sc.TraceState(); ts.Len() > 0 {
		b = appendString(b, fSpanTraceState, ts.String())
	}
	parent := s.Parent()
	if psid := parent.SpanID(); psid.IsValid() {
		b = protowire.AppendTag(b, fSpanParentSpanID, protowire.BytesType)
		b = protowire.AppendBytes(b, psid[:])
	}
	b = appendString(b, fSpanName, s.Name())
	b = appendVarint(b, fSpanKind, spanKind(s.SpanKind()))
	var started, ended bool
	b, h.start, started = appendNanosAt(b, fSpanStart, s.StartTime().UnixNano())
	b, h.end, ended = appendNanosAt(b, fSpanEnd, s.EndTime().UnixNano())
	if attrs != nil {
		b = append(b, attrs...)
	} else {
		as := s.Attributes()
		for i := range as {
			b = appendKeyValue(b, fSpanAttributes, &as[i])
		}
	}
	b = appendVarint(b, fSpanDroppedAttributes, clampUint32(s.DroppedAttributes()))
	for _, ev := range s.Events() {
		var em int
		b, em = open(b, fSpanEvents)
		b = appendNanos(b, fEventTime, ev.Time.UnixNano())
		b = appendString(b, fEventName, ev.Name)
		for i := range ev.Attributes {
			b = appendKeyValue(b, fEventAttributes, &ev.Attributes[i])
		}
		b = appendVarint(b, fEventDroppedAttributes, clampUint32(ev.DroppedAttributeCount))
		b = closeMsg(b, em)
	}
	b = appendVarint(b, fSpanDroppedEvents, clampUint32(s.DroppedEvents()))
	for _, l := range s.Links() {
		// The official exporter leaves a link's trace_state (field 3) out; so does this one.
		var lm int
		b, lm = open(b, fSpanLinks)
		ltid, lsid := l.SpanContext.TraceID(), l.SpanContext.SpanID()
		b = protowire.AppendTag(b, fLinkTraceID, protowire.BytesType)
		b = protowire.AppendBytes(b, ltid[:])
		b = protowire.AppendTag(b, fLinkSpanID, protowire.BytesType)
		b = protowire.AppendBytes(b, lsid[:])
		for i := range l.Attributes {
			b = appendKeyValue(b, fLinkAttributes, &l.Attributes[i])
		}
		b = appendVarint(b, fLinkDroppedAttributes, clampUint32(l.DroppedAttributeCount))
		b = protowire.AppendTag(b, fLinkFlags, protowire.Fixed32Type)
		b = protowire.AppendFixed32(b, spanFlags(l.SpanContext.TraceFlags(), l.SpanContext))
		b = closeMsg(b, lm)
	}
	b = appendVarint(b, fSpanDroppedLinks, clampUint32(s.DroppedLinks()))
	st := s.Status()
	var sm int
	b, sm = open(b, fSpanStatus)
	b = appendString(b, fStatusMessage, st.Description)
	b = appendVarint(b, fStatusCode, statusCode(st.Code))
	b = closeMsg(b, sm)
	b = protowire.AppendTag(b, fSpanFlags, protowire.Fixed32Type)
	b = protowire.AppendFixed32(b, spanFlags(sc.TraceFlags(), parent))
	n := len(b)
	b = closeMsg(b, m)
	// From b's start to the encoding's, and for the body (holes and all) moved right for its length.
	shift := len(b) - n - at
	h.id, h.start, h.end = h.id+shift, h.start+shift, h.end+shift
	return b, h, started && ended
}

// spanFlags are OTLP's flags of a span (a link): the W3C trace flags, and whether its parent (the
// linked span) is remote.
func spanFlags(tf trace.TraceFlags, parent trace.SpanContext) uint32 {
	f := uint32(tf) | flagHasIsRemote
	if parent.IsRemote() {
		f |= flagIsRemote
	}
	return f
}

func spanKind(k trace.SpanKind) uint64 {
	switch k {
	case trace.SpanKindInternal:
		return 1
	case trace.SpanKindServer:
		return 2
	case trace.SpanKindClient:
		return 3
	case trace.SpanKindProducer:
		return 4
	case trace.SpanKindConsumer:
		return 5
	}
	return 0
}

func statusCode(c codes.Code) uint64 {
	switch c {
	case codes.Ok:
		return 1
	case codes.Error:
		return 2
	}
	return 0
}

func clampUint32(v int) uint64 {
	return uint64(min(max(v, 0), math.MaxUint32))
}

// appendKeyValue appends kv as a KeyValue in field num; its value is always set, as the official
// exporter sets it, even when empty.
func appendKeyValue(b []byte, num protowire.Number, kv *attribute.KeyValue) []byte {
	if n := scalarSize(kv.Value); n >= 0 {
		// The common case, a scalar, has lengths known in advance: no message to fix up.
		size := 1 + protowire.SizeBytes(n)
		if kv.Key != "" {
			size += 1 + protowire.SizeBytes(len(kv.Key))
		}
		b = protowire.AppendVarint(protowire.AppendTag(b, num, protowire.BytesType), uint64(size))
		b = appendString(b, fKeyValueKey, string(kv.Key))
		b = protowire.AppendVarint(protowire.AppendTag(b, fKeyValueValue, protowire.BytesType), uint64(n))
		return appendAnyValue(b, kv.Value)
	}
	var m int
	b, m = open(b, num)
	b = appendString(b, fKeyValueKey, string(kv.Key))
	var v int
	b, v = open(b, fKeyValueValue)
	b = appendAnyValue(b, kv.Value)
	b = closeMsg(b, v)
	return closeMsg(b, m)
}

// scalarSize is the size of the AnyValue of v when v is a scalar, else -1.
func scalarSize(v attribute.Value) int {
	switch v.Type() {
	case attribute.EMPTY:
		return 0
	case attribute.BOOL:
		return 2
	case attribute.INT64:
		return 1 + protowire.SizeVarint(uint64(v.AsInt64()))
	case attribute.FLOAT64:
		return 9
	case attribute.STRING:
		return 1 + protowire.SizeBytes(len(v.AsString()))
	}
	return -1
}

// appendAnyValue appends the fields of an AnyValue holding v. A oneof's member is written even at
// its default value: it says which member is set.
func appendAnyValue(b []byte, v attribute.Value) []byte {
	switch v.Type() {
	case attribute.EMPTY:
		return b
	case attribute.BOOL:
		return protowire.AppendVarint(protowire.AppendTag(b, fAnyBool, protowire.VarintType), protowire.EncodeBool(v.AsBool()))
	case attribute.INT64:
		return protowire.AppendVarint(protowire.AppendTag(b, fAnyInt, protowire.VarintType), uint64(v.AsInt64()))
	case attribute.FLOAT64:
		return protowire.AppendFixed64(protowire.AppendTag(b, fAnyDouble, protowire.Fixed64Type), math.Float64bits(v.AsFloat64()))
	case attribute.STRING:
		return protowire.AppendString(protowire.AppendTag(b, fAnyString, protowire.BytesType), v.AsString())
	case attribute.BYTESLICE:
		return protowire.AppendBytes(protowire.AppendTag(b, fAnyBytes, protowire.BytesType), v.AsByteSlice())
	case attribute.MAP:
		var m int
		b, m = open(b, fAnyKvlist)
		kvs := v.AsMap()
		for i := range kvs {
			b = appendKeyValue(b, fListValues, &kvs[i])
		}
		return closeMsg(b, m)
	case attribute.BOOLSLICE, attribute.INT64SLICE, attribute.FLOAT64SLICE, attribute.STRINGSLICE, attribute.SLICE:
		var m int
		b, m = open(b, fAnyArray)
		switch v.Type() {
		case attribute.BOOLSLICE:
			b = appendList(b, v.AsBoolSlice(), attribute.BoolValue)
		case attribute.INT64SLICE:
			b = appendList(b, v.AsInt64Slice(), attribute.Int64Value)
		case attribute.FLOAT64SLICE:
			b = appendList(b, v.AsFloat64Slice(), attribute.Float64Value)
		case attribute.STRINGSLICE:
			b = appendList(b, v.AsStringSlice(), attribute.StringValue)
		default:
			b = appendList(b, v.AsSlice(), func(x attribute.Value) attribute.Value { return x })
		}
		return closeMsg(b, m)
	}
	// A type this encoder does not know: the official exporter's word for it.
	return protowire.AppendString(protowire.AppendTag(b, fAnyString, protowire.BytesType), "INVALID")
}

// appendList appends each of xs, as value makes it an attribute value, as the AnyValues of an
// ArrayValue.
func appendList[T any](b []byte, xs []T, value func(T) attribute.Value) []byte {
	for _, x := range xs {
		b = appendListValue(b, value(x))
	}
	return b
}

// appendListValue appends v as one AnyValue of an ArrayValue.
func appendListValue(b []byte, v attribute.Value) []byte {
	var m int
	b, m = open(b, fListValues)
	b = appendAnyValue(b, v)
	return closeMsg(b, m)
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	return protowire.AppendString(protowire.AppendTag(b, num, protowire.BytesType), s)
}

func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	return protowire.AppendVarint(protowire.AppendTag(b, num, protowire.VarintType), v)
}

// appendNanos appends a time in nanoseconds since the epoch; one before it (or the zero time) is 0,
// left out.
func appendNanos(b []byte, num protowire.Number, ns int64) []byte {
	b, _, _ = appendNanosAt(b, num, ns)
	return b
}

// appendNanosAt is appendNanos, and says where in b the time's eight bytes lie; false when it left
// the time out.
func appendNanosAt(b []byte, num protowire.Number, ns int64) ([]byte, int, bool) {
	if ns <= 0 {
		return b, 0, false
	}
	b = protowire.AppendTag(b, num, protowire.Fixed64Type)
	at := len(b)
	return protowire.AppendFixed64(b, uint64(ns)), at, true
}

// open begins a message in field num with a one-byte length to be fixed by closeMsg, and returns
// where the message's body starts.
func open(b []byte, num protowire.Number) ([]byte, int) {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = append(b, 0)
	return b, len(b)
}

// closeMsg writes the length of the message whose body starts at start, moving the body right when
// the length takes more than the one byte open left for it.
func closeMsg(b []byte, start int) []byte {
	n := len(b) - start
	if n < 0x80 {
		b[start-1] = byte(n)
		return b
	}
	w := protowire.SizeVarint(uint64(n))
	b = append(b, make([]byte, w-1)...)
	copy(b[start+w-1:], b[start:start+n])
	protowire.AppendVarint(b[:start-1], uint64(n))
	return b
}

// maxPartialSuccess bounds the answer parsePartialSuccess reads (the exporter reads no more).
const maxPartialSuccess = maxResponseBody

// parsePartialSuccess reads an ExportTraceServiceResponse: its partial_success's rejected_spans and
// error_message (both zero when absent). It decodes as proto.Unmarshal does: the last value of a
// field wins, a field of an unexpected wire type is skipped as unknown, and a string must be UTF-8.
func parsePartialSuccess(b []byte) (rejected int64, msg string, err error) {
	if len(b) > maxPartialSuccess {
		return 0, "", fmt.Errorf("tracing: the collector's answer is %d bytes, more than %d", len(b), maxPartialSuccess)
	}
	err = walkFields(b, func(num protowire.Number, typ protowire.Type, v []byte) (int, error) {
		if num != 1 || typ != protowire.BytesType {
			return 0, nil
		}
		ps, n := protowire.ConsumeBytes(v)
		if n < 0 {
			return 0, errBadAnswer
		}
		rejected, msg, err = parsePartial(ps, rejected, msg)
		return n, err
	})
	if err != nil {
		return 0, "", err
	}
	return rejected, msg, nil
}

// parsePartial reads an ExportTracePartialSuccess into rejected and msg, overwriting the fields it has.
func parsePartial(b []byte, rejected int64, msg string) (int64, string, error) {
	err := walkFields(b, func(num protowire.Number, typ protowire.Type, v []byte) (int, error) {
		switch {
		case num == 1 && typ == protowire.VarintType:
			r, n := protowire.ConsumeVarint(v)
			if n < 0 {
				return 0, errBadAnswer
			}
			rejected = int64(r)
			return n, nil
		case num == 2 && typ == protowire.BytesType:
			m, n := protowire.ConsumeBytes(v)
			if n < 0 || !utf8.Valid(m) {
				return 0, errBadAnswer
			}
			msg = string(m)
			return n, nil
		}
		return 0, nil
	})
	if err != nil {
		return 0, "", err
	}
	return rejected, msg, nil
}

// walkFields calls field with each field of the message b, its number, wire type and the bytes from
// its value on: field consumes the value and returns how many bytes it took, or 0 to have it skipped
// as unknown (every value takes at least one byte).
func walkFields(b []byte, field func(num protowire.Number, typ protowire.Type, v []byte) (int, error)) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || num > protowire.MaxValidNumber { // ConsumeTag lets a number beyond protobuf's range pass
			return errBadAnswer
		}
		b = b[n:]
		n, err := field(num, typ, b)
		if err != nil {
			return err
		}
		if n == 0 {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return errBadAnswer
			}
		}
		b = b[n:]
	}
	return nil
}

var errBadAnswer = errors.New("tracing: the collector's answer is not an ExportTraceServiceResponse")

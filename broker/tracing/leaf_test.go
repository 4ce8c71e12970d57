package tracing

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	collectortracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// capture is an exporter that keeps what it is handed, as the broker's own exporter takes it
// (exportData) and as the SDK's processors hand it (ExportSpans), and encodes it with the broker's
// encoder.
type capture struct {
	mu     sync.Mutex
	data   []spanData
	chunks []chunk
}

func (c *capture) exportData(_ context.Context, spans []spanData, chunks []chunk) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.data = append(c.data, spans...)
	for _, ch := range chunks {
		ch.b = slices.Clone(ch.b)
		c.chunks = append(c.chunks, ch)
	}
	return nil
}

func (c *capture) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	return c.exportData(ctx, asData(spans), nil)
}

func (*capture) Shutdown(context.Context) error { return nil }

// exported flushes t and returns what c got, decoded from the broker's encoding.
func (c *capture) exported(t *testing.T, tr *Tracing) []*tracepb.Span {
	t.Helper()
	if err := tr.provider.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var e encoder
	body, _ := e.request(c.data, c.chunks)
	req := &collectortracepb.ExportTraceServiceRequest{}
	if err := proto.Unmarshal(body, req); err != nil {
		t.Fatal(err)
	}
	var spans []*tracepb.Span
	for _, rs := range req.ResourceSpans {
		if len(rs.ScopeSpans) != 1 {
			t.Fatalf("%d scopes of one resource, want the broker's alone", len(rs.ScopeSpans))
		}
		spans = append(spans, rs.ScopeSpans[0].Spans...)
	}
	if len(req.ResourceSpans) > 1 {
		t.Fatalf("%d resources, want the broker's alone: leaf and SDK spans must share it", len(req.ResourceSpans))
	}
	return spans
}

// startLeaf starts a leaf span named "relay" in p, a child of parent with attrs.
func startLeaf(p *Spool, parent trace.SpanContext, attrs []attribute.KeyValue) *Leaf {
	l := new(Leaf)
	p.StartLeaf(l, context.Background(), parent, "relay", trace.SpanKindClient, attrs)
	return l
}

func newCaptured(t *testing.T, ratio float64) (*Tracing, *capture) {
	c := &capture{}
	tr := withExporter(c, Config{Endpoint: "collector:4318", SampleRatio: &ratio, Version: "test"})
	t.Cleanup(func() { _ = tr.Shutdown(context.Background()) })
	return tr, c
}

// TestLeafSpanIsRecordedAsTheSDKRecordsIt does the same to a leaf span and to an SDK span, children
// of one session span — attributes given at the start and set later (one replacing a value, one
// invalid), a name change, events, a recorded error, a link, an Error status a later Unset does not
// clear — and requires their OTLP encodings to be equal but for their span IDs and times.
func TestLeafSpanIsRecordedAsTheSDKRecordsIt(t *testing.T) {
	tr, c := newCaptured(t, 1)
	ctx, session := tr.Start(context.Background(), "svidbroker.session", trace.SpanKindServer)
	linked := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{9}, SpanID: trace.SpanID{9}, TraceFlags: trace.FlagsSampled, Remote: true})
	start := []attribute.KeyValue{attribute.String("db.system.name", "postgresql"), attribute.Int("server.port", 5432)}
	act := func(s trace.Span) {
		s.SetAttributes(attribute.Int("server.port", 5433), attribute.KeyValue{}, attribute.StringSlice("list", []string{"a", "b"}))
		s.SetName("svidbroker.upstream")
		s.AddEvent("first", trace.WithAttributes(attribute.Bool("b", true)))
		s.RecordError(fmt.Errorf("wrapped: %w", errors.New("backend"))) // an unnamed type
		s.RecordError(namedError("refused"))                            // a named one
		s.AddLink(trace.Link{SpanContext: linked, Attributes: []attribute.KeyValue{attribute.String("why", "request")}})
		s.AddLink(trace.Link{}) // not valid: not kept
		s.SetStatus(codes.Error, "SQLSTATE 57014")
		s.SetStatus(codes.Unset, "")
		s.End()
		s.SetAttributes(attribute.String("after", "end")) // ignored
		s.End()                                           // once
	}
	_, sdk := tr.Start(ctx, "relay", trace.SpanKindClient, start...)
	act(sdk)
	leaf := startLeaf(tr.NewSpool(), session.SpanContext(), start)
	if !leaf.own {
		t.Fatal("StartLeaf of a New Tracing's spool made no leaf span")
	}
	act(leaf)
	if leaf.TracerProvider() != trace.TracerProvider(tr.provider) {
		t.Fatal("an ended leaf span does not name its Tracing's provider")
	}
	if start[1].Value.AsInt64() != 5432 {
		t.Fatal("setting an attribute changed the caller's start attributes")
	}
	session.End()
	spans := c.exported(t, tr)
	if len(spans) != 3 {
		t.Fatalf("%d spans exported, want the session, the SDK child and the leaf", len(spans))
	}
	var sdkGot, leafGot *tracepb.Span
	for _, s := range spans {
		switch {
		case trace.SpanID(s.SpanId) == sdk.SpanContext().SpanID():
			sdkGot = s
		case trace.SpanID(s.SpanId) == leaf.SpanContext().SpanID():
			leafGot = s
		}
	}
	if sdkGot == nil || leafGot == nil {
		t.Fatal("the SDK child or the leaf is missing from the export")
	}
	sid := session.SpanContext().SpanID()
	if trace.SpanID(leafGot.ParentSpanId) != sid || trace.TraceID(leafGot.TraceId) != session.SpanContext().TraceID() {
		t.Fatal("the leaf is not the session's child in its trace")
	}
	if leafGot.EndTimeUnixNano < leafGot.StartTimeUnixNano || leafGot.StartTimeUnixNano == 0 {
		t.Fatalf("leaf times %d..%d", leafGot.StartTimeUnixNano, leafGot.EndTimeUnixNano)
	}
	norm := func(s *tracepb.Span) *tracepb.Span {
		s = proto.Clone(s).(*tracepb.Span)
		s.SpanId, s.StartTimeUnixNano, s.EndTimeUnixNano = nil, 0, 0
		for _, e := range s.Events {
			e.TimeUnixNano = 0
		}
		return s
	}
	if !proto.Equal(norm(sdkGot), norm(leafGot)) {
		t.Fatalf("the leaf is recorded otherwise than the SDK's span:\nSDK:  %v\nleaf: %v", norm(sdkGot), norm(leafGot))
	}
}

// namedError is an error of a named type, which an exception event names by package path and name.
type namedError string

func (e namedError) Error() string { return string(e) }

// TestLeafSpanFollowsItsParentsSampling: a leaf of an unsampled parent records nothing and is not
// exported, yet has a span context of the parent's trace; with a parent that is not valid, or a
// Tracing made by WithProvider, StartLeaf makes the SDK's span, which the provider's processors see.
func TestLeafSpanFollowsItsParentsSampling(t *testing.T) {
	tr, c := newCaptured(t, 0)
	_, session := tr.Start(context.Background(), "svidbroker.session", trace.SpanKindServer)
	if session.SpanContext().IsSampled() {
		t.Fatal("ratio 0 sampled the session")
	}
	leaf := startLeaf(tr.NewSpool(), session.SpanContext(), nil)
	if leaf.IsRecording() || leaf.SpanContext().TraceID() != session.SpanContext().TraceID() || !leaf.SpanContext().SpanID().IsValid() {
		t.Fatalf("an unsampled parent's leaf: recording %v, context %v", leaf.IsRecording(), leaf.SpanContext())
	}
	if _, sdk := leaf.TracerProvider().(*sdktrace.TracerProvider); sdk {
		t.Fatal("a leaf that records nothing names a recording provider, not the no-op one")
	}
	leaf.End()
	session.End()
	if spans := c.exported(t, tr); len(spans) != 0 {
		t.Fatalf("%d spans exported from an unsampled trace", len(spans))
	}

	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	wp := WithProvider(tp, false)
	_, root := wp.Start(context.Background(), "svidbroker.session", trace.SpanKindServer)
	child := startLeaf(wp.NewSpool(), root.SpanContext(), []attribute.KeyValue{attribute.String("k", "v")})
	if child.own || child.more == nil || child.more.sdk == nil {
		t.Fatal("a WithProvider Tracing made a leaf span its provider cannot see")
	}
	child.End()
	orphan := startLeaf(tr.NewSpool(), trace.SpanContext{}, nil)
	if orphan.own || orphan.more == nil || orphan.more.sdk == nil {
		t.Fatal("a leaf without a valid parent is not the SDK's root span")
	}
	ended := rec.Ended()
	if len(ended) != 1 || ended[0].Parent().SpanID() != root.SpanContext().SpanID() || len(ended[0].Attributes()) != 1 {
		t.Fatalf("the provider's processor saw %d spans, want the child of the session with its attribute", len(ended))
	}
}

// TestLeafSpanUnderConcurrentUse ends leaf spans while other goroutines set their status and
// attributes (go test -race): each is exported once.
func TestLeafSpanUnderConcurrentUse(t *testing.T) {
	tr, c := newCaptured(t, 1)
	_, session := tr.Start(context.Background(), "svidbroker.session", trace.SpanKindServer)
	const n = 200
	var wg sync.WaitGroup
	p := tr.NewSpool()
	for range n {
		s := startLeaf(p, session.SpanContext(), nil)
		wg.Go(func() { s.SetStatus(codes.Error, "x"); s.SetAttributes(attribute.Int("i", 1)) })
		wg.Go(func() { s.End() })
		wg.Go(func() { s.End() })
	}
	wg.Wait()
	if spans := c.exported(t, tr); len(spans) != n {
		t.Fatalf("%d leaf spans exported, want %d, each once", len(spans), n)
	}
}

// TestSharedAttributesAreEncodedPerSpan: leaf spans of a spool sharing attribute lists — more lists
// than the spool keeps encodings of, interleaved, some the same length at the same address of
// another backing array's slice — and a leaf whose list was copied when set each carry their own
// attributes in the export.
func TestSharedAttributesAreEncodedPerSpan(t *testing.T) {
	tr, c := newCaptured(t, 1)
	_, session := tr.Start(context.Background(), "svidbroker.session", trace.SpanKindServer)
	p := tr.NewSpool()
	backing := make([]attribute.KeyValue, 0, 2*(spoolLists+3))
	var lists [][]attribute.KeyValue
	for i := range spoolLists + 3 {
		backing = append(backing, attribute.Int("list", i), attribute.String("db.operation.name", "SELECT"))
		lists = append(lists, backing[2*i:2*i+2:2*i+2])
	}
	lists = append(lists, backing[:1:1]) // the first list's address, a shorter list
	want := map[trace.SpanID][]attribute.KeyValue{}
	for i := range 5 * len(lists) {
		attrs := lists[(i*7)%len(lists)]
		l := startLeaf(p, session.SpanContext(), attrs)
		if i == 4 {
			l.SetAttributes(attribute.String("db.response.status_code", "57014"))
			attrs = append(slices.Clone(attrs), attribute.String("db.response.status_code", "57014"))
		}
		l.End()
		want[l.SpanContext().SpanID()] = attrs
	}
	spans := c.exported(t, tr)
	if len(spans) != len(want) {
		t.Fatalf("%d spans, want %d", len(spans), len(want))
	}
	for _, s := range spans {
		w := want[trace.SpanID(s.SpanId)]
		if len(s.Attributes) != len(w) {
			t.Fatalf("span %x has %d attributes, want %d", s.SpanId, len(s.Attributes), len(w))
		}
		for i, kv := range s.Attributes {
			if kv.Key != string(w[i].Key) || fmt.Sprint(anyValue(kv.Value)) != w[i].Value.Emit() {
				t.Fatalf("span %x attribute %d is %s=%v, want %s=%s", s.SpanId, i, kv.Key, anyValue(kv.Value), w[i].Key, w[i].Value.Emit())
			}
		}
	}
	kept := 0
	for _, e := range p.lists {
		if e.first != nil {
			kept++
		}
	}
	if kept != spoolLists {
		t.Fatalf("the spool kept %d lists' encodings, want its %d", kept, spoolLists)
	}
}

// anyValue is v's scalar, as attribute.Value's Emit writes it.
func anyValue(v *commonpb.AnyValue) any {
	switch x := v.Value.(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return x.IntValue
	case *commonpb.AnyValue_BoolValue:
		return x.BoolValue
	}
	return v
}

// gate is an exporter that holds each export until released, or fails it when failing is set.
type gate struct {
	entered chan struct{} // an export began
	release chan struct{}
	failing atomic.Bool
}

func (g *gate) exportData(ctx context.Context, _ []spanData, _ []chunk) error {
	select {
	case g.entered <- struct{}{}:
	default:
	}
	select {
	case <-g.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	if g.failing.Load() {
		return errors.New("collector down")
	}
	return nil
}

func (g *gate) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	return g.exportData(ctx, asData(spans), nil)
}

func (*gate) Shutdown(context.Context) error { return nil }

// TestExportStatsCountWhatBecameOfSpans: while the collector holds an export, spans beyond the queue's
// bound are dropped, a spool's worth at a time, never waited for; every span ended is then either
// exported or dropped; a failed export is counted, and spans that end after shutdown are dropped.
func TestExportStatsCountWhatBecameOfSpans(t *testing.T) {
	g := &gate{entered: make(chan struct{}, 1), release: make(chan struct{})}
	tr := withExporter(g, Config{Endpoint: "collector:4318"})
	_, session := tr.Start(context.Background(), "svidbroker.session", trace.SpanKindServer)
	p := tr.NewSpool()
	end := func(k int) {
		for range k {
			startLeaf(p, session.SpanContext(), nil).End()
		}
	}
	end(batchSize) // a full batch: the collector takes it and holds it
	select {
	case <-g.entered:
	case <-time.After(time.Minute):
		t.Fatal("a full batch was not exported")
	}
	end(batchMaxQueue + spoolSpans) // the queue's bound, and a spool's worth more
	const n = batchSize + batchMaxQueue + spoolSpans
	if _, dropped, _ := tr.ExportStats(); dropped != spoolSpans {
		t.Fatalf("%d spans dropped while the collector held an export, want the %d beyond the queue's bound", dropped, spoolSpans)
	}
	close(g.release)
	if err := tr.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	exported, dropped, failed := tr.ExportStats()
	if exported+dropped != n || failed != 0 {
		t.Fatalf("exported %d + dropped %d of %d ended spans, %d failed exports", exported, dropped, n, failed)
	}
	g.failing.Store(true)
	end(1) // held by the spool: the flush collects it
	if err := tr.ForceFlush(context.Background()); err == nil {
		t.Fatal("a flush whose export failed said nothing")
	}
	if _, _, failed := tr.ExportStats(); failed != 1 {
		t.Fatalf("%d failed exports counted, want 1", failed)
	}
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, before, _ := tr.ExportStats()
	end(1)
	if _, after, _ := tr.ExportStats(); after != before+1 {
		t.Fatalf("a span ended after shutdown: dropped %d → %d", before, after)
	}
	p.Flush()
	if _, again, _ := tr.ExportStats(); again != before+1 {
		t.Fatalf("a flush after shutdown found spans: dropped %d → %d", before+1, again)
	}
	if e, d, f := (*Tracing)(nil).ExportStats(); e != 0 || d != 0 || f != 0 {
		t.Fatal("a nil Tracing reported exports")
	}
}

// TestLeafSpansShareTheProvidersResource: with resource attributes from the environment, which the
// SDK's provider merges into its spans' resource, leaf spans carry the same resource, so an export
// holds one resource with both kinds of span.
func TestLeafSpansShareTheProvidersResource(t *testing.T) {
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=staging")
	tr, c := newCaptured(t, 1)
	_, session := tr.Start(context.Background(), "svidbroker.session", trace.SpanKindServer)
	startLeaf(tr.NewSpool(), session.SpanContext(), nil).End()
	session.End()
	if spans := c.exported(t, tr); len(spans) != 2 { // exported fails on more than one resource
		t.Fatalf("%d spans exported, want the session and its leaf", len(spans))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	resources := map[string]*resource.Resource{}
	for _, s := range c.data {
		resources[s.Name()] = s.Resource()
	}
	for _, ch := range c.chunks {
		resources["leaf"] = ch.res
	}
	if len(resources) != 2 {
		t.Fatalf("exported the resources of %v, want the session's and the leaf's", resources)
	}
	for name, res := range resources {
		if v, ok := res.Set().Value("deployment.environment.name"); !ok || v.AsString() != "staging" {
			t.Fatalf("%s's resource lacks the environment's attribute: %v", name, res)
		}
	}
}

// newExporting returns a Tracing of New, exporting to a collector in the test (whose bodies it
// returns): its exporter keeps nothing of a chunk, so the chunks' buffers are reused.
func newExporting(t *testing.T) (*Tracing, *sink) {
	t.Helper()
	s, addr := newSink(t)
	tr, err := New(Config{Endpoint: addr, Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Shutdown(context.Background()) })
	if !tr.leaves.recycle {
		t.Fatal("the broker's own exporter does not let its chunks' buffers be reused")
	}
	return tr, s
}

// receivedSpans decodes every span s received.
func receivedSpans(t *testing.T, s *sink) []*tracepb.Span {
	t.Helper()
	var spans []*tracepb.Span
	for _, body := range s.received() {
		for _, rs := range decode(t, body).ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				spans = append(spans, ss.Spans...)
			}
		}
	}
	return spans
}

// TestSpoolsUnderConcurrentUse: leaf spans are started, used and ended from several goroutines, in
// spools of their own and in one they share, while exports run continuously (so the chunks'
// buffers go back to the spools and are encoded into again) and the ended spans are used again (go
// test -race): each span is exported once, with what it was given before it ended.
func TestSpoolsUnderConcurrentUse(t *testing.T) {
	tr, s := newExporting(t)
	ctx := context.Background()
	_, session := tr.Start(ctx, "svidbroker.session", trace.SpanKindServer)
	const workers, each = 4, 300
	stop := make(chan struct{})
	flushed := make(chan struct{})
	go func() { // exports while the workers run
		defer close(flushed)
		for {
			select {
			case <-stop:
				return
			default:
				_ = tr.ForceFlush(ctx)
			}
		}
	}()
	shared := tr.NewSpool()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			own := tr.NewSpool()
			var ended []*Leaf
			for i := range each {
				p := own
				if i%2 == 0 {
					p = shared
				}
				l := startLeaf(p, session.SpanContext(), nil)
				l.SetAttributes(attribute.Int("worker", w), attribute.Int("i", i))
				l.End()
				ended = append(ended, l)
				for _, old := range ended[max(0, len(ended)-8):] { // the last few ended spans, again
					old.SetAttributes(attribute.Int("worker", -1))
					old.SetStatus(codes.Error, "ended")
					old.End()
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	<-flushed
	if err := tr.ForceFlush(ctx); err != nil {
		t.Fatal(err)
	}
	spans := receivedSpans(t, s)
	if len(spans) != workers*each {
		t.Fatalf("%d spans exported, want %d, each once", len(spans), workers*each)
	}
	seen := map[[2]int64]bool{}
	for _, sp := range spans {
		if len(sp.Attributes) != 2 || sp.Status.GetCode() != tracepb.Status_STATUS_CODE_UNSET {
			t.Fatalf("a span carries what was set after it ended: %v", sp)
		}
		k := [2]int64{sp.Attributes[0].GetValue().GetIntValue(), sp.Attributes[1].GetValue().GetIntValue()}
		if k[0] < 0 || seen[k] {
			t.Fatalf("span %v exported twice or changed after it ended", k)
		}
		seen[k] = true
	}
	tr.leaves.mu.Lock()
	spares := len(tr.leaves.spares)
	tr.leaves.mu.Unlock()
	if spares == 0 {
		t.Fatal("no exported chunk's buffer was kept for reuse")
	}
}

// TestSpoolIsCollectedAtTheInterval: spans a spool holds, fewer than it hands over by itself, reach
// the collector at the batcher's next interval with no flush — also from a spool no one holds any
// more — and Flush hands a spool's spans over at once.
func TestSpoolIsCollectedAtTheInterval(t *testing.T) {
	c := &capture{}
	b := newBatcher(c, batchSize, batchMaxQueue, 20*time.Millisecond, exportTimeout)
	t.Cleanup(func() { _ = b.Shutdown(context.Background()) })
	tr := &Tracing{leaves: b, res: resource.Empty()}
	parent := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}, TraceFlags: trace.FlagsSampled})
	startLeaf(tr.NewSpool(), parent, nil).End() // its spool is garbage from here
	p := tr.NewSpool()
	for range spoolSpans - 1 {
		startLeaf(p, parent, nil).End()
	}
	deadline := time.Now().Add(time.Minute)
	for {
		if exported, _, _ := tr.ExportStats(); exported == spoolSpans {
			break
		}
		if time.Now().After(deadline) {
			exported, dropped, _ := tr.ExportStats()
			t.Fatalf("%d spans exported (%d dropped) a minute after they ended, want %d", exported, dropped, spoolSpans)
		}
		time.Sleep(5 * time.Millisecond)
	}

	slow := newBatcher(c, batchSize, batchMaxQueue, time.Hour, exportTimeout)
	t.Cleanup(func() { _ = slow.Shutdown(context.Background()) })
	q := (&Tracing{leaves: slow, res: resource.Empty()}).NewSpool()
	startLeaf(q, parent, nil).End()
	slow.mu.Lock()
	before := slow.queued
	slow.mu.Unlock()
	q.Flush()
	slow.mu.Lock()
	after := slow.queued
	slow.mu.Unlock()
	if before != 0 || after != 1 {
		t.Fatalf("the batcher had %d spans queued before the spool's Flush and %d after, want 0 and 1", before, after)
	}
}

// TestTemplatedSpansAreEncodedFieldByFieldsBytes: a spool's spans — plain ones of several lists
// (more than it keeps), short and long enough for one-, two- and three-byte lengths, interleaved with
// spans that are not plain (a status, a set attribute, an end time before 1970), under parents that
// change and come back, one with a trace state — reach the export as exactly the bytes the
// field-by-field encoder makes of each, in order, with each span's own ID and times; and the plain
// ones were made from templates.
func TestTemplatedSpansAreEncodedFieldByFieldsBytes(t *testing.T) {
	tr, c := newCaptured(t, 1)
	_, session := tr.Start(context.Background(), "svidbroker.session", trace.SpanKindServer)
	ts, err := trace.ParseTraceState("vendor=value")
	if err != nil {
		t.Fatal(err)
	}
	parents := []trace.SpanContext{
		session.SpanContext(),
		trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{7}, SpanID: trace.SpanID{7}, TraceFlags: trace.FlagsSampled, TraceState: ts, Remote: true}),
	}
	lists := [][]attribute.KeyValue{
		{attribute.String("db.operation.name", "SELECT")}, // a span under 128 bytes
		{attribute.String("db.system.name", "postgresql"), attribute.String("server.address", "db.internal"), attribute.Int("server.port", 5432)},
		{attribute.String("long", strings.Repeat("x", 20000))}, // a three-byte length
		{{}}, // no valid attribute
	}
	for i := range spoolLists {
		lists = append(lists, []attribute.KeyValue{attribute.Int("list", i)})
	}
	p := tr.NewSpool()
	var want []byte
	ids := map[trace.SpanID]*Leaf{}
	for i := range 400 {
		parent := parents[(i/50)%len(parents)]
		attrs := lists[(i*5)%4]
		if i >= 200 {
			attrs = lists[i%len(lists)] // more lists than the spool keeps: templates are lost and made again
		}
		l := startLeaf(p, parent, attrs)
		switch i % 17 {
		case 3:
			l.SetStatus(codes.Error, "SQLSTATE 57014")
		case 7:
			l.SetAttributes(attribute.String("db.response.status_code", "57014"))
		}
		if i%23 == 11 {
			l.End(trace.WithTimestamp(time.Unix(0, 0))) // no place for the end time
		} else {
			l.End()
		}
		want = appendSpan(want, (*endedLeaf)(l), nil)
		ids[l.id] = l
	}
	templates := 0
	for _, e := range p.lists {
		if e.hdr != nil {
			templates++
		}
	}
	if templates == 0 {
		t.Fatal("the spool kept no span template")
	}
	spans := c.exported(t, tr) // flushes p with the rest
	c.mu.Lock()
	var got []byte
	for _, ch := range c.chunks {
		got = append(got, ch.b...)
	}
	c.mu.Unlock()
	if !bytes.Equal(got, want) {
		i := 0
		for i < min(len(got), len(want)) && got[i] == want[i] {
			i++
		}
		t.Fatalf("the spool's spans (%d bytes) differ from their field-by-field encoding (%d bytes) from byte %d", len(got), len(want), i)
	}
	if len(spans) != len(ids) {
		t.Fatalf("%d spans exported, want %d", len(spans), len(ids))
	}
	for _, s := range spans {
		l := ids[trace.SpanID(s.SpanId)]
		if l == nil {
			t.Fatalf("span %x was not started", s.SpanId)
		}
		end := l.start.Add(l.took)
		if s.StartTimeUnixNano != uint64(l.start.UnixNano()) || (end.UnixNano() > 0 && s.EndTimeUnixNano != uint64(end.UnixNano())) {
			t.Fatalf("span %x ran %d to %d, want %d to %d", s.SpanId, s.StartTimeUnixNano, s.EndTimeUnixNano, l.start.UnixNano(), end.UnixNano())
		}
	}
}

// TestSpoolKeepsItsBuffer: a spool hands the batcher a copy of the spans it encoded and encodes its
// next ones into the same buffer, which stays in the cache of the core that ends its spans; the
// queued copy shares no memory with it (what the spool encodes next cannot change a queued span),
// and goes into an exported chunk's buffer when one is spare.
func TestSpoolKeepsItsBuffer(t *testing.T) {
	b := newBatcher(&capture{}, batchSize, batchMaxQueue, time.Hour, exportTimeout)
	t.Cleanup(func() { _ = b.Shutdown(context.Background()) })
	tr := &Tracing{leaves: b, res: resource.Empty()}
	parent := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}, TraceFlags: trace.FlagsSampled})
	attrs := []attribute.KeyValue{attribute.String("db.system.name", "postgresql")}
	p := tr.NewSpool()
	p.buf = make([]byte, 0, maxSpareBytes) // room for every span here: the spool's own buffer never grows
	own := unsafe.SliceData(p.buf)
	for range spoolSpans - 1 {
		startLeaf(p, parent, attrs).End()
	}
	spare := make([]byte, 0, maxSpareBytes)
	b.mu.Lock()
	b.spares = append(b.spares, spare)
	b.mu.Unlock()
	startLeaf(p, parent, attrs).End() // the spoolSpans-th: handed over
	b.mu.Lock()
	chunks, spares := slices.Clone(b.chunks), len(b.spares)
	b.mu.Unlock()
	if len(chunks) != 1 || chunks[0].n != spoolSpans || spares != 0 {
		t.Fatalf("queued %d chunks (%v), %d spares left; want one chunk of %d spans in the spare", len(chunks), chunks, spares, spoolSpans)
	}
	if q := chunks[0].b; unsafe.SliceData(q) != unsafe.SliceData(spare) || len(q) == 0 {
		t.Fatal("the spans handed over were not copied into the spare buffer")
	}
	if p.n != 0 || len(p.buf) != 0 || unsafe.SliceData(p.buf) != own {
		t.Fatalf("after handing over, the spool holds %d spans in %d bytes, in another buffer: %t", p.n, len(p.buf), unsafe.SliceData(p.buf) != own)
	}
	queued := slices.Clone(chunks[0].b)
	startLeaf(p, parent, attrs).End()
	if !slices.Equal(chunks[0].b, queued) {
		t.Fatal("a span the spool encoded after the handover changed the queued copy")
	}
}

// TestStartKindStartsWhatStartLeafStarts: a span started from a LeafKind (Spool.Kind, StartKind) is
// the span StartLeaf starts with the same parent, name and kind: the same header, recorded and
// exported alike when its parent is sampled, a span context and nothing else when it is not, the
// SDK's span with a parent that is not valid or a Tracing of WithProvider, and nothing on a nil spool.
func TestStartKindStartsWhatStartLeafStarts(t *testing.T) {
	tr, c := newCaptured(t, 1)
	_, session := tr.Start(context.Background(), "svidbroker.session", trace.SpanKindServer)
	attrs := []attribute.KeyValue{attribute.String("db.system.name", "postgresql")}
	p := tr.NewSpool()
	k := p.Kind(session.SpanContext(), "relay", trace.SpanKindClient)
	byLeaf := startLeaf(p, session.SpanContext(), attrs)
	byKind := new(Leaf)
	p.StartKind(byKind, context.Background(), k, attrs)
	if !byKind.own || byKind.hdr != byLeaf.hdr || byKind.p != p || !byKind.IsRecording() || &byKind.attrs[0] != &attrs[0] {
		t.Fatalf("StartKind's span: recorded %v, the same header %v", byKind.own, byKind.hdr == byLeaf.hdr)
	}
	if byKind.SpanContext().SpanID() == byLeaf.SpanContext().SpanID() {
		t.Fatal("two spans of one kind share a span ID")
	}
	byLeaf.End()
	byKind.End()
	session.End()
	var got []*tracepb.Span
	for _, s := range c.exported(t, tr) {
		if s.Name == "relay" {
			s.SpanId, s.StartTimeUnixNano, s.EndTimeUnixNano = nil, 0, 0
			got = append(got, s)
		}
	}
	if len(got) != 2 || !proto.Equal(got[0], got[1]) {
		t.Fatalf("exported %d relay spans, want two alike but for their IDs and times: %v", len(got), got)
	}

	unsampled := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}})
	quiet := new(Leaf)
	p.StartKind(quiet, context.Background(), p.Kind(unsampled, "relay", trace.SpanKindClient), attrs)
	if quiet.IsRecording() || quiet.own || quiet.SpanContext().TraceID() != unsampled.TraceID() || !quiet.SpanContext().SpanID().IsValid() {
		t.Fatalf("an unsampled parent's span: recording %v, context %v", quiet.IsRecording(), quiet.SpanContext())
	}

	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	wp := WithProvider(tp, false).NewSpool()
	_, root := tp.Tracer("test").Start(context.Background(), "root")
	for name, parent := range map[string]trace.SpanContext{"provider's": root.SpanContext(), "orphan": {}} {
		l := new(Leaf)
		spool := wp
		if name == "orphan" {
			spool = p
		}
		spool.StartKind(l, context.Background(), spool.Kind(parent, "relay", trace.SpanKindClient), attrs)
		if l.own || l.more == nil || l.more.sdk == nil {
			t.Fatalf("the %s span is not the SDK's", name)
		}
		l.End()
	}
	if ended := rec.Ended(); len(ended) != 1 || ended[0].Parent().SpanID() != root.SpanContext().SpanID() || ended[0].Name() != "relay" {
		t.Fatalf("the provider saw %d spans, want the relay span, the root's child", len(ended))
	}

	var none *Spool
	l := new(Leaf)
	none.StartKind(l, context.Background(), none.Kind(session.SpanContext(), "relay", trace.SpanKindClient), attrs)
	if l.IsRecording() || l.SpanContext().IsValid() {
		t.Fatal("a nil spool started a span")
	}
}

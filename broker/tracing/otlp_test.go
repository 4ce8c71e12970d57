package tracing

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	collectortracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
)

// sink is a collector that keeps the bodies it receives and answers each with the next of its
// answers (the last one repeated; none: 200 and no body).
type sink struct {
	mu      sync.Mutex
	bodies  [][]byte
	headers []http.Header
	answers []answer
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil || r.Method != http.MethodPost || r.URL.Path != "/v1/traces" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.bodies = append(s.bodies, body)
	s.headers = append(s.headers, r.Header.Clone())
	a := answer{status: http.StatusOK}
	if len(s.answers) > 0 {
		a = s.answers[min(len(s.bodies), len(s.answers))-1]
	}
	s.mu.Unlock()
	for k, v := range a.header {
		w.Header()[k] = v
	}
	w.WriteHeader(a.status)
	w.Write(a.body)
}

func (s *sink) received() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.bodies)
}

func newSink(t testing.TB, answers ...answer) (*sink, string) {
	s := &sink{answers: answers}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return s, srv.Listener.Addr().String()
}

func mustSpanContext(t testing.TB, tid, sid byte, flags trace.TraceFlags, state string, remote bool) trace.SpanContext {
	ts, err := trace.ParseTraceState(state)
	if err != nil {
		t.Fatal(err)
	}
	return trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{tid, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
		SpanID:  trace.SpanID{sid, 1, 2, 3, 4, 5, 6, 7}, TraceFlags: flags, TraceState: ts, Remote: remote,
	})
}

// everyAttribute is an attribute of every attribute.Type, at defaults and not, with nesting, and a
// string long enough that its lengths take three bytes.
func everyAttribute() []attribute.KeyValue {
	return []attribute.KeyValue{
		attribute.Bool("bool.true", true), attribute.Bool("bool.false", false),
		attribute.Int("int.zero", 0), attribute.Int64("int.negative", -42),
		attribute.Int("int.127", 127), attribute.Int64("int.max", math.MaxInt64), // varint lengths' edges
		attribute.Float64("float.zero", 0), attribute.Float64("float", -1.5),
		attribute.String("string.empty", ""), attribute.String("string", "schön"),
		attribute.String("string.long", strings.Repeat("x", 20000)),
		attribute.BoolSlice("bools", []bool{true, false}), attribute.BoolSlice("bools.empty", nil),
		attribute.IntSlice("ints", []int{0, 1, -1}), attribute.Int64Slice("int64s.empty", []int64{}),
		attribute.Float64Slice("floats", []float64{0, 2.5}),
		attribute.StringSlice("strings", []string{"", "a"}), attribute.StringSlice("strings.empty", nil),
		attribute.ByteSlice("bytes", []byte{0, 1, 255}), attribute.ByteSlice("bytes.empty", nil),
		attribute.Slice("slice", attribute.IntValue(1), attribute.StringValue(""), attribute.MapValue(attribute.Bool("in.map", false)),
			attribute.SliceValue(), attribute.Value{}),
		attribute.Slice("slice.empty"),
		attribute.Map("map", attribute.String("k", "v"), attribute.Slice("s", attribute.Float64Value(1)), attribute.KeyValue{Key: "nothing"}),
		attribute.Map("map.empty"),
		{Key: "empty"}, // attribute.EMPTY
		attribute.String("", "no key"),
	}
}

// variedSpans are spans of two resources (one with a schema URL, one with none and no attributes),
// four scopes (none, a name, a schema URL, everything), interleaved, with every field the exporter writes set and
// unset somewhere, and nil spans.
func variedSpans(t testing.TB) []sdktrace.ReadOnlySpan {
	resA := resource.NewWithAttributes("https://opentelemetry.io/schemas/1.26.0",
		semconv.ServiceName("svidbroker"), semconv.ServiceVersion("1.0.0"), attribute.Int("res.int", 7))
	resB := resource.NewSchemaless(semconv.ServiceName("other"))
	resEmpty := resource.Empty()
	scopeA := instrumentation.Scope{Name: "github.com/svidbroker/svidbroker"}
	scopeB := instrumentation.Scope{Name: "scope.b", Version: "1.2.3", SchemaURL: "https://opentelemetry.io/schemas/1.24.0",
		Attributes: attribute.NewSet(attribute.String("scope.attr", "v"), attribute.Bool("scope.bool", false))}
	t0 := time.Date(2026, 12, 7, 3, 0, 0, 123456789, time.UTC)
	remoteParent := mustSpanContext(t, 9, 9, trace.FlagsSampled, "", true)
	localParent := mustSpanContext(t, 1, 8, trace.FlagsSampled, "", false)
	stubs := []tracetest.SpanStub{
		{ // a root span of everything
			Name: "svidbroker.session", SpanContext: mustSpanContext(t, 1, 1, trace.FlagsSampled, "vendor=a,other=b", false),
			SpanKind: trace.SpanKindServer, StartTime: t0, EndTime: t0.Add(time.Second), Attributes: everyAttribute(),
			Events: []sdktrace.Event{
				{Name: "ev", Time: t0.Add(time.Millisecond), Attributes: []attribute.KeyValue{attribute.String("ev.k", "v"), attribute.Int("ev.n", 3)}, DroppedAttributeCount: 2},
				{Name: "", Time: time.Time{}},
			},
			Links: []sdktrace.Link{
				{SpanContext: mustSpanContext(t, 5, 5, trace.FlagsSampled, "l=1", true), Attributes: []attribute.KeyValue{attribute.Bool("link.b", true)}, DroppedAttributeCount: 1},
				{SpanContext: mustSpanContext(t, 6, 6, 0, "", false)},
			},
			Status:            sdktrace.Status{Code: codes.Error, Description: "refused: policy"},
			DroppedAttributes: 3, DroppedEvents: 4, DroppedLinks: 5, ChildSpanCount: 2,
			Resource: resA, InstrumentationScope: scopeA,
		},
		{ // a child of a remote parent, in another resource
			Name: "GET /v1/orders/{id}", SpanContext: mustSpanContext(t, 9, 2, trace.FlagsSampled, "", false), Parent: remoteParent,
			SpanKind: trace.SpanKindClient, StartTime: t0, EndTime: t0.Add(2 * time.Millisecond),
			Status: sdktrace.Status{Code: codes.Ok}, Resource: resB, InstrumentationScope: scopeB,
		},
		{ // the first resource's second scope, status unset, unsampled flags, a local parent
			Name: "svidbroker.decide", SpanContext: mustSpanContext(t, 1, 3, 0, "", false), Parent: localParent,
			SpanKind: trace.SpanKindInternal, StartTime: t0, EndTime: t0,
			Attributes: []attribute.KeyValue{attribute.StringSlice("svidbroker.policy.ids", []string{"p1", "p2"})},
			Resource:   resA, InstrumentationScope: scopeB,
		},
		{}, // a nil span
		{ // back to the first scope; times before the epoch and the zero time are 0
			Name: "", SpanContext: mustSpanContext(t, 1, 4, trace.FlagsSampled, "", false), Parent: localParent,
			SpanKind: trace.SpanKindProducer, StartTime: time.Unix(-5, 0), EndTime: time.Time{},
			Status:   sdktrace.Status{Code: codes.Unset, Description: "a description with no code"},
			Resource: resA, InstrumentationScope: scopeA, DroppedAttributes: -1,
		},
		{Name: "consumer", SpanContext: mustSpanContext(t, 2, 1, trace.FlagsSampled, "", false), SpanKind: trace.SpanKindConsumer,
			StartTime: t0, EndTime: t0.Add(time.Microsecond), Resource: resB},
		{Name: "a scope of a schema alone", SpanContext: mustSpanContext(t, 2, 4, trace.FlagsSampled, "", false), SpanKind: trace.SpanKindServer,
			StartTime: t0, EndTime: t0.Add(time.Microsecond), Resource: resB, InstrumentationScope: instrumentation.Scope{SchemaURL: "https://opentelemetry.io/schemas/1.20.0"}},
		{Name: "unspecified kind", SpanContext: mustSpanContext(t, 2, 2, trace.FlagsSampled, "", false), SpanKind: trace.SpanKindUnspecified,
			StartTime: t0, EndTime: t0.Add(time.Microsecond), Resource: resEmpty, InstrumentationScope: scopeA},
		{Name: "an unknown kind", SpanContext: mustSpanContext(t, 2, 3, trace.FlagsSampled, "", false), SpanKind: trace.SpanKind(99),
			StartTime: t0, EndTime: t0.Add(time.Microsecond), Resource: nil, InstrumentationScope: scopeB},
	}
	var spans []sdktrace.ReadOnlySpan
	for _, s := range stubs {
		if s.Name == "" && !s.SpanContext.IsValid() {
			spans = append(spans, nil)
			continue
		}
		spans = append(spans, s.Snapshot())
	}
	// Spans the SDK made, as the broker makes them.
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithResource(resA))
	ctx, sess := tp.Tracer("github.com/svidbroker/svidbroker").Start(context.Background(), "svidbroker.session", trace.WithSpanKind(trace.SpanKindServer))
	_, up := tp.Tracer("github.com/svidbroker/svidbroker").Start(ctx, "svidbroker.upstream", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(semconv.DBSystemNamePostgreSQL, semconv.ServerPort(5432)), trace.WithLinks(trace.Link{SpanContext: remoteParent}))
	up.AddEvent("sent", trace.WithAttributes(attribute.Int("bytes", 12)))
	up.SetStatus(codes.Error, "SQLSTATE 42501")
	up.End()
	sess.End()
	return append(spans, rec.Ended()...)
}

// benchSpans are n spans as the broker makes them for statements: ended by the SDK, of one resource
// and scope, children of one session span.
func benchSpans(t testing.TB, n int) []sdktrace.ReadOnlySpan {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec),
		sdktrace.WithResource(resource.NewSchemaless(semconv.ServiceName("svidbroker"), semconv.ServiceVersion("1.0.0"))))
	tr := tp.Tracer("github.com/svidbroker/svidbroker")
	t0 := time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)
	ctx, sess := tr.Start(context.Background(), "svidbroker.session", trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(t0))
	for i := range n {
		start := t0.Add(time.Duration(i) * time.Millisecond)
		_, sp := tr.Start(ctx, "svidbroker.upstream", trace.WithSpanKind(trace.SpanKindClient), trace.WithTimestamp(start),
			trace.WithAttributes(semconv.DBSystemNamePostgreSQL, semconv.DBOperationName("SELECT"), semconv.ServerAddress("127.0.0.1"), semconv.ServerPort(5432)))
		sp.End(trace.WithTimestamp(start.Add(300 * time.Microsecond)))
	}
	_ = sess // left open: its children are the batch
	return rec.Ended()
}

// decode unmarshals a request and puts its resources and scopes in an order of their content: the
// official exporter's order of resources is a map's.
func decode(t testing.TB, body []byte) *collectortracepb.ExportTraceServiceRequest {
	t.Helper()
	req := &collectortracepb.ExportTraceServiceRequest{}
	if err := proto.Unmarshal(body, req); err != nil {
		t.Fatalf("the request does not unmarshal: %v", err)
	}
	key := func(m proto.Message, schema string) string {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("%x|%s", b, schema)
	}
	slices.SortStableFunc(req.ResourceSpans, func(a, b *tracepb.ResourceSpans) int {
		return strings.Compare(key(a.Resource, a.SchemaUrl), key(b.Resource, b.SchemaUrl))
	})
	for _, rs := range req.ResourceSpans {
		slices.SortStableFunc(rs.ScopeSpans, func(a, b *tracepb.ScopeSpans) int {
			return strings.Compare(key(a.Scope, a.SchemaUrl), key(b.Scope, b.SchemaUrl))
		})
	}
	return req
}

func countSpans(req *collectortracepb.ExportTraceServiceRequest) (n int) {
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			n += len(ss.Spans)
		}
	}
	return n
}

func newTestExporter(t testing.TB, addr string, timeout time.Duration) *otlpExporter {
	t.Helper()
	e, err := newOTLPExporter(addr, true, nil, timeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Shutdown(context.Background()) })
	return e
}

// TestEncodingMatchesTheOfficialExporter: the same spans exported by the official OTLP/HTTP exporter
// and by this package's arrive at a collector as equal requests, field by field.
func TestEncodingMatchesTheOfficialExporter(t *testing.T) {
	for name, spans := range map[string][]sdktrace.ReadOnlySpan{
		"varied": variedSpans(t),
		"batch":  benchSpans(t, 512),
	} {
		t.Run(name, func(t *testing.T) {
			official, officialAddr := newSink(t)
			oexp, err := otlptracehttp.New(t.Context(), otlptracehttp.WithEndpoint(officialAddr), otlptracehttp.WithInsecure())
			if err != nil {
				t.Fatal(err)
			}
			defer oexp.Shutdown(context.Background())
			if err := oexp.ExportSpans(t.Context(), spans); err != nil {
				t.Fatal(err)
			}
			ours, oursAddr := newSink(t)
			if err := newTestExporter(t, oursAddr, 10*time.Second).ExportSpans(t.Context(), spans); err != nil {
				t.Fatal(err)
			}
			ob, db := official.received(), ours.received()
			if len(ob) != 1 || len(db) != 1 {
				t.Fatalf("requests: official %d, ours %d; want 1 each", len(ob), len(db))
			}
			if h := official.headers[0].Get("Content-Encoding"); h != "" {
				t.Fatalf("the official exporter's request is %s-encoded", h)
			}
			if ct := ours.headers[0].Get("Content-Type"); ct != "application/x-protobuf" {
				t.Errorf("Content-Type %q", ct)
			}
			want, got := decode(t, ob[0]), decode(t, db[0])
			nonNil := 0
			for _, s := range spans {
				if s != nil {
					nonNil++
				}
			}
			if n := countSpans(want); n != nonNil {
				t.Fatalf("the official request holds %d spans, want %d", n, nonNil)
			}
			if !proto.Equal(want, got) {
				t.Fatalf("the requests differ (-official +ours):\n%s", cmp.Diff(want, got, protocmp.Transform()))
			}
		})
	}
}

// TestEncodingKeepsFirstAppearanceOrder: resources and their scopes come in the order of their first
// span, and spans in theirs, on every export of the reused buffer.
func TestEncodingKeepsFirstAppearanceOrder(t *testing.T) {
	spans := asData(variedSpans(t))
	var e encoder
	first, _ := e.request(spans, nil)
	first = bytes.Clone(first)
	e.reset(maxKeptBuffer)
	req := &collectortracepb.ExportTraceServiceRequest{}
	if err := proto.Unmarshal(first, req); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				got = append(got, s.Name)
			}
		}
	}
	want := []string{
		"svidbroker.session", "", "svidbroker.upstream", "svidbroker.session", // resource A, scope A (stubs, then SDK spans as they ended)
		"svidbroker.decide",                                            // resource A, scope B
		"GET /v1/orders/{id}", "consumer", "a scope of a schema alone", // resource B: scope B, no scope, a schema
		"unspecified kind", // the empty resource
		"an unknown kind",  // no resource
	}
	if !slices.Equal(got, want) {
		t.Fatalf("order %q, want %q", got, want)
	}
	for range 3 {
		again, _ := e.request(spans, nil)
		if !bytes.Equal(again, first) {
			t.Fatal("a second encoding of the same spans differs")
		}
		e.reset(maxKeptBuffer)
	}
}

func TestExportRetries(t *testing.T) {
	spans := benchSpans(t, 3)
	busy := func(status int, retryAfter string) answer {
		a := answer{status: status, header: http.Header{}}
		if retryAfter != "" {
			a.header.Set("Retry-After", retryAfter)
		}
		return a
	}
	ok := answer{status: http.StatusOK}
	for name, c := range map[string]struct {
		answers  []answer
		timeout  time.Duration
		requests int
		says     string // "": success
	}{
		"503 then success":      {answers: []answer{busy(503, ""), ok}, timeout: 10 * time.Second, requests: 2},
		"429 502 504 then done": {answers: []answer{busy(429, ""), busy(502, ""), busy(504, ""), ok}, timeout: 10 * time.Second, requests: 4},
		"400 is not retried":    {answers: []answer{{status: 400, body: []byte("bad spans")}, ok}, timeout: 10 * time.Second, requests: 1, says: "400 Bad Request"},
		"500 is not retried":    {answers: []answer{{status: 500}, ok}, timeout: 10 * time.Second, requests: 1, says: "500 Internal Server Error"},
		"a redirect is refused": {answers: []answer{{status: 307, header: http.Header{"Location": {"/elsewhere"}}}, ok}, timeout: 10 * time.Second, requests: 1, says: "307"},
		"Retry-After past the deadline": {answers: []answer{busy(503, "3600"), ok}, timeout: 2 * time.Second, requests: 1,
			says: "waiting 1h0m0s to retry would pass the export's deadline"},
		"busy until the deadline": {answers: []answer{busy(503, "")}, timeout: 500 * time.Millisecond, requests: -1, says: "503"},
	} {
		t.Run(name, func(t *testing.T) {
			s, addr := newSink(t, c.answers...)
			err := newTestExporter(t, addr, c.timeout).ExportSpans(t.Context(), spans)
			if c.says == "" && err != nil {
				t.Fatalf("ExportSpans: %v", err)
			}
			if c.says != "" && (err == nil || !strings.Contains(err.Error(), c.says)) {
				t.Fatalf("ExportSpans: %v, want an error saying %q", err, c.says)
			}
			bodies := s.received()
			if c.requests >= 0 && len(bodies) != c.requests {
				t.Fatalf("%d requests, want %d", len(bodies), c.requests)
			}
			if c.requests < 0 && len(bodies) < 2 {
				t.Fatalf("%d requests: no retry before the deadline", len(bodies))
			}
			for i, b := range bodies {
				if req := decode(t, b); countSpans(req) != len(spans) {
					t.Fatalf("request %d holds %d spans, want %d", i, countSpans(req), len(spans))
				}
				if !bytes.Equal(b, bodies[0]) {
					t.Fatalf("retry %d sent other bytes than the first request", i)
				}
			}
			if err != nil && !strings.Contains(err.Error(), "127.0.0.1") {
				t.Errorf("the error does not name the collector: %v", err)
			}
		})
	}
}

// TestExportHonoursRetryAfter: a Retry-After of one second delays the retry by at least that, where
// the backoff alone would retry after 100 ms.
func TestExportHonoursRetryAfter(t *testing.T) {
	var mu sync.Mutex
	var at []time.Time
	s, addr := newSink(t, answer{status: 503, header: http.Header{"Retry-After": {"1"}}}, answer{status: 200})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		at = append(at, time.Now())
		mu.Unlock()
		s.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	_ = addr
	if err := newTestExporter(t, srv.Listener.Addr().String(), 10*time.Second).ExportSpans(t.Context(), benchSpans(t, 1)); err != nil {
		t.Fatal(err)
	}
	if len(at) != 2 {
		t.Fatalf("%d requests, want 2", len(at))
	}
	if gap := at[1].Sub(at[0]); gap < time.Second {
		t.Fatalf("retried %v after a Retry-After of 1 s", gap)
	}
}

// TestExportReportsPartialSuccess: spans a collector rejects in its 2xx answer go to otel's error
// handler, and ExportSpans succeeds; an answer without a partial success reports nothing.
func TestExportReportsPartialSuccess(t *testing.T) {
	prev := otel.GetErrorHandler()
	var mu sync.Mutex
	var handled []error
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		mu.Lock()
		handled = append(handled, err)
		mu.Unlock()
	}))
	t.Cleanup(func() { otel.SetErrorHandler(prev) })
	pb := http.Header{"Content-Type": {"application/x-protobuf"}}
	marshal := func(m *collectortracepb.ExportTraceServiceResponse) []byte {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, c := range []struct {
		name string
		a    answer
		says string // "": nothing reported
	}{
		{"rejected", answer{200, pb, marshal(&collectortracepb.ExportTraceServiceResponse{PartialSuccess: &collectortracepb.ExportTracePartialSuccess{RejectedSpans: 2, ErrorMessage: "spans too large"}})},
			`rejected 2 of the spans: "spans too large"`},
		{"a warning", answer{200, pb, marshal(&collectortracepb.ExportTraceServiceResponse{PartialSuccess: &collectortracepb.ExportTracePartialSuccess{ErrorMessage: "deprecated field"}})},
			`rejected 0 of the spans: "deprecated field"`},
		{"an unreadable answer", answer{200, pb, []byte{0x0a, 0x05, 0x08}}, "not an ExportTraceServiceResponse"},
		{"all accepted", answer{200, pb, marshal(&collectortracepb.ExportTraceServiceResponse{})}, ""},
		{"an empty partial success", answer{200, pb, marshal(&collectortracepb.ExportTraceServiceResponse{PartialSuccess: &collectortracepb.ExportTracePartialSuccess{}})}, ""},
		{"a JSON answer", answer{200, http.Header{"Content-Type": {"application/json"}}, []byte(`{"partialSuccess":{}}`)}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			mu.Lock()
			handled = nil
			mu.Unlock()
			_, addr := newSink(t, c.a)
			if err := newTestExporter(t, addr, 10*time.Second).ExportSpans(t.Context(), benchSpans(t, 2)); err != nil {
				t.Fatalf("ExportSpans: %v", err)
			}
			mu.Lock()
			defer mu.Unlock()
			switch {
			case c.says == "" && len(handled) != 0:
				t.Fatalf("reported %v", handled)
			case c.says != "" && (len(handled) != 1 || !strings.Contains(handled[0].Error(), c.says)):
				t.Fatalf("reported %v, want one error saying %q", handled, c.says)
			}
		})
	}
}

// TestExportKeepsTheDeadline: a collector that never answers costs an export its context's deadline
// (or the exporter's timeout), and the error says so.
func TestExportKeepsTheDeadline(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	addr := srv.Listener.Addr().String()
	t.Run("the context's", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		err := newTestExporter(t, addr, time.Minute).ExportSpans(ctx, benchSpans(t, 1))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("ExportSpans: %v, want the context's deadline", err)
		}
	})
	t.Run("the exporter's", func(t *testing.T) {
		err := newTestExporter(t, addr, 300*time.Millisecond).ExportSpans(t.Context(), benchSpans(t, 1))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("ExportSpans: %v, want the export timeout", err)
		}
	})
}

// TestExportVerifiesTheCollector: over HTTPS the collector's certificate must verify against the
// given roots; with the system's roots a test CA's certificate does not.
func TestExportVerifiesTheCollector(t *testing.T) {
	s := &sink{}
	srv := httptest.NewUnstartedServer(s)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake
	srv.StartTLS()
	t.Cleanup(srv.Close)
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	addr := srv.Listener.Addr().String()
	spans := benchSpans(t, 1)

	verified, err := newOTLPExporter(addr, false, &tls.Config{RootCAs: roots}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer verified.Shutdown(context.Background())
	if err := verified.ExportSpans(t.Context(), spans); err != nil {
		t.Fatalf("ExportSpans with the collector's CA: %v", err)
	}
	if n := len(s.received()); n != 1 {
		t.Fatalf("%d requests over HTTPS, want 1", n)
	}

	unverified, err := newOTLPExporter(addr, false, nil, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer unverified.Shutdown(context.Background())
	var unknown x509.UnknownAuthorityError
	if err := unverified.ExportSpans(t.Context(), spans); !errors.As(err, &unknown) {
		t.Fatalf("ExportSpans with the system's roots: %v, want an unknown authority", err)
	}
	if n := len(s.received()); n != 1 {
		t.Fatalf("%d requests reached the collector, want only the verified one", n)
	}
}

// TestExporterEmptyConcurrentAndShutdown: nothing is sent for no spans; exports from several
// goroutines each arrive whole; after Shutdown exports fail.
func TestExporterEmptyConcurrentAndShutdown(t *testing.T) {
	s, addr := newSink(t)
	e := newTestExporter(t, addr, 10*time.Second)
	if err := e.ExportSpans(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	if err := e.ExportSpans(t.Context(), []sdktrace.ReadOnlySpan{nil}); err != nil {
		t.Fatal(err)
	}
	if n := len(s.received()); n != 0 {
		t.Fatalf("%d requests for no spans", n)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Go(func() { errs <- e.ExportSpans(t.Context(), benchSpans(t, i+1)) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	var sizes []int
	for _, b := range s.received() {
		sizes = append(sizes, countSpans(decode(t, b)))
	}
	slices.Sort(sizes)
	if want := []int{1, 2, 3, 4, 5, 6, 7, 8}; !slices.Equal(sizes, want) {
		t.Fatalf("requests of %v spans, want %v", sizes, want)
	}
	if err := e.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := e.ExportSpans(t.Context(), benchSpans(t, 1)); !errors.Is(err, errExporterShutdown) {
		t.Fatalf("ExportSpans after Shutdown: %v", err)
	}
}

func TestNewOTLPExporterRefusals(t *testing.T) {
	if _, err := newOTLPExporter("collector", true, nil, time.Second); err == nil || !strings.Contains(err.Error(), "not host:port") {
		t.Errorf("an endpoint without a port: %v", err)
	}
	if _, err := newOTLPExporter("collector:4318", true, nil, 0); err == nil || !strings.Contains(err.Error(), "not positive") {
		t.Errorf("no timeout: %v", err)
	}
}

// FuzzPartialSuccess holds parsePartialSuccess to proto.Unmarshal of an ExportTraceServiceResponse:
// both refuse the same answers, and read the same rejected count and message from the rest.
func FuzzPartialSuccess(f *testing.F) {
	for _, m := range []*collectortracepb.ExportTraceServiceResponse{
		{},
		{PartialSuccess: &collectortracepb.ExportTracePartialSuccess{}},
		{PartialSuccess: &collectortracepb.ExportTracePartialSuccess{RejectedSpans: 3, ErrorMessage: "too large"}},
		{PartialSuccess: &collectortracepb.ExportTracePartialSuccess{RejectedSpans: -1}},
	} {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0x0a, 0x02, 0x08})                   // truncated
	f.Add([]byte{0x08, 0x01})                         // field 1 as a varint: unknown
	f.Add([]byte{0x0a, 0x03, 0x12, 0x01, 0xff})       // a message that is not UTF-8
	f.Add([]byte{0x0a, 0x02, 0x08, 0x01, 0x0a, 0x00}) // two partial successes, merged
	f.Add([]byte{0x13, 0x0a, 0x00, 0x14})             // a group
	f.Fuzz(func(t *testing.T, b []byte) {
		rejected, msg, err := parsePartialSuccess(b)
		if len(b) > maxPartialSuccess {
			if err == nil {
				t.Fatal("an answer beyond the bound was read")
			}
			return
		}
		var ref collectortracepb.ExportTraceServiceResponse
		refErr := proto.Unmarshal(b, &ref)
		if (err != nil) != (refErr != nil) {
			t.Fatalf("parsePartialSuccess: %v; proto.Unmarshal: %v", err, refErr)
		}
		if err == nil && (rejected != ref.GetPartialSuccess().GetRejectedSpans() || msg != ref.GetPartialSuccess().GetErrorMessage()) {
			t.Fatalf("read %d %q, proto.Unmarshal %d %q", rejected, msg, ref.GetPartialSuccess().GetRejectedSpans(), ref.GetPartialSuccess().GetErrorMessage())
		}
	})
}

// BenchmarkExport exports the same 512 statement spans through the official OTLP/HTTP exporter and
// through this package's, each to a collector that discards them: the per-batch cost of encoding and
// posting, side by side.
func BenchmarkExport(b *testing.B) {
	spans := benchSpans(b, 512)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) }))
	b.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()
	b.Run("official", func(b *testing.B) {
		exp, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpoint(addr), otlptracehttp.WithInsecure())
		if err != nil {
			b.Fatal(err)
		}
		defer exp.Shutdown(context.Background())
		benchExporter(b, exp, spans)
	})
	b.Run("direct", func(b *testing.B) {
		exp, err := newOTLPExporter(addr, true, nil, 10*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		defer exp.Shutdown(context.Background())
		benchExporter(b, exp, spans)
	})
}

func benchExporter(b *testing.B, exp sdktrace.SpanExporter, spans []sdktrace.ReadOnlySpan) {
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := exp.ExportSpans(ctx, spans); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(spans)), "ns/span")
}

// asData is spans as the encoder takes them.
func asData(spans []sdktrace.ReadOnlySpan) []spanData {
	data := make([]spanData, len(spans))
	for i, s := range spans {
		data[i] = s
	}
	return data
}

// chunkWriter records the size of each write.
type chunkWriter struct{ sizes []int }

func (w *chunkWriter) Write(p []byte) (int, error) {
	w.sizes = append(w.sizes, len(p))
	return len(p), nil
}

// TestBodyReaderWritesInChunksAndNotAfterClose: a request's body is written to the socket straight
// from the encoder's buffer, a chunk at a time, all of it; once closed it writes nothing.
func TestBodyReaderWritesInChunksAndNotAfterClose(t *testing.T) {
	body := bytes.Repeat([]byte{1}, 3*bodyChunk+5)
	var w chunkWriter
	n, err := (&bodyReader{b: body}).WriteTo(&w)
	if err != nil || n != int64(len(body)) || !slices.Equal(w.sizes, []int{bodyChunk, bodyChunk, bodyChunk, 5}) {
		t.Fatalf("wrote %d (%v) in chunks %v", n, err, w.sizes)
	}
	closed := &bodyReader{b: body}
	if err := closed.Close(); err != nil {
		t.Fatal(err)
	}
	w = chunkWriter{}
	if n, err := closed.WriteTo(&w); n != 0 || err != nil || len(w.sizes) != 0 {
		t.Fatalf("a closed body wrote %d bytes (%v)", n, err)
	}
}

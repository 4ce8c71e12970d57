package postgres

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	collectortracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/broker/server"
	"github.com/svidbroker/svidbroker/broker/tracing"
	"github.com/svidbroker/svidbroker/plugins/protocol/postgres/sqlclass"
)

// TestTracingStatementsOfASession runs an engine with tracing in front of a fake PostgreSQL, and a
// pgx client sends one statement by each protocol: the session's span holds a decision and a relay
// to the backend per statement, with the database's semantic conventions; the literal values never
// reach a span, and the statement's text does only with statement_text, normalized.
func TestTracingStatementsOfASession(t *testing.T) {
	for _, statementText := range []bool{false, true} {
		t.Run(fmt.Sprintf("statement_text=%v", statementText), func(t *testing.T) {
			spans := traceSession(t, statementText, "SELECT 'secret-literal-42'")
			sessions := map[trace.SpanID]sdktrace.ReadOnlySpan{}
			for _, s := range spans {
				if s.Name() == "svidbroker.session" {
					sessions[s.SpanContext().SpanID()] = s
					if v, _ := spanValue(s, semconv.DBSystemNameKey); v.AsString() != "postgresql" {
						t.Errorf("session span's db.system.name = %q", v.AsString())
					}
				}
			}
			decides, relays, texts := 0, 0, 0
			for _, s := range spans {
				for _, kv := range s.Attributes() {
					if strings.Contains(kv.Value.Emit(), "secret-literal-42") {
						t.Errorf("span %s carries the statement's literal in %s", s.Name(), kv.Key)
					}
				}
				if s.Name() != "svidbroker.decide" && s.Name() != spanRelay {
					continue
				}
				if session := sessions[s.Parent().SpanID()]; session == nil || s.SpanContext().TraceID() != session.SpanContext().TraceID() {
					t.Errorf("%s span is not the session's child", s.Name())
				}
				if v, _ := spanValue(s, semconv.DBOperationNameKey); v.AsString() != "SELECT" {
					t.Errorf("%s span's db.operation.name = %q", s.Name(), v.AsString())
				}
				if v, ok := spanValue(s, semconv.DBQueryTextKey); ok {
					texts++
					if v.AsString() != "SELECT $1" {
						t.Errorf("db.query.text = %q, want the normalized statement", v.AsString())
					}
				}
				switch s.Name() {
				case "svidbroker.decide":
					decides++
				case spanRelay:
					relays++
					if v, _ := spanValue(s, semconv.ServerAddressKey); v.AsString() != "127.0.0.1" || s.SpanKind() != trace.SpanKindClient {
						t.Errorf("relay span: server.address %q, kind %v", v.AsString(), s.SpanKind())
					}
				}
			}
			// Simple protocol: one decision, one relay. Extended: decided at Parse and at Execute,
			// relayed at Execute.
			if decides < 3 || relays != 2 {
				t.Errorf("%d decide and %d relay spans, want at least 3 and 2", decides, relays)
			}
			if statementText != (texts > 0) {
				t.Errorf("statement_text = %v, yet %d spans carry db.query.text", statementText, texts)
			}
		})
	}
}

func spanValue(span sdktrace.ReadOnlySpan, key attribute.Key) (attribute.Value, bool) {
	for _, kv := range span.Attributes() {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

// traceSession runs one session through a traced engine, sql once by each protocol, and returns the
// spans once the session's has ended.
func traceSession(t *testing.T, statementText bool, sql string) []sdktrace.ReadOnlySpan {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	pki, port := startTracedEngine(t, tracing.WithProvider(tp, statementText))
	cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
		c := connectTraced(t, cctx, pki, port, mode)
		var v string
		if err := c.QueryRow(cctx, sql).Scan(&v); err != nil || v != "v:"+sql {
			t.Fatalf("%v: %q, %v", mode, v, err)
		}
		if err := c.Close(cctx); err != nil {
			t.Fatal(err)
		}
	}
	// The sessions end after their clients' Terminate; wait for both spans (bounded by cctx).
	for {
		n := 0
		for _, s := range rec.Ended() {
			if s.Name() == "svidbroker.session" {
				n++
			}
		}
		if n == 2 {
			break
		}
		select {
		case <-cctx.Done():
			t.Fatalf("%d of 2 session spans ended", n)
		case <-time.After(10 * time.Millisecond):
		}
	}
	return rec.Ended()
}

// startTracedEngine serves an engine with tr (nil: tracing off) in front of a fake PostgreSQL, and
// returns the PKI its clients use and the port it listens on.
func startTracedEngine(t testing.TB, tr *tracing.Tracing) (*testPKI, int) {
	t.Helper()
	pki := newTestPKI(t)
	backend := startFakePG(t, pki)
	t.Cleanup(backend.close)
	eng, err := New(Config{
		Target: "test", ServerTLS: pki.brokerServerTLS(t),
		Authorize: func(context.Context, authz.Connect) (authz.Decision, error) {
			return authz.Decision{Allow: true}, nil
		},
		MaxMessageBytes: 1 << 20, Logger: slog.New(slog.DiscardHandler),
		Backend: Backend{Address: backend.addr(), Database: "app", User: "agent", ConnectTimeout: 5 * time.Second,
			TLS: &tls.Config{RootCAs: pki.pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}},
		Tracing: tr,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{
		Listeners:        []server.Listener{{Name: "pg", Address: "127.0.0.1:0", Engine: eng}},
		HandshakeTimeout: 5 * time.Second, MaxConcurrentHandshakes: 16, MaxConnections: 16,
		ShutdownGrace: 200 * time.Millisecond, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Run(ctx) }()
	t.Cleanup(func() { stop(); <-served })
	return pki, srv.Addr("pg").(*net.TCPAddr).Port
}

// connectTraced connects a pgx client in mode to the engine startTracedEngine serves on port.
func connectTraced(t testing.TB, ctx context.Context, pki *testPKI, port int, mode pgx.QueryExecMode) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=127.0.0.1 port=%d user=agent dbname=app sslmode=disable connect_timeout=5", port))
	if err != nil {
		t.Fatal(err)
	}
	cfg.TLSConfig, cfg.Fallbacks, cfg.DefaultQueryExecMode = pki.clientTLS(t), nil, mode
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// discardSpans is a span exporter that counts the spans it is handed and keeps none: the benchmark
// measures what making and queueing spans costs the session, not a collector's work.
type discardSpans struct{ n atomic.Int64 }

func (d *discardSpans) ExportSpans(_ context.Context, spans []sdktrace.ReadOnlySpan) error {
	d.n.Add(int64(len(spans)))
	return nil
}
func (*discardSpans) Shutdown(context.Context) error { return nil }

// BenchmarkTracedStatements measures what tracing adds to a statement: tracedClients pgx clients run
// SELECT 1 (extended protocol, cached statement) back to back through an engine in front of a fake
// PostgreSQL, all in this process: with tracing off ("off"); with every span an SDK span (a provider
// of WithProvider, as an embedding program would make), batched to an exporter that discards them
// ("sdk"); and with the broker's own tracing (New: leaf relay spans, its encoder) exporting over
// OTLP/HTTP to a collector in the process that discards what it reads ("broker"). Without Cedar
// policies no verdict is kept, so each statement has a decide span (an SDK span) beside its relay
// span. The clients, the engine and the fake server share the process, so read cpu-ns/op (the
// process's CPU time per statement, from getrusage) and allocs/op side by side: the difference is
// tracing's. "sdk" also reports the spans per statement the exporter got.
func BenchmarkTracedStatements(b *testing.B) {
	const tracedClients = 8
	run := func(b *testing.B, tr *tracing.Tracing, flush func() int64) {
		pki, port := startTracedEngine(b, tr)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		conns := make([]*pgx.Conn, tracedClients)
		for i := range conns {
			conns[i] = connectTraced(b, ctx, pki, port, pgx.QueryExecModeCacheStatement)
			defer conns[i].Close(ctx)
		}
		b.ReportAllocs()
		cpu0 := processCPU(b)
		b.ResetTimer()
		var next atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, len(conns))
		for _, c := range conns {
			wg.Go(func() {
				var v string
				for next.Add(1) <= int64(b.N) {
					if err := c.QueryRow(ctx, "SELECT 1").Scan(&v); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		b.StopTimer()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
		if flush != nil {
			b.ReportMetric(float64(flush())/float64(b.N), "spans/op")
		}
	}
	b.Run("off", func(b *testing.B) { run(b, nil, nil) })
	b.Run("sdk", func(b *testing.B) {
		exp := &discardSpans{}
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(tracing.NewBatcher(exp)))
		defer tp.Shutdown(context.Background())
		run(b, tracing.WithProvider(tp, false), func() int64 {
			if err := tp.ForceFlush(context.Background()); err != nil {
				b.Fatal(err)
			}
			return exp.n.Load()
		})
	})
	b.Run("broker", func(b *testing.B) {
		var bodies atomic.Int64
		sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, err := io.Copy(io.Discard, r.Body); err == nil {
				bodies.Add(1)
			}
		}))
		defer sink.Close()
		tr, err := tracing.New(tracing.Config{Endpoint: sink.Listener.Addr().String(), Insecure: true})
		if err != nil {
			b.Fatal(err)
		}
		run(b, tr, nil)
		if err := tr.Shutdown(context.Background()); err != nil || bodies.Load() == 0 {
			b.Fatalf("the collector got %d exports (%v)", bodies.Load(), err)
		}
	})
}

// processCPU is the CPU time this process has used, user and system, in nanoseconds.
func processCPU(tb testing.TB) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// TestTracingExportsRelaySpansOverOTLP runs the broker's own tracing (tracing.New, whose relay spans
// are leaf spans, not the SDK's) against an OTLP/HTTP collector in the test, which decodes what it
// receives with OTLP's generated types: each statement's relay span is a client span, the child of
// its session's span in its trace, with the database's attributes.
func TestTracingExportsRelaySpansOverOTLP(t *testing.T) {
	var mu sync.Mutex
	var got []*tracepb.Span
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
		req := &collectortracepb.ExportTraceServiceRequest{}
		if err == nil {
			err = proto.Unmarshal(body, req)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			t.Errorf("the collector could not read an export: %v", err)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				got = append(got, ss.Spans...)
			}
		}
	}))
	defer collector.Close()
	tr, err := tracing.New(tracing.Config{Endpoint: collector.Listener.Addr().String(), Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	pki, port := startTracedEngine(t, tr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
		c := connectTraced(t, ctx, pki, port, mode)
		var v string
		if err := c.QueryRow(ctx, "SELECT 'x'").Scan(&v); err != nil {
			t.Fatal(err)
		}
		if err := c.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// The session spans end after the clients' Terminate: shut tracing down (which exports what is
	// queued) once both have.
	for {
		mu.Lock()
		n := 0
		for _, s := range got {
			if s.Name == "svidbroker.session" {
				n++
			}
		}
		mu.Unlock()
		if n == 2 {
			break
		}
		if err := tr.ForceFlush(ctx); err != nil {
			t.Fatal(err)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d of 2 session spans exported", n)
		case <-time.After(20 * time.Millisecond):
		}
	}
	mu.Lock()
	defer mu.Unlock()
	sessions := map[string]*tracepb.Span{}
	for _, s := range got {
		if s.Name == "svidbroker.session" {
			sessions[string(s.SpanId)] = s
		}
	}
	relays := 0
	for _, s := range got {
		if s.Name != spanRelay {
			continue
		}
		relays++
		session := sessions[string(s.ParentSpanId)]
		if session == nil || !bytes.Equal(s.TraceId, session.TraceId) {
			t.Errorf("relay span %x is not a session's child in its trace", s.SpanId)
		}
		if s.Kind != tracepb.Span_SPAN_KIND_CLIENT || s.EndTimeUnixNano < s.StartTimeUnixNano {
			t.Errorf("relay span: kind %v, times %d..%d", s.Kind, s.StartTimeUnixNano, s.EndTimeUnixNano)
		}
		attrs := map[string]string{}
		for _, kv := range s.Attributes {
			switch v := kv.Value.Value.(type) {
			case *commonpb.AnyValue_StringValue:
				attrs[kv.Key] = v.StringValue
			case *commonpb.AnyValue_IntValue:
				attrs[kv.Key] = strconv.FormatInt(v.IntValue, 10)
			default:
				t.Errorf("relay span's %s has a value of type %T", kv.Key, v)
			}
		}
		if attrs["db.system.name"] != "postgresql" || attrs["db.operation.name"] != "SELECT" || attrs["server.address"] != "127.0.0.1" || attrs["server.port"] == "" {
			t.Errorf("relay span's attributes %v", attrs)
		}
	}
	if relays != 2 {
		t.Errorf("%d relay spans exported, want one per statement (2)", relays)
	}
}

// TestOperationOf: each statement kind that names an operation has its own index, whose entry names
// that kind; every other kind, and a string of several statements, has none.
func TestOperationOf(t *testing.T) {
	for i, op := range operations {
		if i == 0 {
			continue
		}
		if got := operationOf([]sqlclass.Statement{{Kind: op.kind}}); got != i {
			t.Errorf("operationOf(%s) = %d, want %d", op.kind, got, i)
		}
		if got := operationAttrs[i]; len(got) != 1 || got[0].Value.AsString() != op.name {
			t.Errorf("operationAttrs[%d] = %v, want db.operation.name=%s", i, got, op.name)
		}
	}
	for _, kind := range []string{sqlclass.KindDDL, sqlclass.KindAdmin, sqlclass.KindTransaction, sqlclass.KindUtility, sqlclass.KindLock, ""} {
		if got := operationOf([]sqlclass.Statement{{Kind: kind}}); got != 0 {
			t.Errorf("operationOf(%q) = %d, want 0: it names no operation", kind, got)
		}
	}
	two := []sqlclass.Statement{{Kind: sqlclass.KindSelect}, {Kind: sqlclass.KindSelect}}
	if got := operationOf(two); got != 0 || operationAttrs[0] != nil {
		t.Errorf("two statements: operation %d (%v), want none", got, operationAttrs[0])
	}
}

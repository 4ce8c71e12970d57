package tracing

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"

	"go.opentelemetry.io/otel/attribute"

	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// BenchmarkSpanExported measures what one statement's span costs the broker end to end: starting and
// ending an upstream span as the Postgres engine does, its queueing in the batcher, and its share of
// the batches' export over OTLP/HTTP to a collector that discards them (on the batcher's goroutine,
// competing for the same cores).
func BenchmarkSpanExported(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) }))
	defer srv.Close()
	tr, err := New(Config{Endpoint: srv.Listener.Addr().String(), Insecure: true})
	if err != nil {
		b.Fatal(err)
	}
	_, sess := tr.Start(context.Background(), "svidbroker.session", trace.SpanKindServer, TargetKey.String("shop"))
	ctx := trace.ContextWithSpanContext(context.Background(), sess.SpanContext())
	b.ReportAllocs()
	for b.Loop() {
		_, sp := tr.Start(ctx, "svidbroker.upstream", trace.SpanKindClient, semconv.DBSystemNamePostgreSQL,
			semconv.DBOperationName("SELECT"), semconv.ServerAddress("127.0.0.1"), semconv.ServerPort(5432))
		sp.End()
	}
	if err := tr.Shutdown(context.Background()); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkLeafSpanExported measures what a statement's relay span costs with the broker's own
// tracing: StartLeaf and End as the Postgres engine calls them (sharing one attribute list), the
// span's queueing, and its share of the batches' encoding and export over OTLP/HTTP to a collector
// that discards them. The export runs on the batcher's goroutine, on another core when one is free,
// so besides the time per span it reports the process's CPU time per span (cpu-ns/op), the figure
// that counts against the statements on a busy broker.
func BenchmarkLeafSpanExported(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) }))
	defer srv.Close()
	tr, err := New(Config{Endpoint: srv.Listener.Addr().String(), Insecure: true})
	if err != nil {
		b.Fatal(err)
	}
	_, sess := tr.Start(context.Background(), "svidbroker.session", trace.SpanKindServer, TargetKey.String("shop"))
	attrs := []attribute.KeyValue{semconv.DBSystemNamePostgreSQL, semconv.DBOperationName("SELECT"),
		semconv.ServerAddress("127.0.0.1"), semconv.ServerPort(5432)}
	ctx := context.Background()
	b.ReportAllocs()
	cpu0 := processCPU(b)
	n := 0
	for b.Loop() {
		tr.StartLeaf(ctx, sess.SpanContext(), "svidbroker.upstream", trace.SpanKindClient, attrs).End()
		// A loop ends spans far faster than statements do: export each batch as it fills, so that
		// none is dropped and every span's export is paid for.
		if n++; n%batchSize == 0 {
			if err := tr.ForceFlush(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := tr.Shutdown(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
	if exported, dropped, failed := tr.ExportStats(); exported != int64(n) || dropped != 0 || failed != 0 {
		b.Fatalf("of %d spans, %d were exported and %d dropped; %d exports failed", n, exported, dropped, failed)
	}
}

// processCPU is the CPU time this process has used, user and system, in nanoseconds.
func processCPU(tb testing.TB) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

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

// BenchmarkSpanExported measures what one statement's relay span costs the broker end to end, made
// the two ways side by side: "sdk", an SDK span (Start), and "leaf", the broker's own (a session's
// Spool, sharing one attribute list, as the Postgres engine makes it). Each is started and ended, queued in
// the batcher, and exported in batches over OTLP/HTTP to a collector that discards them. The export
// runs on the batcher's goroutine, on another core when one is free, so besides the time per span it
// reports the process's CPU time per span (cpu-ns/op, the collector's included), the figure that
// counts against the statements on a busy broker.
func BenchmarkSpanExported(b *testing.B) {
	attrs := []attribute.KeyValue{semconv.DBSystemNamePostgreSQL, semconv.DBOperationName("SELECT"),
		semconv.ServerAddress("127.0.0.1"), semconv.ServerPort(5432)}
	b.Run("sdk", func(b *testing.B) {
		benchSpanExported(b, true, func(tr *Tracing, _ *Spool, _ *Leaf, ctx context.Context, parent trace.SpanContext) {
			_, sp := tr.Start(trace.ContextWithSpanContext(ctx, parent), "svidbroker.upstream", trace.SpanKindClient, attrs...)
			sp.End()
		})
	})
	b.Run("leaf", func(b *testing.B) {
		benchSpanExported(b, true, func(_ *Tracing, p *Spool, l *Leaf, ctx context.Context, parent trace.SpanContext) {
			p.StartLeaf(l, ctx, parent, "svidbroker.upstream", trace.SpanKindClient, attrs)
			l.End()
		})
	})
	// A session that sample_ratio left out: its statements' spans record nothing, and none is
	// exported.
	b.Run("leaf-unsampled", func(b *testing.B) {
		benchSpanExported(b, false, func(_ *Tracing, p *Spool, l *Leaf, ctx context.Context, parent trace.SpanContext) {
			p.StartLeaf(l, ctx, parent, "svidbroker.upstream", trace.SpanKindClient, attrs)
			l.End()
		})
	})
}

// benchSpanExported runs span (start and end one span, a child of parent, in l when it is a leaf of
// the session's spool p) b.N times with a Tracing of New, exporting every span when parent is
// sampled.
func benchSpanExported(b *testing.B, sampled bool, span func(tr *Tracing, p *Spool, l *Leaf, ctx context.Context, parent trace.SpanContext)) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) }))
	defer srv.Close()
	tr, err := New(Config{Endpoint: srv.Listener.Addr().String(), Insecure: true})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	_, sess := tr.Start(ctx, "svidbroker.session", trace.SpanKindServer, TargetKey.String("shop"))
	parent := sess.SpanContext()
	if !sampled {
		parent = parent.WithTraceFlags(parent.TraceFlags().WithSampled(false))
	}
	p := tr.NewSpool()
	var l Leaf // a statement's queue item holds its span, allocated with the item
	b.ReportAllocs()
	cpu0 := processCPU(b)
	n := 0
	for b.Loop() {
		span(tr, p, &l, ctx, parent)
		// A loop ends spans far faster than statements do: export each batch as it fills, so that
		// none is dropped and every span's export is paid for.
		if n++; n%batchSize == 0 {
			if err := tr.ForceFlush(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := tr.ForceFlush(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
	want := int64(n)
	if !parent.IsSampled() {
		want = 0
	}
	if exported, dropped, failed := tr.ExportStats(); exported != want || dropped != 0 || failed != 0 {
		b.Fatalf("of %d spans (%d sampled), %d were exported and %d dropped; %d exports failed", n, want, exported, dropped, failed)
	}
	if err := tr.Shutdown(ctx); err != nil {
		b.Fatal(err)
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

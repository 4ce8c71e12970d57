package tracing

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

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

package tracing

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

func BenchmarkSpanExported(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) }))
	defer srv.Close()
	tr, err := New(Config{Endpoint: srv.Listener.Addr().String(), Insecure: true})
	if err != nil {
		b.Fatal(err)
	}
	ctx, sess := tr.Start(context.Background(), "svidbroker.session", trace.SpanKindServer, attribute.String("svidbroker.target", "shop"))
	sc := trace.ContextWithSpanContext(context.Background(), sess.SpanContext())
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_, sp := tr.Start(sc, "svidbroker.upstream", trace.SpanKindClient, semconv.DBSystemNamePostgreSQL, semconv.DBOperationName("SELECT"), semconv.ServerAddress("127.0.0.1"), semconv.ServerPort(5432))
		sp.End()
	}
	b.StopTimer()
	_ = ctx
	tr.Shutdown(context.Background())
}

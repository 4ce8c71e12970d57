package tracing

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/trace"
)

// TestRandomIDs checks the broker's ID generator: valid IDs, no repeats among many, and span IDs of
// one trace that differ.
func TestRandomIDs(t *testing.T) {
	const n = 10000
	var g randomIDs
	traces, spans := map[trace.TraceID]bool{}, map[trace.SpanID]bool{}
	for range n {
		tid, sid := g.NewIDs(context.Background())
		next := g.NewSpanID(context.Background(), tid)
		if !tid.IsValid() || !sid.IsValid() || !next.IsValid() {
			t.Fatalf("an invalid ID: %s %s %s", tid, sid, next)
		}
		if traces[tid] || spans[sid] || spans[next] || sid == next {
			t.Fatalf("an ID repeated within %d: %s %s %s", n, tid, sid, next)
		}
		traces[tid], spans[sid], spans[next] = true, true, true
	}
}

package tracing

import (
	"context"
	"encoding/binary"
	"math/rand/v2"

	"go.opentelemetry.io/otel/trace"
)

// randomIDs makes trace and span IDs from the runtime's random source (math/rand/v2's, ChaCha8 per
// thread), which needs no lock. The SDK's own generator draws from one math/rand source behind a
// mutex, which every session's goroutine takes for every span. IDs need to be unique and unguessable
// enough to sample by, not secret: no ID carries or derives from a secret.
type randomIDs struct{}

// NewIDs returns a new trace ID and the ID of its first span; neither is all zeros (an invalid ID).
func (randomIDs) NewIDs(context.Context) (trace.TraceID, trace.SpanID) {
	var tid trace.TraceID
	for !tid.IsValid() {
		binary.NativeEndian.PutUint64(tid[:8], rand.Uint64())
		binary.NativeEndian.PutUint64(tid[8:], rand.Uint64())
	}
	return tid, newSpanID()
}

// NewSpanID returns a new span ID, never all zeros.
func (randomIDs) NewSpanID(context.Context, trace.TraceID) trace.SpanID { return newSpanID() }

func newSpanID() trace.SpanID {
	var sid trace.SpanID
	for !sid.IsValid() {
		binary.NativeEndian.PutUint64(sid[:], rand.Uint64())
	}
	return sid
}

package proxy

import (
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/svidbroker/svidbroker/broker/tracing"
)

// TestTraceFromMeta: a trace context the agent sends in params._meta is continued by the broker's
// span of the message, and passed on to the upstream in params._meta, in the same trace.
func TestTraceFromMeta(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })
	r := newRig(t, "2025-06-18", func(c *Config) { c.HTTP.Session.Tracing = tracing.WithProvider(tp, false) })
	cs := r.connect(t, agentID, "2025-06-18")
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	params := &mcp.CallToolParams{Name: "get_customer", Arguments: map[string]any{"id": 4},
		Meta: mcp.Meta{"traceparent": "00-" + traceID + "-00f067aa0ba902b7-01"}}
	if _, err := cs.CallTool(ctx(t), params); err != nil {
		t.Fatal(err)
	}
	if !r.shop.saw(`"traceparent":"00-` + traceID + `-`) {
		t.Fatal("the upstream did not get the trace in params._meta")
	}
	if r.shop.saw(`00f067aa0ba902b7`) {
		t.Fatal("the agent's span id was passed on unchanged: the broker's span is not in between")
	}
	// The message's span ends once its answer is written, after the client has it.
	var found bool
	for deadline := time.Now().Add(10 * time.Second); !found && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		for _, s := range rec.Ended() {
			if s.Name() == "mcp tools/call" && s.SpanContext().TraceID().String() == traceID {
				found = true
			}
		}
	}
	if !found {
		var names []string
		for _, s := range rec.Ended() {
			names = append(names, s.Name()+"@"+s.SpanContext().TraceID().String())
		}
		t.Fatalf("no span of the call in the agent's trace: %s", strings.Join(names, ", "))
	}
}

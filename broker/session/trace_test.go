package session

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/broker/credential"
	"github.com/svidbroker/svidbroker/broker/tracing"
)

// spanAttr is the value of span's attribute key, and whether it has it.
func spanAttr(span sdktrace.ReadOnlySpan, key attribute.Key) (attribute.Value, bool) {
	for _, kv := range span.Attributes() {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

func spansNamed(spans []sdktrace.ReadOnlySpan, name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

func newTracedCore(t *testing.T, rec *tracetest.SpanRecorder, cfg Config) *Core {
	t.Helper()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	cfg.Target, cfg.Audit, cfg.Logger, cfg.ApprovalTimeout = "shop", &sink{}, slog.New(slog.DiscardHandler), time.Minute
	cfg.Tracing = tracing.WithProvider(tp, false)
	cfg.OperationKind = "sql"
	cfg.SpanAttributes = []attribute.KeyValue{semconv.DBSystemNamePostgreSQL}
	if cfg.Authorize == nil {
		cfg.Authorize = func(context.Context, authz.Connect) (authz.Decision, error) { return authz.Decision{}, nil }
	}
	core, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return core
}

// TestTracingSessionSpans: a session of a Postgres-like engine is one span, with the credential's
// lease and each operation decided (through Session.Decide or the engine's own Decider) as its
// children, a hold as the child of its decision, attributes naming the target, the protocol, the
// caller, the outcome and the deciding policies, and no statement text.
func TestTracingSessionSpans(t *testing.T) {
	const secretText = "SELECT card FROM customers WHERE ssn = '078-05-1120'"
	leases := credential.NewManager(provider{}, nil, slog.New(slog.DiscardHandler), time.Second, 0)
	t.Cleanup(leases.Close)
	rec := tracetest.NewSpanRecorder()
	core := newTracedCore(t, rec, Config{
		Lease: func(ctx context.Context, c authz.Connect, role string, end func(error)) (*credential.Session, error) {
			return leases.Start(ctx, c.Peer.ID.String(), credential.Source{Path: "database/creds/ro"}, end)
		},
		Approve: func(context.Context, Approval) (authz.ApprovalState, error) {
			return authz.ApprovalState{State: "approved", Approver: "alice"}, nil
		},
	})
	s, err := core.Open(t.Context(), OpenRequest{TLS: peerTLS(t, "spiffe://example.org/agent/a", time.Now().Add(time.Hour)), Remote: remote})
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	for _, kind := range []string{"allow", "deny", "hold"} {
		s.Decide(t.Context(), Operation{Action: "sql", Kind: "select", Text: secretText, Decide: decider(kind, &calls)})
	}
	// The engine's own decider, as the Postgres engine keeps one, with the operation's attributes.
	d := Decider{Hold: s.hold, Tracing: s.Tracing(), Session: s.SpanContext()}
	d.Decide(t.Context(), Operation{Action: "sql", Kind: "select", Text: secretText, Decide: decider("mask", &calls),
		SpanAttributes: []attribute.KeyValue{semconv.DBOperationName("SELECT")}})
	s.End(nil, time.Now())

	spans := rec.Ended()
	sessions := spansNamed(spans, spanSession)
	if len(sessions) != 1 {
		t.Fatalf("%d session spans, want 1", len(sessions))
	}
	root := sessions[0]
	for key, want := range map[attribute.Key]string{
		tracing.TargetKey: "shop", tracing.SPIFFEIDKey: "spiffe://example.org/agent/a", tracing.SessionKey: s.ID(),
		tracing.OutcomeKey: "client_ended", semconv.DBSystemNameKey: "postgresql",
	} {
		if v, ok := spanAttr(root, key); !ok || v.AsString() != want {
			t.Errorf("session span's %s = %q, want %q", key, v.AsString(), want)
		}
	}
	if root.Status().Code == codes.Error {
		t.Errorf("a session its client ended is no error: %v", root.Status())
	}
	childOf := func(span, parent sdktrace.ReadOnlySpan) bool {
		return span.Parent().SpanID() == parent.SpanContext().SpanID() && span.SpanContext().TraceID() == parent.SpanContext().TraceID()
	}
	creds := spansNamed(spans, spanCredential)
	if len(creds) != 1 || !childOf(creds[0], root) || creds[0].SpanKind() != trace.SpanKindClient {
		t.Errorf("credential spans %v: want one client span, the session's child", creds)
	}
	decides := spansNamed(spans, spanDecide)
	if len(decides) != 4 {
		t.Fatalf("%d decide spans, want 4", len(decides))
	}
	var outcomes []string
	for _, dspan := range decides {
		if !childOf(dspan, root) {
			t.Errorf("decide span %v is not the session's child", dspan.SpanContext().SpanID())
		}
		v, _ := spanAttr(dspan, tracing.OutcomeKey)
		outcomes = append(outcomes, v.AsString())
		if k, _ := spanAttr(dspan, tracing.OperationKindKey); k.AsString() != "select" {
			t.Errorf("decide span's kind = %q, want select", k.AsString())
		}
		switch v.AsString() {
		case "block":
			if p, _ := spanAttr(dspan, tracing.PoliciesKey); !slices.Equal(p.AsStringSlice(), []string{"no-deletes"}) || dspan.Status().Code != codes.Error {
				t.Errorf("refused operation's span: policies %v, status %v", p.AsStringSlice(), dspan.Status())
			}
		case "held":
			holds := spansNamed(spans, spanHold)
			if len(holds) != 1 || !childOf(holds[0], dspan) {
				t.Fatalf("hold spans %v: want one, the held decision's child", holds)
			}
			if st, _ := spanAttr(holds[0], tracing.ApprovalStateKey); st.AsString() != "approved" {
				t.Errorf("hold span's state = %q, want approved", st.AsString())
			}
		case "mask":
			if op, _ := spanAttr(dspan, semconv.DBOperationNameKey); op.AsString() != "SELECT" {
				t.Errorf("the engine's operation attributes are missing: %v", dspan.Attributes())
			}
		}
	}
	if slices.Sort(outcomes); !slices.Equal(outcomes, []string{"allow", "block", "held", "mask"}) {
		t.Errorf("decide outcomes %q", outcomes)
	}
	for _, span := range spans {
		for _, kv := range span.Attributes() {
			if strings.Contains(kv.Value.Emit(), "078-05-1120") || strings.Contains(kv.Value.Emit(), "customers") {
				t.Errorf("span %s carries the statement's text in %s", span.Name(), kv.Key)
			}
		}
	}
}

// TestTracingOperationParent: an operation with a parent span (an HTTP request's, continuing its
// caller's trace) is decided under it, not under the session.
func TestTracingOperationParent(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	core := newTracedCore(t, rec, Config{})
	s, err := core.Open(t.Context(), OpenRequest{TLS: peerTLS(t, "spiffe://example.org/agent/a", time.Now().Add(time.Hour)), Remote: remote})
	if err != nil {
		t.Fatal(err)
	}
	caller := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5, 6}, TraceFlags: trace.FlagsSampled, Remote: true})
	calls := 0
	s.Decide(t.Context(), Operation{Action: "http", Text: "GET /v1/orders", Parent: caller, Decide: decider("allow", &calls)})
	s.End(nil, time.Now())
	decides := spansNamed(rec.Ended(), spanDecide)
	if len(decides) != 1 || decides[0].Parent().SpanID() != caller.SpanID() || decides[0].SpanContext().TraceID() != caller.TraceID() {
		t.Fatalf("decide spans %v: want one, the caller's span's child", decides)
	}
}

// TestTracingKeptVerdictsHaveNoSpan: an operation decided again from the verdict the session kept
// for its key gets no decide span (the lookup is all there is to time); its first decision, another
// key's, and a kept key after a refusal of another each still have theirs.
func TestTracingKeptVerdictsHaveNoSpan(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	core := newTracedCore(t, rec, Config{})
	s, err := core.Open(t.Context(), OpenRequest{TLS: peerTLS(t, "spiffe://example.org/agent/a", time.Now().Add(time.Hour)), Remote: remote})
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	for _, op := range []struct{ key, kind string }{{"a", "allow"}, {"a", "allow"}, {"a", "allow"}, {"b", "allow"}, {"c", "deny"}, {"c", "deny"}, {"b", "allow"}} {
		s.Decide(t.Context(), Operation{Action: "sql", Kind: "select", Text: op.key, Key: op.key, Decide: decider(op.kind, &calls)})
	}
	s.End(nil, time.Now())
	// a and b once each; c's refusals are never kept, so both are decided and traced.
	if got := len(spansNamed(rec.Ended(), spanDecide)); got != 4 || calls != 4 {
		t.Fatalf("%d decide spans for %d decisions, want 4 of each", got, calls)
	}
}

// TestTracingRefusedSessions: a refused session's span ends failed, naming the refusal as metrics
// do; a lease that fails fails its credential span too.
func TestTracingRefusedSessions(t *testing.T) {
	cases := []struct {
		name       string
		cfg        Config
		outcome    string
		credFailed bool
	}{
		{name: "denied", cfg: Config{Authorize: func(context.Context, authz.Connect) (authz.Decision, error) {
			return authz.Decision{}, errors.New("not in the allow list")
		}}, outcome: "denied"},
		{name: "no credential", cfg: Config{Lease: func(context.Context, authz.Connect, string, func(error)) (*credential.Session, error) {
			return nil, errors.New("vault: permission denied")
		}}, outcome: "no_credential", credFailed: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec := tracetest.NewSpanRecorder()
			core := newTracedCore(t, rec, c.cfg)
			if _, err := core.Open(t.Context(), OpenRequest{TLS: peerTLS(t, "spiffe://example.org/agent/a", time.Now().Add(time.Hour)), Remote: remote}); err == nil {
				t.Fatal("Open succeeded")
			}
			sessions := spansNamed(rec.Ended(), spanSession)
			if len(sessions) != 1 || sessions[0].Status().Code != codes.Error {
				t.Fatalf("session spans %v: want one, failed", sessions)
			}
			if v, _ := spanAttr(sessions[0], tracing.OutcomeKey); v.AsString() != c.outcome {
				t.Errorf("outcome %q, want %q", v.AsString(), c.outcome)
			}
			creds := spansNamed(rec.Ended(), spanCredential)
			if c.credFailed != (len(creds) == 1 && creds[0].Status().Code == codes.Error) {
				t.Errorf("credential spans %v, want a failed one: %v", creds, c.credFailed)
			}
		})
	}
}

package postgres

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/broker/server"
	"github.com/svidbroker/svidbroker/broker/tracing"
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
		Tracing: tracing.WithProvider(tp, statementText),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{
		Listeners:        []server.Listener{{Name: "pg", Address: "127.0.0.1:0", Engine: eng}},
		HandshakeTimeout: 5 * time.Second, MaxConcurrentHandshakes: 4, MaxConnections: 4,
		ShutdownGrace: 200 * time.Millisecond, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Run(ctx) }()
	t.Cleanup(func() { stop(); <-served })
	cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
		cfg, err := pgx.ParseConfig(fmt.Sprintf("host=127.0.0.1 port=%d user=agent dbname=app sslmode=disable connect_timeout=5", srv.Addr("pg").(*net.TCPAddr).Port))
		if err != nil {
			t.Fatal(err)
		}
		cfg.TLSConfig, cfg.Fallbacks, cfg.DefaultQueryExecMode = pki.clientTLS(t), nil, mode
		c, err := pgx.ConnectConfig(cctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
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

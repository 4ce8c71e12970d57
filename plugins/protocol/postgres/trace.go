package postgres

import (
	"net"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"
	pg "github.com/pganalyze/pg_query_go/v6"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/svidbroker/svidbroker/broker/tracing"
	"github.com/svidbroker/svidbroker/plugins/protocol/postgres/sqlclass"
)

// spanRelay names the span of a statement's relay: from its forwarding to the backend to its
// answer (the simple protocol's ReadyForQuery, an Execute's completion).
const spanRelay = "svidbroker.upstream"

// maxSpanQueryText bounds a normalized statement in a span.
const maxSpanQueryText = 2048

// operationNames are the statements' kinds that name one operation of the database semantic
// conventions (db.operation.name); the broker's other classes (ddl, admin, utility) do not.
var operationNames = map[string]string{
	sqlclass.KindSelect: "SELECT", sqlclass.KindInsert: "INSERT", sqlclass.KindUpdate: "UPDATE", sqlclass.KindDelete: "DELETE",
}

// operationAttrs are operationNames as attribute lists of their own, made once: a statement's
// decide span shares its kind's list rather than building one per statement. Their capacity is their
// length, so that an append copies rather than writes into them.
var operationAttrs = func() map[string][]attribute.KeyValue {
	m := make(map[string][]attribute.KeyValue, len(operationNames))
	for kind, op := range operationNames {
		m[kind] = []attribute.KeyValue{semconv.DBOperationName(op)}[:1:1]
	}
	return m
}()

// operationKindOf is the kind of sts that names an operation, "" when sts is not one statement of
// such a kind.
func operationKindOf(sts []sqlclass.Statement) string {
	if len(sts) == 1 {
		if _, ok := operationNames[sts[0].Kind]; ok {
			return sts[0].Kind
		}
	}
	return ""
}

// spanAttributes are the attributes of the decision of text, classified as sts, when tracing is
// on: the operation's name when text is one statement of a kind that names one, and, only with the
// tracing setting statement_text, text normalized by the PostgreSQL parser (libpg_query), every
// constant replaced by a placeholder ($1): never a literal value. A statement that does not
// normalize goes without its text.
func (s *session) spanAttributes(text string, sts []sqlclass.Statement) []attribute.KeyValue {
	t := s.core.Tracing()
	if !t.On() {
		return nil
	}
	attrs := operationAttrs[operationKindOf(sts)]
	if t.StatementText() {
		if n, ok := normalizedText(text); ok {
			attrs = append(attrs, semconv.DBQueryText(n))
		}
	}
	return attrs
}

// normalizedText is text as libpg_query normalizes it, every constant replaced by a placeholder, cut
// at maxSpanQueryText bytes; false when it does not normalize.
func normalizedText(text string) (string, bool) {
	n, err := pg.Normalize(text)
	if err != nil {
		return "", false
	}
	if len(n) > maxSpanQueryText {
		n = strings.ToValidUTF8(n[:maxSpanQueryText], "") + "..."
	}
	return n, true
}

// relaySpan starts the span of a statement's relay to the backend, the session's child, when
// tracing is on; the backend side ends it with the statement's answer (endRelay). It is a leaf span
// (tracing.StartLeaf), as nothing in the broker is its child. It runs on the client side only.
func (s *session) relaySpan(sts []sqlclass.Statement) tracing.Leaf {
	t := s.core.Tracing()
	if !t.On() {
		return tracing.Leaf{}
	}
	if s.relayAttrs == nil {
		s.relayAttrs = make(map[string][]attribute.KeyValue, len(operationNames)+1)
	}
	kind := operationKindOf(sts)
	attrs, ok := s.relayAttrs[kind]
	if !ok {
		attrs = s.relayAttributes(kind)
		s.relayAttrs[kind] = attrs
	}
	return t.StartLeaf(s.ctx, s.core.SpanContext(), spanRelay, trace.SpanKindClient, attrs)
}

// relayAttributes are the attributes of the relay spans of statements of kind (operationKindOf): the
// database's system, the backend's address and port, and the operation's name. A session makes them
// once for each kind (session.relayAttrs), and its spans share them.
func (s *session) relayAttributes(kind string) []attribute.KeyValue {
	attrs := []attribute.KeyValue{semconv.DBSystemNamePostgreSQL}
	attrs = append(attrs, operationAttrs[kind]...)
	if s.backendConn != nil {
		if host, port, err := net.SplitHostPort(s.backendConn.RemoteAddr().String()); err == nil {
			attrs = append(attrs, semconv.ServerAddress(host))
			if p, err := strconv.Atoi(port); err == nil {
				attrs = append(attrs, semconv.ServerPort(p))
			}
		}
	}
	return attrs[:len(attrs):len(attrs)]
}

// relayFailed marks it's relay failed with the backend's SQLSTATE (a code, never its message, which
// can quote data).
func relayFailed(it *item, e *pgproto3.ErrorResponse) {
	if it.span.IsRecording() {
		it.span.SetAttributes(semconv.DBResponseStatusCode(e.Code))
		it.span.SetStatus(codes.Error, "SQLSTATE "+e.Code)
	}
}

// endRelay ends it's relay span, if it has one.
func endRelay(it *item) {
	if it != nil {
		it.span.End()
		it.span = tracing.Leaf{}
	}
}

// endRelays ends the relay spans of the statements still queued when the session ends.
func (q *queue) endRelays() {
	q.mu.Lock()
	for _, it := range q.items {
		endRelay(it)
	}
	q.mu.Unlock()
}

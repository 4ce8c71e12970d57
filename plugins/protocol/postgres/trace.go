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

// operations are the statements' kinds that name one operation of the database semantic conventions
// (db.operation.name), by their index (operationOf): the broker's other classes (ddl, admin,
// utility) have index 0 and no operation.
var operations = [...]struct{ kind, name string }{
	{},
	{sqlclass.KindSelect, "SELECT"},
	{sqlclass.KindInsert, "INSERT"},
	{sqlclass.KindUpdate, "UPDATE"},
	{sqlclass.KindDelete, "DELETE"},
}

// operationOf is the index in operations of the kind of sts when sts is one statement of a kind that
// names an operation, 0 otherwise. It runs for every statement traced: a scan of four short strings,
// not a map lookup.
func operationOf(sts []sqlclass.Statement) int {
	if len(sts) != 1 {
		return 0
	}
	for i := 1; i < len(operations); i++ {
		if operations[i].kind == sts[0].Kind {
			return i
		}
	}
	return 0
}

// operationAttrs are the operations' names as attribute lists of their own, made once: a
// statement's decide span shares its operation's list rather than building one per statement. Their
// capacity is their length, so that an append copies rather than writes into them.
var operationAttrs = func() (lists [len(operations)][]attribute.KeyValue) {
	for i, op := range operations[1:] {
		lists[i+1] = []attribute.KeyValue{semconv.DBOperationName(op.name)}[:1:1]
	}
	return lists
}()

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
	attrs := operationAttrs[operationOf(sts)]
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

// relaySpan starts in l the span of a statement's relay to the backend, the session's child, when
// tracing is on; the backend side ends it with the statement's answer (endRelay). It is a leaf span
// (tracing.Spool), as nothing in the broker is its child, recorded in the session's spool. It runs
// on the client side only.
func (s *session) relaySpan(l *tracing.Leaf, sts []sqlclass.Statement) {
	t := s.core.Tracing()
	if !t.On() {
		return
	}
	if s.spool == nil {
		s.spool = t.NewSpool()
		// The session's span, and so every relay span's parent, is made before the session runs.
		s.relayKind = s.spool.Kind(s.core.SpanContext(), spanRelay, trace.SpanKindClient)
	}
	op := operationOf(sts)
	attrs := s.relayAttrs[op]
	if attrs == nil {
		attrs = s.relayAttributes(op)
		s.relayAttrs[op] = attrs
	}
	s.spool.StartKind(l, s.ctx, s.relayKind, attrs)
}

// relayAttributes are the attributes of the relay spans of statements of operation op (operationOf):
// the database's system, the backend's address and port, and the operation's name. A session makes
// them once for each operation (session.relayAttrs), and its spans share them.
func (s *session) relayAttributes(op int) []attribute.KeyValue {
	attrs := []attribute.KeyValue{semconv.DBSystemNamePostgreSQL}
	attrs = append(attrs, operationAttrs[op]...)
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
		it.span.End() // once: an ended Leaf's methods do nothing
	}
}

// endRelays ends the relay spans of the statements still queued when the session ends, and hands
// the session's spans to the exporter.
func (s *session) endRelays() {
	q := &s.queue
	q.mu.Lock()
	for _, it := range q.items {
		endRelay(it)
	}
	q.mu.Unlock()
	s.spool.Flush()
}

package postgres

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/svidbroker/svidbroker/broker/audit"
)

// flushSink is an audit sink that counts the statement records written, how many of them the last
// flush covered, and the flushes.
type flushSink struct {
	mu               sync.Mutex
	written, durable int
	flushes          int
}

func (f *flushSink) Write(rec audit.Record, _ bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if rec.Kind == audit.KindStatement {
		f.written++
	}
	return nil
}

func (f *flushSink) Flush() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.durable = f.written
	f.flushes++
	return nil
}

func (f *flushSink) AppendAsync(audit.Record) {}

type sinkState struct{ written, durable int }

func (f *flushSink) state() sinkState {
	f.mu.Lock()
	defer f.mu.Unlock()
	return sinkState{f.written, f.durable}
}

// stampingWriter is the broker's connection to the backend: it notes, for every message the broker
// writes, the sink's state at that moment, for the backend to check when the message arrives.
type stampingWriter struct {
	w       io.Writer
	sink    *flushSink
	partial []byte
	stamps  chan sinkState
}

func (s *stampingWriter) Write(p []byte) (int, error) {
	st := s.sink.state()
	msgs, rest := splitMessages(append(s.partial, p...))
	for range msgs {
		s.stamps <- st
	}
	s.partial = append([]byte(nil), rest...)
	return s.w.Write(p)
}

// txModel is PostgreSQL's transaction state for the statements of these tests: where a statement
// commits, by the server's rules, known here from a table of the test's statements rather than from
// the broker's classifier.
type txModel struct {
	inBlock  bool
	implicit bool // the implicit transaction under way changed something
}

type modelStmt struct{ change, begin, commit, end, rollback bool }

var modelStatements = map[string]modelStmt{
	"SELECT 1":                             {},
	"UPDATE t SET x = 1":                   {change: true},
	"INSERT INTO t VALUES (1)":             {change: true},
	"SELECT nextval('s')":                  {change: true},
	"BEGIN":                                {begin: true},
	"COMMIT":                               {commit: true, end: true},
	"END":                                  {commit: true, end: true},
	"ROLLBACK":                             {end: true, rollback: true},
	"PREPARE TRANSACTION 'p'":              {commit: true, end: true},
	"COMMIT PREPARED 'p'":                  {commit: true},
	"CREATE INDEX CONCURRENTLY i ON t (x)": {change: true, commit: true},
}

// apply runs one statement and reports whether it commits where it stands, and whether it changes
// something itself.
func (m *txModel) apply(t *testing.T, sql string) (commit, change bool) {
	st, ok := modelStatements[sql]
	if !ok {
		t.Errorf("the model does not know %q", sql)
	}
	commit = st.commit
	switch {
	case st.begin:
		m.inBlock = true
	case st.end:
		m.inBlock = false
	}
	if st.rollback || st.commit {
		m.implicit = false
	}
	if st.change && !m.inBlock {
		m.implicit = true
	}
	return commit, st.change
}

// endImplicit ends an implicit transaction (a Query's end, a Sync) and reports whether it commits a
// change.
func (m *txModel) endImplicit() bool {
	commit := !m.inBlock && m.implicit
	if !m.inBlock {
		m.implicit = false
	}
	return commit
}

func (m *txModel) status() byte {
	if m.inBlock {
		return 'T'
	}
	return 'I'
}

// serveModel answers the broker as PostgreSQL would, and checks at every message that its
// statement's record was written before it was sent, and at every commit point that the records of
// everything it commits were on stable storage: every record before it, and its own when it changes
// something itself (with perStatement, every statement's own).
func serveModel(t *testing.T, conn io.ReadWriter, stamps <-chan sinkState, perStatement bool) {
	be := pgproto3.NewBackend(conn, conn)
	var m txModel
	stmts, portals := map[string]string{}, map[string]string{}
	seen := 0 // statement messages (Query, Execute) so far: each has one record
	check := func(st sinkState, what string, commit, change bool) {
		if st.written < seen {
			t.Errorf("%s reached the backend before its record was written (%d of %d written)", what, st.written, seen)
		}
		need := seen - 1 // the records before it
		if change || perStatement {
			need = seen
		}
		if (commit || perStatement) && st.durable < need {
			t.Errorf("%s reached the backend with %d records on stable storage; what it commits needs %d", what, st.durable, need)
		}
	}
	for {
		msg, err := be.Receive()
		if err != nil {
			return
		}
		st := <-stamps
		switch msg := msg.(type) {
		case *pgproto3.Query:
			seen++
			commit, change := false, false
			for _, sql := range strings.Split(msg.String, "; ") {
				c, ch := m.apply(t, sql)
				commit, change = commit || c, change || ch
				be.Send(&pgproto3.CommandComplete{CommandTag: []byte("OK")})
			}
			commit = m.endImplicit() || commit
			check(st, fmt.Sprintf("Query %q", msg.String), commit, change)
			be.Send(&pgproto3.ReadyForQuery{TxStatus: m.status()})
		case *pgproto3.Parse:
			stmts[msg.Name] = msg.Query
			be.Send(&pgproto3.ParseComplete{})
		case *pgproto3.Bind:
			portals[msg.DestinationPortal] = stmts[msg.PreparedStatement]
			be.Send(&pgproto3.BindComplete{})
		case *pgproto3.Execute:
			seen++
			sql := portals[msg.Portal]
			commit, change := m.apply(t, sql)
			check(st, fmt.Sprintf("Execute %q", sql), commit, change)
			be.Send(&pgproto3.CommandComplete{CommandTag: []byte("OK")})
		case *pgproto3.Sync:
			if m.endImplicit() && st.durable < seen {
				t.Errorf("a Sync that commits reached the backend with %d of %d records on stable storage", st.durable, seen)
			}
			be.Send(&pgproto3.ReadyForQuery{TxStatus: m.status()})
		case *pgproto3.Flush:
		default:
			t.Errorf("unexpected %T at the backend", msg)
		}
		if be.Flush() != nil {
			return
		}
	}
}

// step is what a client sends at once, and the ReadyForQuery messages it waits for before the next.
type step struct {
	msgs []pgproto3.FrontendMessage
	rfqs int
}

func q(sql string) step {
	return step{msgs: []pgproto3.FrontendMessage{&pgproto3.Query{String: sql}}, rfqs: 1}
}

// ext is one extended-protocol execution of each statement (unnamed), then a Sync.
func ext(sqls ...string) step {
	var msgs []pgproto3.FrontendMessage
	for _, sql := range sqls {
		msgs = append(msgs, &pgproto3.Parse{Query: sql}, &pgproto3.Bind{}, &pgproto3.Execute{})
	}
	return step{msgs: append(msgs, &pgproto3.Sync{}), rfqs: 1}
}

// pipeline sends the steps' messages at once and waits for all their answers.
func pipeline(steps ...step) step {
	var out step
	for _, s := range steps {
		out.msgs = append(out.msgs, s.msgs...)
		out.rfqs += s.rfqs
	}
	return out
}

// runCommitScenario runs steps through a session whose backend is the model, and returns the flushes.
func runCommitScenario(t *testing.T, perStatement bool, steps []step) int {
	t.Helper()
	pki := newTestPKI(t)
	client, brokerClient := tlsPair(t, pki)
	brokerBackend, backend := tcpPair(t)
	sink := &flushSink{}
	stamps := make(chan sinkState, 1024)
	s := newRelaySession(t, relayIO{fromClient: brokerClient, toClient: brokerClient, clientConn: brokerClient,
		fromBackend: brokerBackend, toBackend: &stampingWriter{w: brokerBackend, sink: sink, stamps: stamps}, backendConn: brokerBackend})
	s.rec.sink, s.rec.perStatement = sink, perStatement
	served := make(chan struct{})
	go func() {
		defer close(served)
		serveModel(t, backend, stamps, perStatement)
	}()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	fe := pgproto3.NewFrontend(client, client)
	_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
	for _, st := range steps {
		for _, m := range st.msgs {
			fe.Send(m)
		}
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		for n := 0; n < st.rfqs; {
			msg, err := fe.Receive()
			if err != nil {
				t.Fatal(err)
			}
			switch msg := msg.(type) {
			case *pgproto3.ReadyForQuery:
				n++
			case *pgproto3.ErrorResponse:
				t.Fatalf("error from the broker: %s", msg.Message)
			}
		}
	}
	cancel()
	<-done
	backend.Close()
	<-served
	sink.mu.Lock()
	defer sink.mu.Unlock()
	return sink.flushes
}

// TestCommitPointsWaitForTheirRecords: in audit durability "commit", every statement reaches the
// backend after its record is written, and every point at which the backend commits (a COMMIT, a
// change outside a block, the Sync or Query that ends an implicit transaction with a change, a
// statement that commits by itself), in both protocols, in and out of blocks, reaches it only after
// every record up to it is on stable storage. Nothing else waits for a flush: the flushes counted are
// the commit points.
func TestCommitPointsWaitForTheirRecords(t *testing.T) {
	const update, insert, read = "UPDATE t SET x = 1", "INSERT INTO t VALUES (1)", "SELECT 1"
	exec := func(sql string) []pgproto3.FrontendMessage {
		return []pgproto3.FrontendMessage{&pgproto3.Parse{Query: sql}, &pgproto3.Bind{}, &pgproto3.Execute{}}
	}
	cases := []struct {
		name    string
		steps   []step
		flushes int // -1: not counted (pipelined: a flush the broker cannot avoid for certain)
	}{
		{"reads outside a block", []step{q(read), q(read), ext(read), ext(read)}, 0},
		{"a change outside a block", []step{q(update)}, 1},
		{"nextval outside a block", []step{q("SELECT nextval('s')")}, 1},
		{"a block", []step{q("BEGIN"), q(update), q(read), q(insert), q("COMMIT")}, 1},
		{"a block ended with END", []step{q("BEGIN"), q(update), q("END")}, 1},
		{"a rolled-back block, then a change", []step{q("BEGIN"), q(update), q("ROLLBACK"), q(update)}, 1},
		{"two statements in one query", []step{q(update + "; " + read)}, 1},
		{"BEGIN and a change in one query", []step{q("BEGIN; " + update), q("COMMIT")}, 2},
		{"ROLLBACK and a change in one query, in a block", []step{q("BEGIN"), q("ROLLBACK; " + update)}, 1},
		{"extended: a change, then Sync", []step{ext(update)}, 1},
		{"extended: changes in a block", []step{q("BEGIN"), ext(update), ext(read), ext(insert), q("COMMIT")}, 1},
		{"extended: BEGIN, change, COMMIT, change in one pipeline", []step{ext("BEGIN", update, "COMMIT", update)}, 2},
		{"extended: COMMIT by Execute in a block", []step{q("BEGIN"), ext(update, "COMMIT")}, 1},
		{"extended: a change ended by a Query", []step{
			{msgs: append(exec(update), &pgproto3.Flush{})}, q(read)}, 1},
		{"extended: pipelined Syncs in a block", []step{q("BEGIN"), pipeline(ext(update), ext(insert), ext(read)), q("COMMIT")}, 1},
		{"commits by itself", []step{q("CREATE INDEX CONCURRENTLY i ON t (x)")}, 1},
		{"two-phase commit", []step{q("BEGIN"), q(update), q("PREPARE TRANSACTION 'p'"), q("COMMIT PREPARED 'p'")}, 2},
		{"pipelined queries", []step{pipeline(q("BEGIN"), q(update), q("COMMIT"), q(update), q(read))}, -1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := runCommitScenario(t, false, c.steps)
			if c.flushes >= 0 && n != c.flushes {
				t.Errorf("%d flushes; want %d (one per commit point)", n, c.flushes)
			}
		})
	}
}

// TestStatementDurabilityFlushesEveryStatement: in audit durability "statement", every statement
// reaches the backend only once its record is on stable storage.
func TestStatementDurabilityFlushesEveryStatement(t *testing.T) {
	steps := []step{q("SELECT 1"), q("BEGIN"), q("UPDATE t SET x = 1"), ext("SELECT 1", "INSERT INTO t VALUES (1)"), q("COMMIT")}
	if n := runCommitScenario(t, true, steps); n != 6 {
		t.Fatalf("%d flushes; want one per statement (6)", n)
	}
}

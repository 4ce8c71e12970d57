package postgres

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/svidbroker/svidbroker/broker/approval"
	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/broker/authz"
)

// The statement verdictPolicies hold for approval, and one they allow.
const (
	heldSQL    = "UPDATE orders SET total = 1"
	allowedSQL = "SELECT 1 FROM orders"
)

// holdRig is a running session deciding by verdictPolicies, with a TLS client, a backend that records
// what reaches it, approvals through a real approval.Queue, and cancel requests through the engine's
// own entry point.
type holdRig struct {
	s       *session
	q       *approval.Queue
	sink    *recordingSink
	client  *tls.Conn
	fe      *pgproto3.Frontend
	eng     *Engine
	backend *recordingBackend
	done    chan error // Run's result
}

func newHoldRig(t *testing.T) *holdRig {
	t.Helper()
	pki := newTestPKI(t)
	client, brokerClient := tlsPair(t, pki)
	brokerBackend, backendConn := tcpPair(t)
	s, _, _ := newVerdictSession(t)
	s.client, s.clientConn = newClientWire(brokerClient, brokerClient, relayTestMaxBody), brokerClient
	s.backend, s.backendConn = &backendWire{wire: newWire(brokerBackend, brokerBackend, relayTestMaxBody)}, brokerBackend
	r := &holdRig{s: s, q: approval.NewQueue(), sink: &recordingSink{}, client: client, fe: pgproto3.NewFrontend(client, client),
		backend: serveRecordingBackend(backendConn), done: make(chan error, 1)}
	s.rec = recorder{sink: r.sink, session: "s1", target: "shop"}
	s.insp.approvalTimeout = time.Minute
	s.insp.approve = func(ctx context.Context, a Approval) (authz.ApprovalState, error) {
		return r.q.Wait(ctx, approval.Request{ID: a.ID, Session: a.Session, Statement: a.Statement})
	}
	// Cancel requests forwarded to the backend would go to an address that refuses them, which the
	// registry's outcome shows as an error.
	reg := newCancelRegistry(5 * time.Second)
	s.cancels, s.cancelKey = reg, reg.add(refusingAddr(t), 77, []byte{0, 0, 0, 1})
	r.eng = &Engine{cfg: Config{Logger: slog.New(slog.DiscardHandler)}, cancels: reg}
	_ = client.SetDeadline(time.Now().Add(30 * time.Second)) // against a hang, never a pass condition
	go func() { r.done <- s.Run(context.Background()) }()
	t.Cleanup(func() {
		client.Close()
		<-r.done
	})
	return r
}

// refusingAddr is a loopback address nothing listens on.
func refusingAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// send writes msgs to the broker as the client.
func (r *holdRig) send(t *testing.T, msgs ...pgproto3.FrontendMessage) {
	t.Helper()
	for _, m := range msgs {
		r.fe.Send(m)
	}
	if err := r.fe.Flush(); err != nil {
		t.Fatal(err)
	}
}

// untilReady reads the client's answers up to ReadyForQuery: the errors and the rows.
func (r *holdRig) untilReady(t *testing.T) (errs []*pgproto3.ErrorResponse, rows []string) {
	t.Helper()
	for {
		msg, err := r.fe.Receive()
		if err != nil {
			t.Fatalf("client: %v", err)
		}
		switch m := msg.(type) {
		case *pgproto3.ErrorResponse:
			e := *m
			errs = append(errs, &e)
		case *pgproto3.DataRow:
			rows = append(rows, string(m.Values[0]))
		case *pgproto3.ReadyForQuery:
			return errs, rows
		}
	}
}

// held waits for the statement to be listed as pending, and returns its request.
func (r *holdRig) held(t *testing.T, sql string) approval.Request {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		for _, p := range r.q.Pending() {
			if p.Statement == sql {
				return p
			}
		}
	}
	t.Fatalf("%q was not held", sql)
	return approval.Request{}
}

// gone waits for request id to leave the pending list.
func (r *holdRig) gone(t *testing.T, id string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if !slices.ContainsFunc(r.q.Pending(), func(p approval.Request) bool { return p.ID == id }) {
			return
		}
	}
	t.Fatalf("request %s is still pending", id)
}

// cancel sends a CancelRequest on a connection of its own, as libpq does, into the engine, and waits
// for the broker to close that connection (it has acted on the request then).
func (r *holdRig) cancel(t *testing.T, pid, secret uint32) {
	t.Helper()
	c, srv := tcpPair(t)
	go func() { _, _ = r.eng.Handshake(context.Background(), srv); srv.Close() }()
	key := make([]byte, 4)
	binary.BigEndian.PutUint32(key, secret)
	if _, err := c.Write(encodeMessages(t, &pgproto3.CancelRequest{ProcessID: pid, SecretKey: key})); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, _ := c.Read(make([]byte, 1)); n != 0 {
		t.Fatal("the broker answered a cancel request")
	}
}

// checkWithdrawn checks that request id can no longer be resolved, for why, and that the audit log
// records the withdrawal and the statement's refusal, with why.
func (r *holdRig) checkWithdrawn(t *testing.T, id, sql string, why error) {
	t.Helper()
	err := r.q.Resolve(id, true, "dba@example.com")
	if !errors.Is(err, approval.ErrWithdrawn) || !strings.Contains(err.Error(), why.Error()) {
		t.Errorf("approving the withdrawn request: %v; want it withdrawn because %v", err, why)
	}
	r.sink.mu.Lock()
	defer r.sink.mu.Unlock()
	var withdrawn, refused bool
	for _, rec := range r.sink.recs {
		switch {
		case rec.Kind == audit.KindApproval && rec.Detail["request"] == id && rec.Detail["state"] == "withdrawn":
			withdrawn = rec.Detail["reason"] == why.Error()
		case rec.Kind == audit.KindDenied && rec.Statement != nil && rec.Statement.Text == sql:
			refused = rec.Detail["request"] == id && rec.Detail["refused"] == "approval withdrawn: "+why.Error()
		case rec.Kind == audit.KindStatement && rec.Statement != nil && rec.Statement.Text == sql:
			t.Errorf("the withdrawn statement is recorded as run: %+v", rec)
		}
	}
	if !withdrawn || !refused {
		t.Errorf("audit log: withdrawal recorded %v, refusal recorded %v; records %+v", withdrawn, refused, r.sink.recs)
	}
}

// TestHeldStatementIsWithdrawnOnCancel: a CancelRequest with the session's key, for a statement held
// for approval, withdraws it: the client gets 57014 saying the request was withdrawn, the approver no
// longer sees it and cannot approve it, nothing reaches the backend, the audit log says so, and the
// session goes on. In both protocols.
func TestHeldStatementIsWithdrawnOnCancel(t *testing.T) {
	for _, c := range []struct {
		name string
		msgs []pgproto3.FrontendMessage
	}{
		{"simple", []pgproto3.FrontendMessage{&pgproto3.Query{String: heldSQL}}},
		{"extended", []pgproto3.FrontendMessage{&pgproto3.Parse{Query: heldSQL}, &pgproto3.Bind{},
			&pgproto3.Execute{}, &pgproto3.Sync{}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newHoldRig(t)
			r.send(t, c.msgs...)
			req := r.held(t, heldSQL)
			r.cancel(t, r.s.cancelKey.pid, r.s.cancelKey.secret)
			errs, _ := r.untilReady(t)
			if len(errs) != 1 || errs[0].Code != "57014" || errs[0].Message != "canceling statement due to user request" ||
				!strings.Contains(errs[0].Detail, "approval request "+req.ID+" was withdrawn") {
				t.Fatalf("the client got %+v; want 57014 saying request %s was withdrawn", errs, req.ID)
			}
			if slices.ContainsFunc(r.q.Pending(), func(p approval.Request) bool { return p.ID == req.ID }) {
				t.Error("the withdrawn request is still listed as pending")
			}
			r.checkWithdrawn(t, req.ID, heldSQL, errWithdrawnCancel)
			r.send(t, &pgproto3.Query{String: allowedSQL})
			if errs, rows := r.untilReady(t); len(errs) != 0 || !slices.Equal(rows, []string{"v:" + allowedSQL}) {
				t.Fatalf("after the cancel: %+v %q", errs, rows)
			}
			if got := r.backend.statements(); slices.Contains(got, heldSQL) {
				t.Fatalf("the withdrawn statement reached the backend: %q", got)
			}
		})
	}
}

// TestHeldStatementIsWithdrawnOnDisconnect: a client that goes away while its statement is held (closing
// TLS properly, or its socket just closing, as when the process is killed) withdraws it: an approval
// after that runs nothing, and the audit log says why.
func TestHeldStatementIsWithdrawnOnDisconnect(t *testing.T) {
	for _, c := range []struct {
		name  string
		leave func(*tls.Conn) error
	}{
		{"TLS closed", func(c *tls.Conn) error { return c.Close() }},
		{"socket closed", func(c *tls.Conn) error { return c.NetConn().Close() }},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newHoldRig(t)
			r.send(t, &pgproto3.Query{String: heldSQL})
			req := r.held(t, heldSQL)
			if err := c.leave(r.client); err != nil {
				t.Fatal(err)
			}
			r.gone(t, req.ID)
			<-r.done      // the session ends: its records are written
			r.done <- nil // for the cleanup
			r.checkWithdrawn(t, req.ID, heldSQL, errWithdrawnDisconnect)
			if got := r.backend.statements(); slices.Contains(got, heldSQL) {
				t.Fatalf("the withdrawn statement reached the backend: %q", got)
			}
		})
	}
}

// TestMessagesSentDuringAHoldKeepTheirOrder: what a client sends while its statement is held is
// neither lost nor reordered: approved, the held statement runs, then the ones sent after it, in order.
// When the client leaves after sending more, the held statement is withdrawn, and so is one it sent
// after it that needs approval too; none of what it sent reaches the backend out of order.
func TestMessagesSentDuringAHoldKeepTheirOrder(t *testing.T) {
	after := []string{"SELECT 2 FROM orders", "SELECT 3 FROM orders"}
	t.Run("approved", func(t *testing.T) {
		r := newHoldRig(t)
		r.send(t, &pgproto3.Query{String: heldSQL})
		req := r.held(t, heldSQL)
		for _, sql := range after {
			r.send(t, &pgproto3.Query{String: sql})
		}
		if err := r.q.Resolve(req.ID, true, "dba@example.com"); err != nil {
			t.Fatal(err)
		}
		var got []string
		for range 3 {
			errs, rows := r.untilReady(t)
			if len(errs) != 0 {
				t.Fatalf("errors %+v", errs)
			}
			got = append(got, rows...)
		}
		want := []string{"v:" + heldSQL, "v:" + after[0], "v:" + after[1]}
		if !slices.Equal(got, want) {
			t.Fatalf("the client got %q, want %q", got, want)
		}
		if b := r.backend.statements(); !slices.Equal(b, []string{heldSQL, after[0], after[1]}) {
			t.Fatalf("the backend got %q", b)
		}
	})
	t.Run("client left", func(t *testing.T) {
		r := newHoldRig(t)
		r.send(t, &pgproto3.Query{String: heldSQL})
		req := r.held(t, heldSQL)
		second := heldSQL + " WHERE total > 100"
		r.send(t, &pgproto3.Query{String: after[0]}, &pgproto3.Query{String: second}, &pgproto3.Query{String: after[1]})
		if err := r.client.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		r.gone(t, req.ID)
		<-r.done
		r.done <- nil
		r.checkWithdrawn(t, req.ID, heldSQL, errWithdrawnDisconnect)
		r.sink.mu.Lock()
		var second2 string
		for _, rec := range r.sink.recs {
			if rec.Kind == audit.KindDenied && rec.Statement != nil && rec.Statement.Text == second {
				second2 = rec.Detail["request"]
			}
		}
		r.sink.mu.Unlock()
		if second2 == "" {
			t.Fatal("the second held statement is not recorded as refused")
		}
		r.checkWithdrawn(t, second2, second, errWithdrawnDisconnect)
		// The session ends at the client's end of stream, which may cut short what it forwarded last.
		if b := r.backend.statements(); len(b) > len(after) || !slices.Equal(b, after[:len(b)]) {
			t.Fatalf("the backend got %q; want a prefix of %q", b, after)
		}
	})
}

// TestAHoldBoundsWhatTheClientSendsMeanwhile: a client that sends maxHoldSpill bytes or more while its
// statement is held has the statement withdrawn (the broker stops reading there and could no longer
// see it leave); what it sent is still read and run, in order.
func TestAHoldBoundsWhatTheClientSendsMeanwhile(t *testing.T) {
	r := newHoldRig(t)
	r.send(t, &pgproto3.Query{String: heldSQL})
	req := r.held(t, heldSQL)
	big := "SELECT '" + strings.Repeat("x", maxHoldSpill) + "' FROM orders"
	r.send(t, &pgproto3.Query{String: big})
	errs, _ := r.untilReady(t)
	if len(errs) != 1 || errs[0].Code != "54000" || !strings.Contains(errs[0].Message, "withdrawn") {
		t.Fatalf("the client got %+v; want 54000 saying the request was withdrawn", errs)
	}
	if errs, rows := r.untilReady(t); len(errs) != 0 || len(rows) != 1 || rows[0] != "v:"+big {
		t.Fatalf("the statement sent during the hold: %+v, %d rows", errs, len(rows))
	}
	r.checkWithdrawn(t, req.ID, heldSQL, errWithdrawnOverflow)
}

// TestApprovalWhileConnectedRunsTheStatement is the control: a client that stays, and a cancel request
// with a wrong key, leave the hold alone; the approval runs the statement.
func TestApprovalWhileConnectedRunsTheStatement(t *testing.T) {
	r := newHoldRig(t)
	r.send(t, &pgproto3.Query{String: heldSQL})
	req := r.held(t, heldSQL)
	r.cancel(t, r.s.cancelKey.pid, r.s.cancelKey.secret^1)
	if !slices.ContainsFunc(r.q.Pending(), func(p approval.Request) bool { return p.ID == req.ID }) {
		t.Fatal("a cancel request with a wrong key withdrew the statement")
	}
	if err := r.q.Resolve(req.ID, true, "dba@example.com"); err != nil {
		t.Fatal(err)
	}
	if errs, rows := r.untilReady(t); len(errs) != 0 || !slices.Equal(rows, []string{"v:" + heldSQL}) {
		t.Fatalf("the approved statement: %+v %q", errs, rows)
	}
	if b := r.backend.statements(); !slices.Equal(b, []string{heldSQL}) {
		t.Fatalf("the backend got %q", b)
	}
}

// TestACancelForAHeldStatementStaysOffAnIdleBackend: a cancel request that withdraws a held statement
// is not forwarded to a backend that owes the client nothing (it could cancel the client's next
// statement there instead); one for a session without a held statement is forwarded as before.
func TestACancelForAHeldStatementStaysOffAnIdleBackend(t *testing.T) {
	r := newHoldRig(t)
	key := make([]byte, 4)
	binary.BigEndian.PutUint32(key, r.s.cancelKey.secret)
	m := &pgproto3.CancelRequest{ProcessID: r.s.cancelKey.pid, SecretKey: key}
	if outcome, err := r.s.cancels.cancel(t.Context(), m); outcome != cancelForwarded || err == nil {
		t.Fatalf("a cancel without a held statement: %v %v; want it forwarded (to an address that refuses it)", outcome, err)
	}
	r.send(t, &pgproto3.Query{String: heldSQL})
	r.held(t, heldSQL)
	if outcome, err := r.s.cancels.cancel(t.Context(), m); outcome != cancelWithdrew || err != nil {
		t.Fatalf("a cancel of a held statement: %v %v; want it withdrawn, and nothing sent to the backend", outcome, err)
	}
	if errs, _ := r.untilReady(t); len(errs) != 1 || errs[0].Code != "57014" {
		t.Fatalf("the client got %+v", errs)
	}
}

// recordingBackend is a PostgreSQL server for a session's backend side: it answers every statement with
// one row, "v:" and its text, fails the broker's deniedPortal as the server does, and records the SQL
// that reached it.
type recordingBackend struct {
	mu  sync.Mutex
	got []string
}

func (b *recordingBackend) statements() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.got)
}

func serveRecordingBackend(conn net.Conn) *recordingBackend {
	b := &recordingBackend{}
	go func() {
		defer conn.Close()
		be := pgproto3.NewBackend(conn, conn)
		rd := &pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("v"), DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1}}}
		run := func(sql string) {
			b.mu.Lock()
			b.got = append(b.got, sql)
			b.mu.Unlock()
			be.Send(&pgproto3.DataRow{Values: [][]byte{[]byte("v:" + sql)}})
			be.Send(&pgproto3.CommandComplete{CommandTag: []byte("OK")})
		}
		stmts, portals := map[string]string{}, map[string]string{}
		failed := false
		for {
			msg, err := be.Receive()
			if err != nil {
				return
			}
			if _, sync := msg.(*pgproto3.Sync); failed && !sync {
				continue
			}
			switch m := msg.(type) {
			case *pgproto3.Query:
				be.Send(rd)
				run(m.String)
				be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
			case *pgproto3.Parse:
				stmts[m.Name] = m.Query
				be.Send(&pgproto3.ParseComplete{})
			case *pgproto3.Bind:
				portals[m.DestinationPortal] = stmts[m.PreparedStatement]
				be.Send(&pgproto3.BindComplete{})
			case *pgproto3.Describe:
				be.Send(rd)
			case *pgproto3.Execute:
				sql, ok := portals[m.Portal]
				if !ok {
					be.Send(errorResponse("34000", `portal "`+m.Portal+`" does not exist`))
					failed = true
					break
				}
				run(sql)
			case *pgproto3.Sync:
				failed = false
				be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
			case *pgproto3.Terminate:
				return
			}
			if err := be.Flush(); err != nil {
				return
			}
		}
	}()
	return b
}

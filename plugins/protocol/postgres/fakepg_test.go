package postgres

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// fakePG is a minimal PostgreSQL server for tests: TLS after SSLRequest (a certificate of the test CA
// for localhost), trust authentication, one text column per result, and cancel requests. A statement
// whose text contains "slow" is answered only once it is cancelled (57014), or never.
type fakePG struct {
	ln      net.Listener
	tls     *tls.Config
	stop    chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	cancels map[uint32]fakeCancel
	started map[string]chan struct{} // slow statements, closed when one arrives
	nextPID uint32
	closed  bool
}

type fakeCancel struct {
	key [4]byte
	ch  chan struct{}
}

func startFakePG(t testing.TB, pki *testPKI) *fakePG {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakePG{ln: ln, stop: make(chan struct{}), conns: map[net.Conn]struct{}{}, cancels: map[uint32]fakeCancel{},
		started: map[string]chan struct{}{}, nextPID: 1000,
		tls: &tls.Config{Certificates: []tls.Certificate{pki.serverCert(t)}, MinVersion: tls.VersionTLS12}}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if !f.track(c) {
				c.Close()
				return
			}
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				defer f.untrack(c)
				defer c.Close()
				f.serve(c)
			}()
		}
	}()
	return f
}

func (f *fakePG) addr() string { return f.ln.Addr().String() }

func (f *fakePG) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *fakePG) untrack(c net.Conn) {
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
}

// slowStarted returns a channel closed once the backend is running the slow statement sql.
func (f *fakePG) slowStarted(sql string) <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch, ok := f.started[sql]
	if !ok {
		ch = make(chan struct{})
		f.started[sql] = ch
	}
	return ch
}

func (f *fakePG) markStarted(sql string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch, ok := f.started[sql]
	if !ok {
		ch = make(chan struct{})
		f.started[sql] = ch
	}
	select {
	case <-ch:
	default:
		close(ch)
	}
}

// close stops the server and every connection, and waits for all its goroutines.
func (f *fakePG) close() {
	f.mu.Lock()
	if !f.closed {
		f.closed = true
		close(f.stop)
		f.ln.Close()
		for c := range f.conns {
			c.Close()
		}
	}
	f.mu.Unlock()
	f.wg.Wait()
}

// fakeMsg is a copy of a client message (pgproto3 reuses its messages).
type fakeMsg struct {
	typ     byte
	name    string // Parse: statement; Bind, Execute: portal; Describe, Close: object
	stmt    string // Bind: its statement
	text    string // Query, Parse: the SQL
	objType byte
}

func (f *fakePG) serve(raw net.Conn) {
	_ = raw.SetDeadline(time.Now().Add(10 * time.Second))
	msg, err := readStartupPacket(raw)
	if err != nil {
		return
	}
	switch m := msg.(type) {
	case *pgproto3.CancelRequest:
		f.mu.Lock()
		c, ok := f.cancels[m.ProcessID]
		f.mu.Unlock()
		if ok && bytes.Equal(m.SecretKey, c.key[:]) {
			select {
			case c.ch <- struct{}{}:
			default:
			}
		}
		return
	case *pgproto3.SSLRequest:
	default:
		return
	}
	if _, err := raw.Write([]byte{'S'}); err != nil {
		return
	}
	conn := tls.Server(raw, f.tls)
	if err := conn.Handshake(); err != nil {
		return
	}
	if msg, err = readStartupPacket(conn); err != nil {
		return
	}
	if _, ok := msg.(*pgproto3.StartupMessage); !ok {
		return
	}
	f.mu.Lock()
	f.nextPID++
	pid := f.nextPID
	c := fakeCancel{ch: make(chan struct{}, 1)}
	binary.BigEndian.PutUint32(c.key[:], pid*7919)
	f.cancels[pid] = c
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.cancels, pid)
		f.mu.Unlock()
	}()

	be := pgproto3.NewBackend(conn, conn)
	be.Send(&pgproto3.AuthenticationOk{})
	for k, v := range map[string]string{"server_version": "16.4", "client_encoding": "UTF8", "standard_conforming_strings": "on",
		"DateStyle": "ISO, MDY", "integer_datetimes": "on"} {
		be.Send(&pgproto3.ParameterStatus{Name: k, Value: v})
	}
	be.Send(&pgproto3.BackendKeyData{ProcessID: pid, SecretKey: c.key[:]})
	be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	if be.Flush() != nil {
		return
	}
	_ = raw.SetDeadline(time.Time{})

	msgs := make(chan fakeMsg, 64)
	readerDone, quit := make(chan struct{}), make(chan struct{})
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		defer close(readerDone)
		for {
			m, err := be.Receive()
			if err != nil {
				return
			}
			var fm fakeMsg
			switch m := m.(type) {
			case *pgproto3.Query:
				fm = fakeMsg{typ: 'Q', text: m.String}
			case *pgproto3.Parse:
				fm = fakeMsg{typ: 'P', name: m.Name, text: m.Query}
			case *pgproto3.Bind:
				fm = fakeMsg{typ: 'B', name: m.DestinationPortal, stmt: m.PreparedStatement}
			case *pgproto3.Describe:
				fm = fakeMsg{typ: 'D', name: m.Name, objType: m.ObjectType}
			case *pgproto3.Execute:
				fm = fakeMsg{typ: 'E', name: m.Portal}
			case *pgproto3.Close:
				fm = fakeMsg{typ: 'C', name: m.Name, objType: m.ObjectType}
			case *pgproto3.Sync:
				fm = fakeMsg{typ: 'S'}
			case *pgproto3.Flush:
				fm = fakeMsg{typ: 'H'}
			case *pgproto3.Terminate:
				fm = fakeMsg{typ: 'X'}
			default:
				fm = fakeMsg{typ: '?'}
			}
			select {
			case msgs <- fm:
			case <-quit:
				return
			}
			if fm.typ == 'X' {
				return
			}
		}
	}()
	defer func() {
		close(quit)
		conn.Close()
		<-readerDone
	}()

	rd := &pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("v"), DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1}}}
	stmts, portals := map[string]string{}, map[string]string{}
	// run answers one statement's rows; false when it was cancelled (the error is sent).
	run := func(sql string) (ok, alive bool) {
		if strings.Contains(sql, "slow") {
			f.markStarted(sql)
			select {
			case <-c.ch:
				be.Send(&pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: "57014",
					Message: "canceling statement due to user request"})
				return false, true
			case <-readerDone:
				return false, false
			case <-f.stop:
				return false, false
			}
		}
		be.Send(&pgproto3.DataRow{Values: [][]byte{[]byte("v:" + sql)}})
		be.Send(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")})
		return true, true
	}
	failed := false // extended protocol: discard until Sync
	for {
		var m fakeMsg
		select {
		case m = <-msgs:
		case <-readerDone:
			return
		case <-f.stop:
			return
		}
		if failed && m.typ != 'S' && m.typ != 'X' {
			continue
		}
		switch m.typ {
		case 'Q':
			be.Send(rd)
			if _, alive := run(m.text); !alive {
				return
			}
			be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
		case 'P':
			stmts[m.name] = m.text
			be.Send(&pgproto3.ParseComplete{})
		case 'B':
			portals[m.name] = stmts[m.stmt]
			be.Send(&pgproto3.BindComplete{})
		case 'D':
			if m.objType == 'S' {
				be.Send(&pgproto3.ParameterDescription{})
			}
			be.Send(rd)
		case 'E':
			ok, alive := run(portals[m.name])
			if !alive {
				return
			}
			failed = !ok
		case 'C':
			be.Send(&pgproto3.CloseComplete{})
		case 'S':
			failed = false
			be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
		case 'H':
		case 'X':
			return
		default:
			be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", Code: "08P01", Message: "unsupported message"})
			_ = be.Flush()
			return
		}
		if len(msgs) == 0 {
			if be.Flush() != nil {
				return
			}
		}
	}
}

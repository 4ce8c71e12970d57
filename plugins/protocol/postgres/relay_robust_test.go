package postgres

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// TestBackendErrorWithoutSQLSTATE: an ErrorResponse without a code, or with every field empty, or with
// no field at all, is relayed (replaced or scrubbed as the statement requires) whatever the queue
// expects, and the queue moves on as after any error.
func TestBackendErrorWithoutSQLSTATE(t *testing.T) {
	p := maskingPlan(t)
	noCode := encodeMessages(t, &pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Message: "boom " + secretValue})
	emptyFields := []byte{'E', 0, 0, 0, 4 + 7, 'S', 0, 'C', 0, 'M', 0, 0} // S, C and M present and empty
	noFields := []byte{'E', 0, 0, 0, 5, 0}
	heads := map[string]func() []*item{
		"no item":        func() []*item { return nil },
		"masked query":   func() []*item { return []*item{{kind: itQuery, plan: p}, {kind: itSync}} },
		"plain query":    func() []*item { return []*item{{kind: itQuery}, {kind: itSync}} },
		"masked execute": func() []*item { return []*item{{kind: itExecute, plan: p}, {kind: itSync}} },
		"denied": func() []*item {
			return []*item{{kind: itDenied, denial: errStatementDenied("denied by test")}, {kind: itSync}}
		},
		"parse": func() []*item { return []*item{{kind: itParse}, {kind: itBind}, {kind: itSync}} },
		"injected": func() []*item {
			e := &item{kind: itExecute, plan: p}
			return []*item{{kind: itInjected, exec: e}, e, {kind: itSync}}
		},
		"function call":   func() []*item { return []*item{{kind: itCall}} },
		"sync (a commit)": func() []*item { return []*item{{kind: itSync}, {kind: itQuery}} },
	}
	for name, stream := range map[string][]byte{"no SQLSTATE": noCode, "empty fields": emptyFields, "no fields": noFields} {
		for head, items := range heads {
			t.Run(name+"/"+head, func(t *testing.T) {
				var out bytes.Buffer
				s := newRelaySession(t, relayIO{fromBackend: bytes.NewReader(stream), toClient: &out})
				s.queue.items = items()
				before := len(s.queue.items)
				err := runWithin(t, 5*time.Second, "backendToClient", s.backendToClient)
				if !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("backendToClient = %v, want the end of the stream", err)
				}
				got := decodeBackendStream(out.Bytes(), 0)
				if got.err != nil || len(got.msgs) != 1 {
					t.Fatalf("client got %d messages (%v), want 1 ErrorResponse", len(got.msgs), got.err)
				}
				e, ok := got.msgs[0].(*pgproto3.ErrorResponse)
				if !ok {
					t.Fatalf("client got %T", got.msgs[0])
				}
				switch head {
				case "denied":
					if e.Code != "42501" || e.Message != "denied by test" {
						t.Fatalf("denial not substituted: %+v", e)
					}
				case "masked query", "masked execute":
					if strings.Contains(e.Message, "SECRET") || !strings.HasPrefix(e.Message, "svidbroker: details withheld") {
						t.Fatalf("not scrubbed: %+v", e)
					}
				}
				after := snapshotQueue(&s.queue)
				switch head {
				case "no item", "plain query", "masked query", "function call", "sync (a commit)":
					if len(after) != before { // ReadyForQuery follows; the error pops nothing
						t.Fatalf("queue %v after the error, had %d items", after, before)
					}
				default:
					if len(after) != 1 || after[0] != itSync {
						t.Fatalf("queue %v after the error, want [Sync]", after)
					}
				}
			})
		}
	}
}

// TestBackendErrorWithoutBody: an ErrorResponse with an empty body does not decode; the relay ends
// with an error rather than relaying half a message.
func TestBackendErrorWithoutBody(t *testing.T) {
	var out bytes.Buffer
	s := newRelaySession(t, relayIO{fromBackend: bytes.NewReader([]byte{'E', 0, 0, 0, 4}), toClient: &out})
	s.queue.items = []*item{{kind: itQuery, plan: maskingPlan(t)}}
	if err := runWithin(t, 5*time.Second, "backendToClient", s.backendToClient); err == nil {
		t.Fatal("backendToClient returned nil")
	}
	if out.Len() != 0 {
		t.Fatalf("client got %q", out.Bytes())
	}
}

// lengthHeader is the header of a message of type typ whose length field says n.
func lengthHeader(typ byte, n int) []byte {
	return []byte{typ, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
}

// malformedBackend are backend messages pgproto3 must refuse.
var malformedBackend = map[string][]byte{
	"DataRow value of length -2":      {'D', 0, 0, 0, 4 + 2 + 4 + 2, 0, 1, 0xff, 0xff, 0xff, 0xfe, 'x', 'y'},
	"DataRow value of length -2^31":   {'D', 0, 0, 0, 4 + 2 + 4, 0, 1, 0x80, 0, 0, 0},
	"DataRow value past its message":  {'D', 0, 0, 0, 4 + 2 + 4 + 1, 0, 1, 0, 0, 0, 9, 'x'},
	"DataRow of more columns than it": {'D', 0, 0, 0, 4 + 2, 0x7f, 0xff},
	"negative message length":         {'D', 0xff, 0xff, 0xff, 0xf0},
	"message length -1":               {'Z', 0xff, 0xff, 0xff, 0xff},
	"message length 3":                {'Z', 0, 0, 0, 3},
	"message length 2^31-1":           {'D', 0x7f, 0xff, 0xff, 0xff},
	"message one byte over the cap":   lengthHeader('D', 4+relayTestMaxBody+1),
	"unknown message type":            {'x', 0, 0, 0, 4},
	"RowDescription cut short":        {'T', 0, 0, 0, 4 + 2 + 2, 0, 3, 'a', 0},
	"ReadyForQuery without status":    {'Z', 0, 0, 0, 4},
	"CommandComplete without NUL":     {'C', 0, 0, 0, 4 + 3, 'S', 'E', 'L'},
}

// TestBackendMalformedMessagesEndTheRelay: a malformed message from the backend ends backendToClient
// with an error, promptly, while the backend connection stays open; what came before it was relayed.
func TestBackendMalformedMessagesEndTheRelay(t *testing.T) {
	p := maskingPlan(t)
	rd := encodeMessages(t, &pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("email"),
		TableOID: customersOID, TableAttributeNumber: emailAttnum, DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1}}})
	for name, bad := range malformedBackend {
		t.Run(name, func(t *testing.T) {
			brokerSide, backendSide := net.Pipe()
			defer brokerSide.Close()
			defer backendSide.Close()
			go func() {
				// The backend writes and then keeps the connection open: only the message can end the relay.
				// Two writes: the relay flushes the RowDescription to the client once it has read it all.
				if _, err := backendSide.Write(rd); err == nil {
					_, _ = backendSide.Write(bad)
				}
			}()
			var out bytes.Buffer
			s := newRelaySession(t, relayIO{fromBackend: brokerSide, toClient: &out, backendConn: brokerSide})
			s.queue.items = []*item{{kind: itQuery, plan: p}}
			err := runWithin(t, 5*time.Second, "backendToClient", s.backendToClient)
			if err == nil || !strings.HasPrefix(err.Error(), "postgres: from backend:") {
				t.Fatalf("backendToClient = %v, want a read error", err)
			}
			got := decodeBackendStream(out.Bytes(), 0)
			if got.err != nil || len(got.msgs) != 1 {
				t.Fatalf("client got %d messages (%v), want the RowDescription", len(got.msgs), got.err)
			}
			if _, ok := got.msgs[0].(*pgproto3.RowDescription); !ok {
				t.Fatalf("client got %T", got.msgs[0])
			}
		})
	}
}

// malformedClient are client messages pgproto3 must refuse.
var malformedClient = map[string][]byte{
	"negative message length":        {'Q', 0xff, 0xff, 0xff, 0xf0},
	"message length 3":               {'S', 0, 0, 0, 3},
	"message length 2^31-1":          {'Q', 0x7f, 0xff, 0xff, 0xff},
	"unknown message type":           {'x', 0, 0, 0, 4},
	"Query without NUL":              {'Q', 0, 0, 0, 4 + 3, 'S', 'E', 'L'},
	"Bind parameter of length -2":    {'B', 0, 0, 0, 4 + 2 + 2 + 2 + 4, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xfe},
	"Bind with more parameters":      {'B', 0, 0, 0, 4 + 2 + 2 + 2, 0, 0, 0, 0, 0xff, 0xff},
	"Parse without its OIDs":         {'P', 0, 0, 0, 4 + 2 + 2, 0, 0, 0, 5},
	"FunctionCall argument past end": {'F', 0, 0, 0, 4 + 4 + 2 + 2 + 4, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9},
}

// TestClientMalformedMessagesEndTheRelay: the same for the client side; nothing reaches the backend.
func TestClientMalformedMessagesEndTheRelay(t *testing.T) {
	for name, bad := range malformedClient {
		t.Run(name, func(t *testing.T) {
			brokerSide, clientSide := net.Pipe()
			defer brokerSide.Close()
			defer clientSide.Close()
			go func() { _, _ = clientSide.Write(bad) }()
			var toBackend bytes.Buffer
			s := newRelaySession(t, relayIO{fromClient: brokerSide, toBackend: &toBackend})
			err := runWithin(t, 5*time.Second, "clientToBackend", s.clientToBackend)
			if err == nil || !strings.HasPrefix(err.Error(), "postgres: from client:") {
				t.Fatalf("clientToBackend = %v, want a read error", err)
			}
			_ = s.backend.Flush()
			if toBackend.Len() != 0 {
				t.Fatalf("backend got %q", toBackend.Bytes())
			}
		})
	}
}

// TestClientHalfClose: a client that closes its write half, between messages or in the middle of
// one, ends clientToBackend promptly; a partial message never reaches the backend.
func TestClientHalfClose(t *testing.T) {
	query := encodeMessages(t, &pgproto3.Query{String: "SELECT 1"})
	pki := newTestPKI(t)
	cases := map[string][]byte{
		"between messages":      query,
		"mid header":            append(append([]byte{}, query...), 'Q', 0, 0),
		"mid body":              append(append([]byte{}, query...), query[:len(query)-3]...),
		"before any message":    nil,
		"header promising more": append(append([]byte{}, query...), 'Q', 0, 0, 0, 9),
	}
	for name, sent := range cases {
		for _, transport := range []string{"tcp", "tls"} {
			t.Run(transport+"/"+name, func(t *testing.T) {
				var brokerSide net.Conn
				var closeWrite func() error
				var clientSide io.Writer
				if transport == "tcp" {
					c, s := tcpPair(t)
					brokerSide, clientSide, closeWrite = s, c, c.CloseWrite
				} else {
					c, s := tlsPair(t, pki)
					brokerSide, clientSide, closeWrite = s, c, c.CloseWrite
				}
				if _, err := clientSide.Write(sent); err != nil {
					t.Fatal(err)
				}
				if err := closeWrite(); err != nil {
					t.Fatal(err)
				}
				var toBackend bytes.Buffer
				s := newRelaySession(t, relayIO{fromClient: brokerSide, toBackend: &toBackend})
				err := runWithin(t, 5*time.Second, "clientToBackend", s.clientToBackend)
				if !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("clientToBackend = %v, want an unexpected EOF", err)
				}
				_ = s.backend.Flush()
				want := []byte(nil)
				if len(sent) > 0 {
					want = query
				}
				if !bytes.Equal(toBackend.Bytes(), want) {
					t.Fatalf("backend got %q, want %q", toBackend.Bytes(), want)
				}
			})
		}
	}
}

// TestSessionRunEndsOnClientHalfClose runs a whole session over real connections: the client sends a
// query, reads its answer, then sends half a message and closes its write half. Run returns promptly
// and closes both connections.
func TestSessionRunEndsOnClientHalfClose(t *testing.T) {
	pki := newTestPKI(t)
	client, brokerClient := tlsPair(t, pki)
	brokerBackend, backend := tcpPair(t)
	s := newRelaySession(t, relayIO{fromClient: brokerClient, toClient: brokerClient, clientConn: brokerClient,
		fromBackend: brokerBackend, toBackend: brokerBackend, backendConn: brokerBackend})

	// The fake backend answers one Query, then reads until the broker closes the connection.
	backendDone := make(chan error, 1)
	go func() {
		be := pgproto3.NewBackend(backend, backend)
		msg, err := be.Receive()
		if err != nil {
			backendDone <- err
			return
		}
		if q, ok := msg.(*pgproto3.Query); !ok || q.String != "SELECT 1" {
			backendDone <- errors.New("backend did not get the query")
			return
		}
		be.Send(&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("x"), DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1}}})
		be.Send(&pgproto3.DataRow{Values: [][]byte{[]byte("1")}})
		be.Send(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")})
		be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
		if err := be.Flush(); err != nil {
			backendDone <- err
			return
		}
		_, err = be.Receive()
		backendDone <- err
	}()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runDone := make(chan error, 1)
	go func() { runDone <- s.Run(ctx) }()

	fe := pgproto3.NewFrontend(client, client)
	fe.Send(&pgproto3.Query{String: "SELECT 1"})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		msg, err := fe.Receive()
		if err != nil {
			t.Fatalf("client: %v", err)
		}
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
			break
		}
	}
	if _, err := client.Write([]byte{'Q', 0, 0, 0, 20, 'S', 'E'}); err != nil {
		t.Fatal(err)
	}
	if err := client.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-runDone:
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("Run = %v, want the client's unexpected EOF", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after the client closed its write half")
	}
	select {
	case err := <-backendDone:
		if err == nil {
			t.Fatal("the backend got another message")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the broker did not close the backend connection")
	}
	if _, err := client.Read(make([]byte, 1)); err == nil {
		t.Fatal("the client connection is still open")
	}
	if n := len(snapshotQueue(&s.queue)); n != 0 {
		t.Fatalf("%d items left in the queue", n)
	}
}

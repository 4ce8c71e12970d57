package postgres

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/svidbroker/svidbroker/broker/inspect"
	"github.com/svidbroker/svidbroker/plugins/protocol/postgres/sqlclass"
)

// relayTestMaxBody is the message cap the relay tests give both sides, as Handshake does with
// Config.MaxMessageBytes.
const relayTestMaxBody = 1 << 20

// nopConn is a net.Conn that accepts deadlines and closing and nothing else: flushBackend and
// flushClient set write deadlines on the session's connections, while the tests route the bytes
// through pgproto3's own reader and writer.
type nopConn struct{ net.Conn }

func (nopConn) SetDeadline(time.Time) error      { return nil }
func (nopConn) SetReadDeadline(time.Time) error  { return nil }
func (nopConn) SetWriteDeadline(time.Time) error { return nil }
func (nopConn) Close() error                     { return nil }
func (nopConn) LocalAddr() net.Addr              { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }
func (nopConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }
func (nopConn) Read([]byte) (int, error)         { return 0, io.EOF }
func (nopConn) Write(p []byte) (int, error)      { return len(p), nil }

// relayIO says where a test session's four streams go. Nil readers read nothing; nil writers discard;
// nil conns are nopConns.
type relayIO struct {
	fromClient  io.Reader
	toClient    io.Writer
	fromBackend io.Reader
	toBackend   io.Writer
	clientConn  *tls.Conn
	backendConn net.Conn
}

// newRelaySession builds a session the way Handshake does, without a handshake: no policy (statements
// are parsed and admin constructs refused, nothing is masked), no audit sink.
func newRelaySession(t testing.TB, rio relayIO) *session {
	t.Helper()
	if rio.fromClient == nil {
		rio.fromClient = eofReader{}
	}
	if rio.fromBackend == nil {
		rio.fromBackend = eofReader{}
	}
	if rio.toClient == nil {
		rio.toClient = io.Discard
	}
	if rio.toBackend == nil {
		rio.toBackend = io.Discard
	}
	if rio.clientConn == nil {
		rio.clientConn = tls.Server(nopConn{}, &tls.Config{})
	}
	if rio.backendConn == nil {
		rio.backendConn = nopConn{}
	}
	masker, err := inspect.NewMasker(nil)
	if err != nil {
		t.Fatal(err)
	}
	client := newClientWire(rio.fromClient, rio.toClient, relayTestMaxBody)
	backend := &backendWire{wire: newWire(rio.fromBackend, rio.toBackend, relayTestMaxBody)}
	return &session{
		log:          slog.New(slog.DiscardHandler),
		client:       client,
		clientConn:   rio.clientConn,
		backend:      backend,
		backendConn:  rio.backendConn,
		writeTimeout: 5 * time.Second,
		endBy:        time.Now().Add(time.Hour),
		ctx:          context.Background(),
		insp: inspection{classifier: sqlclass.NewCache(64), masker: masker, defaultMask: inspect.Redact,
			approvalTimeout: time.Second},
		stmts:   map[string]*prepared{},
		portals: map[string]*portal{},
	}
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

// encodeMessages concatenates the wire form of msgs.
func encodeMessages(t testing.TB, msgs ...pgproto3.Message) []byte {
	t.Helper()
	var b []byte
	for _, m := range msgs {
		var err error
		if b, err = m.Encode(b); err != nil {
			t.Fatalf("encode %T: %v", m, err)
		}
	}
	return b
}

// splitMessages splits a stream of regular (typed) protocol messages at their length headers. rest is
// what does not form a whole message.
func splitMessages(b []byte) (msgs [][]byte, rest []byte) {
	for len(b) >= 5 {
		n := int(int32(uint32(b[1])<<24 | uint32(b[2])<<16 | uint32(b[3])<<8 | uint32(b[4])))
		if n < 4 || len(b) < 1+n {
			break
		}
		msgs = append(msgs, b[:1+n])
		b = b[1+n:]
	}
	return msgs, b
}

// decodeFrontendStream decodes a stream of client messages, each into its own message.
func decodeFrontendStream(t testing.TB, b []byte) []pgproto3.FrontendMessage {
	t.Helper()
	raws, rest := splitMessages(b)
	if len(rest) != 0 {
		t.Fatalf("%d bytes that are no whole message: %q", len(rest), rest)
	}
	var out []pgproto3.FrontendMessage
	for i, raw := range raws {
		m, err := pgproto3.NewBackend(bytes.NewReader(raw), io.Discard).Receive()
		if err != nil {
			t.Fatalf("message %d does not decode: %v (%q)", i, err, raw)
		}
		out = append(out, m)
	}
	return out
}

// snapshotQueue returns the kinds of the queued items, oldest first.
func snapshotQueue(q *queue) []itemKind {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]itemKind, len(q.items))
	for i, it := range q.items {
		out[i] = it.kind
	}
	return out
}

// runWithin runs f and fails the test if it has not returned within d.
func runWithin(t *testing.T, d time.Duration, what string, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Fatalf("%s did not return within %v", what, d)
		return nil
	}
}

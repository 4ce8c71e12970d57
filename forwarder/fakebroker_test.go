package forwarder

import (
	"crypto/tls"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffetls"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// fakeBroker is a real PostgreSQL-protocol server behind the broker's kind of listener: SSLRequest,
// 'S', a mutual-TLS handshake that requires an SVID of the trust domain, then a StartupMessage. It
// answers every simple query with one row: the SPIFFE ID of the TLS peer. It records what it saw.
type fakeBroker struct {
	ln net.Listener
	tc *tls.Config

	// refuseTLS, if set, is the ErrorResponse sent instead of 'S'.
	refuseTLS *pgproto3.ErrorResponse

	mu       sync.Mutex
	accepted int
	peers    []string
	startups []*pgproto3.StartupMessage
	cancels  chan *pgproto3.CancelRequest
}

func newFakeBroker(t *testing.T, svid *x509svid.SVID, bundle *x509bundle.Bundle) *fakeBroker {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &fakeBroker{ln: ln, tc: tlsconfig.MTLSServerConfig(svid, bundle, tlsconfig.AuthorizeMemberOf(bundle.TrustDomain())),
		cancels: make(chan *pgproto3.CancelRequest, 4)}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			b.accepted++
			b.mu.Unlock()
			go b.serve(c)
		}
	}()
	return b
}

func (b *fakeBroker) addr() string { return b.ln.Addr().String() }

func (b *fakeBroker) count() (accepted int, peers []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.accepted, append([]string(nil), b.peers...)
}

func (b *fakeBroker) serve(raw net.Conn) {
	defer raw.Close()
	var req [8]byte
	if _, err := io.ReadFull(raw, req[:]); err != nil {
		return
	}
	if _, err := pgproto3.NewBackend(bytesReader(req[:]), io.Discard).ReceiveStartupMessage(); err != nil {
		return
	}
	if b.refuseTLS != nil {
		buf, _ := b.refuseTLS.Encode(nil)
		raw.Write(buf)
		return
	}
	raw.Write([]byte{'S'})
	conn := tls.Server(raw, b.tc)
	if err := conn.Handshake(); err != nil {
		return
	}
	peer, err := spiffetls.PeerIDFromConnectionState(conn.ConnectionState())
	if err != nil {
		return
	}
	b.mu.Lock()
	b.peers = append(b.peers, peer.String())
	b.mu.Unlock()
	be := pgproto3.NewBackend(conn, conn)
	be.SetMaxBodyLen(1 << 20)
	msg, err := be.ReceiveStartupMessage()
	if err != nil {
		return
	}
	switch m := msg.(type) {
	case *pgproto3.CancelRequest:
		b.cancels <- m
		return
	case *pgproto3.StartupMessage:
		b.mu.Lock()
		b.startups = append(b.startups, m)
		b.mu.Unlock()
	default:
		return
	}
	be.Send(&pgproto3.AuthenticationOk{})
	be.Send(&pgproto3.ParameterStatus{Name: "server_version", Value: "15.0"})
	be.Send(&pgproto3.ParameterStatus{Name: "standard_conforming_strings", Value: "on"})
	be.Send(&pgproto3.ParameterStatus{Name: "client_encoding", Value: "UTF8"})
	be.Send(&pgproto3.BackendKeyData{ProcessID: 42, SecretKey: []byte{0, 0, 0x10, 0x92}})
	be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	if be.Flush() != nil {
		return
	}
	for {
		msg, err := be.Receive()
		if err != nil {
			return
		}
		switch msg.(type) {
		case *pgproto3.Query:
			be.Send(&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("peer"), DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1}}})
			be.Send(&pgproto3.DataRow{Values: [][]byte{[]byte(peer.String())}})
			be.Send(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")})
			be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
			if be.Flush() != nil {
				return
			}
		case *pgproto3.Terminate:
			return
		default:
			be.Send(&pgproto3.ErrorResponse{Severity: "ERROR", Code: "0A000", Message: "fake broker: simple queries only"})
			be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
			if be.Flush() != nil {
				return
			}
		}
	}
}

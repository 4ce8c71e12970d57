package postgres

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// TestALostBackendIsAFatalErrorTheClientShows: a backend connection that dies under a session gives
// the client a FATAL 08006 saying so (libpq would otherwise report only "SSL SYSCALL error: EOF
// detected"); one the broker ends because the backend sent what it does not relay gives 08P01; a
// backend that said why it ends (a FATAL of its own) is not talked over.
func TestALostBackendIsAFatalErrorTheClientShows(t *testing.T) {
	for _, c := range []struct {
		name  string
		last  []pgproto3.BackendMessage // what the backend sends before it closes
		codes []string                  // the errors the client gets, in order
	}{
		{"connection lost", nil, []string{"08006"}},
		{"backend terminated", []pgproto3.BackendMessage{&pgproto3.ErrorResponse{Severity: "FATAL", Code: "57P01",
			Message: "terminating connection due to administrator command"}}, []string{"57P01"}},
		{"backend sent what the broker does not relay", []pgproto3.BackendMessage{
			&pgproto3.ParameterStatus{Name: "client_encoding", Value: "SJIS"}}, []string{"08P01"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			pki := newTestPKI(t)
			client, brokerClient := tlsPair(t, pki)
			brokerBackend, backend := tcpPair(t)
			s := newRelaySession(t, relayIO{fromClient: brokerClient, toClient: brokerClient, clientConn: brokerClient,
				fromBackend: brokerBackend, toBackend: brokerBackend, backendConn: brokerBackend})
			done := make(chan error, 1)
			go func() { done <- s.Run(context.Background()) }()
			be := pgproto3.NewBackend(backend, backend)
			for _, m := range c.last {
				be.Send(m)
			}
			if err := be.Flush(); err != nil {
				t.Fatal(err)
			}
			backend.Close()
			_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
			fe := pgproto3.NewFrontend(client, client)
			var codes []string
			for {
				msg, err := fe.Receive()
				if err != nil {
					break
				}
				if e, ok := msg.(*pgproto3.ErrorResponse); ok {
					if e.Severity != "FATAL" {
						t.Errorf("%s error %+v", e.Severity, e)
					}
					codes = append(codes, e.Code)
				}
			}
			<-done
			if len(codes) != len(c.codes) || len(codes) > 0 && codes[0] != c.codes[0] {
				t.Errorf("client got errors %v, want %v", codes, c.codes)
			}
		})
	}
}

package postgres

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/broker/credential"
)

// session relays one client to its backend, message by message.
type session struct {
	log          *slog.Logger
	client       *pgproto3.Backend // reads the client's messages, writes to the client
	clientConn   *tls.Conn
	backend      *pgproto3.Frontend // reads the backend's messages, writes to the backend
	backendConn  net.Conn
	writeTimeout time.Duration
	endBy        time.Time // the client's SVID expiry plus the grace period
	rec          recorder
	lease        *credential.Session // nil when the broker logs in with its SVID
	stop         chan error          // the credential could not be kept

	rows, bytes int64 // of the current statement's result, for its summary

	terminated atomic.Bool // the client sent Terminate: the backend closing next is expected
	closeOnce  sync.Once
}

// errClientTerminated marks a session the client ended with Terminate.
var errClientTerminated = errors.New("client terminated")

// ErrSVIDExpired ends a session whose client's SVID expired more than the grace period ago.
var ErrSVIDExpired = errors.New("postgres: client SVID expired")

// Run relays until either side ends, the client's SVID expires (plus grace), or ctx is cancelled
// (shutdown), and then closes both connections.
func (s *session) Run(ctx context.Context) error {
	start := time.Now()
	expiry := time.NewTimer(time.Until(s.endBy))
	defer expiry.Stop()
	c2b, b2c := make(chan error, 1), make(chan error, 1)
	go func() { c2b <- s.guard("client", s.clientToBackend) }()
	go func() { b2c <- s.guard("backend", s.backendToClient) }()
	var err error
	select {
	case err = <-c2b:
		if errors.Is(err, errAudit) {
			// Nothing unrecorded reached the backend; tell the client why its session ends.
			_ = s.backendConn.Close()
			<-b2c
			s.client.Send(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "58030",
				Message: "svidbroker: the audit log is unavailable, so statements are refused"})
			_ = s.flushClient()
			s.close()
			break
		}
		s.close()
		<-b2c
	case err = <-b2c:
		s.close()
		<-c2b
	case <-ctx.Done():
		err = ctx.Err()
		s.end(b2c, c2b, "57P01", "svidbroker: terminating connection because the broker is shutting down")
	case <-expiry.C:
		err = ErrSVIDExpired
		s.end(b2c, c2b, "28000", "svidbroker: terminating connection because the client's SVID expired; reconnect with the rotated SVID")
	case err = <-s.stop:
		s.end(b2c, c2b, "08006", "svidbroker: terminating connection because its backend credential could not be kept")
	}
	// Revoking the lease after the backend session closed: revocation alone would not end it.
	if s.lease != nil {
		s.lease.End()
	}
	if s.terminated.Load() {
		err = nil
	}
	level := slog.LevelInfo
	if errors.Is(err, ErrSVIDExpired) || errors.Is(err, errAudit) {
		level = slog.LevelWarn
	}
	reason := "client ended the session"
	if err != nil {
		reason = err.Error()
	}
	s.rec.async(audit.Record{Kind: audit.KindSessionEnd, Detail: map[string]string{
		"reason": reason, "duration": time.Since(start).Round(time.Millisecond).String()}})
	s.log.Log(ctx, level, "session ended", "duration", time.Since(start).Round(time.Millisecond), "error", err)
	return err
}

// end stops a running session from the broker's side: the backend side first, so that this goroutine
// is the only writer to the client, then a FATAL error to the client, then both connections.
func (s *session) end(b2c, c2b chan error, code, msg string) {
	_ = s.backendConn.Close()
	<-b2c
	s.client.Send(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: code, Message: msg})
	_ = s.flushClient()
	s.close()
	<-c2b
}

// guard turns a panic in a relay direction into an error: a malformed message from a peer must end
// that session, never the broker.
func (s *session) guard(side string, f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("postgres: %s relay panicked: %v", side, r)
		}
	}()
	return f()
}

// clientToBackend forwards the client's messages. They are written when the client expects an answer
// (Sync, Flush, Query, FunctionCall, end of COPY, Terminate). pgproto3 buffers until Flush, so CopyData
// is flushed as it comes, which keeps the buffer to one message.
func (s *session) clientToBackend() error {
	for {
		msg, err := s.client.Receive()
		if err != nil {
			return fmt.Errorf("postgres: from client: %w", err)
		}
		// What reaches the backend is on record first.
		if err := s.recordStatement(msg); err != nil {
			return err
		}
		s.backend.Send(msg)
		switch msg.(type) {
		case *pgproto3.Terminate:
			s.terminated.Store(true)
			_ = s.flushBackend()
			return errClientTerminated
		case *pgproto3.Sync, *pgproto3.Flush, *pgproto3.Query, *pgproto3.FunctionCall,
			*pgproto3.CopyData, *pgproto3.CopyDone, *pgproto3.CopyFail:
			if err := s.flushBackend(); err != nil {
				return err
			}
		}
	}
}

// backendToClient forwards the backend's messages, writing whenever no further backend bytes are
// already buffered: batches stay batched and nothing waits.
func (s *session) backendToClient() error {
	for {
		msg, err := s.backend.Receive()
		if err != nil {
			return fmt.Errorf("postgres: from backend: %w", err)
		}
		s.summarize(msg)
		s.client.Send(msg)
		if s.backend.ReadBufferLen() == 0 {
			if err := s.flushClient(); err != nil {
				return err
			}
		}
	}
}

func (s *session) flushBackend() error {
	_ = s.backendConn.SetWriteDeadline(time.Now().Add(s.writeTimeout))
	if err := s.backend.Flush(); err != nil {
		return fmt.Errorf("postgres: to backend: %w", err)
	}
	return nil
}

func (s *session) flushClient() error {
	_ = s.clientConn.SetWriteDeadline(time.Now().Add(s.writeTimeout))
	if err := s.client.Flush(); err != nil {
		return fmt.Errorf("postgres: to client: %w", err)
	}
	return nil
}

func (s *session) close() {
	s.closeOnce.Do(func() {
		_ = s.backendConn.Close()
		_ = s.clientConn.Close()
	})
}

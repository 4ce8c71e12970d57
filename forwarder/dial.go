package forwarder

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// maxBrokerError bounds an ErrorResponse the broker sends instead of accepting TLS.
const maxBrokerError = 8192

// brokerError is the broker's own refusal before TLS (an ErrorResponse to the SSLRequest, such as
// "not accepting connections"): its text is meant for the client.
type brokerError struct {
	code, msg string
}

func (e *brokerError) Error() string {
	return fmt.Sprintf("the broker refused before TLS: %s (SQLSTATE %s)", e.msg, e.code)
}

// dialBroker opens a mutual-TLS connection to the broker (in JWT mode, TLS without a client
// certificate): TCP within DialTimeout, then (for PostgreSQL) SSLRequest and its 'S', then the
// handshake, both within HandshakeTimeout. The broker is accepted only with the configured SPIFFE ID.
func (f *Forwarder) dialBroker(ctx context.Context) (*tls.Conn, error) {
	if f.tokens == nil {
		// Said here, before the broker would refuse the handshake with a bare "bad certificate".
		svid, err := f.cfg.SVID.GetX509SVID()
		if err != nil {
			return nil, fmt.Errorf("the forwarder has no X.509-SVID: %w", err)
		}
		if exp := svid.Certificates[0].NotAfter; time.Now().After(exp) {
			return nil, fmt.Errorf("the forwarder's X.509-SVID (%s) expired at %s: the SPIRE agent has not renewed it; is it running?",
				svid.ID, exp.UTC().Format(time.RFC3339))
		}
	}
	d := net.Dialer{Timeout: f.cfg.DialTimeout}
	raw, err := d.DialContext(ctx, "tcp", f.cfg.Broker)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the broker at %s: %w", f.cfg.Broker, err)
	}
	if f.cfg.wrapBrokerConn != nil {
		raw = f.cfg.wrapBrokerConn(raw)
	}
	hctx, cancel := context.WithTimeout(ctx, f.cfg.HandshakeTimeout)
	defer cancel()
	// The deadline covers the SSLRequest exchange; HandshakeContext enforces hctx on the handshake.
	_ = raw.SetDeadline(time.Now().Add(f.cfg.HandshakeTimeout))
	if f.cfg.Protocol == Postgres {
		if err := sslRequest(raw); err != nil {
			raw.Close()
			return nil, err
		}
	}
	conn := tls.Client(raw, f.tls)
	if err := conn.HandshakeContext(hctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("TLS handshake with the broker at %s (expecting %s): %w", f.cfg.Broker, f.cfg.BrokerID, err)
	}
	_ = raw.SetDeadline(time.Time{})
	return conn, nil
}

// sslRequest asks a PostgreSQL listener for TLS and reads its one-byte answer, and nothing after it.
func sslRequest(raw net.Conn) error {
	req, _ := (&pgproto3.SSLRequest{}).Encode(nil) // fixed 8 bytes; cannot fail
	if _, err := raw.Write(req); err != nil {
		return fmt.Errorf("SSLRequest to the broker at %s: %w", raw.RemoteAddr(), err)
	}
	var b [1]byte
	if _, err := io.ReadFull(raw, b[:]); err != nil {
		return fmt.Errorf("the broker at %s did not answer SSLRequest: %w", raw.RemoteAddr(), err)
	}
	switch b[0] {
	case 'S':
		return nil
	case 'E':
		fe := pgproto3.NewFrontend(io.MultiReader(bytes.NewReader(b[:]), raw), io.Discard)
		fe.SetMaxBodyLen(maxBrokerError)
		msg, err := fe.Receive()
		if er, ok := msg.(*pgproto3.ErrorResponse); ok && err == nil {
			return &brokerError{code: er.Code, msg: er.Message}
		}
		return fmt.Errorf("the broker at %s refused TLS with an unreadable error", raw.RemoteAddr())
	case 'N':
		return fmt.Errorf("the broker at %s does not offer TLS on this port (is it the broker's postgres listener?)", raw.RemoteAddr())
	default:
		return fmt.Errorf("the broker at %s answered SSLRequest with %q, not PostgreSQL's 'S' (is it the broker's postgres listener?)", raw.RemoteAddr(), b[0])
	}
}

// dialFailure is what a client is told when the broker could not be reached: the broker's own words
// when it refused, else the error.
func dialFailure(err error) string {
	var be *brokerError
	if errors.As(err, &be) {
		return be.msg
	}
	return err.Error()
}

package forwarder

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// handlePostgres serves one PostgreSQL client: it declines the client's SSLRequest and GSSENCRequest
// ('N': the client stays in plaintext on loopback), then for a StartupMessage opens mutual TLS to the
// broker, passes the message on and relays; for a CancelRequest it passes the request on over a new
// mutual-TLS connection, as the broker expects a cancel on its own connection.
func (f *Forwarder) handlePostgres(ctx context.Context, log *slog.Logger, c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(f.cfg.ClientTimeout))
	var pkt startupPacket
	ssl, gss := false, false
read:
	for {
		var err error
		pkt, err = readStartupPacket(c)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return // a client that connected and left (libpq probing, a port check)
			}
			log.Warn("client refused: bad startup packet", "error", err)
			if errors.Is(err, errDirectTLS) {
				return // a TLS client cannot read a plaintext ErrorResponse
			}
			writeFatal(c, "08P01", "svidbroker connect: "+err.Error())
			return
		}
		switch pkt.msg.(type) {
		case *pgproto3.SSLRequest:
			if ssl {
				log.Warn("client refused: repeated SSLRequest")
				return
			}
			ssl = true
		case *pgproto3.GSSEncRequest:
			if gss {
				log.Warn("client refused: repeated GSSENCRequest")
				return
			}
			gss = true
		default:
			break read
		}
		// No TLS or GSSAPI to the forwarder: the connection stays on this host, and the TLS that
		// matters is the forwarder's own, to the broker.
		if _, err := c.Write([]byte{'N'}); err != nil {
			return
		}
	}
	_ = c.SetReadDeadline(time.Time{})
	cancel := false
	if _, ok := pkt.msg.(*pgproto3.CancelRequest); ok {
		cancel = true
	}
	broker, err := f.dialBroker(ctx)
	if err != nil {
		log.Error("client closed: no connection to the broker", "broker", f.cfg.Broker, "cancel_request", cancel, "error", err)
		if !cancel { // a cancel request gets no answer, from the server either
			code := "08001"
			var be *brokerError
			if errors.As(err, &be) && be.code != "" {
				code = be.code
			}
			writeFatal(c, code, "svidbroker connect: "+dialFailure(err))
		}
		return
	}
	defer broker.Close()
	_ = broker.SetWriteDeadline(time.Now().Add(f.cfg.HandshakeTimeout))
	if _, err := broker.Write(pkt.raw); err != nil {
		log.Error("client closed: write to the broker failed", "error", err)
		if !cancel {
			writeFatal(c, "08006", "svidbroker connect: the broker connection failed: "+err.Error())
		}
		return
	}
	_ = broker.SetWriteDeadline(time.Time{})
	if cancel {
		// The broker closes the connection once it has acted on the request; wait for that, boundedly,
		// so the cancel is delivered before the client's next statement.
		_ = broker.SetReadDeadline(time.Now().Add(f.cfg.HandshakeTimeout))
		_, _ = io.Copy(io.Discard, io.LimitReader(broker, 1<<10))
		log.Info("cancel request passed to the broker")
		return
	}
	stats := relay(ctx, c, broker, f.cfg.IdleTimeout)
	log.Info("connection closed", "to_broker_bytes", stats.up+int64(len(pkt.raw)), "from_broker_bytes", stats.down, "reason", stats.reason)
}

// writeFatal sends the client a FATAL ErrorResponse, as the server does before it closes.
func writeFatal(c net.Conn, sqlstate, msg string) {
	buf, err := (&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: sqlstate, Message: msg}).Encode(nil)
	if err != nil {
		return
	}
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, _ = c.Write(buf)
}

package forwarder

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5/pgproto3"
)

// maxStartupPacket is PostgreSQL's own limit on a startup packet (MAX_STARTUP_PACKET_LENGTH).
const maxStartupPacket = 10000

// errDirectTLS is a client that opened with a TLS ClientHello (libpq's sslnegotiation=direct): the
// forwarder offers no TLS to its clients.
var errDirectTLS = errors.New("forwarder: the client opened with TLS (sslnegotiation=direct); connect to the forwarder without TLS (sslmode=disable or prefer)")

// startupPacket is one startup-phase packet: the decoded message and the exact bytes it came from.
type startupPacket struct {
	msg pgproto3.FrontendMessage
	raw []byte
}

// readStartupPacket reads one startup-phase packet (SSLRequest, GSSENCRequest, CancelRequest or
// StartupMessage) from r, reading exactly its bytes. It refuses a length outside PostgreSQL's bounds,
// fixed-size requests of the wrong size, and a StartupMessage that repeats a parameter or carries
// bytes after its terminator (readers disagree on which repeated "user" or "database" wins; the broker
// refuses it too, and the forwarder passes on only what it could decode).
func readStartupPacket(r io.Reader) (startupPacket, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return startupPacket{}, err
	}
	if hdr[0] == 0x16 { // a TLS handshake record, never a startup length below 10000
		return startupPacket{}, errDirectTLS
	}
	n := int64(int32(binary.BigEndian.Uint32(hdr[:])))
	if n < 8 || n > maxStartupPacket {
		return startupPacket{}, fmt.Errorf("forwarder: startup packet length %d outside [8, %d]", n, maxStartupPacket)
	}
	pkt := make([]byte, n)
	copy(pkt, hdr[:])
	if _, err := io.ReadFull(r, pkt[4:]); err != nil {
		return startupPacket{}, fmt.Errorf("forwarder: short startup packet: %w", err)
	}
	msg, err := pgproto3.NewBackend(bytes.NewReader(pkt), io.Discard).ReceiveStartupMessage()
	if err != nil {
		return startupPacket{}, fmt.Errorf("forwarder: bad startup packet: %w", err)
	}
	switch msg.(type) {
	case *pgproto3.SSLRequest, *pgproto3.GSSEncRequest:
		if n != 8 {
			return startupPacket{}, fmt.Errorf("forwarder: %s of %d bytes, want 8", packetName(msg), n)
		}
	case *pgproto3.CancelRequest:
		if n != 16 {
			return startupPacket{}, fmt.Errorf("forwarder: CancelRequest of %d bytes, want 16", n)
		}
	case *pgproto3.StartupMessage:
		// Parameters decode into a map: a re-encoding shorter than the packet means a repeated
		// parameter or trailing bytes.
		enc, err := msg.Encode(nil)
		if err != nil || int64(len(enc)) != n {
			return startupPacket{}, errors.New("forwarder: StartupMessage with repeated parameters or trailing bytes")
		}
	default:
		return startupPacket{}, fmt.Errorf("forwarder: unexpected startup packet %T", msg)
	}
	return startupPacket{msg: msg, raw: pkt}, nil
}

// packetName names a startup packet as PostgreSQL's documentation does.
func packetName(m pgproto3.FrontendMessage) string {
	switch m.(type) {
	case *pgproto3.SSLRequest:
		return "SSLRequest"
	case *pgproto3.GSSEncRequest:
		return "GSSENCRequest"
	case *pgproto3.CancelRequest:
		return "CancelRequest"
	case *pgproto3.StartupMessage:
		return "StartupMessage"
	}
	return fmt.Sprintf("%T", m)
}

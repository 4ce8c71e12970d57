package postgres

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5/pgproto3"
)

// maxStartupPacket is PostgreSQL's own limit on a startup packet (MAX_STARTUP_PACKET_LENGTH).
const maxStartupPacket = 10000

// readStartupPacket reads one startup-phase packet (SSLRequest, GSSENCRequest, CancelRequest or
// StartupMessage) from r. It reads exactly the packet's bytes and no more, so that bytes sent after an
// SSLRequest stay in the socket and are fed to the TLS handshake, where they fail, instead of sitting
// in a buffer to be read later as if they had been encrypted.
func readStartupPacket(r io.Reader) (pgproto3.FrontendMessage, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := int64(int32(binary.BigEndian.Uint32(hdr[:])))
	if n < 8 || n > maxStartupPacket {
		return nil, fmt.Errorf("postgres: startup packet length %d outside [8, %d]", n, maxStartupPacket)
	}
	pkt := make([]byte, n)
	copy(pkt, hdr[:])
	if _, err := io.ReadFull(r, pkt[4:]); err != nil {
		return nil, fmt.Errorf("postgres: short startup packet: %w", err)
	}
	// pgproto3 decodes; it reads from the exact bytes above, so its buffering cannot over-read the socket.
	msg, err := pgproto3.NewBackend(bytes.NewReader(pkt), io.Discard).ReceiveStartupMessage()
	if err != nil {
		return nil, fmt.Errorf("postgres: bad startup packet: %w", err)
	}
	// pgproto3 ignores trailing bytes in fixed-size requests; a request padded with extra bytes is not
	// one a real client sends, so refuse it rather than guess what the padding was for.
	switch msg.(type) {
	case *pgproto3.SSLRequest, *pgproto3.GSSEncRequest:
		if n != 8 {
			return nil, fmt.Errorf("postgres: %T of %d bytes, want 8", msg, n)
		}
	case *pgproto3.CancelRequest:
		if n != 16 {
			return nil, fmt.Errorf("postgres: CancelRequest of %d bytes, want 16", n)
		}
	case *pgproto3.StartupMessage:
		// The parameters decode into a map. If re-encoding them is shorter than the packet, the packet
		// repeated a parameter (which one wins differs between readers: the classic way to smuggle a
		// second "user" or "database") or carried bytes after the terminator. Refuse both.
		enc, err := msg.Encode(nil)
		if err != nil || int64(len(enc)) != n {
			return nil, fmt.Errorf("postgres: StartupMessage with repeated parameters or trailing bytes")
		}
	}
	return msg, nil
}

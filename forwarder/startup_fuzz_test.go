package forwarder

import (
	"bytes"
	"encoding/binary"
	"io"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// FuzzReadStartupPacket: whatever a client sends, the reader does not panic, reads at most the length
// the packet declares, and what it accepts is exactly the declared bytes, decoding again to the same
// kind of packet (the bytes the forwarder passes on are the ones it checked).
func FuzzReadStartupPacket(f *testing.F) {
	for _, m := range []pgproto3.FrontendMessage{
		&pgproto3.SSLRequest{}, &pgproto3.GSSEncRequest{},
		&pgproto3.CancelRequest{ProcessID: 1, SecretKey: []byte{0, 0, 0, 1}},
		&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: map[string]string{"user": "a", "database": "shop"}},
	} {
		b, _ := m.Encode(nil)
		f.Add(b)
	}
	f.Add([]byte{0, 0, 0, 8, 0, 3, 0, 0})
	f.Add([]byte{0x16, 3, 1, 0, 5})
	f.Add([]byte{0, 0, 0, 22, 0, 3, 0, 0, 'u', 's', 'e', 'r', 0, 'a', 0, 'u', 's', 'e', 'r', 0, 'b', 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		pkt, err := readStartupPacket(r)
		consumed := len(in) - r.Len()
		if len(in) >= 4 {
			declared := int64(int32(binary.BigEndian.Uint32(in)))
			if declared >= 8 && int64(consumed) > declared {
				t.Fatalf("read %d bytes of a %d-byte packet", consumed, declared)
			}
		}
		if err != nil {
			return
		}
		if consumed != len(pkt.raw) || !bytes.Equal(pkt.raw, in[:consumed]) {
			t.Fatalf("raw %x is not the %d bytes read", pkt.raw, consumed)
		}
		if len(pkt.raw) > maxStartupPacket {
			t.Fatalf("accepted %d bytes", len(pkt.raw))
		}
		again, err := pgproto3.NewBackend(bytes.NewReader(pkt.raw), io.Discard).ReceiveStartupMessage()
		if err != nil || packetName(again) != packetName(pkt.msg) {
			t.Fatalf("raw bytes decode again as %v (%v), not %s", again, err, packetName(pkt.msg))
		}
	})
}

package postgres

import (
	"bytes"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

func FuzzReadStartupPacket(f *testing.F) {
	ssl, _ := (&pgproto3.SSLRequest{}).Encode(nil)
	gss, _ := (&pgproto3.GSSEncRequest{}).Encode(nil)
	cancel, _ := (&pgproto3.CancelRequest{ProcessID: 1, SecretKey: []byte{1, 2, 3, 4}}).Encode(nil)
	startup, _ := (&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30,
		Parameters: map[string]string{"user": "u", "database": "shop"}}).Encode(nil)
	for _, seed := range [][]byte{ssl, gss, cancel, startup, append(ssl, 'Q', 0, 0, 0, 4), {0, 0, 0, 8}, {0xff, 0xff, 0xff, 0xff}} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		msg, err := readStartupPacket(r)
		if err != nil {
			return
		}
		consumed := len(data) - r.Len()
		if consumed > maxStartupPacket {
			t.Fatalf("consumed %d bytes, over the %d-byte limit", consumed, maxStartupPacket)
		}
		// Re-encoding what was decoded must give back exactly the bytes consumed: nothing was skipped
		// or read beyond the packet.
		enc, err := msg.Encode(nil)
		if err != nil {
			t.Fatalf("decoded %T does not re-encode: %v", msg, err)
		}
		if sm, ok := msg.(*pgproto3.StartupMessage); ok {
			// Parameter order is not preserved by the map; compare sizes, then decode again.
			if len(enc) != consumed {
				t.Fatalf("StartupMessage %v: re-encoded %d bytes, consumed %d", sm.Parameters, len(enc), consumed)
			}
			again, err := readStartupPacket(bytes.NewReader(enc))
			if err != nil || len(again.(*pgproto3.StartupMessage).Parameters) != len(sm.Parameters) {
				t.Fatalf("re-encoded StartupMessage does not read back: %v", err)
			}
			return
		}
		if !bytes.Equal(enc, data[:consumed]) {
			t.Fatalf("%T: re-encoded %x, consumed %x", msg, enc, data[:consumed])
		}
	})
}

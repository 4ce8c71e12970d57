package forwarder

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

func encode(t testing.TB, m pgproto3.FrontendMessage) []byte {
	t.Helper()
	b, err := m.Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestReadStartupPacket(t *testing.T) {
	startup := encode(t, &pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: map[string]string{"user": "agent", "database": "shop"}})
	trailing := append(append([]byte(nil), startup...), 'x')
	trailing[3]++
	cancel := encode(t, &pgproto3.CancelRequest{ProcessID: 7, SecretKey: []byte{1, 2, 3, 4}})
	longCancel := encode(t, &pgproto3.CancelRequest{ProcessID: 7, SecretKey: bytes.Repeat([]byte{1}, 32)})
	cases := []struct {
		name    string
		in      []byte
		want    string // packet name, or "" for a refusal
		wantErr error
	}{
		{"SSLRequest", encode(t, &pgproto3.SSLRequest{}), "SSLRequest", nil},
		{"GSSENCRequest", encode(t, &pgproto3.GSSEncRequest{}), "GSSENCRequest", nil},
		{"CancelRequest", cancel, "CancelRequest", nil},
		{"StartupMessage", startup, "StartupMessage", nil},
		{"CancelRequest with a long key", longCancel, "", nil},
		{"StartupMessage with a trailing byte", trailing, "", nil},
		{"TLS ClientHello", []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01}, "", errDirectTLS},
		{"negative length", []byte{0xff, 0xff, 0xff, 0xf0, 0, 0, 0, 0}, "", nil},
		{"truncated", startup[:len(startup)-3], "", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			after := []byte("next")
			r := bytes.NewReader(append(append([]byte(nil), tc.in...), after...))
			pkt, err := readStartupPacket(r)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("accepted %s", packetName(pkt.msg))
				}
				if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
					t.Fatalf("error %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := packetName(pkt.msg); got != tc.want {
				t.Fatalf("read %s, want %s", got, tc.want)
			}
			if !bytes.Equal(pkt.raw, tc.in) {
				t.Fatalf("raw bytes %x, want %x", pkt.raw, tc.in)
			}
			// Exactly the packet was read: what follows is still in the reader.
			rest, _ := io.ReadAll(r)
			if !bytes.Equal(rest, after) {
				t.Fatalf("left %q in the reader, want %q", rest, after)
			}
		})
	}
}

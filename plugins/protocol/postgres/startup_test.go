package postgres

import (
	"bytes"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

func encode(t *testing.T, msgs ...pgproto3.FrontendMessage) []byte {
	t.Helper()
	var b []byte
	for _, m := range msgs {
		var err error
		if b, err = m.Encode(b); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

func TestReadStartupPacketReadsExactlyOnePacket(t *testing.T) {
	// An SSLRequest followed by plaintext the client should not have sent (CVE-2021-23214).
	data := encode(t, &pgproto3.SSLRequest{}, &pgproto3.Query{String: "SELECT 1"})
	r := bytes.NewReader(data)
	msg, err := readStartupPacket(r)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := msg.(*pgproto3.SSLRequest); !ok {
		t.Fatalf("got %T", msg)
	}
	if r.Len() != len(data)-8 {
		t.Fatalf("read %d bytes past the SSLRequest", len(data)-8-r.Len())
	}
}

func TestReadStartupPacketRefusals(t *testing.T) {
	startup := encode(t, &pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30,
		Parameters: map[string]string{"user": "a"}})
	// The same parameter twice: "user" appears as a and as b.
	dup := append([]byte{}, startup[:len(startup)-1]...)
	dup = append(dup, "user\x00b\x00\x00"...)
	dup[3] = byte(len(dup))
	padded := encode(t, &pgproto3.SSLRequest{})
	padded = append(padded, 0, 0, 0, 0)
	padded[3] = 12
	cases := map[string][]byte{
		"too short":         {0, 0, 0, 4},
		"too long":          {0, 0, 0x27, 0x11, 0, 3, 0, 0},
		"negative length":   {0xff, 0xff, 0xff, 0xf0},
		"truncated":         startup[:len(startup)-2],
		"repeated user":     dup,
		"padded SSLRequest": padded,
		"unknown version":   {0, 0, 0, 8, 0, 9, 0, 0},
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			if msg, err := readStartupPacket(bytes.NewReader(data)); err == nil {
				t.Fatalf("accepted as %T %+v", msg, msg)
			}
		})
	}
}

func TestRuntimeParams(t *testing.T) {
	b := &Backend{Database: "shop"}
	cases := []struct {
		name    string
		in      map[string]string
		want    map[string]string
		wantErr string
	}{
		{"user is ignored, database may be named", map[string]string{"user": "postgres", "database": "shop", "application_name": "agent"},
			map[string]string{"application_name": "agent"}, ""},
		{"empty database means the target's", map[string]string{"database": ""}, map[string]string{}, ""},
		{"names are case-insensitive", map[string]string{"DateStyle": "ISO", "TimeZone": "UTC"},
			map[string]string{"datestyle": "ISO", "timezone": "UTC"}, ""},
		{"another database", map[string]string{"database": "postgres"}, nil, `not "postgres"`},
		{"client encoding SJIS", map[string]string{"client_encoding": "SJIS"}, nil, `client_encoding "SJIS" is not allowed`},
		{"options", map[string]string{"options": "-c role=admin"}, nil, `"options" is not allowed`},
		{"replication", map[string]string{"replication": "database"}, nil, `"replication" is not allowed`},
		{"arbitrary setting", map[string]string{"search_path": "evil"}, nil, `"search_path" is not allowed`},
		{"protocol extension", map[string]string{"_pq_.x": "1"}, nil, `"_pq_.x" is not allowed`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := b.runtimeParams(tc.in, "shop-target")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Fatalf("got %v, want %v", got, tc.want)
				}
			}
		})
	}
}

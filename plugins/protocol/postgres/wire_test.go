package postgres

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/svidbroker/svidbroker/broker/inspect"
)

// trickle hands out at most one byte per Read and, given the wire that reads it, counts the reads
// that begin a message (into the wire's small first-bytes array) and those that did so while the
// wire still held a read buffer.
type trickle struct {
	data         []byte
	w            *wire
	starts, held int
}

func (t *trickle) Read(p []byte) (int, error) {
	if t.w != nil && len(p) > 0 && &p[0] == &t.w.first[0] {
		t.starts++
		if t.w.buf != nil {
			t.held++
		}
	}
	if len(t.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:1], t.data)
	t.data = t.data[n:]
	return n, nil
}

var backendSample = []pgproto3.BackendMessage{
	&pgproto3.ParameterStatus{Name: "application_name", Value: "x"},
	&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("a"), TableOID: 16384, TableAttributeNumber: 1, DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1}}},
	&pgproto3.DataRow{Values: [][]byte{[]byte("one"), nil}},
	&pgproto3.DataRow{Values: [][]byte{bytes.Repeat([]byte("x"), 3*wireBufSize)}}, // longer than a pooled buffer
	&pgproto3.CommandComplete{CommandTag: []byte("SELECT 2")},
	&pgproto3.ErrorResponse{Severity: "ERROR", Code: "42501", Message: "denied"},
	&pgproto3.NoticeResponse{Severity: "NOTICE", Code: "00000", Message: "hello"},
	&pgproto3.ReadyForQuery{TxStatus: 'I'},
}

func encodeAll[M interface{ Encode([]byte) ([]byte, error) }](t testing.TB, msgs []M) []byte {
	t.Helper()
	var out []byte
	for _, m := range msgs {
		var err error
		if out, err = m.Encode(out); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// TestWireReadsWhatPgproto3Reads: byte by byte, the wire decodes the same messages as pgproto3, and
// holds no read buffer whenever it waits for a message to begin.
func TestWireReadsWhatPgproto3Reads(t *testing.T) {
	raw := encodeAll(t, backendSample)
	src := &trickle{data: raw}
	b := &backendWire{wire: newWire(src, io.Discard, 1<<20)}
	src.w = &b.wire
	want := pgproto3.NewFrontend(bytes.NewReader(raw), io.Discard)
	for i := range backendSample {
		got, err := b.Receive()
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		exp, err := want.Receive()
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, exp) {
			t.Fatalf("message %d: %#v, pgproto3 read %#v", i, got, exp)
		}
	}
	if _, err := b.Receive(); !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("after the last message: %v", err)
	}
	// One byte per read: every message begins with nothing buffered, and so with no buffer held.
	if src.starts != len(backendSample)+1 || src.held != 0 {
		t.Fatalf("%d message starts (want %d), %d with a buffer held", src.starts, len(backendSample)+1, src.held)
	}
	if b.buf != nil {
		t.Fatal("a buffer is held after the stream ended")
	}
}

func TestWireRefusesWhatCannotBeRead(t *testing.T) {
	for name, tc := range map[string]struct {
		raw  []byte
		want string
	}{
		"too long":             {encodeAll(t, []pgproto3.BackendMessage{&pgproto3.DataRow{Values: [][]byte{make([]byte, 100)}}}), "at most 64"},
		"negative length":      {[]byte{'D', 0xff, 0xff, 0xff, 0xf0}, "invalid message length"},
		"truncated":            {[]byte{'Z', 0, 0, 0, 5}, "unexpected eof"},
		"unknown type":         {[]byte{'?', 0, 0, 0, 4}, "unknown message type"},
		"authentication":       {encodeAll(t, []pgproto3.BackendMessage{&pgproto3.AuthenticationOk{}}), "authentication request"},
		"undecodable DataRow":  {[]byte{'D', 0, 0, 0, 6, 0, 9}, "invalid"},
		"undecodable ReadyFor": {[]byte{'Z', 0, 0, 0, 4}, "length of 1"},
	} {
		b := &backendWire{wire: newWire(bytes.NewReader(tc.raw), io.Discard, 64)}
		_, err := b.Receive()
		if err == nil || !strings.Contains(strings.ToLower(err.Error()), tc.want) {
			t.Errorf("%s: %v; want an error with %q", name, err, tc.want)
		}
	}
}

// TestBackendWireTakesOverBufferedMessages: messages pgconn's reader had buffered at the hijack come
// first, then the connection's.
func TestBackendWireTakesOverBufferedMessages(t *testing.T) {
	first := encodeAll(t, backendSample[:3])
	fe := pgproto3.NewFrontend(bytes.NewReader(first), io.Discard)
	if _, err := fe.Receive(); err != nil { // reads ahead: the other two stay buffered
		t.Fatal(err)
	}
	rest := encodeAll(t, backendSample[4:])
	conn := &rwConn{r: bytes.NewReader(rest)}
	b, err := newBackendWire(&pgconn.HijackedConn{Conn: conn, Frontend: fe}, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var got []pgproto3.BackendMessage
	for {
		m, err := b.Receive()
		if err != nil {
			break
		}
		got = append(got, m)
	}
	if len(got) != 2+len(backendSample[4:]) {
		t.Fatalf("read %d messages, want %d", len(got), 2+len(backendSample[4:]))
	}
	if _, ok := got[1].(*pgproto3.DataRow); !ok {
		t.Fatalf("second message %T, want the buffered DataRow", got[1])
	}
}

type rwConn struct {
	nopConn
	r io.Reader
}

func (c *rwConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// TestWireWrites: what Send encodes goes out at Flush, in order, and a large buffer is not kept.
func TestWireWrites(t *testing.T) {
	var out bytes.Buffer
	c := newClientWire(bytes.NewReader(nil), &out, 0)
	c.Send(&pgproto3.DataRow{Values: [][]byte{bytes.Repeat([]byte("y"), 4*maxKeptOut)}})
	c.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	if out.Len() != 0 {
		t.Fatal("written before Flush")
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	fe := pgproto3.NewFrontend(&out, io.Discard)
	if m, err := fe.Receive(); err != nil || len(m.(*pgproto3.DataRow).Values[0]) != 4*maxKeptOut {
		t.Fatalf("first: %v %v", m, err)
	}
	if m, err := fe.Receive(); err != nil || m.(*pgproto3.ReadyForQuery).TxStatus != 'I' {
		t.Fatalf("second: %v %v", m, err)
	}
	if c.out != nil {
		t.Fatal("a large write buffer was kept")
	}
}

// FuzzWire: on any bytes, the wire and pgproto3 agree, message by message, until either stops.
func FuzzWire(f *testing.F) {
	f.Add(encodeAll(f, backendSample[:3]))
	f.Add([]byte{'D', 0, 0, 0, 6, 0, 9})
	f.Fuzz(func(t *testing.T, raw []byte) {
		b := &backendWire{wire: newWire(&trickle{data: raw}, io.Discard, 1<<16)}
		fe := pgproto3.NewFrontend(bytes.NewReader(raw), io.Discard)
		fe.SetMaxBodyLen(1 << 16)
		for {
			got, gerr := b.Receive()
			exp, eerr := fe.Receive()
			if _, auth := exp.(pgproto3.AuthenticationResponseMessage); auth && eerr == nil {
				if gerr == nil {
					t.Fatalf("an authentication message was accepted: %T", got)
				}
				return
			}
			if (gerr == nil) != (eerr == nil) {
				t.Fatalf("wire: %v; pgproto3: %v", gerr, eerr)
			}
			if gerr != nil {
				return
			}
			if !reflect.DeepEqual(got, exp) {
				t.Fatalf("wire read %#v; pgproto3 %#v", got, exp)
			}
		}
	})
}

// TestAppendRowUnmasked checks how rows nothing masks are relayed undecoded: as they came, with the
// value bytes pgproto3's Decode finds; refused where Decode refuses, and also with bytes after the
// last value, which a decoded row would have dropped and a relayed one would pass on.
func TestAppendRowUnmasked(t *testing.T) {
	row := func(values ...[]byte) []byte {
		b, err := (&pgproto3.DataRow{Values: values}).Encode(nil)
		if err != nil {
			t.Fatal(err)
		}
		return b[5:]
	}
	cases := []struct {
		name string
		body []byte
		ok   bool
	}{
		{"no columns", row(), true},
		{"values and a NULL", row([]byte("42"), nil, []byte(""), []byte("alice@example.com")), true},
		{"empty body", []byte{}, false},
		{"count only, values missing", []byte{0, 2}, false},
		{"length past the end", append([]byte{0, 1, 0, 0, 0, 9}, "short"...), false},
		{"negative length", []byte{0, 1, 0xff, 0xff, 0xff, 0xfe}, false},
		{"truncated length", []byte{0, 1, 0, 0}, false},
		{"bytes after the last value", append(row([]byte("x")), 'y'), false},
	}
	for _, c := range cases {
		out, n, err := appendRow(nil, c.body, nil, nil)
		if (err == nil) != c.ok {
			t.Errorf("%s: err = %v, want ok=%v", c.name, err, c.ok)
			continue
		}
		if !c.ok {
			continue
		}
		var d pgproto3.DataRow
		decErr := d.Decode(c.body)
		var want int64
		for _, v := range d.Values {
			want += int64(len(v))
		}
		if decErr != nil || n != want || !bytes.Equal(out, appendFrame(nil, 'D', c.body)) {
			t.Errorf("%s: %d bytes (Decode: %v, %d)", c.name, n, decErr, want)
		}
	}
}

// FuzzAppendRow: whatever appendRow accepts, pgproto3's Decode accepts too, and appendRow's output is
// what decoding, maskRow and encoding give, with as many value bytes: a row relayed undecoded is the
// row a decoded one would have been, masked or not.
func FuzzAppendRow(f *testing.F) {
	f.Add([]byte{0, 0})
	f.Add([]byte{0, 2, 0, 0, 0, 1, 'x', 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0, 1, 0, 0, 0, 9})
	f.Add([]byte{0, 3, 0, 0, 0, 5, 'a', '@', 'b', '.', 'c', 0, 0, 0, 2, 0, 1, 0, 0, 0, 3, '1', '2', '3'})
	m, err := inspect.NewMasker(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		f.Fatal(err)
	}
	sets := [][]fieldMask{nil, {{strategy: inspect.Hash, text: true}, {strategy: inspect.Partial}, {strategy: inspect.Partial, text: true}, {}, {strategy: inspect.Redact, text: true}}}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, masks := range sets {
			got, n, err := appendRow([]byte("held"), body, masks, m.NewScratch())
			if err != nil {
				if string(got) != "held" {
					t.Fatalf("a refused row left %q", got)
				}
				continue
			}
			var d pgproto3.DataRow
			if err := d.Decode(body); err != nil {
				t.Fatalf("Decode refused an accepted row: %v", err)
			}
			if plain, _ := d.Encode(nil); !bytes.Equal(plain[5:], body) {
				t.Fatalf("accepted %x, which has bytes after its last value", body)
			}
			maskRow(m.NewScratch(), &d, masks)
			var want int64
			for _, v := range d.Values {
				want += int64(len(v))
			}
			enc, _ := d.Encode([]byte("held"))
			if n != want || !bytes.Equal(got, enc) {
				t.Fatalf("masks %v: appendRow gave %x (%d bytes), maskRow %x (%d bytes)", masks, got, n, enc, want)
			}
		}
	})
}

// maskRow is FuzzAppendRow's reference: a decoded row masked in place, value by value, into sc, as the
// broker masked rows before it relayed them undecoded.
func maskRow(sc *inspect.Scratch, row *pgproto3.DataRow, masks []fieldMask) {
	sc.Reset()
	for i, fm := range masks {
		if i < len(row.Values) {
			row.Values[i] = maskValue(sc, fm, row.Values[i])
		}
	}
}

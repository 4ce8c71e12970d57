package postgres

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// wire reads and writes the messages of one established session's connection, in place of
// pgproto3's Frontend and Backend, which keep an 8 KiB read buffer for as long as they live. wire
// takes a read buffer from a pool when bytes arrive and gives it back once they are consumed, so a
// session whose peers are quiet holds no buffers: that is most of an idle session's memory.
//
// As with pgproto3, a message Receive returns (and what it refers to) is valid until the next
// Receive; messages are decoded by pgproto3's own Decode methods.
type wire struct {
	r       io.Reader
	w       io.Writer
	maxBody int
	buf     *[]byte // read buffer; nil while nothing is buffered
	rp, wp  int     // read and write positions in *buf
	first   [5]byte // where a quiet connection's first bytes land before a buffer is taken
	out     []byte  // encoded messages not yet written
	encErr  error
}

// wireBufSize is the pooled read buffer's size; longer messages get a buffer of their own.
const wireBufSize = 8 << 10

// maxKeptOut is the largest write buffer kept from one flush to the next.
const maxKeptOut = 1 << 10

var wireBufs = sync.Pool{New: func() any { b := make([]byte, wireBufSize); return &b }}

func newWire(r io.Reader, w io.Writer, maxBody int) wire {
	return wire{r: r, w: w, maxBody: maxBody}
}

// next returns the next message's type and body.
func (w *wire) next() (byte, []byte, error) {
	if w.rp == w.wp {
		w.release()
	}
	if err := w.fill(5); err != nil {
		return 0, nil, unexpectedEOF(err)
	}
	hdr := (*w.buf)[w.rp : w.rp+5]
	typ, n := hdr[0], int(int32(binary.BigEndian.Uint32(hdr[1:])))
	if n < 4 {
		return 0, nil, fmt.Errorf("invalid message length: %d", n)
	}
	n -= 4
	if w.maxBody > 0 && n > w.maxBody {
		return 0, nil, &pgproto3.ExceededMaxBodyLenErr{MaxExpectedBodyLen: w.maxBody, ActualBodyLen: n}
	}
	if err := w.fill(5 + n); err != nil {
		return 0, nil, unexpectedEOF(err)
	}
	body := (*w.buf)[w.rp+5 : w.rp+5+n : w.rp+5+n]
	w.rp += 5 + n
	return typ, body, nil
}

// fill makes n bytes available from rp on.
func (w *wire) fill(n int) error {
	if w.buf != nil && w.wp-w.rp >= n {
		return nil
	}
	if w.buf == nil {
		// Quiet until now: wait for the first bytes without holding a buffer.
		k, err := w.r.Read(w.first[:])
		if k == 0 {
			if err == nil {
				err = io.ErrNoProgress
			}
			return err
		}
		w.buf = getWireBuf(max(n, wireBufSize))
		w.rp, w.wp = 0, copy(*w.buf, w.first[:k])
		if w.wp >= n {
			return nil
		}
	}
	if len(*w.buf)-w.rp < n {
		// No room from rp on: move what is buffered to the front, of a larger buffer if need be.
		if len(*w.buf) < n {
			p := getWireBuf(n)
			w.wp = copy(*p, (*w.buf)[w.rp:w.wp])
			putWireBuf(w.buf)
			w.buf = p
		} else {
			w.wp = copy(*w.buf, (*w.buf)[w.rp:w.wp])
		}
		w.rp = 0
	}
	k, err := io.ReadAtLeast(w.r, (*w.buf)[w.wp:], n-(w.wp-w.rp))
	w.wp += k
	return err
}

// ReadBufferLen is how many bytes are buffered beyond the messages returned so far.
func (w *wire) ReadBufferLen() int { return w.wp - w.rp }

// release gives the read buffer back when nothing is buffered.
func (w *wire) release() {
	if w.buf != nil {
		putWireBuf(w.buf)
		w.buf, w.rp, w.wp = nil, 0, 0
	}
}

// preload makes b (whole messages another reader buffered) the first bytes read.
func (w *wire) preload(b []byte) {
	if len(b) == 0 {
		return
	}
	w.buf = getWireBuf(max(len(b), wireBufSize))
	w.rp, w.wp = 0, copy(*w.buf, b)
}

func getWireBuf(n int) *[]byte {
	if n <= wireBufSize {
		return wireBufs.Get().(*[]byte)
	}
	b := make([]byte, n)
	return &b
}

func putWireBuf(b *[]byte) {
	if len(*b) == wireBufSize {
		wireBufs.Put(b)
	}
}

func unexpectedEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

type encoder interface {
	Encode(dst []byte) ([]byte, error)
}

func (w *wire) send(m encoder) {
	if w.encErr != nil {
		return
	}
	out, err := m.Encode(w.out)
	if err != nil {
		w.encErr = err
		return
	}
	w.out = out
}

// buffer adds encoded messages to what the next Flush writes.
func (w *wire) buffer(b []byte) { w.out = append(w.out, b...) }

// writeRaw sends encoded messages: straight to the connection when nothing else waits, which saves
// a copy of a large batch.
func (w *wire) writeRaw(b []byte) error {
	if len(w.out) > 0 {
		w.buffer(b)
		return w.Flush()
	}
	if w.encErr != nil {
		return w.Flush()
	}
	_, err := w.w.Write(b)
	return err
}

// Flush writes what Send encoded. A large write buffer is let go afterwards.
func (w *wire) Flush() error {
	if err := w.encErr; err != nil {
		w.encErr, w.out = nil, w.out[:0]
		return err
	}
	if len(w.out) == 0 {
		return nil
	}
	_, err := w.w.Write(w.out)
	if cap(w.out) > maxKeptOut {
		w.out = nil
	} else {
		w.out = w.out[:0]
	}
	return err
}

// clientWire is the client's side of a session: it reads the client's messages and writes to it.
type clientWire struct {
	wire
	bind         pgproto3.Bind
	close        pgproto3.Close
	describe     pgproto3.Describe
	execute      pgproto3.Execute
	functionCall pgproto3.FunctionCall
	copyFail     pgproto3.CopyFail
	copyData     pgproto3.CopyData
	copyDone     pgproto3.CopyDone
	flush        pgproto3.Flush
	parse        pgproto3.Parse
	query        pgproto3.Query
	sync         pgproto3.Sync
	terminate    pgproto3.Terminate
}

func newClientWire(r io.Reader, w io.Writer, maxBody int) *clientWire {
	return &clientWire{wire: newWire(r, w, maxBody)}
}

// Receive reads the client's next message, as pgproto3.Backend.Receive does once startup is over.
func (c *clientWire) Receive() (pgproto3.FrontendMessage, error) {
	typ, body, err := c.next()
	if err != nil {
		return nil, err
	}
	var msg pgproto3.FrontendMessage
	switch typ {
	case 'B':
		msg = &c.bind
	case 'C':
		msg = &c.close
	case 'D':
		msg = &c.describe
	case 'E':
		msg = &c.execute
	case 'F':
		msg = &c.functionCall
	case 'f':
		msg = &c.copyFail
	case 'd':
		msg = &c.copyData
	case 'c':
		msg = &c.copyDone
	case 'H':
		msg = &c.flush
	case 'P':
		msg = &c.parse
	case 'p':
		msg = &pgproto3.PasswordMessage{} // as pgproto3 reads it outside authentication
	case 'Q':
		msg = &c.query
	case 'S':
		msg = &c.sync
	case 'X':
		msg = &c.terminate
	default:
		return nil, fmt.Errorf("unknown message type: %c", typ)
	}
	if err := msg.Decode(body); err != nil {
		return nil, err
	}
	return msg, nil
}

// Send encodes a message for the client; Flush writes it.
func (c *clientWire) Send(m pgproto3.BackendMessage) { c.send(m) }

// backendWire is the backend's side of a session: it reads the backend's messages and writes to it.
type backendWire struct {
	wire
	parseComplete            pgproto3.ParseComplete
	bindComplete             pgproto3.BindComplete
	closeComplete            pgproto3.CloseComplete
	notificationResponse     pgproto3.NotificationResponse
	copyDone                 pgproto3.CopyDone
	commandComplete          pgproto3.CommandComplete
	copyData                 pgproto3.CopyData
	dataRow                  pgproto3.DataRow
	errorResponse            pgproto3.ErrorResponse
	copyInResponse           pgproto3.CopyInResponse
	copyOutResponse          pgproto3.CopyOutResponse
	emptyQueryResponse       pgproto3.EmptyQueryResponse
	backendKeyData           pgproto3.BackendKeyData
	noData                   pgproto3.NoData
	noticeResponse           pgproto3.NoticeResponse
	portalSuspended          pgproto3.PortalSuspended
	parameterStatus          pgproto3.ParameterStatus
	parameterDescription     pgproto3.ParameterDescription
	rowDescription           pgproto3.RowDescription
	functionCallResponse     pgproto3.FunctionCallResponse
	copyBothResponse         pgproto3.CopyBothResponse
	readyForQuery            pgproto3.ReadyForQuery
	negotiateProtocolVersion pgproto3.NegotiateProtocolVersion
}

// newBackendWire takes over a backend connection from the pgconn that opened it, with the messages
// its reader had already buffered.
func newBackendWire(hc *pgconn.HijackedConn, maxBody int) (*backendWire, error) {
	b := &backendWire{wire: newWire(hc.Conn, hc.Conn, maxBody)}
	var pending []byte
	for hc.Frontend.ReadBufferLen() > 0 {
		msg, err := hc.Frontend.Receive()
		if err != nil {
			return nil, err
		}
		if pending, err = msg.Encode(pending); err != nil {
			return nil, err
		}
	}
	b.preload(pending)
	return b, nil
}

// Receive reads the backend's next message, as pgproto3.Frontend.Receive does, except that an
// authentication request, which has no place in an established session, is an error.
func (b *backendWire) Receive() (pgproto3.BackendMessage, error) {
	typ, body, err := b.next()
	if err != nil {
		return nil, err
	}
	return b.decode(typ, body)
}

// decode decodes a message next returned, into the wire's message of its type.
func (b *backendWire) decode(typ byte, body []byte) (pgproto3.BackendMessage, error) {
	var msg pgproto3.BackendMessage
	switch typ {
	case '1':
		msg = &b.parseComplete
	case '2':
		msg = &b.bindComplete
	case '3':
		msg = &b.closeComplete
	case 'A':
		msg = &b.notificationResponse
	case 'c':
		msg = &b.copyDone
	case 'C':
		msg = &b.commandComplete
	case 'd':
		msg = &b.copyData
	case 'D':
		msg = &b.dataRow
	case 'E':
		msg = &b.errorResponse
	case 'G':
		msg = &b.copyInResponse
	case 'H':
		msg = &b.copyOutResponse
	case 'I':
		msg = &b.emptyQueryResponse
	case 'K':
		msg = &b.backendKeyData
	case 'n':
		msg = &b.noData
	case 'N':
		msg = &b.noticeResponse
	case 's':
		msg = &b.portalSuspended
	case 'S':
		msg = &b.parameterStatus
	case 't':
		msg = &b.parameterDescription
	case 'T':
		msg = &b.rowDescription
	case 'V':
		msg = &b.functionCallResponse
	case 'W':
		msg = &b.copyBothResponse
	case 'Z':
		msg = &b.readyForQuery
	case 'v':
		msg = &b.negotiateProtocolVersion
	case 'R':
		return nil, errors.New("authentication request in an established session")
	default:
		return nil, fmt.Errorf("unknown message type: %c", typ)
	}
	if err := msg.Decode(body); err != nil {
		return nil, err
	}
	return msg, nil
}

// Send encodes a message for the backend; Flush writes it.
func (b *backendWire) Send(m pgproto3.FrontendMessage) { b.send(m) }

// dataRowValues calls f with each value of a DataRow's body in turn (nil for NULL), checking the body
// as pgproto3's Decode does, and further that nothing follows its last value. On an error f may have
// seen some values: the caller discards what it made of them.
func dataRowValues(body []byte, f func(i int, v []byte)) error {
	if len(body) < 2 {
		return errMalformedDataRow
	}
	fields, rp := int(binary.BigEndian.Uint16(body)), 2
	for i := range fields {
		if len(body)-rp < 4 {
			return errMalformedDataRow
		}
		l := int(int32(binary.BigEndian.Uint32(body[rp:])))
		rp += 4
		var v []byte
		if l != -1 { // -1: NULL
			if l < 0 || len(body)-rp < l {
				return errMalformedDataRow
			}
			v, rp = body[rp:rp+l:rp+l], rp+l
		}
		f(i, v)
	}
	if rp != len(body) {
		return errMalformedDataRow
	}
	return nil
}

// dataRowBytes checks a DataRow's body as dataRowValues does and returns the bytes of its values. It
// is dataRowValues without a call per value, for the rows relayed as they came: most rows of most
// results (the call costs 10–20% of relaying such a row, BenchmarkRelayRows).
func dataRowBytes(body []byte) (int64, error) {
	if len(body) < 2 {
		return 0, errMalformedDataRow
	}
	fields, rp := int(binary.BigEndian.Uint16(body)), 2
	var n int64
	for range fields {
		if len(body)-rp < 4 {
			return 0, errMalformedDataRow
		}
		l := int(int32(binary.BigEndian.Uint32(body[rp:])))
		rp += 4
		if l == -1 { // NULL
			continue
		}
		if l < 0 || len(body)-rp < l {
			return 0, errMalformedDataRow
		}
		rp += l
		n += int64(l)
	}
	if rp != len(body) {
		return 0, errMalformedDataRow
	}
	return n, nil
}

var errMalformedDataRow = errors.New("malformed DataRow")

// appendFrame appends a message of type typ and body body, as it goes on the wire, to dst.
func appendFrame(dst []byte, typ byte, body []byte) []byte {
	dst = binary.BigEndian.AppendUint32(append(dst, typ), uint32(len(body)+4))
	return append(dst, body...)
}

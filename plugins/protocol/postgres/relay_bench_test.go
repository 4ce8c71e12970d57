package postgres

import (
	"bytes"
	"io"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/svidbroker/svidbroker/broker/inspect"
)

// benchRows is the result BenchmarkRelayRows relays: five text columns, like BenchmarkMaskedMillionRows's
// table, of which email (3) and ssn (4) are tagged.
const benchRows = 20000

func benchResult(tb testing.TB) []byte {
	field := func(name string, attnum uint16) pgproto3.FieldDescription {
		return pgproto3.FieldDescription{Name: []byte(name), TableOID: customersOID, TableAttributeNumber: attnum,
			DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1}
	}
	msgs := []pgproto3.Message{&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{
		field("id", 1), field("name", 2), field("email", 3), field("ssn", 4), field("note", 5)}}}
	for i := range benchRows {
		n := strconv.Itoa(i)
		msgs = append(msgs, &pgproto3.DataRow{Values: [][]byte{[]byte(n), []byte("Customer " + n),
			[]byte("customer" + n + "@example.com"), []byte("123-45-" + n), []byte("note 0123456789abcdef0123456789abcdef")}})
	}
	msgs = append(msgs, &pgproto3.CommandComplete{CommandTag: []byte("SELECT " + strconv.Itoa(benchRows))},
		&pgproto3.ReadyForQuery{TxStatus: 'I'})
	return encodeMessages(tb, msgs...)
}

// BenchmarkRelayRows measures the broker's work per result row, without sockets or TLS: a plain copy of
// the same bytes ("copy"), the relay with nothing to mask ("unmasked"), and with two of five columns
// masked by the keyed hash ("masked"). Read the ns/row metrics side by side.
func BenchmarkRelayRows(b *testing.B) {
	stream := benchResult(b)
	masked := func(tb testing.TB) *plan {
		p := maskingPlan(tb)
		p.addColumn(customersOID, 4, "ssn", inspect.Hash)
		p.cols[colKey{customersOID, emailAttnum}] = inspect.Hash
		return p
	}(b)
	key := bytes.Repeat([]byte{7}, 32)
	run := func(b *testing.B, p *plan) {
		for b.Loop() {
			var out countingWriter
			// TLS hands the relay at most a 16 KiB record per read, so it writes as often as it would.
			s := newRelaySession(b, relayIO{fromBackend: &chunkReader{r: bytes.NewReader(stream), max: 16 << 10}, toClient: &out})
			m, err := inspect.NewMasker(key)
			if err != nil {
				b.Fatal(err)
			}
			s.insp.masker = m
			s.queue.items = []*item{{kind: itQuery, plan: p}}
			if err := s.backendToClient(); err == nil {
				b.Fatal("no end of stream")
			}
			if out.n < int64(len(stream))/2 {
				b.Fatalf("relayed %d of %d bytes", out.n, len(stream))
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchRows), "ns/row")
	}
	b.Run("copy", func(b *testing.B) {
		buf := make([]byte, 16<<10)
		for b.Loop() {
			var out countingWriter
			if _, err := io.CopyBuffer(&out, &chunkReader{r: bytes.NewReader(stream), max: 16 << 10}, buf); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchRows), "ns/row")
	})
	b.Run("unmasked", func(b *testing.B) {
		run(b, &plan{meta: &dbMeta{}, cols: map[colKey]inspect.Strategy{}, tables: map[uint32]inspect.Strategy{}})
	})
	b.Run("masked", func(b *testing.B) { run(b, masked) })
}

// chunkReader returns at most max bytes per Read.
type chunkReader struct {
	r   io.Reader
	max int
}

func (c *chunkReader) Read(p []byte) (int, error) { return c.r.Read(p[:min(len(p), c.max)]) }

type countingWriter struct{ n int64 }

func (w *countingWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

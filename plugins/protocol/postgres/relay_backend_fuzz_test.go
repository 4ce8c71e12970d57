package postgres

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/svidbroker/svidbroker/broker/inspect"
	"github.com/svidbroker/svidbroker/plugins/protocol/postgres/sqlclass"
)

// The catalog of the backend tests: public.customers (OID 16384) has its column 3, email, masked; the
// view 16390 is over it; relations above OID 20000 were created after the session began.
const (
	customersOID = 16384
	emailAttnum  = 3
	customersVw  = 16390
	metaMaxOID   = 20000
	secretValue  = "SECRET@example.com"
)

// maskingPlan is the plan of a statement that reads public.customers with email redacted, built as
// buildPlan builds one.
func maskingPlan(tb testing.TB) *plan {
	tb.Helper()
	meta := &dbMeta{
		tables:  map[uint32]metaTable{customersOID: {name: "public.customers", columns: map[int16]string{emailAttnum: "email"}}},
		views:   map[uint32][]uint32{customersVw: {customersOID}},
		maxOID:  metaMaxOID,
		catalog: map[string]bool{"public.customers": true},
	}
	p := &plan{meta: meta, cols: map[colKey]inspect.Strategy{}, tables: map[uint32]inspect.Strategy{}}
	p.addColumn(customersOID, emailAttnum, "email", inspect.Redact)
	// Both statements compute over email, so that a computed column (table OID 0) is masked in the
	// result of either, and of any further statement (derived).
	sts, err := sqlclass.Classify("SELECT lower(email) FROM customers; SELECT id, upper(email) FROM customers")
	if err != nil {
		tb.Fatal(err)
	}
	p.finish(sts)
	if !p.active() || p.derived != inspect.Redact || !slices.Equal(p.derivedAt, []inspect.Strategy{inspect.Redact, inspect.Redact}) ||
		!p.scrub || p.tables[customersVw] != inspect.Redact {
		tb.Fatalf("plan not as the tests assume: %+v", p)
	}
	return p
}

// secretColumn reports whether a result column described by f holds a masked value under
// maskingPlan: the email column, a whole row of customers, any column of the view over it, a column
// of a relation newer than the session, or a computed column (the statements mention email).
func secretColumn(f pgproto3.FieldDescription) bool {
	attnum := int16(f.TableAttributeNumber)
	switch {
	case f.TableOID == 0:
		return true
	case f.TableOID == customersOID:
		return attnum == emailAttnum || attnum <= 0
	case f.TableOID == customersVw:
		return true
	default:
		return f.TableOID > metaMaxOID
	}
}

// modelItem is an expected answer as the test's model of a conforming backend sees it.
type modelItem struct {
	kind     itemKind
	masked   bool                        // its plan is maskingPlan
	exec     *modelItem                  // itInjected: the execution it describes
	fields   []pgproto3.FieldDescription // itQuery: the current result's; itExecute: the portal's
	inResult bool                        // itQuery: between RowDescription and the result's end
	failed   bool                        // itQuery, itCall, itSync: an error came; ReadyForQuery is next
	params   bool                        // itDescribeStmt: ParameterDescription came
}

// backendQueue returns the queue FuzzBackendMessages starts with, and its model: a masked simple Query,
// a masked extended-protocol execution (Parse, Bind, the broker's Describe, Execute, Sync), Describes
// and a Close, a function call, a denied statement, and two more simple Queries.
func backendQueue(p *plan) ([]*item, []*modelItem) {
	exec := &item{kind: itExecute, plan: p}
	items := []*item{
		{kind: itQuery, plan: p},
		{kind: itParse}, {kind: itBind}, {kind: itInjected, exec: exec}, exec, {kind: itSync},
		{kind: itDescribeStmt}, {kind: itDescribePortal}, {kind: itClose}, {kind: itSync},
		{kind: itCall},
		{kind: itDenied, denial: errStatementDenied("svidbroker: statement denied")}, {kind: itSync},
		{kind: itQuery}, {kind: itQuery, plan: p},
	}
	model := make([]*modelItem, len(items))
	byItem := map[*item]*modelItem{}
	for i, it := range items {
		model[i] = &modelItem{kind: it.kind, masked: it.plan != nil}
		byItem[it] = model[i]
	}
	for i, it := range items {
		if it.exec != nil {
			model[i].exec = byItem[it.exec]
		}
	}
	return items, model
}

// backendSeeds are backend streams answering backendQueue.
func backendSeeds(tb testing.TB) [][]byte {
	enc := func(msgs ...pgproto3.Message) []byte { return encodeMessages(tb, msgs...) }
	field := func(name string, table uint32, attnum uint16, typ uint32) pgproto3.FieldDescription {
		return pgproto3.FieldDescription{Name: []byte(name), TableOID: table, TableAttributeNumber: attnum,
			DataTypeOID: typ, DataTypeSize: -1, TypeModifier: -1}
	}
	rd := &pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{
		field("id", customersOID, 1, 23), field("email", customersOID, emailAttnum, 25)}}
	row := &pgproto3.DataRow{Values: [][]byte{[]byte("1"), []byte(secretValue)}}
	nullRow := &pgproto3.DataRow{Values: [][]byte{[]byte("2"), nil}}
	cc := &pgproto3.CommandComplete{CommandTag: []byte("SELECT 2")}
	rfqI := &pgproto3.ReadyForQuery{TxStatus: 'I'}
	simple := []pgproto3.Message{rd, row, nullRow, cc, rfqI}
	extended := []pgproto3.Message{&pgproto3.ParseComplete{}, &pgproto3.BindComplete{}, rd, row, row,
		&pgproto3.PortalSuspended{}, rfqI}
	rest := []pgproto3.Message{
		&pgproto3.ParameterDescription{ParameterOIDs: []uint32{23}}, &pgproto3.NoData{}, rd, &pgproto3.CloseComplete{}, rfqI,
		&pgproto3.FunctionCallResponse{Result: []byte(secretValue)}, rfqI,
		&pgproto3.ErrorResponse{Severity: "ERROR", Code: "34000", Message: `portal "svidbroker: statement denied" does not exist`}, rfqI,
		&pgproto3.EmptyQueryResponse{}, rfqI,
	}
	all := append(append(append([]pgproto3.Message{}, simple...), extended...), rest...)
	leakyErr := &pgproto3.ErrorResponse{Severity: "ERROR", Code: "23505", Message: "duplicate key",
		Detail: "Key (email)=(" + secretValue + ") already exists."}
	noCode := &pgproto3.ErrorResponse{Severity: "ERROR", Message: "no SQLSTATE: " + secretValue}
	notice := &pgproto3.NoticeResponse{Severity: "NOTICE", Code: "00000", Message: "value " + secretValue}
	derived := &pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{field("lower", 0, 0, 25),
		field("c", customersVw, 7, 1043), field("n", 30000, 1, 25), field("r", customersOID, 0, 2249)}}
	wide := &pgproto3.DataRow{Values: [][]byte{[]byte(secretValue), []byte(secretValue), []byte(secretValue), []byte("(1,x," + secretValue + ")")}}
	twoStatements := []pgproto3.Message{rd, row, cc, derived, wide, &pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}, rfqI}
	copyOut := []pgproto3.Message{&pgproto3.CopyOutResponse{ColumnFormatCodes: []uint16{0}}, &pgproto3.CopyData{Data: []byte("x\n")},
		&pgproto3.CopyDone{}, &pgproto3.CommandComplete{CommandTag: []byte("COPY 1")}, rfqI}
	negValue := append(enc(rd), 'D', 0, 0, 0, 12, 0, 1, 0xff, 0xff, 0xff, 0xfe, 'x', 'y')
	return [][]byte{
		enc(simple...),
		enc(all...),
		enc(twoStatements...),
		enc(rd, row, leakyErr, rfqI),
		enc(rd, notice, row, noCode, rfqI),
		enc(rd, row, &pgproto3.ParameterStatus{Name: "TimeZone", Value: "UTC"}, &pgproto3.NotificationResponse{PID: 1, Channel: "c", Payload: "p"}, row, cc, rfqI),
		enc(append(copyOut, extended...)...),
		enc(rd, row, cc, rfqI, &pgproto3.ParseComplete{}, &pgproto3.ErrorResponse{}, rfqI),
		enc(rd, row, cc, rfqI, &pgproto3.ParseComplete{}, &pgproto3.BindComplete{}, &pgproto3.NoData{},
			&pgproto3.CommandComplete{CommandTag: []byte("INSERT 0 1")}, rfqI),
		enc(rd, row, cc, rfqI, &pgproto3.ParseComplete{}, &pgproto3.BindComplete{}, derived, wide, wide, cc, rfqI),
		negValue,
		append(enc(rd, row), 'D', 0xff, 0xff, 0xff, 0xff),
		append(enc(rd, row), 'C', 0, 0, 0, 3),
		append(enc(rd), 'D', 0x7f, 0xff, 0xff, 0xff, 0, 1),
		append(enc(rd), 'E', 0, 0, 0, 4),
		append(enc(rd), 'E', 0, 0, 0, 5, 0),
		append(enc(rd), 'D', 0, 0, 0, 7, 0, 1, 0),
	}
}

// FuzzBackendMessages feeds a stream of backend messages to the backend side of a session whose queue
// expects the answers of backendQueue, and checks what the client gets:
//   - it decodes completely;
//   - as far as the stream is one a conforming backend could send for that queue (see expectations),
//     every value of a masked column of a masked statement's result reaches the client masked, and
//     every error and notice of a masked statement reaches it scrubbed. In particular, when the stream
//     starts with the RowDescription of customers.email, no DataRow of that result shows the email.
func FuzzBackendMessages(f *testing.F) {
	for _, seed := range backendSeeds(f) {
		f.Add(seed)
	}
	p := maskingPlan(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		items, model := backendQueue(p)
		var toClient bytes.Buffer
		s := newRelaySession(t, relayIO{fromBackend: bytes.NewReader(data), toClient: &toClient})
		s.queue.items = items
		if err := s.backendToClient(); err == nil {
			t.Fatal("backendToClient returned nil at the end of the backend's stream")
		}
		in := decodeBackendStream(data, relayTestMaxBody)
		out := decodeBackendStream(toClient.Bytes(), 0)
		if out.err != nil && out.consumed < toClient.Len() {
			t.Fatalf("the client got %d bytes, of which only %d decode: %v", toClient.Len(), out.consumed, out.err)
		}
		if err := checkMasked(expectations(in.msgs, model), out.msgs); err != nil {
			t.Fatal(err)
		}
	})
}

// backendStream is a decoded stream of backend messages, each its own copy.
type backendStream struct {
	msgs     []pgproto3.BackendMessage
	consumed int   // bytes of whole messages decoded
	err      error // why decoding stopped early, if it did
}

// decodeBackendStream decodes messages as the relay does, stopping at the first error.
func decodeBackendStream(b []byte, maxBody int) backendStream {
	var st backendStream
	raws, rest := splitMessages(b)
	for _, raw := range raws {
		fe := pgproto3.NewFrontend(bytes.NewReader(raw), io.Discard)
		fe.SetMaxBodyLen(maxBody)
		msg, err := fe.Receive()
		if err != nil {
			st.err = err
			return st
		}
		st.msgs = append(st.msgs, msg) // a fresh Frontend per message: nothing is reused
		st.consumed += len(raw)
	}
	if len(rest) > 0 {
		st.err = fmt.Errorf("%d bytes of a partial message", len(rest))
	}
	return st
}

// expectation is what the client must get for the input's messages.
type expectation struct {
	// rows maps the index of a DataRow among the stream's DataRows to its columns that must be masked.
	rows map[int][]bool
	// scrubbed holds the indexes of ErrorResponses and NoticeResponses (counted together) that must be
	// scrubbed.
	scrubbed map[int]bool
	// conforming is how many messages of the input a conforming backend could have sent.
	conforming int
}

// expectations runs the input through a model of the answers a conforming backend gives to the
// queued items, independent of session.answer, and records which rows must be masked and which
// errors scrubbed. It stops at the first message a conforming backend would not send there.
func expectations(in []pgproto3.BackendMessage, q []*modelItem) expectation {
	exp := expectation{rows: map[int][]bool{}, scrubbed: map[int]bool{}}
	rowIdx, errIdx := 0, 0
	secret := func(fields []pgproto3.FieldDescription) []bool {
		out := make([]bool, len(fields))
		for i, f := range fields {
			out[i] = secretColumn(f)
		}
		return out
	}
	maskedContext := func(h *modelItem) bool {
		return h != nil && h.masked && (h.kind == itQuery || h.kind == itExecute)
	}
	skipToSync := func() {
		for len(q) > 0 && q[0].kind != itSync {
			q = q[1:]
		}
	}
	for k, msg := range in {
		var h *modelItem
		if len(q) > 0 {
			h = q[0]
		}
		switch msg.(type) {
		case *pgproto3.ParameterStatus, *pgproto3.NotificationResponse:
			exp.conforming = k + 1
			continue
		case *pgproto3.NoticeResponse:
			if maskedContext(h) {
				exp.scrubbed[errIdx] = true
			}
			errIdx++
			exp.conforming = k + 1
			continue
		}
		if h == nil {
			return exp
		}
		ok := true
		switch m := msg.(type) {
		case *pgproto3.ErrorResponse:
			if maskedContext(h) && !h.failed && quotesData(m) {
				exp.scrubbed[errIdx] = true
			}
			errIdx++
			switch {
			case h.failed:
				ok = false
			case h.kind == itQuery || h.kind == itCall || h.kind == itSync:
				h.failed = true
			default:
				skipToSync()
			}
		case *pgproto3.ReadyForQuery:
			switch {
			case h.kind == itQuery && (!h.inResult || h.failed), h.kind == itCall, h.kind == itSync:
				q = q[1:]
			default:
				ok = false
			}
		case *pgproto3.DataRow:
			switch {
			case h.failed:
				ok = false
			case h.kind == itQuery && h.inResult:
				if h.masked {
					exp.rows[rowIdx] = secret(h.fields)
				}
			case h.kind == itExecute && h.fields != nil:
				if h.masked {
					exp.rows[rowIdx] = secret(h.fields)
				}
			case h.kind == itExecute && !h.masked:
			default:
				ok = false
			}
			rowIdx++
		case *pgproto3.RowDescription:
			switch {
			case h.failed:
				ok = false
			case h.kind == itQuery && !h.inResult:
				h.fields, h.inResult = m.Fields, true
			case h.kind == itInjected:
				h.exec.fields = m.Fields
				q = q[1:]
			case h.kind == itDescribeStmt || h.kind == itDescribePortal:
				q = q[1:]
			default:
				ok = false
			}
		case *pgproto3.CommandComplete, *pgproto3.EmptyQueryResponse:
			switch {
			case h.failed:
				ok = false
			case h.kind == itQuery:
				h.fields, h.inResult = nil, false
			case h.kind == itExecute:
				q = q[1:]
			default:
				ok = false
			}
		case *pgproto3.PortalSuspended:
			if h.kind != itExecute {
				ok = false
			}
			q = q[1:]
		case *pgproto3.NoData:
			switch h.kind {
			case itInjected, itDescribeStmt, itDescribePortal:
				q = q[1:]
			default:
				ok = false
			}
		case *pgproto3.ParameterDescription:
			ok = h.kind == itDescribeStmt && !h.params
			h.params = true
		case *pgproto3.ParseComplete:
			ok = h.kind == itParse
			q = q[1:]
		case *pgproto3.BindComplete:
			ok = h.kind == itBind
			q = q[1:]
		case *pgproto3.CloseComplete:
			ok = h.kind == itClose
			q = q[1:]
		case *pgproto3.FunctionCallResponse:
			ok = h.kind == itCall && !h.failed
		case *pgproto3.CopyOutResponse, *pgproto3.CopyInResponse, *pgproto3.CopyData, *pgproto3.CopyDone:
			// COPY, in a simple Query or an Execute; its data is not masked (copyOutDenied refuses what
			// would need it).
			ok = (h.kind == itQuery || h.kind == itExecute) && !h.failed
		default:
			ok = false
		}
		if !ok {
			return exp
		}
		exp.conforming = k + 1
	}
	return exp
}

// checkMasked checks the client's messages against exp.
func checkMasked(exp expectation, out []pgproto3.BackendMessage) error {
	rowIdx, errIdx := 0, 0
	for _, msg := range out {
		switch m := msg.(type) {
		case *pgproto3.DataRow:
			for col, masked := range exp.rows[rowIdx] {
				if !masked || col >= len(m.Values) || m.Values[col] == nil {
					continue
				}
				if v := string(m.Values[col]); v != "***" {
					return fmt.Errorf("DataRow %d, column %d reached the client as %q, not masked", rowIdx, col, v)
				}
			}
			rowIdx++
		case *pgproto3.ErrorResponse:
			if err := checkScrubbed(exp.scrubbed[errIdx], "ErrorResponse", errIdx, *m); err != nil {
				return err
			}
			errIdx++
		case *pgproto3.NoticeResponse:
			if err := checkScrubbed(exp.scrubbed[errIdx], "NoticeResponse", errIdx, pgproto3.ErrorResponse(*m)); err != nil {
				return err
			}
			errIdx++
		}
	}
	return nil
}

func checkScrubbed(want bool, what string, i int, e pgproto3.ErrorResponse) error {
	if !want {
		return nil
	}
	text := strings.Join([]string{e.Message, e.Detail, e.Hint, e.Where, e.SchemaName, e.TableName, e.ColumnName,
		e.DataTypeName, e.ConstraintName, e.InternalQuery, e.File, e.Routine}, "\x00")
	for _, v := range e.UnknownFields {
		text += "\x00" + v
	}
	// scrub keeps the SQLSTATE, and quotes it in its message.
	text = strings.ReplaceAll(text, "(SQLSTATE "+e.Code+")", "")
	if strings.Contains(text, "SECRET") || e.Detail != "" || e.Hint != "" || e.Where != "" {
		return fmt.Errorf("%s %d of a masked statement reached the client unscrubbed: %+v", what, i, e)
	}
	return nil
}

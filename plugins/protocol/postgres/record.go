package postgres

import (
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/svidbroker/svidbroker/broker/audit"
	sess "github.com/svidbroker/svidbroker/broker/session"
)

// errAudit ends a session whose statement could not be recorded.
var errAudit = fmt.Errorf("postgres: %w", sess.ErrAuditUnavailable)

// recorder stamps a session's records and writes them to the audit sink, if there is one.
type recorder struct {
	sink      audit.Sink
	session   string
	spiffeID  string
	target    string
	noResults bool
	fullData  bool // record the rows too (audit data = "full")
	// perStatement makes every statement wait until its record is on stable storage (audit
	// durability = "statement"); otherwise only commit points wait for that (see commitPoints).
	perStatement bool
	// failOpen, when set, is told of a failed record instead of the statement being refused (audit
	// on_failure = "continue").
	failOpen func(error)
}

// Caps on the rows recorded per statement.
const (
	maxRecordedRows  = 100
	maxRecordedBytes = 16 << 10
)

// on reports whether there is an audit sink to record to.
func (r recorder) on() bool { return r.sink != nil }

func (r recorder) stamp(rec audit.Record) audit.Record {
	rec.Time, rec.Session, rec.SPIFFEID, rec.Target = time.Now().UTC(), r.session, r.spiffeID, r.target
	return rec
}

// durable records rec and returns once it, and every record before it, is on stable storage.
func (r recorder) durable(rec audit.Record) error {
	if !r.on() {
		return nil
	}
	if err := r.sink.Write(r.stamp(rec), true); err != nil {
		return r.failed(err)
	}
	return r.failed(r.sink.Flush())
}

// written records rec and returns once the store holds it. urgent starts its flush at once: a commit
// point will wait for it.
func (r recorder) written(rec audit.Record, urgent bool) error {
	if !r.on() {
		return nil
	}
	return r.failed(r.sink.Write(r.stamp(rec), urgent))
}

// sessionStart records a session's start as its statements are recorded: written to the store, or,
// in durability "statement", on stable storage.
func (r recorder) sessionStart(rec audit.Record) error {
	if r.perStatement {
		return r.durable(rec)
	}
	return r.written(rec, false)
}

// flush returns once every record written is on stable storage.
func (r recorder) flush() error {
	if !r.on() {
		return nil
	}
	return r.failed(r.sink.Flush())
}

// failed turns a failed record into errAudit, which refuses the statement and ends the session, or,
// with on_failure = "continue", says so and lets it run.
func (r recorder) failed(err error) error {
	if err == nil {
		return nil
	}
	if r.failOpen != nil {
		r.failOpen(err) // the operator chose to keep serving: said, not refused
		return nil
	}
	return fmt.Errorf("%w: %v", errAudit, err)
}

// async records rec without waiting; a failure fails the sink for the next durable record.
func (r recorder) async(rec audit.Record) {
	if r.on() {
		r.sink.AppendAsync(r.stamp(rec))
	}
}

// summarize counts result rows and bytes and records a summary per completed statement. Row data is
// not recorded; backend error messages are not either, since they can quote row values: only the
// SQLSTATE.
// It sees messages after masking: recorded rows are what the client saw. h is the item msg answers.
func (s *session) summarize(h *item, msg pgproto3.BackendMessage) {
	if !s.rec.on() {
		return
	}
	full := h != nil && h.recordFull
	switch m := msg.(type) {
	case *pgproto3.RowDescription:
		s.columns, s.formats = s.columns[:0], s.formats[:0]
		for _, f := range m.Fields {
			s.columns = append(s.columns, string(f.Name))
			s.formats = append(s.formats, f.Format)
		}
	case *pgproto3.DataRow:
		var n int64
		for _, v := range m.Values {
			n += int64(len(v))
		}
		if s.countRow(n, full) {
			s.recordRow(m)
		}
	case *pgproto3.CommandComplete:
		if s.rec.noResults {
			break
		}
		res := &audit.Result{Tag: string(m.CommandTag), Rows: s.rows, Bytes: s.bytes, Data: s.data, Truncated: s.truncated}
		if len(s.data) > 0 {
			res.Columns = append([]string(nil), s.columns...)
		}
		s.rec.async(audit.Record{Kind: audit.KindResult, Result: res})
		s.rows, s.bytes, s.data, s.dataBytes, s.truncated = 0, 0, nil, 0, false
	case *pgproto3.ErrorResponse:
		if h != nil && h.kind == itDenied {
			// The backend's failure on deniedPortal, which the broker caused: the refusal is recorded
			// already, and this error is not the session's.
			break
		}
		s.rec.async(audit.Record{Kind: audit.KindError, Error: "SQLSTATE " + sqlstate(m.Code) + " (" + m.Severity + ")"})
		s.data, s.dataBytes, s.truncated = nil, 0, false
	}
}

// summarizeRow is summarize for a result row relayed undecoded: body is its DataRow body as the client
// gets it (masked), n the bytes of its values.
func (s *session) summarizeRow(body []byte, n int64, full bool) {
	if !s.rec.on() || !s.countRow(n, full) {
		return
	}
	var row pgproto3.DataRow
	if row.Decode(body) == nil { // appendRow wrote it: it decodes
		s.recordRow(&row)
	}
}

// countRow adds a result row of n value bytes to the statement's summary, and reports whether the
// row itself is to be recorded.
func (s *session) countRow(n int64, full bool) bool {
	s.rows++
	s.bytes += n
	return (full || s.rec.fullData) && !s.rec.noResults
}

// recordRow keeps a copy of a (masked) row for the statement's result record, within the caps.
func (s *session) recordRow(m *pgproto3.DataRow) {
	if len(s.data) >= maxRecordedRows || s.dataBytes >= maxRecordedBytes {
		s.truncated = true
		return
	}
	row := make([]*string, len(m.Values))
	for i, v := range m.Values {
		if v == nil {
			continue
		}
		text := string(v)
		if i < len(s.formats) && s.formats[i] != 0 {
			text = "<" + strconv.Itoa(len(v)) + " bytes>"
		}
		s.dataBytes += len(text)
		row[i] = &text
	}
	s.data = append(s.data, row)
}

// sqlstate shows a missing SQLSTATE as such.
func sqlstate(code string) string {
	if code == "" {
		return "none"
	}
	return code
}

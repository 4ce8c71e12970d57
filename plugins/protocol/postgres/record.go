package postgres

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/svidbroker/svidbroker/broker/audit"
)

// errAudit ends a session whose statement could not be recorded.
var errAudit = errors.New("postgres: audit log unavailable")

// recorder stamps a session's records and writes them to the audit sink, if there is one.
type recorder struct {
	sink      audit.Sink
	session   string
	spiffeID  string
	target    string
	noResults bool
}

func (r recorder) stamp(rec audit.Record) audit.Record {
	rec.Time, rec.Session, rec.SPIFFEID, rec.Target = time.Now().UTC(), r.session, r.spiffeID, r.target
	return rec
}

// durable records rec and returns once it is on disk.
func (r recorder) durable(rec audit.Record) error {
	if r.sink == nil {
		return nil
	}
	if err := r.sink.Append(r.stamp(rec)); err != nil {
		return fmt.Errorf("%w: %v", errAudit, err)
	}
	return nil
}

// async records rec without waiting; a failure fails the sink for the next durable record.
func (r recorder) async(rec audit.Record) {
	if r.sink != nil {
		r.sink.AppendAsync(r.stamp(rec))
	}
}

// recordStatement records, durably, every client message that makes the backend run something.
func (s *session) recordStatement(msg pgproto3.FrontendMessage) error {
	var st *audit.Statement
	switch m := msg.(type) {
	case *pgproto3.Query:
		st = &audit.Statement{Protocol: "simple", Text: m.String}
	case *pgproto3.Parse:
		st = &audit.Statement{Protocol: "extended", Text: m.Query, Name: m.Name}
	case *pgproto3.FunctionCall:
		st = &audit.Statement{Protocol: "function-call", Text: "function OID " + strconv.FormatUint(uint64(m.Function), 10)}
	default:
		return nil
	}
	s.rows, s.bytes = 0, 0
	return s.rec.durable(audit.Record{Kind: audit.KindStatement, Statement: st})
}

// summarize counts result rows and bytes and records a summary per completed statement. Row data is
// not recorded; backend error messages are not either, since they can quote row values: only the
// SQLSTATE.
func (s *session) summarize(msg pgproto3.BackendMessage) {
	switch m := msg.(type) {
	case *pgproto3.DataRow:
		s.rows++
		for _, v := range m.Values {
			s.bytes += int64(len(v))
		}
	case *pgproto3.CommandComplete:
		if s.rec.noResults {
			break
		}
		s.rec.async(audit.Record{Kind: audit.KindResult, Result: &audit.Result{Tag: string(m.CommandTag), Rows: s.rows, Bytes: s.bytes}})
		s.rows, s.bytes = 0, 0
	case *pgproto3.ErrorResponse:
		s.rec.async(audit.Record{Kind: audit.KindError, Error: "SQLSTATE " + m.Code + " (" + m.Severity + ")"})
	}
}

package session

import (
	"fmt"
	"time"

	"github.com/svidbroker/svidbroker/broker/audit"
)

// recorder stamps a session's records and writes them to the audit sink, if there is one.
type recorder struct {
	sink         audit.Sink
	session      string
	spiffeID     string
	target       string
	perStatement bool
	failOpen     func(error)
}

func (r recorder) stamp(rec audit.Record) audit.Record {
	rec.Time, rec.Session, rec.SPIFFEID, rec.Target = time.Now().UTC(), r.session, r.spiffeID, r.target
	return rec
}

// sessionStart records a session's start: written to the store, or, with per-statement
// durability, on stable storage.
func (r recorder) sessionStart(rec audit.Record) error {
	if r.sink == nil {
		return nil
	}
	err := r.sink.Write(r.stamp(rec), r.perStatement)
	if err == nil && r.perStatement {
		err = r.sink.Flush()
	}
	if err != nil && r.failOpen != nil {
		r.failOpen(err) // the operator chose to keep serving: said, not refused
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: %v", ErrAuditUnavailable, err)
	}
	return nil
}

// async records rec without waiting; a failure fails the sink for the next durable record.
func (r recorder) async(rec audit.Record) {
	if r.sink != nil {
		r.sink.AppendAsync(r.stamp(rec))
	}
}

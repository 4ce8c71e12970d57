package postgres

import (
	"sync/atomic"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/plugins/protocol/postgres/sqlclass"
)

// commitPoints keeps audit durability "commit": every statement reaches the backend once its record is
// written to the audit store, and nothing commits before the records of what it commits are on stable
// storage.
// The broker finds each point at which the backend may commit and holds the message there until the
// records are flushed:
//   - a statement that commits (COMMIT, END, PREPARE TRANSACTION, COMMIT PREPARED) or may commit by
//     itself (VACUUM, CREATE INDEX CONCURRENTLY, CALL, DO, any admin statement), in either protocol;
//   - outside a transaction block, a simple Query that may change anything, or that ends an implicit
//     transaction in which extended-protocol statements may have changed something;
//   - outside a transaction block, the Sync that ends an implicit transaction of the extended protocol
//     in which something may have changed.
//
// Inside a transaction block, statements go through at once; their records' flush starts as they are
// written, so that it runs alongside the rest of the transaction rather than starting at COMMIT.
//
// "Inside a block" must be certain, since a statement outside one commits by itself. The backend says
// where it is in each ReadyForQuery, which answers the cycle (Query, Sync or FunctionCall) before it;
// cycles sent since then keep that state, unless one holds a statement that may open or close a block.
// So the broker is certain only when the latest ReadyForQuery said "in a block" ('T', or 'E' for a
// failed one) and no cycle since, the current one included, has such a statement. When it is not
// certain, it takes the statement to be outside a block, which costs a flush and never a record.
//
// The client side owns every field but rfq, which the backend side sets.
type commitPoints struct {
	cycles    uint64 // the cycles sent to the backend so far
	txChanged uint64 // the latest cycle with a statement that may open or close a block
	// dirty says that the record of a statement that may change something was written and no flush
	// this session waited for has covered it since.
	dirty bool
	// rfq is the latest ReadyForQuery: its cycle << 8 | its transaction status.
	rfq atomic.Uint64
}

// nextCycle numbers a message that ends a cycle (Query, Sync, FunctionCall): the backend answers it
// with one ReadyForQuery.
func (s *session) nextCycle() uint64 {
	s.commits.cycles++
	return s.commits.cycles
}

// readyForQuery notes where the backend is after the cycle h ended (backend side).
func (s *session) readyForQuery(h *item, m *pgproto3.ReadyForQuery) {
	s.commits.rfq.Store(h.cycle<<8 | uint64(m.TxStatus))
	s.idle.readyForQuery(m.TxStatus)
}

// inBlock reports whether the statement about to be sent certainly runs inside a transaction block.
func (s *session) inBlock() bool {
	v := s.commits.rfq.Load()
	status := byte(v)
	return (status == 'T' || status == 'E') && v>>8 >= s.commits.txChanged
}

// recordStatement records a statement that is about to be sent to the backend, and returns once the
// records it needs are where audit durability says: its own written to the store, and, at a commit
// point, every record before it on stable storage, and its own too when it changes something itself
// (a change outside a block, VACUUM). A COMMIT changes nothing itself: it waits for the flush of the
// transaction's records, most often begun as they were written, and its own record is written after
// that flush and made durable within the flush interval. simple says it is a Query, which commits at
// its end outside a block; an Execute commits only by what it runs, and its Sync commits the rest.
func (s *session) recordStatement(rec audit.Record, sts []sqlclass.Statement, simple bool) error {
	if !s.rec.on() {
		return nil
	}
	effect := sqlclass.Strongest(sts)
	writes := effect == sqlclass.EffectNone && s.callsWritingFunction(sts) // a database function that may write
	if writes {
		effect = sqlclass.EffectChange
	}
	// Changes written before this statement were in a block if it was one when the statement began:
	// then only a commit (EffectCommit) can commit them, and a ROLLBACK in sts discards them.
	wasInBlock := s.inBlock()
	changes := false // a statement of sts changes something itself
	for _, st := range sts {
		if st.TxControl {
			s.commits.txChanged = s.commits.cycles + 1 // this cycle's
		}
		changes = changes || st.Effect == sqlclass.EffectChange || st.Effect == sqlclass.EffectCommit && !st.TxControl
	}
	changes = changes || writes
	commits := effect == sqlclass.EffectCommit ||
		simple && (effect == sqlclass.EffectChange && !s.inBlock() || s.commits.dirty && !wasInBlock)
	switch {
	case s.rec.perStatement:
		return s.rec.durable(rec) // every record durable before its statement: nothing is ever dirty
	case !commits:
		if err := s.rec.written(rec, changes); err != nil {
			return err
		}
		s.commits.dirty = s.commits.dirty || changes
		return nil
	case changes:
		if err := s.rec.durable(rec); err != nil {
			return err
		}
	default:
		if err := s.rec.flush(); err != nil {
			return err
		}
		if err := s.rec.written(rec, false); err != nil {
			return err
		}
	}
	s.commits.dirty = false
	return nil
}

// beforeSync holds a Sync that commits an implicit transaction in which something may have changed
// until every record is on stable storage.
func (s *session) beforeSync() error {
	if !s.commits.dirty || s.inBlock() {
		return nil
	}
	if err := s.rec.flush(); err != nil {
		return err
	}
	s.commits.dirty = false
	return nil
}

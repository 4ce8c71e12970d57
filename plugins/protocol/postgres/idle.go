package postgres

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// errIdleInTransaction ends a session left idle in a transaction past its target's limit.
var errIdleInTransaction = errors.New("postgres: idle in a transaction")

// idleWatch ends a session that sits in a transaction while the client sends nothing, for longer than
// the target's limit: an open transaction holds its locks and its snapshot, and an agent that opened
// one and went quiet would hold back every session that waits on them. It is the broker's own limit,
// whatever the session set idle_in_transaction_session_timeout to.
//
// The session is idle in a transaction when
//   - the latest ReadyForQuery said the backend is in a transaction block ('T', or 'E' for a failed
//     one), or the client has sent extended-protocol messages since it (an implicit transaction, which
//     holds locks until Sync);
//   - the backend owes no answer to anything it was sent: it waits on the client; and
//   - the client side is not handling a message (a statement held for a person's approval is not idle).
//
// A timer with that deadline is armed when the session becomes idle and stopped when it stops being
// so: no polling. Both relay directions report their events; a fire re-checks under the lock.
type idleWatch struct {
	limit time.Duration // set by start, before either relay direction runs, and not changed since
	q     *queue
	end   func() // ends the session; runs on the timer's goroutine

	mu       sync.Mutex
	timer    *time.Timer
	status   byte   // the latest ReadyForQuery's transaction status
	sent     bool   // messages were flushed to the backend since that ReadyForQuery
	handling bool   // the client side is handling a message
	flushed  uint64 // the queue's pushed count at the latest flush
	armed    bool
	since    time.Time // when the session became idle, while armed
	stopped  bool
}

// start makes w watch the session's queue; limit 0 leaves it off. It must be called before the
// relay directions start.
func (w *idleWatch) start(limit time.Duration, q *queue, end func()) {
	w.limit, w.q, w.end, w.status = limit, q, end, 'I'
}

// stop disarms w for good.
func (w *idleWatch) stop() {
	if w.limit == 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
	w.disarm()
}

// clientMessage: the client side received a message and is handling it.
func (w *idleWatch) clientMessage() {
	if w.limit == 0 {
		return
	}
	w.mu.Lock()
	w.handling = true
	w.disarm()
	w.mu.Unlock()
}

// clientWaiting: the client side waits for the client's next message.
func (w *idleWatch) clientWaiting() {
	if w.limit == 0 {
		return
	}
	w.mu.Lock()
	w.handling = false
	w.settle()
	w.mu.Unlock()
}

// flushedAll: everything queued so far was written to the backend (client side).
func (w *idleWatch) flushedAll() {
	if w.limit == 0 {
		return
	}
	w.mu.Lock()
	_, pushed := w.q.counts()
	if pushed > w.flushed {
		w.sent = true
	}
	w.flushed = pushed
	w.settle()
	w.mu.Unlock()
}

// readyForQuery: the backend ended a cycle in transaction status status (backend side).
func (w *idleWatch) readyForQuery(status byte) {
	if w.limit == 0 {
		return
	}
	w.mu.Lock()
	w.status, w.sent = status, false
	w.settle()
	w.mu.Unlock()
}

// answered: the backend side relayed an answer other than a row.
func (w *idleWatch) answered() {
	if w.limit == 0 {
		return
	}
	w.mu.Lock()
	w.settle()
	w.mu.Unlock()
}

// idle reports whether the session is idle in a transaction; w.mu must be held.
func (w *idleWatch) idle() bool {
	if w.stopped || w.handling || !(w.status == 'T' || w.status == 'E' || w.sent) {
		return false
	}
	n, pushed := w.q.counts()
	unflushed := pushed - w.flushed
	return uint64(n) <= unflushed // every answer owed is to something not yet sent
}

// settle arms the timer when the session is idle and stops it when not; w.mu must be held.
func (w *idleWatch) settle() {
	switch idle := w.idle(); {
	case idle && !w.armed:
		w.armed, w.since = true, time.Now()
		if w.timer == nil {
			w.timer = time.AfterFunc(w.limit, w.fire)
		} else {
			w.timer.Reset(w.limit)
		}
	case !idle && w.armed:
		w.disarm()
	}
}

func (w *idleWatch) disarm() {
	if w.armed {
		w.armed = false
		w.timer.Stop()
	}
}

// fire ends the session if it is still idle and has been for the whole limit; a fire left over from
// an earlier deadline re-arms for what remains.
func (w *idleWatch) fire() {
	w.mu.Lock()
	if !w.armed || !w.idle() {
		w.mu.Unlock()
		return
	}
	if left := w.limit - time.Since(w.since); left > 0 {
		w.timer.Reset(left)
		w.mu.Unlock()
		return
	}
	w.armed = false
	w.mu.Unlock()
	w.end()
}

// counts returns the answers owed and the items ever pushed.
func (q *queue) counts() (int, uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items), q.pushed
}

// endIdle ends a session idle in a transaction past its limit, telling the client why as PostgreSQL
// does (25P03, idle_in_transaction_session_timeout).
func (s *session) endIdle(limit time.Duration) {
	s.log.Warn("ending a session idle in a transaction", "limit", limit)
	s.endFromBroker(fmt.Errorf("%w for longer than %s, this target's limit", errIdleInTransaction, limit), "25P03",
		fmt.Sprintf("svidbroker: terminating connection because it was idle in a transaction for longer than %s (this target's idle_in_transaction limit); the transaction was rolled back", limit))
}

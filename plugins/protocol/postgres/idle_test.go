package postgres

import (
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// idleRig drives an idleWatch through the events the relay reports, on a fake clock.
type idleRig struct {
	t     *testing.T
	q     queue
	w     idleWatch
	ended atomic.Int32
}

const testIdleLimit = time.Minute

func newIdleRig(t *testing.T) *idleRig {
	r := &idleRig{t: t}
	r.w.start(testIdleLimit, &r.q, func() { r.ended.Add(1) })
	r.t.Cleanup(r.w.stop)
	return r
}

// client has the client side receive n messages that each expect an answer, sending them to the
// backend if flush, and go back to waiting.
func (r *idleRig) client(n int, flush bool) {
	r.w.clientMessage()
	for range n {
		r.q.push(&item{kind: itParse})
	}
	if flush {
		r.w.flushedAll()
	}
	r.w.clientWaiting()
}

// backendAnswers has the backend answer n items, the last with ReadyForQuery status if status != 0.
func (r *idleRig) backendAnswers(n int, status byte) {
	for i := range n {
		if i == n-1 && status != 0 {
			r.w.readyForQuery(status)
		}
		r.q.pop()
		r.w.answered()
	}
}

// after lets d pass on the fake clock and reports whether the session was ended.
func (r *idleRig) after(d time.Duration) bool {
	time.Sleep(d)
	synctest.Wait()
	return r.ended.Load() > 0
}

// TestIdleInTransactionEndsTheSession: a session that sits in a transaction block while the client
// sends nothing is ended once the limit has passed, and not before.
func TestIdleInTransactionEndsTheSession(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newIdleRig(t)
		r.client(1, true) // BEGIN
		r.backendAnswers(1, 'T')
		if r.after(testIdleLimit - time.Second) {
			t.Fatal("ended before the limit")
		}
		if !r.after(2 * time.Second) {
			t.Fatal("not ended after the limit")
		}
	})
}

// TestIdleAbortedTransactionEndsTheSession: a failed transaction ('E') holds its locks until ROLLBACK.
func TestIdleAbortedTransactionEndsTheSession(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newIdleRig(t)
		r.client(1, true)
		r.backendAnswers(1, 'E')
		if !r.after(testIdleLimit + time.Second) {
			t.Fatal("not ended")
		}
	})
}

// TestIdleOutsideATransactionIsNotEnded: the control. Idle outside a transaction is not the broker's
// concern.
func TestIdleOutsideATransactionIsNotEnded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newIdleRig(t)
		r.client(1, true)
		r.backendAnswers(1, 'I')
		if r.after(10 * testIdleLimit) {
			t.Fatal("a session idle outside a transaction was ended")
		}
	})
}

// TestActiveTransactionIsNotEnded: a statement that runs longer than the limit inside a transaction is
// not idleness; the limit counts again from its ReadyForQuery.
func TestActiveTransactionIsNotEnded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newIdleRig(t)
		r.client(1, true)
		r.backendAnswers(1, 'T')
		r.after(testIdleLimit / 2)
		r.client(1, true) // a long statement
		if r.after(10 * testIdleLimit) {
			t.Fatal("ended while the backend was running a statement")
		}
		r.backendAnswers(1, 'T')
		if r.after(testIdleLimit - time.Second) {
			t.Fatal("the limit did not start again at the statement's end")
		}
		if !r.after(2 * time.Second) {
			t.Fatal("not ended once idle again")
		}
	})
}

// TestActivityBeforeTheLimitKeepsTheSession: statements every so often, each within the limit of the
// last, keep a long transaction going.
func TestActivityBeforeTheLimitKeepsTheSession(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newIdleRig(t)
		for range 10 {
			r.client(1, true)
			r.backendAnswers(1, 'T')
			if r.after(testIdleLimit - time.Second) {
				t.Fatal("ended within the limit")
			}
		}
	})
}

// TestHeldStatementIsNotIdle: while the client side handles a message (a statement held for a
// person's approval), the session is not idle.
func TestHeldStatementIsNotIdle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newIdleRig(t)
		r.client(1, true)
		r.backendAnswers(1, 'T')
		r.w.clientMessage() // the statement waits for approval
		if r.after(10 * testIdleLimit) {
			t.Fatal("ended while a statement was held")
		}
		r.w.clientWaiting() // refused at last: idle again
		if !r.after(testIdleLimit + time.Second) {
			t.Fatal("not ended once idle again")
		}
	})
}

// TestExtendedProtocolStallIsIdle: an implicit transaction of the extended protocol (Parse, Bind,
// Execute and Flush, without Sync) holds its locks: stalling there is idle in a transaction; and so
// is a stall with messages the broker has not yet sent on (no Flush).
func TestExtendedProtocolStallIsIdle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newIdleRig(t)
		r.client(3, true)
		r.backendAnswers(3, 0)
		if !r.after(testIdleLimit + time.Second) {
			t.Fatal("a stalled extended-protocol transaction was not ended")
		}
	})
	synctest.Test(t, func(t *testing.T) {
		r := newIdleRig(t)
		r.client(1, true)
		r.backendAnswers(1, 'T')
		r.client(1, false) // a Parse, buffered
		if !r.after(testIdleLimit + time.Second) {
			t.Fatal("a transaction stalled behind an unsent message was not ended")
		}
	})
}

// TestIdleWatchOff: without a limit, nothing is ever ended.
func TestIdleWatchOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var q queue
		var w idleWatch
		ended := false
		w.start(0, &q, func() { ended = true })
		w.readyForQuery('T')
		w.answered()
		time.Sleep(time.Hour)
		synctest.Wait()
		if ended {
			t.Fatal("ended without a limit")
		}
	})
}

package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/svidbroker/svidbroker/broker/authz"
	sess "github.com/svidbroker/svidbroker/broker/session"
)

// A statement held for approval belongs to its client: it is withdrawn, and runs whatever the approver
// later says, when the client cancels it (a CancelRequest with the session's key, as it would cancel a
// running statement) or goes away. The hold blocks the session's client side, the only reader of the
// client's connection, so without more a client that disconnected would go unnoticed until the
// approval came and the statement ran for nobody.
//
// During a hold the session therefore reads the client's connection on a goroutine of its own
// (holdReader.watch): an end of stream or a failed read withdraws the statement. Whatever the client
// sends meanwhile (pipelined messages after the held one) is kept, as raw bytes below the message
// decoder, and read first once the hold ends: nothing is lost or reordered, and no message is decoded
// while the held one (whose decoded form the client wire reuses) is still in use. Only reading shows
// an end of stream through TLS, so watching for it alone, without reading what comes before it, cannot
// work. What is kept is bounded by maxHoldSpill; beyond it the broker would have to stop reading and
// could no longer see the client go, so it withdraws the statement instead (fail closed).

// maxHoldSpill bounds what a client may send after a statement held for approval, until the hold ends.
const maxHoldSpill = 64 << 10

// Why a held statement was withdrawn, as its client, its audit records and its approver are told.
var (
	errWithdrawnCancel     = errors.New("the client sent a cancel request")
	errWithdrawnDisconnect = errors.New("the client disconnected")
	errWithdrawnSessionEnd = sess.ErrWithdrawnSessionEnd
	errWithdrawnOverflow   = fmt.Errorf("the client sent %d KiB or more after the held statement, beyond which the broker stops reading, so it could no longer tell whether the client was still connected; send further statements once the held one is answered",
		maxHoldSpill>>10)
)

// withdrawalRefusal is the answer to the withdrawn statement, which d held. A client that cancelled
// it gets the server's own answer to a cancelled statement (57014), with a note that the approval
// request was withdrawn.
func withdrawalRefusal(w *sess.Withdrawn, d authz.Decision) *refusal {
	resp := errorResponse("57014", "canceling statement due to user request")
	switch w.Why {
	case errWithdrawnCancel:
		resp.Detail = fmt.Sprintf("svidbroker: approval request %s was withdrawn; the statement did not run and can no longer be approved.", w.Request)
	case errWithdrawnOverflow:
		resp = errorResponse("54000", "svidbroker: "+w.Error())
	default: // nobody is there to read it
		resp.Message = "svidbroker: " + w.Error()
	}
	return &refusal{resp: resp, d: d, reason: "approval withdrawn: " + w.Why.Error(), request: w.Request}
}

// holdState is a session's statement held for approval, if any, as cancel requests (from other
// connections) and the client watch reach it.
type holdState struct {
	mu       sync.Mutex
	withdraw context.CancelCauseFunc // set while a statement is held
	why      error                   // why the held statement was withdrawn, once it is
	queue    *queue                  // the session's answers outstanding
	in       *holdReader             // the client wire's reader, once a statement was held; the client side's
}

// cancelRequest withdraws the held statement, if there is one, for a cancel request with the session's
// key. It reports whether it did, and whether the cancel request should go on to the backend too: it
// should unless the backend owes the client nothing, since a cancel that reaches an idle server could
// still cancel the client's next statement.
func (h *holdState) cancelRequest() (withdrew, forward bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.withdraw == nil {
		return false, true
	}
	h.withdrawLocked(errWithdrawnCancel)
	return true, h.queue.len() > 0
}

// withdrawHeld withdraws the held statement, if there is one, for why.
func (h *holdState) withdrawHeld(why error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.withdraw != nil {
		h.withdrawLocked(why)
	}
}

func (h *holdState) withdrawLocked(why error) {
	if h.why == nil {
		h.why = why
		h.withdraw(why)
	}
}

// beginHold makes the statement being held withdrawable through withdraw, which cancels its wait for
// approval: by a cancel request with the session's key, and by the client's going away. end stops
// that, and returns why the statement was withdrawn, or nil.
func (s *session) beginHold(withdraw context.CancelCauseFunc) (end func() error) {
	h := &s.held
	h.mu.Lock()
	h.withdraw, h.why, h.queue = withdraw, nil, &s.queue
	h.mu.Unlock()
	if s.cancels != nil {
		s.cancels.attach(s.cancelKey, h)
	}
	stop := s.watchClient(func(err error) {
		why := errWithdrawnDisconnect
		switch {
		case errors.Is(err, errWithdrawnOverflow):
			why = err
		case errors.Is(err, net.ErrClosed) || s.ending.Load() || s.backendFirst.Load():
			why = errWithdrawnSessionEnd // the broker closed the connection
		default:
			s.log.Info("the client went away while its statement was held for approval", "error", err)
		}
		h.withdrawHeld(why)
	})
	return func() error {
		stop()
		h.mu.Lock()
		defer h.mu.Unlock()
		why := h.why
		h.withdraw, h.why = nil, nil
		return why
	}
}

// watchClient watches the client's connection until stop is called (see holdReader.watch). The first
// hold puts a holdReader under the client wire. A client stream without read deadlines (the
// in-memory streams of tests) cannot be watched.
func (s *session) watchClient(gone func(error)) (stop func()) {
	in := s.held.in
	if in == nil {
		src, ok := s.client.r.(deadlineReader)
		if !ok {
			return func() {}
		}
		in = &holdReader{src: src}
		s.held.in, s.client.r = in, in
	}
	return in.watch(gone)
}

// deadlineReader is a connection's reading side.
type deadlineReader interface {
	io.Reader
	SetReadDeadline(time.Time) error
}

// holdReader is the client wire's reader once its session has held a statement: what a watch read
// comes first, in order, then the error that ended the watch, if one did, then the connection.
type holdReader struct {
	src   deadlineReader
	spill []byte // read by a watch, not yet by the wire
	err   error  // what ended a watch's reading, returned once spill is read
}

func (r *holdReader) Read(p []byte) (int, error) {
	if len(r.spill) > 0 {
		n := copy(p, r.spill)
		r.spill = r.spill[n:]
		if len(r.spill) == 0 {
			r.spill = nil
		}
		return n, nil
	}
	if r.err != nil {
		return 0, r.err
	}
	return r.src.Read(p)
}

// watch reads the connection on a goroutine of its own until stop is called, keeping what arrives
// for Read, and calls gone, on that goroutine, with what ends the reading: the connection's error
// (io.EOF when the client closed it), or errWithdrawnOverflow once maxHoldSpill bytes are kept. stop
// interrupts a blocked read with a read deadline, and clears the deadline again. Read must not be
// called between watch and stop's return.
func (r *holdReader) watch(gone func(error)) (stop func()) {
	switch {
	case r.err != nil: // the client went away during an earlier hold; what it sent before is still being read
		gone(r.err)
		return func() {}
	case len(r.spill) >= maxHoldSpill:
		gone(errWithdrawnOverflow)
		return func() {}
	}
	var stopping atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4<<10)
		for {
			n, err := r.src.Read(buf[:min(len(buf), maxHoldSpill-len(r.spill))])
			r.spill = append(r.spill, buf[:n]...)
			switch {
			case err != nil && stopping.Load() && errors.Is(err, os.ErrDeadlineExceeded):
				return
			case err != nil:
				r.err = err
				gone(err)
				return
			case len(r.spill) >= maxHoldSpill:
				gone(errWithdrawnOverflow)
				return
			}
		}
	}()
	return func() {
		stopping.Store(true)
		_ = r.src.SetReadDeadline(time.Unix(1, 0))
		<-done
		_ = r.src.SetReadDeadline(time.Time{})
	}
}

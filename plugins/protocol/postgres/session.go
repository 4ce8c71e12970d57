package postgres

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"go.opentelemetry.io/otel/attribute"

	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/broker/credential"
	"github.com/svidbroker/svidbroker/broker/inspect"
	sess "github.com/svidbroker/svidbroker/broker/session"
	"github.com/svidbroker/svidbroker/broker/tracing"
)

// session relays one client to its backend, message by message.
type session struct {
	log          *slog.Logger
	client       *clientWire // reads the client's messages, writes to the client
	clientConn   *tls.Conn
	backend      *backendWire // reads the backend's messages, writes to the backend
	backendConn  net.Conn
	writeTimeout time.Duration
	endBy        time.Time // the client's SVID expiry plus the grace period
	rec          recorder
	lease        *credential.Session // nil when the broker logs in with its SVID
	core         *sess.Session       // the core's side of the session: its credential's loss and policy revocation; nil in tests of the relay alone

	// Ending a session happens once. ending marks it begun, by the broker (shutdown, SVID expiry, a
	// lost credential, the audit log failing: endErr says which) or because a side ended; ended
	// closes when it is done. b2cDone closes when the backend side has stopped, and backendFirst
	// says it stopped on its own.
	ending, backendFirst atomic.Bool
	endErr               error
	ended, b2cDone       chan struct{}

	rows, bytes int64            // of the current statement's result, for its summary
	scratch     *inspect.Scratch // masks result rows (the backend side's); see rowMasker
	// The current result's columns and, when recorded, its rows (as the client saw them).
	columns   []string
	formats   []int16
	data      [][]*string
	dataBytes int
	truncated bool

	// Statement inspection. The client side (clientToBackend) owns stmts, portals, memo, deciding
	// and discarding; queue is shared with the backend side; clientMu serializes writes to the client.
	ctx        context.Context
	insp       inspection
	memo       authz.Memo
	deciding   deciding // decides statements and keeps their verdicts (statements.go)
	stmts      map[string]*prepared
	portals    map[string]*portal
	queue      queue
	failed     failedParses
	discarding bool   // a statement was denied in the extended protocol: discard until Sync
	names      uint64 // backend names given so far
	commits    commitPoints
	pending    int // bytes buffered for the backend since the last write
	clientMu   sync.Mutex
	cancelKey  cancelKey
	cancels    *cancelRegistry
	held       holdState                             // a statement held for approval, as a cancel request or the client's going away withdraws it
	relayAttrs [len(operations)][]attribute.KeyValue // its relay spans' attributes by operation (relaySpan)
	spool      *tracing.Spool                        // where its relay spans are recorded (relaySpan); nil until the first
	relayKind  tracing.LeafKind                      // its relay spans' parent, name and kind, made with spool

	terminated atomic.Bool // the client sent Terminate: the backend closing next is expected
	// backendFatal: the backend sent a FATAL (or PANIC) error, which the client got; it closes next.
	backendFatal atomic.Bool
	closeOnce    sync.Once

	// timeouts are the target's: idle ends the session when it is idle in a transaction for
	// timeouts.IdleInTransaction (0: never).
	timeouts Timeouts
	idle     idleWatch
}

// errBackendLost marks a session whose backend connection ended or failed under it.
var errBackendLost = errors.New("postgres: from backend: connection lost")

// errClientTerminated marks a session the client ended with Terminate.
var errClientTerminated = errors.New("client terminated")

// ErrSVIDExpired ends a session whose client's SVID expired more than the grace period ago.
var ErrSVIDExpired = fmt.Errorf("postgres: %w", sess.ErrSVIDExpired)

// Run relays until either side ends, or the broker ends the session (sess.Watch: the client's SVID
// expires, plus grace; its credential is lost; a policy reload no longer permits it; ctx is cancelled,
// at shutdown), and then closes both connections. The client side runs on the caller's goroutine and
// the backend side on one more; the broker's reasons to end a session wait on timers and callbacks
// and take a goroutine only when they fire, so an idle session costs two goroutines.
func (s *session) Run(ctx context.Context) error {
	start := time.Now()
	s.ctx = ctx
	if s.cancels != nil {
		defer s.cancels.remove(s.cancelKey)
	}
	s.ended, s.b2cDone = make(chan struct{}), make(chan struct{})
	s.idle.start(s.timeouts.IdleInTransaction, &s.queue, func() { s.endIdle(s.timeouts.IdleInTransaction) })
	defer s.idle.stop()
	b2c := make(chan error, 1)
	go func() {
		err := s.guard("backend", s.backendToClient)
		close(s.b2cDone)
		if !s.ending.Load() {
			s.backendFirst.Store(true)
			if !s.terminated.Load() && !s.backendFatal.Load() {
				// The client learns why its session ends, not only that its connection closed (which
				// libpq reports as "SSL SYSCALL error: EOF detected").
				s.shortenClientWrites()
				if errors.Is(err, errBackendLost) {
					s.sendFatal("08006", "svidbroker: the database connection was lost")
				} else {
					s.sendFatal("08P01", "svidbroker: terminating connection: the database sent what the broker does not relay (details are in the broker's log)")
				}
			}
			s.close() // the backend side ended: so does the client's
		}
		b2c <- err
	}()
	w := sess.Watches{EndBy: s.endBy}
	if s.core != nil {
		w.Lost, w.Revoked = s.core.Losses, s.core.Revocations
	}
	ends, stopWatches := sess.Watch(ctx, w)
	defer stopWatches()
	stopEnds := context.AfterFunc(ends, func() { s.endFromCause(context.Cause(ends)) })
	defer stopEnds()
	err := s.guard("client", s.clientToBackend)
	switch {
	case errors.Is(err, errAudit):
		// Nothing unrecorded reached the backend; tell the client why its session ends.
		s.endFromBroker(err, "58030", "svidbroker: the audit log is unavailable, so statements are refused")
	case s.ending.CompareAndSwap(false, true):
		s.close() // the client side ended (the client left, or the backend side closed it)
		close(s.ended)
	}
	<-s.ended
	backendErr := <-b2c
	s.endRelays() // statements the backend never answered
	switch {
	case s.endErr != nil:
		err = s.endErr
	case s.backendFirst.Load():
		err = backendErr
	}
	if s.terminated.Load() {
		err = nil
	}
	// Revoking the lease after the backend session closed: revocation alone would not end it.
	why := err
	switch {
	case ends.Err() != nil:
		why = context.Cause(ends) // the core's watches ended it: their *sess.Ended says why
	case errors.Is(err, errAudit):
		why = sess.ErrAuditUnavailable
	}
	s.core.Closed(why)
	sess.EndRecords(s.rec.async, s.lease, err, start)
	level := slog.LevelInfo
	if errors.Is(err, ErrSVIDExpired) || errors.Is(err, errAudit) {
		level = slog.LevelWarn
	}
	s.log.Log(ctx, level, "session ended", "duration", time.Since(start).Round(time.Millisecond), "error", err)
	return err
}

// endFromCause ends the session for why the core's watches ended it (a *sess.Ended), telling the
// client in PostgreSQL's terms.
func (s *session) endFromCause(cause error) {
	ended, _ := cause.(*sess.Ended)
	if ended == nil {
		ended = &sess.Ended{Why: sess.ErrShutdown, Err: cause}
	}
	switch {
	case errors.Is(ended, sess.ErrSVIDExpired):
		s.endFromBroker(ErrSVIDExpired, "28000", "svidbroker: terminating connection because the client's SVID expired; reconnect with the rotated SVID")
	case errors.Is(ended, sess.ErrLeaseLost):
		if s.lease != nil {
			s.rec.async(sess.LeaseRecord(s.lease.Lease.ID, "renewal failed"))
		}
		s.endFromBroker(ended.Err, "08006", "svidbroker: terminating connection because its backend credential could not be kept")
	case errors.Is(ended, sess.ErrRevoked):
		s.endFromBroker(ended, "28000", "svidbroker: terminating connection because the policies in force no longer permit it: "+ended.Err.Error())
	default: // shutdown: the server's context ended
		s.endFromBroker(ended.Err, "57P01", "svidbroker: terminating connection because the broker is shutting down")
	}
}

// endFromBroker stops a running session from the broker's side, unless it is ending already: the
// backend side first, so that what it forwarded goes before a FATAL error to the client, then both
// connections.
func (s *session) endFromBroker(reason error, code, msg string) {
	if !s.ending.CompareAndSwap(false, true) {
		return
	}
	s.endErr = reason
	_ = s.backendConn.Close()
	s.shortenClientWrites()
	<-s.b2cDone
	s.sendFatal(code, msg)
	s.close()
	close(s.ended)
}

// sendFatal sends the client a FATAL error. The client side may still be writing (an approval
// notice), hence the lock.
func (s *session) sendFatal(code, msg string) {
	s.clientMu.Lock()
	defer s.clientMu.Unlock()
	s.client.Send(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: code, Message: msg})
	_ = s.flushClient()
}

// endWriteTimeout bounds the writes to a client while its session is being ended: a client that has
// stopped reading must not hold up shutdown for the whole WriteTimeout.
const endWriteTimeout = 2 * time.Second

// shortenClientWrites lets a backend-side write to a client that is not reading fail soon.
func (s *session) shortenClientWrites() {
	_ = s.clientConn.SetWriteDeadline(time.Now().Add(min(s.writeTimeout, endWriteTimeout)))
}

// guard turns a panic in a relay direction into an error: a malformed message from a peer must end
// that session, never the broker.
func (s *session) guard(side string, f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("postgres: %s relay panicked: %v", side, r)
		}
	}()
	return f()
}

// clientToBackend decides and forwards the client's messages. Messages are written to the backend when
// the client expects an answer (Sync, Flush, Query, FunctionCall, COPY data, Terminate); pgproto3
// buffers until then.
func (s *session) clientToBackend() error {
	for {
		s.idle.clientWaiting()
		msg, err := s.client.Receive()
		if err != nil {
			return fmt.Errorf("postgres: from client: %w", err)
		}
		s.idle.clientMessage()
		s.failed.forget(s.stmts)
		if s.discarding {
			switch msg.(type) {
			case *pgproto3.Sync:
				s.discarding = false
			case *pgproto3.Terminate:
			case *pgproto3.Flush:
				if err := s.flushBackend(); err != nil {
					return err
				}
				continue
			default:
				continue // the server too ignores everything until Sync after an error
			}
		}
		switch m := msg.(type) {
		case *pgproto3.Query:
			err = s.onQuery(m)
		case *pgproto3.Parse:
			err = s.onParse(m)
		case *pgproto3.Bind:
			err = s.onBind(m)
		case *pgproto3.Execute:
			err = s.onExecute(m)
		case *pgproto3.FunctionCall:
			err = s.onFunctionCall(m)
		case *pgproto3.Describe:
			err = s.onDescribe(m)
		case *pgproto3.Close:
			err = s.onClose(m)
		case *pgproto3.Sync:
			if err = s.beforeSync(); err != nil {
				break
			}
			s.queue.push(&item{kind: itSync, cycle: s.nextCycle()})
			s.backend.Send(m)
			err = s.flushBackend()
		case *pgproto3.Flush, *pgproto3.CopyData, *pgproto3.CopyDone, *pgproto3.CopyFail:
			s.backend.Send(m)
			err = s.flushBackend()
		case *pgproto3.Terminate:
			s.terminated.Store(true)
			s.backend.Send(m)
			_ = s.flushBackend()
			return errClientTerminated
		default:
			return fmt.Errorf("postgres: unexpected %s from the client during a session", msgName(msg))
		}
		if err != nil {
			return err
		}
		// Extended-protocol messages wait in the buffer for Sync or Flush; a client that sends neither
		// must not make the broker hold its messages without bound.
		if s.pending += pendingBytes(msg); s.pending >= maxPendingBytes {
			if err := s.flushBackend(); err != nil {
				return err
			}
		}
		if n := s.queue.len(); n > maxQueuedAnswers {
			return fmt.Errorf("postgres: the client has %d answers outstanding (at most %d)", n, maxQueuedAnswers)
		}
	}
}

// maxPendingBytes is how much the broker buffers for either peer before writing it without being
// asked; maxIdleBytes is the largest buffer it keeps for the client while the backend is quiet;
// maxQueuedAnswers bounds the answers a client may have outstanding (pipelined) at once.
const (
	maxPendingBytes  = 64 << 10
	maxIdleBytes     = 4 << 10
	maxQueuedAnswers = 100000
)

// pendingBytes estimates the bytes a message adds to the backend buffer.
func pendingBytes(msg pgproto3.FrontendMessage) int {
	switch m := msg.(type) {
	case *pgproto3.Parse:
		return 16 + len(m.Query) + 4*len(m.ParameterOIDs)
	case *pgproto3.Bind:
		n := 32
		for _, p := range m.Parameters {
			n += 4 + len(p)
		}
		return n
	default:
		return 16
	}
}

// backendToClient forwards the backend's answers, masked and scrubbed as the plan of the statement
// they answer requires. It holds them, encoded, while further backend bytes are already buffered, so
// that batches stay batched, and writes them once none are (nothing waits) or once maxPendingBytes
// are held (a large result streams in bounded memory).
func (s *session) backendToClient() error {
	var held []byte // answers encoded for the client and not yet handed to s.client
	// What is held on return goes before whatever the session sends the client next (a FATAL error).
	defer func() { _ = s.sendClient(held, false) }()
	for {
		typ, body, err := s.backend.next()
		if err != nil {
			return fmt.Errorf("%w: %w", errBackendLost, err)
		}
		h := s.queue.head()
		if typ == 'D' && h != nil && (h.kind == itQuery || h.kind == itExecute) {
			// A result's rows, most of a large result's messages: masked, or passed on as they
			// came, without decoding them into messages and encoding those again.
			var sc *inspect.Scratch
			if h.masks != nil {
				sc = s.rowMasker()
			}
			at := len(held)
			var n int64
			if held, n, err = appendRow(held, body, h.masks, sc); err != nil {
				return fmt.Errorf("postgres: from backend: %w", err)
			}
			s.summarizeRow(held[at+5:], n, h.recordFull)
		} else {
			msg, err := s.backend.decode(typ, body)
			if err != nil {
				return fmt.Errorf("postgres: from backend: %w", err)
			}
			if held, err = s.relay(h, msg, held); err != nil {
				return err
			}
			s.idle.answered()
		}
		if len(held) == 0 {
			continue
		}
		if drained := s.backend.ReadBufferLen() == 0; drained || len(held) >= maxPendingBytes {
			err = s.sendClient(held, true)
			held = held[:0]
			if drained && cap(held) > maxIdleBytes {
				held = nil // a large result is done: keep no large buffer while the backend is quiet
			}
			if err != nil {
				return err
			}
		}
	}
}

// relay handles one decoded backend message that h answers, and appends what the client gets
// instead, encoded, to held.
func (s *session) relay(h *item, msg pgproto3.BackendMessage, held []byte) ([]byte, error) {
	if ps, ok := msg.(*pgproto3.ParameterStatus); ok {
		if err := checkParameter(ps.Name, ps.Value); err != nil {
			return held, fmt.Errorf("postgres: %w", err)
		}
	}
	out := s.answer(h, msg)
	s.summarize(h, msg)
	if out == nil {
		return held, nil
	}
	b, err := out.Encode(held)
	if err != nil {
		return held, fmt.Errorf("postgres: to client: %w", err)
	}
	return b, nil
}

// sendClient writes encoded messages to the client, or, unless flush, adds them to what the next
// flush writes.
func (s *session) sendClient(msgs []byte, flush bool) error {
	s.clientMu.Lock()
	defer s.clientMu.Unlock()
	if !flush {
		s.client.buffer(msgs)
		return nil
	}
	_ = s.clientConn.SetWriteDeadline(time.Now().Add(s.writeTimeout))
	if err := s.client.writeRaw(msgs); err != nil {
		return fmt.Errorf("postgres: to client: %w", err)
	}
	return nil
}

// rowMasker returns the scratch that masks result rows, made when the first row is masked: the
// backend side alone uses it, row after row.
func (s *session) rowMasker() *inspect.Scratch {
	if s.scratch == nil {
		s.scratch = s.insp.masker.NewScratch()
	}
	return s.scratch
}

// answer matches one backend message to the answer the queue expects, and returns what the client
// gets instead (nil for nothing).
func (s *session) answer(h *item, msg pgproto3.BackendMessage) pgproto3.BackendMessage {
	switch m := msg.(type) {
	case *pgproto3.ParameterStatus, *pgproto3.NotificationResponse:
		return msg
	case *pgproto3.NoticeResponse:
		if h != nil && h.plan != nil && h.plan.scrub {
			e := pgproto3.ErrorResponse(*m)
			n := pgproto3.NoticeResponse(*scrub(&e))
			return &n
		}
		return msg
	}
	if e, ok := msg.(*pgproto3.ErrorResponse); ok && (e.Severity == "FATAL" || e.Severity == "PANIC") {
		s.backendFatal.Store(true)
	}
	if h == nil {
		return msg
	}
	if e, ok := msg.(*pgproto3.ErrorResponse); ok {
		var out pgproto3.BackendMessage = e
		switch {
		case h.kind == itDenied:
			out = h.denial
		case h.plan != nil && h.plan.scrub && quotesData(e):
			out = scrub(e)
		}
		if h.kind == itParse && h.parsed != nil {
			s.failed.add(h.name, h.parsed)
		}
		relayFailed(h, e)
		switch h.kind {
		case itQuery, itCall, itSync:
			// A simple query or a function call goes on to ReadyForQuery; a failing Sync (a commit)
			// is answered by ReadyForQuery too.
		default:
			s.queue.skipToSync()
		}
		return out
	}
	switch h.kind {
	case itDenied:
		// Only an error can answer the denied portal, which no client can bind; anything else is not
		// forwarded.
		s.log.Error("unexpected answer to a denied statement; not forwarded", "message", fmt.Sprintf("%T", msg))
		return nil
	case itQuery:
		switch m := msg.(type) {
		case *pgproto3.RowDescription:
			h.masks = h.plan.masksFor(m.Fields, h.stmt) // for its rows, which appendRow relays
		case *pgproto3.CommandComplete, *pgproto3.EmptyQueryResponse:
			h.masks = nil
			h.stmt++ // the next result belongs to the next statement of the string
		case *pgproto3.ReadyForQuery:
			s.readyForQuery(h, m)
			s.queue.pop()
		}
	case itExecute:
		switch msg.(type) {
		case *pgproto3.CommandComplete, *pgproto3.EmptyQueryResponse, *pgproto3.PortalSuspended:
			s.queue.pop()
		}
	case itInjected:
		switch m := msg.(type) {
		case *pgproto3.RowDescription:
			h.exec.masks = h.exec.plan.masksFor(m.Fields, -1)
			s.queue.pop()
			return nil
		case *pgproto3.NoData:
			s.queue.pop()
			return nil
		}
	case itParse, itBind, itClose:
		switch msg.(type) {
		case *pgproto3.ParseComplete, *pgproto3.BindComplete, *pgproto3.CloseComplete:
			s.queue.pop()
		}
	case itDescribeStmt, itDescribePortal:
		switch msg.(type) {
		case *pgproto3.RowDescription, *pgproto3.NoData:
			s.queue.pop()
		}
	case itSync, itCall:
		if m, ok := msg.(*pgproto3.ReadyForQuery); ok {
			s.readyForQuery(h, m)
			s.queue.pop()
		}
	}
	return msg
}

func (s *session) flushBackend() error {
	s.pending = 0
	_ = s.backendConn.SetWriteDeadline(time.Now().Add(s.writeTimeout))
	if err := s.backend.Flush(); err != nil {
		return fmt.Errorf("postgres: to backend: %w", err)
	}
	s.idle.flushedAll()
	return nil
}

func (s *session) flushClient() error {
	_ = s.clientConn.SetWriteDeadline(time.Now().Add(s.writeTimeout))
	if err := s.client.Flush(); err != nil {
		return fmt.Errorf("postgres: to client: %w", err)
	}
	return nil
}

func (s *session) close() {
	s.closeOnce.Do(func() {
		_ = s.backendConn.Close()
		_ = s.clientConn.Close()
	})
}

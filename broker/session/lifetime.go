package session

import (
	"context"
	"time"

	"github.com/svidbroker/svidbroker/broker/audit"
)

// Watches are what end a running session from the broker's side, besides its parent context.
type Watches struct {
	// EndBy is when the session must end: its client's SVID expiry plus the grace period. Zero: never.
	EndBy time.Time
	// Lost registers fn to be told, once, on a goroutine of its own, that the session's credential
	// could not be kept. Nil: the session holds no credential.
	Lost func(fn func(error))
	// Revoked registers fn to be told, once, that a policy reload no longer permits the session, and
	// returns a function that ends the registration. Nil: nothing revokes the session.
	Revoked func(fn func(*Ended)) (stop func())
}

// Watch returns a context that is cancelled, with an *Ended as its cause (context.Cause), by the
// first of: parent's end (ErrShutdown), EndBy passing (ErrSVIDExpired), the credential's loss
// (ErrLeaseLost) and a revocation (ErrRevoked). The context carries parent's values. stop disarms the
// watches; it does not cancel the context. Nothing polls: timers and callbacks take a goroutine only
// when they fire.
func Watch(parent context.Context, w Watches) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancelCause(context.WithoutCancel(parent))
	stopParent := context.AfterFunc(parent, func() {
		cancel(&Ended{Why: ErrShutdown, Err: context.Cause(parent)})
	})
	var expiry *time.Timer
	if !w.EndBy.IsZero() {
		expiry = time.AfterFunc(time.Until(w.EndBy), func() { cancel(&Ended{Why: ErrSVIDExpired}) })
	}
	if w.Lost != nil {
		w.Lost(func(err error) { cancel(&Ended{Why: ErrLeaseLost, Err: err}) })
	}
	stopRevoked := func() {}
	if w.Revoked != nil {
		stopRevoked = w.Revoked(func(e *Ended) { cancel(e) })
	}
	return ctx, func() {
		stopParent()
		if expiry != nil {
			expiry.Stop()
		}
		stopRevoked()
	}
}

// Start arms the session's watches (see Watch) under parent, the context the server runs the session
// with, and returns the session's context, also given by Context: the engine ends the session when it
// is cancelled, telling its client why (context.Cause). A credential's loss is recorded here.
func (s *Session) Start(parent context.Context) context.Context {
	ctx, stop := Watch(parent, Watches{EndBy: s.EndBy(), Lost: s.onLost, Revoked: s.Revocations})
	s.mu.Lock()
	s.ctx, s.stop = ctx, stop
	s.mu.Unlock()
	return ctx
}

// Context is the session's context, once Start armed it: cancelled when the broker ends the session,
// with an *Ended as its cause. Before Start it is a context that is never cancelled.
func (s *Session) Context() context.Context {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx == nil {
		return context.Background()
	}
	return s.ctx
}

func (s *Session) stopWatching() {
	s.mu.Lock()
	stop := s.stop
	s.stop = nil
	s.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// leaseLost is the lease manager's word that the credential could not be kept.
func (s *Session) leaseLost(err error) {
	s.mu.Lock()
	fn := s.lostFn
	if fn == nil {
		s.gone = err
	}
	s.mu.Unlock()
	if fn != nil {
		go fn(err)
	}
}

// onLost registers fn for the credential's loss (Watches.Lost), recording the loss first.
func (s *Session) onLost(fn func(error)) {
	s.Losses(func(err error) {
		if l := s.Lease(); l != nil {
			s.rec.async(LeaseRecord(l.Lease.ID, "renewal failed"))
		}
		fn(err)
	})
}

// Losses registers fn to be told, on a goroutine of its own, that the session's credential could not
// be kept (Watches.Lost), whether that came before or after: for an engine that arms Watch over its
// own relay's fields, and records the loss itself when it ends the session.
func (s *Session) Losses(fn func(error)) {
	s.mu.Lock()
	gone := s.gone
	if gone == nil {
		s.lostFn = fn
	}
	s.mu.Unlock()
	if gone != nil {
		go fn(gone)
	}
}

// Revocations registers fn to be told when a policy reload no longer permits the session
// (Watches.Revoked). The revoking decision is recorded.
func (s *Session) Revocations(fn func(*Ended)) (stop func()) {
	if s.core.cfg.Policy == nil {
		return func() {}
	}
	return s.core.revokes.add(s, func(e *Ended) {
		rec := audit.Record{Kind: audit.KindDecision, Remote: s.remote,
			Decision: AuditDecision(e.Decision, "connect", s.core.cfg.Target),
			Detail:   map[string]string{"refused": "a policy reload no longer permits the session, which ends"}}
		s.rec.async(rec)
		s.log.Warn("session revoked: the policies in force no longer permit it", "decision", e.Decision.ID, "reason", e.Err)
		fn(e)
	})
}

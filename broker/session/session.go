package session

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/broker/credential"
	"github.com/svidbroker/svidbroker/broker/identity"
	"github.com/svidbroker/svidbroker/broker/metrics"
)

// Session is one client's session with a target, from Open to End.
type Session struct {
	core     *Core
	id       string
	log      *slog.Logger
	remote   string
	rec      recorder
	connect  authz.Connect
	decision authz.Decision
	role     authz.RolePick
	decider  Decider
	span     trace.Span // ended with the session; a non-recording one without Config.Tracing
	// metrics is the target's metrics for this session (metrics.Target.ForSession): its operations
	// are counted in a stripe of the target's counts. Nil without Config.Metrics.
	metrics *metrics.Target

	mu    sync.Mutex
	lease *credential.Session // nil without Config.Lease
	ended bool
	// counted: metrics counted the session's start, and not yet its end.
	counted bool
	cancel  context.CancelCauseFunc // set by Start
	ctx     context.Context
	gone    error       // the credential's loss, when it came before Losses
	lostFn  func(error) // Losses', told of the credential's loss
	stop    func()
}

// ID identifies the session in records and logs.
func (s *Session) ID() string { return s.id }

// Peer is the client, as its SVID and SPIRE identify it.
func (s *Session) Peer() identity.Peer { return s.connect.Peer }

// Connect is the connection as it was decided.
func (s *Session) Connect() authz.Connect { return s.connect }

// Decision is the connect decision that permitted the session (empty for an allow list).
func (s *Session) Decision() authz.Decision { return s.decision }

// Role is the credential role picked for the session, if Config.PickRole picked one.
func (s *Session) Role() authz.RolePick { return s.role }

// Lease is the session's backend credential, or nil without Config.Lease. The engine logs in to
// the backend with it and never shows it to the client.
func (s *Session) Lease() *credential.Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lease
}

func (s *Session) setLease(l *credential.Session) {
	s.mu.Lock()
	s.lease = l
	s.mu.Unlock()
}

// Log is the session's logger: the engine's, with the session, the SPIFFE ID, the remote address,
// what SPIRE attested and the credential role.
func (s *Session) Log() *slog.Logger { return s.log }

// EndBy is when the session must end: its client's SVID expiry plus the grace period.
func (s *Session) EndBy() time.Time { return s.connect.Peer.Expires.Add(s.core.cfg.SVIDExpiryGrace) }

// AuditFailOpen returns what to call when a record of this session fails under audit on_failure =
// "continue" (it logs the first failure), or nil when a failed record must refuse what it records.
func (s *Session) AuditFailOpen() func(error) { return s.rec.failOpen }

// Record writes rec, stamped with the session, the SPIFFE ID and the target, without waiting.
func (s *Session) Record(rec audit.Record) { s.rec.async(rec) }

// Abort ends a session that opened but was not established (its backend was unavailable, its
// client left during the protocol's startup): it returns the credential and records the end, with
// reason, which must quote nothing the client sent and name no host.
func (s *Session) Abort(reason string) {
	if !s.markEnded() {
		return
	}
	s.countEnd("aborted")
	if l := s.Lease(); l != nil {
		l.End()
	}
	s.rec.async(audit.Record{Kind: audit.KindSessionEnd, Detail: map[string]string{"reason": "session not established: " + reason}})
}

// End ends an established session: the watches stop, and EndRecords records the rest. Call it once
// the engine closed the backend connection (revoking the credential alone would not end the backend's
// session), with why the session ended (nil: the client ended it) and when it started running.
func (s *Session) End(why error, started time.Time) {
	if !s.markEnded() {
		return
	}
	s.stopWatching()
	s.countEnd(endOutcome(why))
	EndRecords(s.rec.async, s.Lease(), why, started)
}

// EndRecords revokes a session's credential (lease may be nil) and records that, then records the
// session's end: why (nil: the client ended it) and how long it ran since started. Session.End uses
// it; an engine whose relay keeps its own recorder may call it with that recorder's write.
func EndRecords(record func(audit.Record), lease *credential.Session, why error, started time.Time) {
	if lease != nil {
		record(LeaseRecord(lease.Lease.ID, string(lease.End())))
	}
	reason := "client ended the session"
	if why != nil {
		reason = why.Error()
	}
	record(audit.Record{Kind: audit.KindSessionEnd, Detail: map[string]string{
		"reason": reason, "duration": time.Since(started).Round(time.Millisecond).String()}})
}

func (s *Session) markEnded() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return false
	}
	s.ended = true
	return true
}

package session

import (
	"errors"

	"github.com/svidbroker/svidbroker/broker/metrics"
)

// refusalReasons name Open's refusals in metrics (sessions_refused_total's reason).
var refusalReasons = map[error]string{
	ErrUnidentified:     "unidentified",
	ErrNotReady:         "not_ready",
	ErrUnattested:       "unattested",
	ErrDenied:           "denied",
	ErrNoRole:           "no_role",
	ErrAuditUnavailable: "audit_unavailable",
	ErrRefused:          "refused",
	ErrNoCredential:     "no_credential",
}

// endOutcomes name why a running session ended in metrics (sessions_ended_total's outcome).
var endOutcomes = []struct {
	err  error
	name string
}{
	{ErrShutdown, "shutdown"},
	{ErrSVIDExpired, "svid_expired"},
	{ErrLeaseLost, "lease_lost"},
	{ErrRevoked, "revoked"},
	{ErrAuditUnavailable, "audit_unavailable"},
}

// endOutcome is the outcome of a session that ended for why (nil: its client ended it).
func endOutcome(why error) string {
	if why == nil {
		return "client_ended"
	}
	for _, o := range endOutcomes {
		if errors.Is(why, o.err) {
			return o.name
		}
	}
	return "error"
}

// opened counts the session as open in metrics, until it ends.
func (s *Session) opened() {
	s.mu.Lock()
	s.counted = s.metrics != nil
	s.mu.Unlock()
	s.metrics.SessionStarted(s.connect.Peer.ID.String())
}

// Closed tells the core that a running session ended, for why (nil: its client ended it), for an
// engine that records the end itself (EndRecords) rather than through End: its metrics count the end.
// It may be called on a nil *Session, and more than once; only the first call counts.
func (s *Session) Closed(why error) {
	if s == nil || !s.markEnded() {
		return
	}
	s.countEnd(endOutcome(why))
}

// countEnd counts the session's end in metrics, if its start was counted.
func (s *Session) countEnd(outcome string) {
	s.mu.Lock()
	counted := s.counted
	s.counted = false
	s.mu.Unlock()
	if counted {
		s.metrics.SessionEnded(outcome)
	}
	s.endSpan(outcome)
}

// approvalOutcome bounds an approval's state to the outcomes metrics name: an approver's own state
// word is "other".
func approvalOutcome(state string) string {
	switch state {
	case "approved", "denied", "expired", "failed":
		return state
	}
	return "other"
}

// Metrics is the session's target's metrics, for an engine that keeps a Decider or holds operations
// itself: the session's own (metrics.Target.ForSession), which counts its operations in a stripe of
// the target's counts. Nil without Config.Metrics, and on a nil *Session.
func (s *Session) Metrics() *metrics.Target {
	if s == nil {
		return nil
	}
	return s.metrics
}

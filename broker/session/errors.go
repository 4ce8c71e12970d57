package session

import (
	"errors"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/svidbroker/svidbroker/broker/authz"
)

// Why a session was not opened. Open returns an *Error that errors.Is matches against one of these;
// an engine turns it into its protocol's own error at its edge.
var (
	// ErrUnidentified: the client's certificate carries no SPIFFE ID.
	ErrUnidentified = errors.New("client not identified")
	// ErrNotReady: the broker cannot grant new access now (its SVID, its audit log); Error.Err says
	// why, in words fit for the client.
	ErrNotReady = errors.New("broker not ready")
	// ErrUnattested: SPIRE did not confirm the caller, or could not be asked.
	ErrUnattested = errors.New("SPIRE did not confirm the caller")
	// ErrDenied: the connect decision (or the target's allow list) refused the caller.
	ErrDenied = errors.New("connect denied")
	// ErrNoRole: no credential role of the target is permitted to the caller.
	ErrNoRole = errors.New("no credential role")
	// ErrAuditUnavailable: the session's start could not be recorded, so it does not start.
	ErrAuditUnavailable = errors.New("audit log unavailable")
	// ErrRefused: the engine's own check of the client's request (OpenRequest.Check) refused it.
	ErrRefused = errors.New("request refused")
	// ErrNoCredential: no backend credential could be obtained.
	ErrNoCredential = errors.New("no backend credential")
)

// Error is why Open refused a session: Kind is one of the sentinel errors above, Err the cause, and
// Decision the decision that refused it, when one did.
type Error struct {
	Kind     error
	Err      error
	Peer     spiffeid.ID
	Decision authz.Decision
}

func (e *Error) Error() string { return message(e.Kind, e.Err) }

// Is matches the sentinel Kind.
func (e *Error) Is(target error) bool { return target == e.Kind }

func (e *Error) Unwrap() error { return e.Err }

// Why a running session's context was cancelled: context.Cause gives an *Ended that errors.Is
// matches against one of these.
var (
	// ErrShutdown: the context the session runs under (the server's) ended.
	ErrShutdown = errors.New("broker shutting down")
	// ErrSVIDExpired: the client's SVID expired more than the grace period ago.
	ErrSVIDExpired = errors.New("client SVID expired")
	// ErrLeaseLost: the session's backend credential could not be kept.
	ErrLeaseLost = errors.New("backend credential lost")
	// ErrRevoked: after a policy reload, the connect decision no longer permits the session.
	ErrRevoked = errors.New("policies no longer permit the session")
)

// Ended is the cause of a running session's end from the broker's side: Why is one of the sentinels
// above, Err what reported it (the lease manager's error, the new decision's denial), if anything.
type Ended struct {
	Why      error
	Err      error
	Decision authz.Decision // ErrRevoked: the decision that no longer permits the session
}

func (e *Ended) Error() string { return message(e.Why, e.Err) }

// Is matches the sentinel Why.
func (e *Ended) Is(target error) bool { return target == e.Why }

func (e *Ended) Unwrap() error { return e.Err }

// message is the text of an *Error or an *Ended: the sentinel, then the cause if there is one.
func message(sentinel, cause error) string {
	if cause == nil {
		return "session: " + sentinel.Error()
	}
	return "session: " + sentinel.Error() + ": " + cause.Error()
}

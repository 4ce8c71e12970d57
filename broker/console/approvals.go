package console

import (
	"context"
	"errors"
	"fmt"

	"github.com/svidbroker/svidbroker/broker/approval"
	"github.com/svidbroker/svidbroker/broker/approval/oidc"
)

// Scope is what an approval covers: "once" (this operation), "fingerprint" (operations with this
// fingerprint for For) or "session" (the session's operations for For).
type Scope = approval.Scope

// Scope kinds.
const (
	ScopeOnce        = "once"
	ScopeFingerprint = "fingerprint"
	ScopeSession     = "session"
)

// Approvals is the approval store the console reads and decides through.
type Approvals interface {
	Pending(ctx context.Context) ([]approval.Request, error)
	Get(ctx context.Context, id string) (approval.Request, error)
	// Decide records p's decision. The store checks who may approve (Cedar's approve, separation of
	// duties); an error says why a decision was refused.
	Decide(ctx context.Context, id string, p oidc.Person, approve bool, reason string, scope Scope) (approval.Request, error)
}

// QueueApprovals serves Approvals from the broker's in-memory approval.Queue. The queue knows no
// scopes, reasons or approver rules: it accepts "once" only, and the decision is recorded with the
// approver's email (the reason goes to the console's log only).
type QueueApprovals struct {
	Queue *approval.Queue
}

var _ Approvals = QueueApprovals{}

// ErrScope is returned for a scope the store cannot grant.
var ErrScope = errors.New("console: scope not supported")

func (a QueueApprovals) Pending(context.Context) ([]approval.Request, error) {
	return a.Queue.Pending(), nil
}

func (a QueueApprovals) Get(_ context.Context, id string) (approval.Request, error) {
	for _, r := range a.Queue.Pending() {
		if r.ID == id {
			return r, nil
		}
	}
	return approval.Request{}, approval.ErrUnknown
}

func (a QueueApprovals) Decide(ctx context.Context, id string, p oidc.Person, approve bool, _ string, scope Scope) (approval.Request, error) {
	if approve && scope.Kind != ScopeOnce {
		return approval.Request{}, fmt.Errorf("%w: this broker's approvals cover one operation (scope \"once\"), not %q", ErrScope, scope.Kind)
	}
	req, err := a.Get(ctx, id)
	if err != nil {
		return req, err
	}
	if p.Email == "" {
		return req, errors.New("console: the approver has no email")
	}
	return req, a.Queue.Resolve(id, approve, p.Email)
}

// Package approval holds statements that a policy says need a person's approval (@approval("required"))
// until someone approves or denies them, the wait times out, or the statement is withdrawn (its client
// cancelled it or went away). The Queue is the broker's side of the workflow: protocol engines wait on
// it, and approvers resolve requests through the broker's admin API.
// Who may approve (OIDC login of approvers, Cedar's "approve" action) is decided before Resolve is
// called; the admin API without that login is meant for development and the demo.
package approval

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/svidbroker/svidbroker/broker/authz"
)

// Request is one statement awaiting approval. It holds no result data: only who asks, where, and the
// statement's text.
type Request struct {
	ID        string    `json:"id"`
	Session   string    `json:"session"`
	SPIFFEID  string    `json:"spiffe_id"`
	Target    string    `json:"target"`
	Statement string    `json:"statement"`
	Policies  []string  `json:"policies"`
	Decision  string    `json:"decision"`
	Created   time.Time `json:"created"`

	// What a Desk (store.go) keeps besides; the Queue of the dev approver leaves them zero.

	// Action is the operation's kind ("sql", "http", "mcp"); Fingerprint what an approval binds (a
	// statement's libpg_query fingerprint, an HTTP route and body digest, an MCP tool and argument
	// digest).
	Action      string `json:"action,omitempty"`
	Fingerprint string `json:"fingerprint,omitempty"`
	// TextDigest is the hex SHA-256 of Statement: a once-approval covers only this exact text (a
	// statement's fingerprint leaves its constants out).
	TextDigest string `json:"text_digest,omitempty"`
	// Attestation is what SPIRE attested about the caller (its selectors); Attested is false when
	// SPIRE was not asked. Owner is the agent's owner from them (OwnerOf).
	Attestation []string `json:"attestation,omitempty"`
	Attested    bool     `json:"attested,omitempty"`
	Owner       string   `json:"owner,omitempty"`
	// Required is how many distinct people must approve (@approvals); Approvals the decisions so far.
	Required  int    `json:"required,omitempty"`
	Approvals []Vote `json:"approvals,omitempty"`
	// Scope is the scope granted, once approved; Until when the grant ends.
	Scope Scope     `json:"scope,omitzero"`
	Until time.Time `json:"until,omitzero"`
	// State is StatePending, StateApproved, ...; Expires the end of the wait for a decision; Ended why
	// a request expired or was withdrawn.
	State   string    `json:"state,omitempty"`
	Expires time.Time `json:"expires,omitzero"`
	Ended   string    `json:"ended,omitempty"`
	// Waiting is true while the held operation waits (its once-approval is its own); Uses counts the
	// operations the grant covered after it.
	Waiting bool `json:"waiting,omitempty"`
	Uses    int  `json:"uses,omitempty"`
}

// ErrUnknown is returned by Resolve for a request that is not pending and did not end unresolved
// lately: it never existed, or it was resolved already.
var ErrUnknown = errors.New("approval: no such pending request")

// ErrWithdrawn and ErrExpired are what Resolve's EndedError matches for a request whose wait ended
// before anyone resolved it: withdrawn (its client cancelled the statement, disconnected, or its
// session ended) or timed out. Such a request can no longer be approved: its statement did not run.
var (
	ErrWithdrawn = errors.New("approval: request withdrawn")
	ErrExpired   = errors.New("approval: request expired")
)

// EndedError is Resolve's error for a request that ended unresolved.
type EndedError struct {
	ID string
	// State is "withdrawn" or "expired".
	State string
	// Reason says why, for a person: "the client sent a cancel request", "the client disconnected", ….
	Reason string
}

func (e *EndedError) Error() string {
	verb := "was withdrawn"
	if e.State == "expired" {
		verb = "expired"
	}
	return fmt.Sprintf("approval: request %s %s (%s), so its statement did not run and it can no longer be approved or denied",
		e.ID, verb, e.Reason)
}

// Is matches ErrWithdrawn or ErrExpired, by the request's state.
func (e *EndedError) Is(target error) bool {
	return target == ErrWithdrawn && e.State == "withdrawn" || target == ErrExpired && e.State == "expired"
}

// MaxPending bounds the requests waiting at once; beyond it new requests are refused at once.
const MaxPending = 1000

// maxEnded bounds the requests that ended unresolved which Resolve still recognizes: the oldest are
// forgotten first (Resolve then says only that the request is not pending).
const maxEnded = 1000

// Queue holds pending requests. It is safe for concurrent use.
type Queue struct {
	mu      sync.Mutex
	pending map[string]*pending
	ended   map[string]*EndedError // requests that ended unresolved, for Resolve to say so
	order   []string               // ended's IDs, oldest first

	notifier Notifier // told of requests filed and ended (SetNotifier); nil: none
}

type pending struct {
	req  Request
	done chan authz.ApprovalState // buffered; receives the outcome once
}

// NewQueue returns an empty queue.
func NewQueue() *Queue {
	return &Queue{pending: map[string]*pending{}, ended: map[string]*EndedError{}}
}

// Wait files req and blocks until it is resolved or ctx ends. A request whose wait ends unresolved
// leaves the queue: past ctx's deadline it is "expired"; cancelled, it is "withdrawn", for the reason
// ctx's cause gives (context.Cause), and the error returned is that cause. Resolve then says which.
func (q *Queue) Wait(ctx context.Context, req Request) (authz.ApprovalState, error) {
	p := &pending{req: req, done: make(chan authz.ApprovalState, 1)}
	if p.req.Created.IsZero() {
		p.req.Created = time.Now().UTC()
	}
	q.mu.Lock()
	if len(q.pending) >= MaxPending {
		q.mu.Unlock()
		return authz.ApprovalState{State: "denied"}, fmt.Errorf("approval: %d requests already pending", MaxPending)
	}
	if _, dup := q.pending[req.ID]; dup {
		q.mu.Unlock()
		return authz.ApprovalState{State: "denied"}, fmt.Errorf("approval: request %s already pending", req.ID)
	}
	q.pending[req.ID] = p
	q.mu.Unlock()
	q.notify(EventRaised, p.req, "", "")
	select {
	case st := <-p.done:
		return st, nil
	case <-ctx.Done():
		q.mu.Lock()
		if q.pending[req.ID] != p {
			// Resolve took it just as the wait ended: its outcome is on its way.
			q.mu.Unlock()
			return <-p.done, nil
		}
		delete(q.pending, req.ID)
		cause := context.Cause(ctx)
		e := &EndedError{ID: req.ID, State: "withdrawn", Reason: "its session ended"}
		switch {
		case errors.Is(cause, context.DeadlineExceeded):
			e.State, e.Reason = "expired", "nobody resolved it in time"
		case cause != nil && cause != context.Canceled:
			e.Reason = cause.Error()
		}
		q.remember(e)
		q.mu.Unlock()
		q.notify(e.State, p.req, "", e.Reason)
		if e.State == "expired" {
			return authz.ApprovalState{State: "expired"}, ctx.Err()
		}
		return authz.ApprovalState{State: "withdrawn"}, cause
	}
}

// remember keeps e for Resolve, forgetting the oldest beyond maxEnded. q.mu is held.
func (q *Queue) remember(e *EndedError) {
	if _, dup := q.ended[e.ID]; !dup {
		q.order = append(q.order, e.ID)
	}
	q.ended[e.ID] = e
	for len(q.order) > maxEnded {
		delete(q.ended, q.order[0])
		q.order = q.order[1:]
	}
}

// Pending lists the requests waiting, oldest first.
func (q *Queue) Pending() []Request {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]Request, 0, len(q.pending))
	for _, p := range q.pending {
		out = append(out, p.req)
	}
	slices.SortFunc(out, func(a, b Request) int { return a.Created.Compare(b.Created) })
	return out
}

// Resolve approves or denies a pending request on behalf of approver. A request that ended unresolved
// gives an *EndedError that says how (ErrWithdrawn, ErrExpired); one that is otherwise not pending,
// ErrUnknown.
func (q *Queue) Resolve(id string, approve bool, approver string) error {
	q.mu.Lock()
	p, ok := q.pending[id]
	delete(q.pending, id)
	e := q.ended[id]
	q.mu.Unlock()
	switch {
	case ok:
	case e != nil:
		return e
	default:
		return ErrUnknown
	}
	st := authz.ApprovalState{State: "denied", Approver: approver}
	if approve {
		st.State = "approved"
	}
	p.done <- st
	q.notify(st.State, p.req, approver, "")
	return nil
}

// Package approval holds statements that a policy says need a person's approval (@approval("required"))
// until someone approves or denies them, or the wait times out. The Queue is the broker's side of the
// workflow: protocol engines wait on it, and approvers resolve requests through the broker's admin API.
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
}

// ErrUnknown is returned by Resolve for a request that is not pending (never existed, already
// resolved, or timed out).
var ErrUnknown = errors.New("approval: no such pending request")

// MaxPending bounds the requests waiting at once; beyond it new requests are refused at once.
const MaxPending = 1000

// Queue holds pending requests. It is safe for concurrent use.
type Queue struct {
	mu      sync.Mutex
	pending map[string]*pending
}

type pending struct {
	req  Request
	done chan authz.ApprovalState // buffered; receives the outcome once
}

// NewQueue returns an empty queue.
func NewQueue() *Queue { return &Queue{pending: map[string]*pending{}} }

// Wait files req and blocks until it is resolved or ctx ends. A request whose wait ends unresolved is
// withdrawn and reported as "expired".
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
	select {
	case st := <-p.done:
		return st, nil
	case <-ctx.Done():
		q.mu.Lock()
		delete(q.pending, req.ID)
		q.mu.Unlock()
		select {
		case st := <-p.done: // resolved just as the wait ended
			return st, nil
		default:
		}
		return authz.ApprovalState{State: "expired"}, ctx.Err()
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

// Resolve approves or denies a pending request on behalf of approver.
func (q *Queue) Resolve(id string, approve bool, approver string) error {
	q.mu.Lock()
	p, ok := q.pending[id]
	delete(q.pending, id)
	q.mu.Unlock()
	if !ok {
		return ErrUnknown
	}
	st := authz.ApprovalState{State: "denied", Approver: approver}
	if approve {
		st.State = "approved"
	}
	p.done <- st
	return nil
}

package authz

import "sync"

// changes tells waiters that a new policy set is in force: each Changed channel closes at the next
// load, so a waiter re-decides what it allowed under the previous set.
type changes struct {
	mu sync.Mutex
	ch chan struct{}
}

// Changed returns a channel that closes when a new policy set comes into force.
func (e *Engine) Changed() <-chan struct{} {
	e.changes.mu.Lock()
	defer e.changes.mu.Unlock()
	if e.changes.ch == nil {
		e.changes.ch = make(chan struct{})
	}
	return e.changes.ch
}

// changed closes the current Changed channel.
func (e *Engine) changed() {
	e.changes.mu.Lock()
	defer e.changes.mu.Unlock()
	if e.changes.ch != nil {
		close(e.changes.ch)
		e.changes.ch = nil
	}
}

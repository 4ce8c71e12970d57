package approval

import "time"

// What happens to a request, as an Event's Kind names it.
const (
	// EventRaised: an operation was held and its request filed.
	EventRaised = "raised"
	// EventApproved and EventDenied: a person resolved the request.
	EventApproved = "approved"
	EventDenied   = "denied"
	// EventExpired: nobody resolved the request in time; EventWithdrawn: its client cancelled the
	// operation, went away, or its session ended.
	EventExpired   = "expired"
	EventWithdrawn = "withdrawn"
	// EventUsed: a granted approval let an operation run.
	EventUsed = "used"
)

// Event is something that happened to a request, for people to be told of it (broker/approval/notify).
type Event struct {
	// Kind is one of the Event* constants.
	Kind    string
	Request Request
	// By names who resolved the request (approved, denied).
	By string
	// Reason says why the request ended unresolved (expired, withdrawn).
	Reason string
	// At is when it happened.
	At time.Time
}

// Notifier is told of events. Notify is called on the path of a held operation and while an approver
// waits for an answer, so it must not block: a notifier that cannot keep up drops events, never the
// operation.
type Notifier interface {
	Notify(Event)
}

// SetNotifier tells n of every request q files and every one that ends, from now on. Call it before
// q is used.
func (q *Queue) SetNotifier(n Notifier) { q.notifier = n }

// notify tells q's notifier, if it has one. q.mu is not held.
func (q *Queue) notify(kind string, req Request, by, reason string) {
	if q.notifier == nil {
		return
	}
	q.notifier.Notify(Event{Kind: kind, Request: req, By: by, Reason: reason, At: time.Now().UTC()})
}

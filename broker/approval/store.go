package approval

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/svidbroker/svidbroker/broker/approval/oidc"
	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/broker/authz"
)

// Scope is what an approval covers besides the held operation itself.
type Scope struct {
	// Kind is "once" (the held operation, or, if it is gone, the next operation with the same binding),
	// "fingerprint" (operations of the same fingerprint by the same caller on the same target, For
	// long) or "session" (every operation of the held one's session, For long).
	Kind string `json:"kind"`
	// For is how long a "fingerprint" or "session" grant lasts after it is granted; for "once", how
	// long the grant waits to be used (default DefaultOnceFor).
	For time.Duration `json:"for"`
}

// Limits on scopes.
const (
	DefaultOnceFor = 10 * time.Minute
	MaxScopeFor    = 24 * time.Hour
	maxReasonBytes = 1024
)

// ErrScope is what a scope's errors match.
var ErrScope = errors.New("approval: invalid scope")

// Validate says what is wrong with s.
func (s Scope) Validate() error {
	switch s.Kind {
	case "once":
		if s.For < 0 || s.For > MaxScopeFor {
			return fmt.Errorf("%w: once: for must be between 0 and %s", ErrScope, MaxScopeFor)
		}
	case "fingerprint", "session":
		if s.For < time.Minute || s.For > MaxScopeFor {
			return fmt.Errorf("%w: %s needs for between 1m and %s (got %s)", ErrScope, s.Kind, MaxScopeFor, s.For)
		}
	default:
		return fmt.Errorf("%w %q: use once, fingerprint or session", ErrScope, s.Kind)
	}
	return nil
}

// Vote is one person's decision on a request.
type Vote struct {
	Email   string    `json:"email"`
	Issuer  string    `json:"issuer"`
	Subject string    `json:"subject"`
	Approve bool      `json:"approve"`
	Reason  string    `json:"reason,omitempty"`
	At      time.Time `json:"at"`
}

// Request states in a Store.
const (
	StatePending   = "pending"
	StateApproved  = "approved" // granted; a grant until Until (or its single use)
	StateDenied    = "denied"
	StateExpired   = "expired"
	StateWithdrawn = "withdrawn"
	StateUsed      = "used" // a once-approval, used
)

// ErrRefused is what Decide's refusals match: the person may not decide this request (Cedar's
// approve, separation of duties), or the request cannot be decided any more.
var ErrRefused = errors.New("approval: decision refused")

// Store is the approvals API of the console and the CLI.
type Store interface {
	// Pending lists the requests awaiting a decision, oldest first.
	Pending(ctx context.Context) ([]Request, error)
	// Get returns one request, in any state.
	Get(ctx context.Context, id string) (Request, error)
	// Decide records one person's decision; Cedar `approve` and separation of duties are checked
	// here; the request resolves when enough distinct approvals are in (or at the first denial).
	Decide(ctx context.Context, id string, p oidc.Person, approve bool, reason string, scope Scope) (Request, error)
}

// Backend keeps a Desk's requests: a journal in the state directory (OpenJournal), or a database
// several brokers share.
type Backend interface {
	// Update runs fn on request id's latest state (exists false, r zero, when there is none) and
	// stores what fn leaves in r, atomically and durably, before it returns. fn's error stores
	// nothing and is returned.
	Update(ctx context.Context, id string, fn func(r *Request, exists bool) error) (Request, error)
	// Get returns request id.
	Get(ctx context.Context, id string) (Request, bool, error)
	// Live lists the requests pending or approved (grants not yet used).
	Live(ctx context.Context) ([]Request, error)
	// Changed returns a channel closed at the next change (of this process or another broker's).
	Changed() <-chan struct{}
}

// Authorize decides whether p may approve or deny r (Cedar's approve action); an error refuses.
type Authorize func(p oidc.Person, r Request) error

// Desk is the Store of a broker whose approvers log in with OIDC: requests are raised by holds
// (Raise, Wait), decided by people (Decide), and their grants cover later operations (Use).
type Desk struct {
	backend   Backend
	authorize Authorize
	// record writes an audit record durably; its error refuses the step it records.
	record func(audit.Record) error
	now    func() time.Time
	// onChange, if set (SetOnChange), is told of every request raised or decided (notifications).
	onChange atomic.Pointer[func(Request)]
}

// DeskConfig configures a Desk.
type DeskConfig struct {
	Backend   Backend
	Authorize Authorize
	// Record writes an audit record durably (the broker's audit sink); nil records nothing.
	Record func(audit.Record) error
	Now    func() time.Time
}

// NewDesk returns a Desk. Authorize is required: without Cedar nobody approves.
func NewDesk(cfg DeskConfig) (*Desk, error) {
	if cfg.Backend == nil || cfg.Authorize == nil {
		return nil, errors.New("approval: a desk needs a backend and an authorizer")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Record == nil {
		cfg.Record = func(audit.Record) error { return nil }
	}
	return &Desk{backend: cfg.Backend, authorize: cfg.Authorize, record: cfg.Record, now: cfg.Now}, nil
}

var _ Store = (*Desk)(nil)

// Pending lists the requests awaiting a decision, oldest first; those past their deadline are left out.
func (d *Desk) Pending(ctx context.Context) ([]Request, error) {
	live, err := d.backend.Live(ctx)
	if err != nil {
		return nil, err
	}
	now := d.now()
	out := live[:0]
	for _, r := range live {
		if r.State == StatePending && now.Before(r.Expires) {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b Request) int { return a.Created.Compare(b.Created) })
	return out, nil
}

// Get returns request id, or ErrUnknown.
func (d *Desk) Get(ctx context.Context, id string) (Request, error) {
	r, ok, err := d.backend.Get(ctx, id)
	if err != nil {
		return Request{}, err
	}
	if !ok {
		return Request{}, ErrUnknown
	}
	return r, nil
}

// Raise files a new pending request, waiting until timeout from now.
func (d *Desk) Raise(ctx context.Context, r Request, timeout time.Duration) error {
	live, err := d.backend.Live(ctx)
	if err != nil {
		return err
	}
	if len(live) >= MaxPending {
		return fmt.Errorf("approval: %d requests already pending or granted", MaxPending)
	}
	now := d.now().UTC()
	r.Created, r.Expires, r.State, r.Waiting = now, now.Add(timeout), StatePending, true
	r.Approvals, r.Until = nil, time.Time{}
	r.TextDigest = TextDigest(r.Statement)
	if r.Required < 1 {
		r.Required = 1
	}
	stored, err := d.backend.Update(ctx, r.ID, func(cur *Request, exists bool) error {
		if exists {
			return fmt.Errorf("approval: request %s already exists", r.ID)
		}
		*cur = r
		return nil
	})
	if err == nil {
		d.changed(stored)
	}
	return err
}

// pollInterval bounds how long a wait takes to see a decision made through another broker whose
// backend signals no change.
const pollInterval = 500 * time.Millisecond

// Wait blocks until request id is decided or ctx ends. Approved, a once-approval is used by the
// caller (state "used"). When ctx ends first, a request still pending is "expired" (ctx's deadline)
// or "withdrawn"; an approval that comes as it ends stays a grant for the next operation its binding
// covers.
func (d *Desk) Wait(ctx context.Context, id string) (Request, error) {
	for {
		changed := d.backend.Changed()
		r, ok, err := d.backend.Get(ctx, id)
		switch {
		case err != nil && ctx.Err() == nil:
			return Request{}, err
		case err == nil && !ok:
			return Request{}, ErrUnknown
		case err == nil && r.State != StatePending:
			return d.take(id, r)
		}
		t := time.NewTimer(pollInterval)
		select {
		case <-changed:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return d.end(ctx, id)
		}
		t.Stop()
	}
}

// take ends the wait of a decided request: an approval is used by the held operation.
func (d *Desk) take(id string, r Request) (Request, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := d.backend.Update(ctx, id, func(cur *Request, exists bool) error {
		if !exists {
			return ErrUnknown
		}
		cur.Waiting = false
		if cur.State == StateApproved && cur.Scope.Kind == "once" {
			cur.State = StateUsed
		}
		return nil
	})
	if err != nil {
		return r, err
	}
	d.changed(out)
	if out.State == StateUsed && r.State == StateApproved {
		out.State = StateApproved // to the waiter: approved (and used by it)
	}
	return out, nil
}

// end ends a wait whose ctx ended: the request expires or is withdrawn unless it was decided.
func (d *Desk) end(ctx context.Context, id string) (Request, error) {
	bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	cause := context.Cause(ctx)
	out, err := d.backend.Update(bg, id, func(cur *Request, exists bool) error {
		if !exists {
			return ErrUnknown
		}
		cur.Waiting = false
		if cur.State != StatePending {
			return nil
		}
		if errors.Is(cause, ErrBrokerStopping) {
			return nil // stays pending: approved after the restart, it covers the statement sent again
		}
		if errors.Is(cause, context.DeadlineExceeded) {
			cur.State, cur.Ended = StateExpired, "nobody resolved it in time"
		} else {
			cur.State, cur.Ended = StateWithdrawn, "its session ended"
			if cause != nil && cause != context.Canceled {
				cur.Ended = cause.Error()
			}
		}
		return nil
	})
	if err != nil {
		return Request{}, err
	}
	d.changed(out)
	if out.State == StateExpired {
		return out, ctx.Err()
	}
	if out.State == StateWithdrawn || out.State == StatePending {
		return out, cause
	}
	return out, nil // decided as the wait ended: the caller decides whether the operation still runs
}

// ErrBrokerStopping is the cause of a wait that ends because the broker shuts down: its request
// stays pending (its client is gone, and an approval after the restart covers the operation sent
// again, within its binding).
var ErrBrokerStopping = errors.New("the broker is shutting down")

// Binding is what a later operation offers for a grant to cover it.
type Binding struct {
	SPIFFEID, Target, Session, Fingerprint string
	// TextDigest is the hex SHA-256 of the operation's text (TextDigest).
	TextDigest string
}

// TextDigest is the hex SHA-256 of an operation's text, as a Request and a Binding carry it.
func TextDigest(text string) string {
	sum := sha256.Sum256([]byte(text))
	return hex.EncodeToString(sum[:])
}

// Use returns a grant that covers b, using it when it is a once-approval, or ok false. A once-approval
// whose held operation still waits is not used here.
func (d *Desk) Use(ctx context.Context, b Binding) (Request, bool, error) {
	live, err := d.backend.Live(ctx)
	if err != nil {
		return Request{}, false, err
	}
	now := d.now()
	for _, r := range live {
		if !covers(r, b, now) {
			continue
		}
		out, err := d.backend.Update(ctx, r.ID, func(cur *Request, exists bool) error {
			if !exists || !covers(*cur, b, d.now()) {
				return errNotCovered
			}
			cur.Uses++
			if cur.Scope.Kind == "once" {
				cur.State = StateUsed
			}
			return nil
		})
		if errors.Is(err, errNotCovered) {
			continue // used or changed meanwhile
		}
		if err != nil {
			return Request{}, false, err
		}
		d.changed(out)
		return out, true, nil
	}
	return Request{}, false, nil
}

var errNotCovered = errors.New("approval: grant no longer covers the operation")

// covers says whether grant r covers b at now: the same caller and target, within its time, and the
// same fingerprint (once, fingerprint) or session (session).
func covers(r Request, b Binding, now time.Time) bool {
	if r.State != StateApproved || r.SPIFFEID != b.SPIFFEID || r.Target != b.Target || !now.Before(r.Until) {
		return false
	}
	switch r.Scope.Kind {
	case "once":
		return !r.Waiting && r.Fingerprint != "" && r.Fingerprint == b.Fingerprint && r.TextDigest == b.TextDigest
	case "fingerprint":
		return r.Fingerprint != "" && r.Fingerprint == b.Fingerprint
	case "session":
		return r.Session != "" && r.Session == b.Session
	}
	return false
}

// Decide records p's decision on request id. It is refused (ErrRefused) when the request is not
// pending, when p is the agent's owner or already decided it, or when Cedar's approve does not permit
// p; a denial resolves the request at once, an approval when Required distinct people approved. The
// decision is in the backend, and its audit record durable, before Decide returns.
func (d *Desk) Decide(ctx context.Context, id string, p oidc.Person, approve bool, reason string, scope Scope) (Request, error) {
	if p.Email == "" || p.Issuer == "" || p.Subject == "" {
		return Request{}, fmt.Errorf("%w: the approver's identity is incomplete (issuer, subject and email are required)", ErrRefused)
	}
	if len(reason) > maxReasonBytes {
		return Request{}, fmt.Errorf("%w: the reason is longer than %d bytes", ErrRefused, maxReasonBytes)
	}
	if approve {
		if err := scope.Validate(); err != nil {
			return Request{}, err
		}
	}
	now := d.now().UTC()
	out, err := d.backend.Update(ctx, id, func(r *Request, exists bool) error {
		if !exists {
			return ErrUnknown
		}
		if r.State != StatePending {
			return fmt.Errorf("%w: request %s is %s, not pending", ErrRefused, id, r.State)
		}
		if !now.Before(r.Expires) {
			return fmt.Errorf("%w: request %s expired at %s", ErrRefused, id, r.Expires.Format(time.RFC3339))
		}
		for _, owner := range strings.Split(r.Owner, ",") {
			if owner != "" && strings.EqualFold(owner, p.Email) {
				return fmt.Errorf("%w: %s owns the agent that asked (attested agent:owner), and may not decide its requests", ErrRefused, p.Email)
			}
		}
		for _, v := range r.Approvals {
			if strings.EqualFold(v.Email, p.Email) || v.Issuer == p.Issuer && v.Subject == p.Subject {
				return fmt.Errorf("%w: %s already decided request %s; another person must", ErrRefused, p.Email, id)
			}
		}
		if err := d.authorize(p, *r); err != nil {
			return fmt.Errorf("%w: %v", ErrRefused, err)
		}
		r.Approvals = append(r.Approvals, Vote{Email: p.Email, Issuer: p.Issuer, Subject: p.Subject, Approve: approve, Reason: reason, At: now})
		approvals := 0
		for _, v := range r.Approvals {
			if v.Approve {
				approvals++
			}
		}
		switch {
		case !approve:
			r.State = StateDenied
		case approvals >= r.Required:
			r.State, r.Scope = StateApproved, scope
			if scope.Kind == "once" && scope.For == 0 {
				r.Scope.For = DefaultOnceFor
			}
			r.Until = now.Add(r.Scope.For)
		}
		return d.record(voteRecord(*r, p, approve, reason, approvals))
	})
	if err != nil {
		return Request{}, err
	}
	d.changed(out)
	return out, nil
}

// voteRecord is the audit record of one person's decision.
func voteRecord(r Request, p oidc.Person, approve bool, reason string, approvals int) audit.Record {
	detail := map[string]string{"request": r.ID, "state": "vote", "approver": p.Email, "issuer": p.Issuer,
		"subject": p.Subject, "vote": "deny", "approvals": fmt.Sprintf("%d of %d", approvals, r.Required),
		"outcome": r.State, "fingerprint": r.Fingerprint}
	if approve {
		detail["vote"] = "approve"
	}
	if reason != "" {
		detail["reason"] = reason
	}
	if r.State == StateApproved {
		detail["scope"] = r.Scope.Kind
		detail["until"] = r.Until.Format(time.RFC3339)
	}
	return audit.Record{Time: r.Approvals[len(r.Approvals)-1].At, Kind: audit.KindApproval, Session: r.Session,
		SPIFFEID: r.SPIFFEID, Target: r.Target, Detail: detail}
}

// Now is the desk's clock.
func (d *Desk) Now() time.Time { return d.now() }

// SetOnChange tells f of every request d raises or decides from now on, and every one it ends or
// whose grant is used; f must not block. Safe while d is in use.
func (d *Desk) SetOnChange(f func(Request)) { d.onChange.Store(&f) }

func (d *Desk) changed(r Request) {
	if f := d.onChange.Load(); f != nil {
		(*f)(r)
	}
}

// Approvers joins the emails of the people who approved r.
func (r Request) Approvers() string {
	var out []string
	for _, v := range r.Approvals {
		if v.Approve {
			out = append(out, v.Email)
		}
	}
	return strings.Join(out, ", ")
}

// Denier is the email of the person who denied r, if anyone did.
func (r Request) Denier() string {
	for _, v := range r.Approvals {
		if !v.Approve {
			return v.Email
		}
	}
	return ""
}

// OwnerOf reads the agent's owners from its attested selectors (authz.OwnerOf).
func OwnerOf(selectors []string) string { return authz.OwnerOf(selectors) }

// sweepGrace is how long past its deadline a request whose wait is still marked is left to its
// waiter (which ends it itself) before a sweep ends it: its broker may have died.
const sweepGrace = time.Minute

// Sweep ends what ran out of time, each with an audit record: a request pending past its deadline
// that nobody waits for any more (its broker restarted or died), "expired"; a grant past its end,
// "expired" too, saying how many operations it covered.
func (d *Desk) Sweep(ctx context.Context) error {
	live, err := d.backend.Live(ctx)
	if err != nil {
		return err
	}
	now := d.now().UTC()
	var errs []error
	for _, r := range live {
		if !stale(r, now) {
			continue
		}
		out, err := d.backend.Update(ctx, r.ID, func(cur *Request, exists bool) error {
			if !exists || !stale(*cur, now) {
				return errNotCovered
			}
			detail := map[string]string{"request": cur.ID, "state": StateExpired}
			if cur.State == StatePending {
				cur.Ended = "nobody resolved it in time"
			} else {
				cur.Ended = fmt.Sprintf("its %s grant ended after covering %d later operations", cur.Scope.Kind, cur.Uses)
			}
			detail["reason"] = cur.Ended
			cur.State = StateExpired
			return d.record(audit.Record{Time: now, Kind: audit.KindApproval, Session: cur.Session, SPIFFEID: cur.SPIFFEID,
				Target: cur.Target, Detail: detail})
		})
		if errors.Is(err, errNotCovered) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		d.changed(out)
	}
	return errors.Join(errs...)
}

// stale says whether r ran out of time at now.
func stale(r Request, now time.Time) bool {
	switch r.State {
	case StatePending:
		end := r.Expires
		if r.Waiting {
			end = end.Add(sweepGrace)
		}
		return !now.Before(end)
	case StateApproved:
		return !r.Waiting && !now.Before(r.Until)
	}
	return false
}

// Run sweeps every interval until ctx ends, logging what fails.
func (d *Desk) Run(ctx context.Context, interval time.Duration, logf func(error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := d.Sweep(ctx); err != nil && ctx.Err() == nil {
				logf(err)
			}
		}
	}
}

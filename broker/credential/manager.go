package credential

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Manager runs the leases of sessions.
type Manager struct {
	provider Provider
	journal  *Journal
	log      *slog.Logger
	timeout  time.Duration // bounds each call to the provider
	reuse    time.Duration // how long a lease outlives its last session, for the next of the same caller
	backoff  backoff

	// closed stops revocations retried in the background (under mu); retries counts them.
	closed  bool
	closing chan struct{}
	retries sync.WaitGroup

	mu     sync.Mutex
	pool   map[poolKey]*held
	nextID int
	// Acquired and Reused count leases obtained from the provider and handed out again.
	Acquired, Reused atomic.Int64
}

type poolKey struct {
	principal string
	src       Source
}

// held is a lease kept alive for the sessions that use it.
type held struct {
	lease *Lease
	// expires is when the lease expires at the latest: its TTL counted from when the request that
	// obtained or last renewed it was sent, since the provider counts it from some time after.
	expires time.Time
	key     poolKey
	refs    int
	ends    map[int]func(error)
	idle    *time.Timer
	// released is set by whoever takes on revoking the lease, so that it is released once.
	released bool
	cancel   context.CancelFunc
	done     chan struct{}
}

// NewManager returns a manager; journal may be nil (no crash recovery) only in tests. With reuse > 0,
// sessions of the same caller and role share a lease, which outlives the last of them by reuse; with
// reuse 0, every session has a lease of its own.
func NewManager(p Provider, j *Journal, log *slog.Logger, timeout, reuse time.Duration) *Manager {
	if log == nil {
		log = slog.Default()
	}
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	return &Manager{provider: p, journal: j, log: log, timeout: timeout, reuse: reuse, backoff: defaultBackoff,
		pool: map[poolKey]*held{}, closing: make(chan struct{})}
}

// Sweep revokes the leases a previous run left in the journal and returns the IDs of those it
// revoked; those it could not revoke stay in the journal.
func (m *Manager) Sweep(ctx context.Context) (revoked []string, err error) {
	ids, err := m.journal.List()
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, id := range ids {
		cctx, cancel := context.WithTimeout(ctx, m.timeout)
		rerr := m.provider.Revoke(cctx, id)
		cancel()
		if rerr != nil {
			errs = append(errs, fmt.Errorf("revoke orphaned lease %s: %w", id, rerr))
			continue
		}
		revoked = append(revoked, id)
		errs = append(errs, m.journal.Remove(id))
	}
	return revoked, errors.Join(errs...)
}

// Session is one session's use of a lease.
type Session struct {
	Lease *Lease
	m     *Manager
	h     *held
	id    int
	once  sync.Once
	ended Release
}

// Start gives a session of principal a credential from src, its lease kept renewed. end is called,
// once, if the lease cannot be kept (renewal failed, or the lease reached its maximum lifetime): the
// caller must then end the session. The caller must call End when the session ends.
func (m *Manager) Start(ctx context.Context, principal string, src Source, end func(error)) (*Session, error) {
	key := poolKey{principal, src}
	m.mu.Lock()
	if h := m.pool[key]; h != nil && m.reuse > 0 {
		if h.idle != nil {
			h.idle.Stop()
			h.idle = nil
		}
		m.nextID++
		h.refs++
		h.ends[m.nextID] = end
		s := &Session{Lease: h.lease, m: m, h: h, id: m.nextID}
		m.mu.Unlock()
		m.Reused.Add(1)
		return s, nil
	}
	m.mu.Unlock()

	cctx, cancel := context.WithTimeout(ctx, m.timeout)
	sent := time.Now()
	lease, err := m.provider.Acquire(cctx, src)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	m.Acquired.Add(1)
	if !lease.Static && m.journal != nil {
		if err := m.journal.Add(lease.ID); err != nil {
			m.revoke(ctx, lease.ID)
			return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
	}
	rctx, rcancel := context.WithCancel(context.WithoutCancel(ctx))
	h := &held{lease: lease, expires: sent.Add(lease.TTL), key: key, refs: 1, ends: map[int]func(error){}, cancel: rcancel, done: make(chan struct{})}
	m.mu.Lock()
	m.nextID++
	h.ends[m.nextID] = end
	s := &Session{Lease: lease, m: m, h: h, id: m.nextID}
	if m.reuse > 0 && m.pool[key] == nil {
		m.pool[key] = h
	}
	m.mu.Unlock()
	if lease.Static {
		close(h.done) // nothing to renew
	} else {
		go m.renew(rctx, h)
	}
	return s, nil
}

// renew renews at half the remaining TTL until cancelled. A renewal that fails transiently is retried,
// with backoff, while the lease has time left; one that fails for good ends the sessions at once, and
// one that comes back shorter than it needs to be (the lease hit its max TTL) ends them before the lease
// expires.
func (m *Manager) renew(ctx context.Context, h *held) {
	defer close(h.done)
	ttl, expires := h.lease.TTL, h.expires
	fail := func(err error) {
		m.mu.Lock()
		m.unpoolLocked(h)
		ends := make([]func(error), 0, len(h.ends))
		for _, e := range h.ends {
			ends = append(ends, e)
		}
		m.mu.Unlock()
		for _, e := range ends {
			e(err)
		}
	}
	for {
		wait := max(time.Until(expires.Add(-ttl/2)), 100*time.Millisecond)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		if !h.lease.Renewable {
			fail(fmt.Errorf("credential: lease %s is not renewable and expires", h.lease.ID))
			return
		}
		// Sessions end with a tenth of the TTL to spare, before the credential stops working.
		next, sent, err := m.renewRetrying(ctx, h, expires.Add(-ttl/10))
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			fail(fmt.Errorf("credential: renewing lease %s failed: %w", h.lease.ID, err))
			return
		}
		if next < ttl/2 {
			// The lease cannot be extended further: end the sessions before it expires.
			select {
			case <-ctx.Done():
			case <-time.After(time.Until(sent.Add(next * 3 / 4))):
				fail(fmt.Errorf("credential: lease %s reached its maximum lifetime", h.lease.ID))
			}
			return
		}
		ttl, expires = next, sent.Add(next)
	}
}

// renewRetrying renews h's lease, retrying transient failures with backoff, the last time with what
// time is left before deadline. It returns the new TTL and when the request that obtained it was
// sent. From the first failure on, the lease is no longer handed to new sessions.
func (m *Manager) renewRetrying(ctx context.Context, h *held, deadline time.Time) (next time.Duration, sent time.Time, err error) {
	id, last := h.lease.ID, false
	for attempt := 0; ; attempt++ {
		sent = time.Now()
		callDeadline := sent.Add(m.timeout)
		if deadline.Before(callDeadline) {
			callDeadline = deadline
		}
		cctx, cancel := context.WithDeadline(ctx, callDeadline)
		next, err = m.provider.Renew(cctx, id)
		timedOut := errors.Is(cctx.Err(), context.DeadlineExceeded)
		cancel()
		if err == nil || ctx.Err() != nil {
			return next, sent, err
		}
		m.unpool(h)
		// A call that ran out its own time found the provider unreachable, which may pass.
		if !errors.Is(err, ErrTransient) && !timedOut {
			return 0, sent, fmt.Errorf("%w (not retried: the failure is not transient)", err)
		}
		left := time.Until(deadline)
		if last || left <= 0 {
			return 0, sent, fmt.Errorf("%w (%d attempts; no time left to retry before the lease expires)", err, attempt+1)
		}
		// A wait that would leave the next attempt less than its time before the deadline is cut
		// short, for one last attempt, rather than giving up with time left.
		wait := m.backoff.wait(attempt)
		if budget := min(m.timeout, left/2); wait > left-budget {
			wait, last = left-budget, true
		}
		m.log.WarnContext(ctx, "lease renewal failed; retrying", "lease", id, "attempt", attempt+1, "retry_in", wait, "error", err)
		select {
		case <-ctx.Done():
			return 0, sent, ctx.Err()
		case <-time.After(wait):
		}
	}
}

// Release is what became of a lease when a session ended its use of it, as the audit log says it.
type Release string

const (
	// Revoked: the session was the lease's last user, and the lease is revoked.
	Revoked Release = "revoked"
	// RevocationRetrying: the lease's revocation failed, and is retried in the background.
	RevocationRetrying Release = "revocation failed, retrying"
	// InUse: other sessions of the same caller still use the lease.
	InUse Release = "still in use"
	// Pooled: the lease waits for reuse, and is revoked if no session takes it up in time.
	Pooled Release = "kept for reuse"
	// NotRevocable: a static credential, which no revocation applies to.
	NotRevocable Release = "static, not revoked"
)

// End releases the session's use of its lease, and says what became of the lease. The last session
// to end revokes it, at once or, with reuse, after the reuse window if no session of the same caller
// took it up meanwhile. Later calls return what the first one did.
func (s *Session) End() Release {
	s.once.Do(func() {
		m, h := s.m, s.h
		m.mu.Lock()
		delete(h.ends, s.id)
		h.refs--
		if h.refs > 0 {
			m.mu.Unlock()
			s.ended = InUse
			return
		}
		if m.reuse > 0 && m.pool[h.key] == h {
			h.idle = time.AfterFunc(m.reuse, func() {
				m.mu.Lock()
				if h.refs > 0 || h.released {
					m.mu.Unlock()
					return
				}
				h.released = true
				if m.pool[h.key] == h {
					delete(m.pool, h.key)
				}
				m.mu.Unlock()
				m.release(h)
			})
			m.mu.Unlock()
			s.ended = Pooled
			return
		}
		if m.pool[h.key] == h {
			delete(m.pool, h.key)
		}
		h.released = true
		m.mu.Unlock()
		s.ended = m.release(h)
	})
	return s.ended
}

// Close revokes the leases kept for reuse that no session holds, then stops the revocations being
// retried in the background and cuts short any revocation call in flight, without waiting for a hung
// provider: the leases they were for stay in the journal, for the next start's sweep.
func (m *Manager) Close() {
	defer func() {
		m.mu.Lock()
		if !m.closed {
			m.closed = true
			close(m.closing)
		}
		m.mu.Unlock()
		m.retries.Wait()
	}()
	m.mu.Lock()
	var idle []*held
	for k, h := range m.pool {
		if h.refs == 0 && !h.released {
			if h.idle != nil {
				h.idle.Stop()
			}
			h.released = true
			delete(m.pool, k)
			idle = append(idle, h)
		}
	}
	m.mu.Unlock()
	for _, h := range idle {
		m.release(h)
	}
}

// unpool stops h's lease being handed to new sessions.
func (m *Manager) unpool(h *held) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.unpoolLocked(h)
}

func (m *Manager) unpoolLocked(h *held) {
	if m.pool[h.key] == h {
		delete(m.pool, h.key)
	}
	if h.refs == 0 && h.idle != nil {
		// Idle, it waits for no one: revoke it now rather than at the end of the reuse window.
		h.idle.Reset(0)
	}
}

func (m *Manager) release(h *held) Release {
	h.cancel()
	<-h.done
	if h.lease.Static {
		return NotRevocable
	}
	return m.revoke(context.Background(), h.lease.ID)
}

// revoke revokes the lease and removes it from the journal; if the provider fails, the revocation is
// retried in the background. ctx carries values for the logs; its cancellation is ignored.
func (m *Manager) revoke(ctx context.Context, id string) Release {
	ctx = context.WithoutCancel(ctx)
	err := m.revokeOnce(ctx, id)
	if err == nil {
		return Revoked
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		m.log.ErrorContext(ctx, "lease revocation failed; it stays in the journal for the next sweep", "lease", id, "error", err)
		return RevocationRetrying
	}
	m.log.WarnContext(ctx, "lease revocation failed; retrying in the background", "lease", id, "error", err)
	m.retries.Add(1)
	go m.retryRevoke(ctx, id, err)
	return RevocationRetrying
}

// retryRevoke retries a failed revocation with backoff, a bounded number of times within a bounded
// time, until Close.
func (m *Manager) retryRevoke(ctx context.Context, id string, err error) {
	defer m.retries.Done()
	deadline := time.Now().Add(m.backoff.revokeWithin)
	attempts := 1
	for n := 0; n < m.backoff.revokeAttempts; n++ {
		wait := m.backoff.wait(n)
		if time.Now().Add(wait).After(deadline) {
			break
		}
		select {
		case <-m.closing:
			m.log.WarnContext(ctx, "shutting down: lease revocation not retried further; it stays in the journal for the next sweep", "lease", id)
			return
		case <-time.After(wait):
		}
		attempts++
		if err = m.revokeOnce(ctx, id); err == nil {
			m.log.InfoContext(ctx, "lease revoked on retry", "lease", id, "attempts", attempts)
			return
		}
	}
	m.log.ErrorContext(ctx, "lease revocation failed; it stays in the journal for the next sweep", "lease", id, "attempts", attempts, "error", err)
}

// revokeOnce makes one revocation call, bounded by the call timeout and cut short by Close, which
// does not wait for a hung provider: a lease not revoked stays in the journal for the next sweep.
func (m *Manager) revokeOnce(ctx context.Context, id string) error {
	cctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	go func() {
		select {
		case <-m.closing:
			cancel()
		case <-cctx.Done():
		}
	}()
	if err := m.provider.Revoke(cctx, id); err != nil {
		return err
	}
	if m.journal != nil {
		if err := m.journal.Remove(id); err != nil {
			m.log.ErrorContext(ctx, "journal", "error", err)
		}
	}
	return nil
}

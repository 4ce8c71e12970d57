package credential

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Manager runs the lease of each session.
type Manager struct {
	provider Provider
	journal  *Journal
	log      *slog.Logger
	// Timeout bounds each call to the provider.
	timeout time.Duration
}

// NewManager returns a manager; journal may be nil (no crash recovery) only in tests.
func NewManager(p Provider, j *Journal, log *slog.Logger, timeout time.Duration) *Manager {
	if log == nil {
		log = slog.Default()
	}
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	return &Manager{provider: p, journal: j, log: log, timeout: timeout}
}

// Sweep revokes the leases a previous run left in the journal.
func (m *Manager) Sweep(ctx context.Context) (revoked int, err error) {
	ids, err := m.journal.List()
	if err != nil {
		return 0, err
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
		revoked++
		errs = append(errs, m.journal.Remove(id))
	}
	return revoked, errors.Join(errs...)
}

// Session is one session's lease, renewed until End.
type Session struct {
	Lease  *Lease
	m      *Manager
	cancel context.CancelFunc
	done   chan struct{}
}

// Start leases a credential for role and keeps it renewed. end is called, once, if the lease cannot be
// kept (renewal failed, or the lease reached its maximum lifetime): the caller must then end the
// session. The caller must call End when the session ends.
func (m *Manager) Start(ctx context.Context, role string, end func(error)) (*Session, error) {
	cctx, cancel := context.WithTimeout(ctx, m.timeout)
	lease, err := m.provider.Acquire(cctx, role)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if m.journal != nil {
		if err := m.journal.Add(lease.ID); err != nil {
			m.revoke(lease.ID)
			return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
	}
	rctx, rcancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &Session{Lease: lease, m: m, cancel: rcancel, done: make(chan struct{})}
	go s.renew(rctx, end)
	return s, nil
}

// renew renews at half the remaining TTL until cancelled. A renewal that fails, or that comes back
// shorter than it needs to be (the lease hit its max TTL), ends the session before the lease expires.
func (s *Session) renew(ctx context.Context, end func(error)) {
	defer close(s.done)
	ttl := s.Lease.TTL
	for {
		wait := ttl / 2
		if wait < 100*time.Millisecond {
			wait = 100 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		if !s.Lease.Renewable {
			end(fmt.Errorf("credential: lease %s is not renewable and expires", s.Lease.ID))
			return
		}
		cctx, cancel := context.WithTimeout(ctx, s.m.timeout)
		next, err := s.m.provider.Renew(cctx, s.Lease.ID)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			end(fmt.Errorf("credential: renewing lease %s failed: %w", s.Lease.ID, err))
			return
		}
		if next < ttl/2 {
			// The lease cannot be extended further: end the session before it expires.
			select {
			case <-ctx.Done():
			case <-time.After(next * 3 / 4):
				end(fmt.Errorf("credential: lease %s reached its maximum lifetime", s.Lease.ID))
			}
			return
		}
		ttl = next
	}
}

// End stops renewing and revokes the lease. The journal keeps the lease if revocation fails, for
// the next sweep.
func (s *Session) End() {
	s.cancel()
	<-s.done
	s.m.revoke(s.Lease.ID)
}

func (m *Manager) revoke(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), m.timeout)
	defer cancel()
	if err := m.provider.Revoke(ctx, id); err != nil {
		m.log.Error("lease revocation failed; it stays in the journal for the next sweep", "lease", id, "error", err)
		return
	}
	if m.journal != nil {
		if err := m.journal.Remove(id); err != nil {
			m.log.Error("journal", "error", err)
		}
	}
}

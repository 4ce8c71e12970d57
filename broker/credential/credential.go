package credential

import (
	"context"
	"errors"
	"time"
)

// Lease is a leased backend credential. Password is a secret: it never goes into logs, errors,
// metrics, recordings, or anything sent to the agent.
type Lease struct {
	ID        string
	Username  string
	Password  string
	TTL       time.Duration
	Renewable bool
}

// String keeps the secret out of any accidental formatting.
func (l *Lease) String() string { return "lease " + l.ID + " (user " + l.Username + ")" }

// Provider issues, renews and revokes leased credentials.
type Provider interface {
	// Acquire leases a credential for role.
	Acquire(ctx context.Context, role string) (*Lease, error)
	// Renew extends the lease and returns its new TTL.
	Renew(ctx context.Context, leaseID string) (time.Duration, error)
	// Revoke ends the lease.
	Revoke(ctx context.Context, leaseID string) error
}

// ErrUnavailable wraps every failure to obtain a credential: the session is refused, never given a
// fallback.
var ErrUnavailable = errors.New("credential: unavailable")

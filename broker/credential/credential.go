package credential

import (
	"context"
	"errors"
	"time"
)

// Kind is how a credential is obtained, from strongest to weakest.
type Kind int

const (
	// Dynamic reads a path that makes a credential for the caller and returns it with a lease: the
	// database engine's creds/<role>, or any other path that does the same. The credential exists only
	// while its lease does.
	Dynamic Kind = iota
	// Static reads a kv-v2 secret: one credential shared by every session, living longer than any of
	// them and never revoked by the broker. It is offered for backends that cannot make credentials,
	// and it is explicitly weaker.
	Static
)

// Source names where a target's credential comes from.
type Source struct {
	Kind Kind
	// Path is, for Dynamic, the full Vault path read (such as "database/creds/shop-read"); for Static,
	// the secret's path inside its kv-v2 mount.
	Path string
	// Mount is the kv-v2 mount of a Static secret.
	Mount string
	// UsernameKey and PasswordKey name the fields of the secret's data holding the credential.
	// Default "username" and "password".
	UsernameKey, PasswordKey string
	// TokenOnly says the secret's credential is its PasswordKey field alone (an API token): no
	// username is read or required, and Lease.Username stays empty. http targets set it.
	TokenOnly bool
}

// String names the source for logs and records; it holds no secret.
func (s Source) String() string {
	if s.Kind == Static {
		return "kv-v2 " + s.Mount + "/" + s.Path
	}
	return s.Path
}

// Lease is a leased backend credential. Password is a secret: it never goes into logs, errors,
// metrics, recordings, or anything sent to the agent.
type Lease struct {
	ID        string
	Username  string
	Password  string
	TTL       time.Duration
	Renewable bool
	// Static marks a credential without a lease (a kv-v2 secret): there is nothing to renew or revoke.
	Static bool
}

// String keeps the secret out of any accidental formatting.
func (l *Lease) String() string {
	if l.Static {
		return "static credential (user " + l.Username + ")"
	}
	return "lease " + l.ID + " (user " + l.Username + ")"
}

// GoString keeps the secret out of %#v too.
func (l *Lease) GoString() string { return l.String() }

// Provider issues, renews and revokes leased credentials.
type Provider interface {
	// Acquire obtains a credential from src.
	Acquire(ctx context.Context, src Source) (*Lease, error)
	// Renew extends the lease and returns its new TTL.
	Renew(ctx context.Context, leaseID string) (time.Duration, error)
	// Revoke ends the lease.
	Revoke(ctx context.Context, leaseID string) error
}

// ErrTransient marks a provider error worth retrying: the provider was unreachable, sealed, rate
// limiting or overloaded, and the same call may succeed later. A Provider wraps it (with %w) into such
// errors and into no others. A renewal that fails without it (the lease was revoked out of band, say)
// fails for good: the lease's sessions end at once.
var ErrTransient = errors.New("credential: transient provider failure")

// ErrUnavailable wraps every failure to obtain a credential: the session is refused, never given a
// fallback.
var ErrUnavailable = errors.New("credential: unavailable")

package credential

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// memProvider is an in-memory Provider for the manager's own logic; the Vault provider is tested end
// to end against the test Vault and the real PostgreSQL (test/e2e).
type memProvider struct {
	mu       sync.Mutex
	next     int
	live     map[string]bool
	ttl      time.Duration
	renewErr error
	renewTTL func(n int) time.Duration
	renewals int
	// renewFailures and revokeFailures make the first so many renewals or revocations fail; -1 makes
	// every one fail.
	renewFailures, revokeFailures int
	revokes                       int
}

func failing(n, failures int) bool { return failures < 0 || n <= failures }

func (p *memProvider) Acquire(_ context.Context, src Source) (*Lease, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if src.Kind == Static {
		return &Lease{Username: "u", Password: "secret", Static: true}, nil
	}
	p.next++
	id := fmt.Sprintf("database/creds/r/%d", p.next)
	p.live[id] = true
	return &Lease{ID: id, Username: "u", Password: "secret", TTL: p.ttl, Renewable: true}, nil
}

func (p *memProvider) Renew(context.Context, string) (time.Duration, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.renewals++
	if p.renewErr != nil {
		return 0, p.renewErr
	}
	if failing(p.renewals, p.renewFailures) {
		return 0, fmt.Errorf("vault unreachable: %w", ErrTransient)
	}
	if p.renewTTL != nil {
		return p.renewTTL(p.renewals), nil
	}
	return p.ttl, nil
}

func (p *memProvider) Revoke(_ context.Context, id string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.revokes++
	if failing(p.revokes, p.revokeFailures) {
		return fmt.Errorf("vault unreachable: %w", ErrTransient)
	}
	delete(p.live, id)
	return nil
}

func (p *memProvider) liveIDs() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var ids []string
	for id := range p.live {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

var roleR = Source{Path: "database/creds/r"}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestSessionLeaseLifecycle(t *testing.T) {
	p := &memProvider{live: map[string]bool{}, ttl: 200 * time.Millisecond}
	j, err := OpenJournal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	m := NewManager(p, j, quiet(), time.Second, 0)
	s, err := m.Start(t.Context(), "spiffe://example.org/a", roleR, func(err error) { t.Errorf("session ended: %v", err) })
	if err != nil {
		t.Fatal(err)
	}
	if ids, _ := j.List(); len(ids) != 1 || ids[0] != s.Lease.ID {
		t.Fatalf("journal %v", ids)
	}
	time.Sleep(700 * time.Millisecond) // several TTLs: renewed all along
	s.End()
	if len(p.liveIDs()) != 0 {
		t.Fatalf("leases left after End: %v", p.liveIDs())
	}
	if ids, _ := j.List(); len(ids) != 0 {
		t.Fatalf("journal after End: %v", ids)
	}
	if p.renewals < 3 {
		t.Fatalf("only %d renewals in 3.5 TTLs", p.renewals)
	}
}

func TestSessionEndsWhenTheLeaseCannotBeKept(t *testing.T) {
	cases := map[string]*memProvider{
		"renewal fails":      {live: map[string]bool{}, ttl: 200 * time.Millisecond, renewErr: errors.New("vault sealed")},
		"max TTL is reached": {live: map[string]bool{}, ttl: 200 * time.Millisecond, renewTTL: func(int) time.Duration { return 40 * time.Millisecond }},
	}
	for name, p := range cases {
		t.Run(name, func(t *testing.T) {
			m := NewManager(p, nil, quiet(), time.Second, 0)
			ended := make(chan error, 1)
			s, err := m.Start(t.Context(), "spiffe://example.org/a", roleR, func(err error) { ended <- err })
			if err != nil {
				t.Fatal(err)
			}
			defer s.End()
			select {
			case err := <-ended:
				if err == nil {
					t.Fatal("ended without a reason")
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the session was not ended")
			}
		})
	}
}

func TestSweepRevokesOrphans(t *testing.T) {
	p := &memProvider{live: map[string]bool{"database/creds/r/a": true, "database/creds/r/b": true}, ttl: time.Hour}
	j, _ := OpenJournal(t.TempDir())
	for id := range p.live {
		if err := j.Add(id); err != nil {
			t.Fatal(err)
		}
	}
	swept, err := NewManager(p, j, quiet(), time.Second, 0).Sweep(t.Context())
	if slices.Sort(swept); err != nil || !slices.Equal(swept, []string{"database/creds/r/a", "database/creds/r/b"}) || len(p.liveIDs()) != 0 {
		t.Fatalf("swept %v (%v), live %v", swept, err, p.liveIDs())
	}
	if ids, _ := j.List(); len(ids) != 0 {
		t.Fatalf("journal after sweep: %v", ids)
	}
}

// TestSweepReturnsOnlyWhatItRevoked: a lease Vault does not revoke at the sweep stays in the journal
// for the next start and is not among the revoked IDs the broker records.
func TestSweepReturnsOnlyWhatItRevoked(t *testing.T) {
	p := &memProvider{live: map[string]bool{"database/creds/r/a": true, "database/creds/r/b": true}, ttl: time.Hour, revokeFailures: 1}
	j, _ := OpenJournal(t.TempDir())
	for id := range p.live {
		if err := j.Add(id); err != nil {
			t.Fatal(err)
		}
	}
	swept, err := NewManager(p, j, quiet(), time.Second, 0).Sweep(t.Context())
	left, _ := j.List()
	if len(swept) != 1 || len(left) != 1 || swept[0] == left[0] || err == nil || !strings.Contains(err.Error(), left[0]) {
		t.Fatalf("swept %v, left %v in the journal, error %v; want one of each, the error naming the one left", swept, left, err)
	}
	if live := p.liveIDs(); !slices.Equal(live, left) {
		t.Fatalf("live in the provider %v, journal %v", live, left)
	}
}

func TestLeaseStringHidesThePassword(t *testing.T) {
	l := &Lease{ID: "x", Username: "u", Password: "hunter2"}
	if s := fmt.Sprint(l) + fmt.Sprintf("%v %s", l, l); strings.Contains(s, "hunter2") {
		t.Fatalf("formatted lease shows the password: %s", s)
	}
}

func TestLeaseReuseWithinTheWindow(t *testing.T) {
	p := &memProvider{live: map[string]bool{}, ttl: time.Hour}
	m := NewManager(p, nil, quiet(), time.Second, 300*time.Millisecond)
	defer m.Close()
	start := func(principal string) *Session {
		s, err := m.Start(t.Context(), principal, roleR, func(error) {})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	a1, a2 := start("spiffe://example.org/a"), start("spiffe://example.org/a")
	b := start("spiffe://example.org/b")
	if a1.Lease.ID != a2.Lease.ID || a1.Lease.ID == b.Lease.ID {
		t.Fatalf("leases a1 %s a2 %s b %s: one per caller and role", a1.Lease.ID, a2.Lease.ID, b.Lease.ID)
	}
	a1.End()
	a2.End()
	a3 := start("spiffe://example.org/a") // within the window: the same lease
	if a3.Lease.ID != a1.Lease.ID || m.Acquired.Load() != 2 || m.Reused.Load() != 2 {
		t.Fatalf("acquired %d reused %d", m.Acquired.Load(), m.Reused.Load())
	}
	a3.End()
	b.End()
	time.Sleep(600 * time.Millisecond) // past the window: revoked
	if live := p.liveIDs(); len(live) != 0 {
		t.Fatalf("leases outlived the reuse window: %v", live)
	}
}

func TestSharedLeaseFailureEndsEverySession(t *testing.T) {
	p := &memProvider{live: map[string]bool{}, ttl: 200 * time.Millisecond, renewErr: errors.New("sealed")}
	m := NewManager(p, nil, quiet(), time.Second, time.Minute)
	defer m.Close()
	ended := make(chan error, 2)
	for range 2 {
		s, err := m.Start(t.Context(), "spiffe://example.org/a", roleR, func(err error) { ended <- err })
		if err != nil {
			t.Fatal(err)
		}
		defer s.End()
	}
	for range 2 {
		select {
		case <-ended:
		case <-time.After(5 * time.Second):
			t.Fatal("a session sharing the failed lease was not ended")
		}
	}
}

// TestStaticCredentialIsNeitherJournaledNorRevoked: a kv-v2 secret has no lease, so the manager keeps
// it out of the journal, renews nothing and revokes nothing; each session still gets it.
func TestStaticCredentialIsNeitherJournaledNorRevoked(t *testing.T) {
	p := &memProvider{live: map[string]bool{}, ttl: time.Hour}
	j, err := OpenJournal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	m := NewManager(p, j, quiet(), time.Second, 0)
	s, err := m.Start(t.Context(), "spiffe://example.org/a", Source{Kind: Static, Mount: "secret", Path: "shop"}, func(err error) {
		t.Errorf("session ended: %v", err)
	})
	if err != nil {
		t.Fatal(err)
	}
	if !s.Lease.Static || s.Lease.Username != "u" {
		t.Fatalf("lease %v", s.Lease)
	}
	if ids, _ := j.List(); len(ids) != 0 {
		t.Fatalf("journal holds %v for a static secret", ids)
	}
	s.End()
	m.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.renewals != 0 || len(p.live) != 0 {
		t.Fatalf("renewals %d live %v", p.renewals, p.live)
	}
	if got := fmt.Sprintf("%v %+v %#v", s.Lease, s.Lease, s.Lease); strings.Contains(got, "secret") {
		t.Fatalf("formatting shows the password: %s", got)
	}
}

// TestEndSaysWhatBecameOfTheLease: the session that ends last revokes the lease and says so; one that
// leaves it to other sessions, or to reuse, says that instead; a failed revocation says it is retried.
func TestEndSaysWhatBecameOfTheLease(t *testing.T) {
	for _, c := range []struct {
		name           string
		reuse          time.Duration
		revokeFailures int
		want           []Release // of each session's End, in order
	}{
		{"one session", 0, 0, []Release{Revoked}},
		{"two sessions share a lease", time.Hour, 0, []Release{InUse, Pooled}},
		{"revocation fails", 0, -1, []Release{RevocationRetrying}},
	} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := &memProvider{live: map[string]bool{}, ttl: time.Hour, revokeFailures: c.revokeFailures}
				m := NewManager(p, nil, quiet(), time.Second, c.reuse)
				m.backoff = testBackoff
				var sessions []*Session
				for range c.want {
					s, err := m.Start(t.Context(), "spiffe://example.org/a", roleR, func(error) {})
					if err != nil {
						t.Fatal(err)
					}
					sessions = append(sessions, s)
				}
				for i, s := range sessions {
					if got := s.End(); got != c.want[i] {
						t.Errorf("session %d: End = %q, want %q", i, got, c.want[i])
					}
					if got := s.End(); got != c.want[i] {
						t.Errorf("session %d: End again = %q, want %q", i, got, c.want[i])
					}
				}
				m.Close()
			})
		})
	}
}

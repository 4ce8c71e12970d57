package credential

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

var testBackoff = backoff{initial: time.Second, max: 8 * time.Second, revokeAttempts: 5, revokeWithin: 2 * time.Minute}

// TestRenewalIsRetriedWithinTheLeaseTTL: a provider that fails a few renewals, then recovers, does
// not end the session; one that never recovers ends it before the lease expires, after retrying.
func TestRenewalIsRetriedWithinTheLeaseTTL(t *testing.T) {
	cases := []struct {
		name     string
		failures int
		ends     bool
	}{
		{"fails three times, then renews", 3, false},
		{"never renews", -1, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := &memProvider{live: map[string]bool{}, ttl: time.Minute, renewFailures: tc.failures}
				m := retryingManager(p, nil, 5*time.Second, 0)
				start := time.Now()
				var endedAt atomic.Int64 // since start, in ns; 0 while the session lives
				s, err := m.Start(t.Context(), "spiffe://example.org/a", roleR, func(error) { endedAt.Store(int64(time.Since(start))) })
				if err != nil {
					t.Fatal(err)
				}
				time.Sleep(5 * time.Minute)
				synctest.Wait()
				ended := time.Duration(endedAt.Load())
				switch {
				case !tc.ends && ended != 0:
					t.Fatalf("session ended after %v although the provider recovered", ended)
				case tc.ends && ended == 0:
					t.Fatal("session not ended although renewal never succeeded")
				case tc.ends && ended >= time.Minute:
					t.Fatalf("session ended after %v, at or past the lease's expiry (1m)", ended)
				}
				p.mu.Lock()
				renewals := p.renewals
				p.mu.Unlock()
				if tc.ends && renewals < 3 {
					t.Fatalf("%d renewal attempts before giving up: not retried", renewals)
				}
				// Recovered within 40s, the lease is renewed every 30s after: at least 5 more times.
				if !tc.ends && renewals < 4+5 {
					t.Fatalf("%d renewals in five minutes of a one-minute lease", renewals)
				}
				s.End()
			})
		})
	}
}

// TestFailedRevocationIsRetriedInTheBackground: a revocation that fails is retried, without holding up
// the session's end, until it succeeds; one that keeps failing is retried a bounded number of times
// and the lease stays in the journal for the next sweep.
func TestFailedRevocationIsRetriedInTheBackground(t *testing.T) {
	cases := []struct {
		name     string
		failures int
		revoked  bool
		revokes  int // calls to Revoke in the end
	}{
		{"fails twice, then revokes", 2, true, 3},
		{"never revokes", -1, false, 1 + testBackoff.revokeAttempts},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := &memProvider{live: map[string]bool{}, ttl: time.Hour, revokeFailures: tc.failures}
				j := testJournal(t)
				m := retryingManager(p, j, 5*time.Second, 0)
				s, err := m.Start(t.Context(), "spiffe://example.org/a", roleR, func(error) {})
				if err != nil {
					t.Fatal(err)
				}
				ended := time.Now()
				s.End()
				if time.Since(ended) != 0 {
					t.Fatalf("End waited %v for the retries", time.Since(ended))
				}
				if live := p.liveIDs(); len(live) != 1 {
					t.Fatalf("live %v right after the failed revocation", live)
				}
				time.Sleep(10 * time.Minute)
				synctest.Wait()
				ids, _ := j.List()
				p.mu.Lock()
				revokes := p.revokes
				p.mu.Unlock()
				if revokes != tc.revokes {
					t.Errorf("%d calls to Revoke, want %d", revokes, tc.revokes)
				}
				if tc.revoked && (len(p.liveIDs()) != 0 || len(ids) != 0) {
					t.Fatalf("not revoked on retry: live %v, journal %v", p.liveIDs(), ids)
				}
				if !tc.revoked && len(ids) != 1 {
					t.Fatalf("journal %v: an unrevoked lease must stay for the next sweep", ids)
				}
				m.Close()
			})
		})
	}
}

// TestCloseStopsRevocationRetries: shutting down does not wait out the retries; the lease stays in the
// journal.
func TestCloseStopsRevocationRetries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := &memProvider{live: map[string]bool{}, ttl: time.Hour, revokeFailures: -1}
		j := testJournal(t)
		m := retryingManager(p, j, 5*time.Second, 0)
		s, err := m.Start(t.Context(), "spiffe://example.org/a", roleR, func(error) {})
		if err != nil {
			t.Fatal(err)
		}
		s.End()
		start := time.Now()
		m.Close()
		if took := time.Since(start); took != 0 {
			t.Fatalf("Close waited %v", took)
		}
		if ids, _ := j.List(); len(ids) != 1 {
			t.Fatalf("journal %v after Close", ids)
		}
	})
}

func TestBackoffIsBoundedAndJittered(t *testing.T) {
	b := backoff{initial: time.Second, max: 8 * time.Second}
	cases := []struct {
		n        int
		min, max time.Duration
	}{
		{0, 500 * time.Millisecond, time.Second},
		{1, time.Second, 2 * time.Second},
		{3, 4 * time.Second, 8 * time.Second},
		{10, 4 * time.Second, 8 * time.Second},
		{100, 4 * time.Second, 8 * time.Second},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("retry %d", tc.n), func(t *testing.T) {
			seen := map[time.Duration]bool{}
			for range 200 {
				w := b.wait(tc.n)
				if w < tc.min || w > tc.max {
					t.Fatalf("wait(%d) = %v, want within [%v, %v]", tc.n, w, tc.min, tc.max)
				}
				seen[w] = true
			}
			if len(seen) < 2 {
				t.Fatalf("wait(%d) is always %v: no jitter", tc.n, b.wait(tc.n))
			}
		})
	}
}

// errLeaseNotFound is what Vault answers to renewing a lease revoked out of band: no retry can help.
var errLeaseNotFound = errors.New("vault: renew database/creds/r/1: Code: 400. Errors: * lease not found or lease is not renewable")

// TestPermanentRenewalFailureEndsSessionsAtOnce: a renewal that fails for good ends the session at
// the first attempt; only a transient failure is retried, and then still ends the session before the
// lease expires.
func TestPermanentRenewalFailureEndsSessionsAtOnce(t *testing.T) {
	cases := []struct {
		name     string
		err      error
		attempts func(n int) bool
		endedBy  time.Duration
	}{
		{"lease not found", errLeaseNotFound, func(n int) bool { return n == 1 }, 30 * time.Minute},
		{"sealed", fmt.Errorf("vault: 503 sealed: %w", ErrTransient), func(n int) bool { return n > 3 }, 54 * time.Minute},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := &memProvider{live: map[string]bool{}, ttl: time.Hour, renewErr: tc.err}
				m := retryingManager(p, nil, 10*time.Second, 0)
				start := time.Now()
				var endedAt atomic.Int64
				var reason atomic.Value
				s, err := m.Start(t.Context(), "spiffe://example.org/a", roleR, func(err error) {
					endedAt.Store(int64(time.Since(start)))
					reason.Store(err)
				})
				if err != nil {
					t.Fatal(err)
				}
				defer s.End()
				time.Sleep(2 * time.Hour)
				synctest.Wait()
				ended := time.Duration(endedAt.Load())
				if ended == 0 || ended > tc.endedBy {
					t.Fatalf("session ended at %v, want by %v", ended, tc.endedBy)
				}
				if err, _ := reason.Load().(error); !errors.Is(err, tc.err) {
					t.Fatalf("ended with %v, want it to wrap %v", err, tc.err)
				}
				p.mu.Lock()
				n := p.renewals
				p.mu.Unlock()
				if !tc.attempts(n) {
					t.Fatalf("%d renewal attempts", n)
				}
			})
		})
	}
}

// TestFailingLeaseIsNotReused: once a lease's renewal fails, a new session of the same caller gets a
// lease of its own, whether the failure was permanent or transient and still being retried; an idle
// lease whose renewal fails is revoked without waiting out the reuse window.
func TestFailingLeaseIsNotReused(t *testing.T) {
	cases := []struct {
		name string
		p    *memProvider
	}{
		{"permanent failure", &memProvider{live: map[string]bool{}, ttl: time.Hour, renewErr: errLeaseNotFound}},
		{"transient failure being retried", &memProvider{live: map[string]bool{}, ttl: time.Hour, renewFailures: -1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				m := retryingManager(tc.p, nil, 10*time.Second, 2*time.Hour)
				defer m.Close()
				start := func() *Session {
					s, err := m.Start(t.Context(), "spiffe://example.org/a", roleR, func(error) {})
					if err != nil {
						t.Fatal(err)
					}
					return s
				}
				s1 := start()
				time.Sleep(30*time.Minute + 2*time.Second) // the first renewal has failed
				s2 := start()
				if s2.Lease.ID == s1.Lease.ID || m.Reused.Load() != 0 || m.Acquired.Load() != 2 {
					t.Fatalf("second session got %v (first %v), reused %d", s2.Lease, s1.Lease, m.Reused.Load())
				}
				s2.End() // idle, its lease kept for the reuse window
				s1.End()
				synctest.Wait()
				if live := tc.p.liveIDs(); len(live) != 1 || live[0] != s2.Lease.ID {
					t.Fatalf("live leases %v after both sessions ended, want only the idle %s", live, s2.Lease.ID)
				}
				time.Sleep(30*time.Minute + 2*time.Second) // the idle lease's renewal has failed
				synctest.Wait()
				if live := tc.p.liveIDs(); len(live) != 0 {
					t.Fatalf("idle lease %v kept although its renewal failed", live)
				}
			})
		})
	}
}

// scriptedProvider answers renewals with renew, given the attempt's number from 1, and keeps the
// lease's expiry as Vault would: counted from when it handled the request.
type scriptedProvider struct {
	mu      sync.Mutex
	ttl     time.Duration
	renew   func(ctx context.Context, n int) (time.Duration, error)
	revoke  func(ctx context.Context) error
	n       int
	expires time.Time
}

func (p *scriptedProvider) Acquire(context.Context, Source) (*Lease, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.expires = time.Now().Add(p.ttl)
	return &Lease{ID: "database/creds/r/1", Username: "u", Password: "pw", TTL: p.ttl, Renewable: true}, nil
}

func (p *scriptedProvider) Renew(ctx context.Context, _ string) (time.Duration, error) {
	p.mu.Lock()
	p.n++
	n := p.n
	p.mu.Unlock()
	return p.renew(ctx, n)
}

func (p *scriptedProvider) Revoke(ctx context.Context, _ string) error {
	if p.revoke != nil {
		return p.revoke(ctx)
	}
	return nil
}

// handled records that Vault renewed the lease now, for ttl.
func (p *scriptedProvider) handled(ttl time.Duration) {
	p.mu.Lock()
	p.expires = time.Now().Add(ttl)
	p.mu.Unlock()
}

// TestSlowRenewalAnswerDoesNotExtendTheSession: Vault renews a 30s lease at once but its answer takes
// 8s to arrive, then Vault hangs for good. The lease's expiry is counted from when the renewal was
// sent, so the session still ends with a tenth of the TTL to spare before the lease really expires.
func TestSlowRenewalAnswerDoesNotExtendTheSession(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const ttl = 30 * time.Second
		p := &scriptedProvider{ttl: ttl}
		p.renew = func(ctx context.Context, n int) (time.Duration, error) {
			if n == 1 {
				p.handled(ttl)
				select {
				case <-time.After(8 * time.Second):
					return ttl, nil
				case <-ctx.Done():
					return 0, ctx.Err()
				}
			}
			<-ctx.Done()
			return 0, ctx.Err()
		}
		m := retryingManager(p, nil, 10*time.Second, 0)
		start := time.Now()
		var endedAt atomic.Int64
		s, err := m.Start(t.Context(), "spiffe://example.org/a", roleR, func(error) { endedAt.Store(time.Now().UnixNano()) })
		if err != nil {
			t.Fatal(err)
		}
		defer s.End()
		time.Sleep(5 * time.Minute)
		synctest.Wait()
		if endedAt.Load() == 0 {
			t.Fatal("session not ended although Vault hangs")
		}
		ended := time.Unix(0, endedAt.Load())
		p.mu.Lock()
		expires := p.expires
		p.mu.Unlock()
		if latest := expires.Add(-ttl / 10); ended.After(latest) {
			t.Fatalf("session ended at %v, the lease expired at %v: want the session ended by %v",
				ended.Sub(start), expires.Sub(start), latest.Sub(start))
		}
	})
}

// TestLastRenewalAttemptUsesTheTimeLeft: when the next backoff would overshoot the deadline (54s
// into a one-minute lease), the manager does not give up with time left but makes one last attempt,
// leaving it the call timeout (5s) before the deadline.
func TestLastRenewalAttemptUsesTheTimeLeft(t *testing.T) {
	cases := []struct {
		name     string
		back     time.Duration // Vault answers again from then on; 0: never
		attempts []time.Duration
		ended    bool
	}{
		{"Vault back before the last attempt", 47 * time.Second, []time.Duration{30 * time.Second, 49 * time.Second}, false},
		{"Vault never back", 0, []time.Duration{30 * time.Second, 49 * time.Second}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := &scriptedProvider{ttl: time.Minute}
				start := time.Now()
				var mu sync.Mutex
				var attempts []time.Duration
				p.renew = func(ctx context.Context, n int) (time.Duration, error) {
					at := time.Since(start)
					mu.Lock()
					attempts = append(attempts, at)
					mu.Unlock()
					if tc.back == 0 || at < tc.back {
						return 0, fmt.Errorf("vault: 503 sealed: %w", ErrTransient)
					}
					return time.Minute, nil
				}
				m := NewManager(p, nil, quiet(), 5*time.Second, 0)
				// Every wait is 30s to 60s: the first retry would already be past the deadline.
				m.backoff = backoff{initial: time.Minute, max: time.Minute}
				var endedAt atomic.Int64
				s, err := m.Start(t.Context(), "spiffe://example.org/a", roleR, func(error) { endedAt.Store(int64(time.Since(start))) })
				if err != nil {
					t.Fatal(err)
				}
				defer s.End()
				time.Sleep(55 * time.Second)
				synctest.Wait()
				ended := time.Duration(endedAt.Load())
				if tc.ended != (ended != 0) {
					t.Fatalf("session ended at %v (0: alive), want ended %v", ended, tc.ended)
				}
				if ended > 54*time.Second {
					t.Fatalf("session ended at %v, past the deadline of 54s", ended)
				}
				mu.Lock()
				defer mu.Unlock()
				if !slices.Equal(attempts, tc.attempts) {
					t.Fatalf("renewals attempted at %v, want %v", attempts, tc.attempts)
				}
			})
		})
	}
}

// TestCloseDoesNotWaitForAHungRevocation: Close cuts short a revocation call in flight against a
// provider that hangs, whether it is a background retry or a session's own revocation, and the lease
// stays in the journal for the next sweep.
func TestCloseDoesNotWaitForAHungRevocation(t *testing.T) {
	cases := []struct {
		name string
		// fails is how many revocations fail at once before the provider starts to hang.
		fails int32
		// inFlight is how long after the session ends Close comes.
		inFlight time.Duration
	}{
		{"background retry in flight", 1, 1500 * time.Millisecond}, // the first retry comes within 1s
		{"session's revocation in flight", 0, time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var revokes atomic.Int32
				p := &scriptedProvider{ttl: time.Hour}
				p.revoke = func(ctx context.Context) error {
					if revokes.Add(1) <= tc.fails {
						return fmt.Errorf("vault: 503 sealed: %w", ErrTransient)
					}
					<-ctx.Done()
					return ctx.Err()
				}
				j := testJournal(t)
				m := retryingManager(p, j, 10*time.Second, 0)
				s, err := m.Start(t.Context(), "spiffe://example.org/a", roleR, func(error) {})
				if err != nil {
					t.Fatal(err)
				}
				ended := make(chan struct{})
				go func() {
					s.End()
					close(ended)
				}()
				time.Sleep(tc.inFlight)
				synctest.Wait()
				if n := revokes.Load(); n != tc.fails+1 {
					t.Fatalf("%d revocations before Close, want %d (the last one hung)", n, tc.fails+1)
				}
				start := time.Now()
				m.Close()
				<-ended
				if took := time.Since(start); took != 0 {
					t.Fatalf("Close and End took %v with the provider hung", took)
				}
				if ids, _ := j.List(); len(ids) != 1 || ids[0] != s.Lease.ID {
					t.Fatalf("journal %v after Close, want the unrevoked %s", ids, s.Lease.ID)
				}
			})
		})
	}
}

// retryingManager is a manager of p, with journal j (or none), that retries on testBackoff.
func retryingManager(p Provider, j *Journal, timeout, reuse time.Duration) *Manager {
	m := NewManager(p, j, quiet(), timeout, reuse)
	m.backoff = testBackoff
	return m
}

// testJournal is a journal in a directory of the test's own.
func testJournal(t *testing.T) *Journal {
	t.Helper()
	j, err := OpenJournal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return j
}

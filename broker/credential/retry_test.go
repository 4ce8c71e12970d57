package credential

import (
	"fmt"
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
				m := NewManager(p, nil, quiet(), 5*time.Second, 0)
				m.backoff = testBackoff
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
				j, err := OpenJournal(t.TempDir())
				if err != nil {
					t.Fatal(err)
				}
				m := NewManager(p, j, quiet(), 5*time.Second, 0)
				m.backoff = testBackoff
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
		j, err := OpenJournal(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		m := NewManager(p, j, quiet(), 5*time.Second, 0)
		m.backoff = testBackoff
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

package audit

import (
	"strings"
	"testing"
	"time"
)

// TestOrphanRevokedIsNoSession: the record of a lease a previous run left, revoked at the next start,
// reads as such and adds no session to the chain's list; the dead run's session that acquired the
// lease is still listed.
func TestOrphanRevokedIsNoSession(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	entries := []Entry{
		{Seq: 1, Record: Record{Time: t0, Kind: KindSessionStart, Session: "a", SPIFFEID: "spiffe://example.org/agent/analyst", Target: "shop",
			Decision: &Decision{ID: "c1", Action: "connect", Allow: true}}},
		{Seq: 2, Record: Record{Time: t0, Kind: KindLease, Session: "a", LeaseID: "database/creds/shop-read/L1", Detail: map[string]string{"event": "acquired"}}},
		// The broker died here; its next start revoked the lease.
		{Seq: 3, Record: OrphanRevoked(t0.Add(time.Minute), "database/creds/shop-read/L1")},
	}
	read := Reader(func(f func(Entry) error) error {
		for _, e := range entries {
			if err := f(e); err != nil {
				return err
			}
		}
		return nil
	})
	sessions, err := Sessions(read, Filter{})
	if err != nil || len(sessions) != 1 || sessions[0].Session != "a" || sessions[0].Ended {
		t.Fatalf("sessions %+v (%v); want the dead run's session a only, not ended", sessions, err)
	}
	got := Format(entries[2])
	if want := "database/creds/shop-read/L1 revoked at start: left by a previous run of the broker"; !strings.Contains(got, want) {
		t.Fatalf("Format = %q; want it to say %q", got, want)
	}
	if got := Format(entries[1]); strings.Contains(got, "previous run") {
		t.Fatalf("a session's own lease event reads as an orphan's: %q", got)
	}
}

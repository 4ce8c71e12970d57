package postgres

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/broker/credential"
)

// leaseProvider issues one non-renewable lease and revokes it.
type leaseProvider struct{}

func (leaseProvider) Acquire(context.Context, credential.Source) (*credential.Lease, error) {
	return &credential.Lease{ID: "database/creds/ro/L1", Username: "u", Password: "p", TTL: time.Hour}, nil
}
func (leaseProvider) Renew(context.Context, string) (time.Duration, error) {
	return 0, errors.New("not renewable")
}
func (leaseProvider) Revoke(context.Context, string) error { return nil }

// TestLeaseEventsAreRecordedAsLeaseEvents: a session whose credential could not be kept records that
// as a lease event, then, at its end, what became of the lease (revoked), by lease ID; none of them
// is a decision.
func TestLeaseEventsAreRecordedAsLeaseEvents(t *testing.T) {
	m := credential.NewManager(leaseProvider{}, nil, slog.New(slog.DiscardHandler), time.Second, 0)
	defer m.Close()
	lost := new(trigger)
	lease, err := m.Start(t.Context(), "spiffe://example.org/agent/a", credential.Source{Path: "database/creds/ro"}, lost.fire)
	if err != nil {
		t.Fatal(err)
	}
	pki := newTestPKI(t)
	_, brokerClient := tlsPair(t, pki)
	brokerBackend, _ := tcpPair(t)
	s := newRelaySession(t, relayIO{fromClient: brokerClient, toClient: brokerClient, clientConn: brokerClient,
		fromBackend: brokerBackend, toBackend: brokerBackend, backendConn: brokerBackend})
	sink := &recordingSink{}
	s.rec = recorder{sink: sink, session: "s1"}
	s.lease, s.lost = lease, lost
	done := make(chan error, 1)
	go func() { done <- s.Run(context.Background()) }()
	lost.fire(errors.New("credential: renewing lease database/creds/ro/L1 failed"))
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the session outlived its credential")
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	var events []string
	for _, r := range sink.recs {
		switch {
		case r.Kind == audit.KindLease && r.LeaseID == "database/creds/ro/L1":
			events = append(events, r.Detail["event"])
		case r.LeaseID != "":
			t.Errorf("lease %s recorded as %s", r.LeaseID, r.Kind)
		}
	}
	if want := []string{"renewal failed", string(credential.Revoked)}; !slices.Equal(events, want) {
		t.Errorf("lease events %q, want %q", events, want)
	}
}

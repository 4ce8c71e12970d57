package postgres

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/broker/credential"
	sess "github.com/svidbroker/svidbroker/broker/session"
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

// TestLeaseEventsAreRecordedAsLeaseEvents: a session whose credential could not be kept (the lease
// manager tells the session core, which ends the session) records that as a lease event, then, at its
// end, what became of the lease (revoked), by lease ID; none of them is a decision.
func TestLeaseEventsAreRecordedAsLeaseEvents(t *testing.T) {
	m := credential.NewManager(leaseProvider{}, nil, slog.New(slog.DiscardHandler), time.Second, 0)
	defer m.Close()
	pki := newTestPKI(t)
	_, brokerClient := tlsPair(t, pki)
	brokerBackend, _ := tcpPair(t)
	var lost func(error) // the manager's word to the core that the credential could not be kept
	core, err := sess.New(sess.Config{Target: "shop", Logger: slog.New(slog.DiscardHandler),
		Authorize: func(context.Context, authz.Connect) (authz.Decision, error) { return authz.Decision{}, nil },
		Lease: func(ctx context.Context, c authz.Connect, _ string, end func(error)) (*credential.Session, error) {
			lost = end
			return m.Start(ctx, c.Peer.ID.String(), credential.Source{Path: "database/creds/ro"}, end)
		}})
	if err != nil {
		t.Fatal(err)
	}
	cs, err := core.Open(t.Context(), sess.OpenRequest{TLS: brokerClient.ConnectionState(), Remote: brokerClient.RemoteAddr()})
	if err != nil {
		t.Fatal(err)
	}
	s := newRelaySession(t, relayIO{fromClient: brokerClient, toClient: brokerClient, clientConn: brokerClient,
		fromBackend: brokerBackend, toBackend: brokerBackend, backendConn: brokerBackend})
	sink := &recordingSink{}
	s.rec = recorder{sink: sink, session: "s1"}
	s.lease, s.core = cs.Lease(), cs
	done := make(chan error, 1)
	go func() { done <- s.Run(context.Background()) }()
	lost(errors.New("credential: renewing lease database/creds/ro/L1 failed"))
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

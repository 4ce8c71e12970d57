package session

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/broker/credential"
)

// TestLossesToldWhenever: an engine registered through Losses is told of its session's credential loss
// with the lease manager's error, whether the loss came before it registered or after.
func TestLossesToldWhenever(t *testing.T) {
	for _, before := range []bool{true, false} {
		var end func(error)
		core, err := New(Config{Target: "shop", Logger: slog.New(slog.DiscardHandler),
			Authorize: func(context.Context, authz.Connect) (authz.Decision, error) { return authz.Decision{}, nil },
			Lease: func(_ context.Context, _ authz.Connect, _ string, lost func(error)) (*credential.Session, error) {
				end = lost
				return &credential.Session{Lease: &credential.Lease{ID: "database/creds/ro/L1"}}, nil
			}})
		if err != nil {
			t.Fatal(err)
		}
		s, err := core.Open(t.Context(), OpenRequest{TLS: peerTLS(t, "spiffe://example.org/agent/a", time.Now().Add(time.Hour)), Remote: remote})
		if err != nil {
			t.Fatal(err)
		}
		lostErr := errors.New("credential: renewing lease database/creds/ro/L1 failed")
		if before {
			end(lostErr)
		}
		told := make(chan error, 1)
		s.Losses(func(err error) { told <- err })
		if !before {
			end(lostErr)
		}
		select {
		case err := <-told:
			if err != lostErr {
				t.Errorf("told %v, want %v", err, lostErr)
			}
		case <-time.After(10 * time.Second): // against a hang, never a pass condition
			t.Fatalf("loss before registering %v: never told", before)
		}
	}
}

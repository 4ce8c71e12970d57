package session

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/policies"
)

func writePolicy(t *testing.T, dir, text string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "p.cedar"), []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

const permitBoth = `@id("a-connects")
permit (principal == Workload::"spiffe://example.org/agent/a", action == Action::"connect", resource == Target::"shop");
@id("b-connects")
permit (principal == Workload::"spiffe://example.org/agent/b", action == Action::"connect", resource == Target::"shop");
`

const permitB = `@id("b-connects")
permit (principal == Workload::"spiffe://example.org/agent/b", action == Action::"connect", resource == Target::"shop");
`

// TestReloadRevokesSessionsNoLongerPermitted: when a new policy set no longer permits a live
// session's connect, the session's context is cancelled with ErrRevoked and the decision that revoked
// it is recorded; a session the new set still permits runs on (the control).
func TestReloadRevokesSessionsNoLongerPermitted(t *testing.T) {
	dir := t.TempDir()
	writePolicy(t, dir, permitBoth)
	snk := &sink{}
	core, az := policyCore(t, dir, snk)
	open := func(id string) *Session {
		s, err := core.Open(t.Context(), OpenRequest{TLS: peerTLS(t, id, time.Now().Add(time.Hour)), Remote: remote})
		if err != nil {
			t.Fatal(err)
		}
		s.Start(t.Context())
		t.Cleanup(func() { s.End(nil, time.Now()) })
		return s
	}
	a, b := open("spiffe://example.org/agent/a"), open("spiffe://example.org/agent/b")

	writePolicy(t, dir, permitB)
	if err := az.Engine.Reload(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.Context().Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the session the new policy set denies is still running")
	}
	cause := context.Cause(a.Context())
	if !errors.Is(cause, ErrRevoked) || !errors.Is(cause, authz.ErrDenied) {
		t.Fatalf("cause %v, want ErrRevoked wrapping the denial", cause)
	}
	// The control: b was decided again under the new set, and still runs.
	digest := az.Engine.Digest()
	deadline := time.Now().Add(30 * time.Second)
	for {
		core.revokes.mu.Lock()
		w := core.revokes.live[b]
		rechecked := w != nil && w.digest == digest
		core.revokes.mu.Unlock()
		if rechecked {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the permitted session was not decided again under the new set")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := b.Context().Err(); err != nil {
		t.Fatalf("the session the new set still permits ended: %v", context.Cause(b.Context()))
	}
	snk.mu.Lock()
	defer snk.mu.Unlock()
	var revoked int
	for _, r := range snk.recs {
		if r.Kind == "decision" && r.Decision != nil && !r.Decision.Allow && r.Decision.PolicySet == digest &&
			r.SPIFFEID == "spiffe://example.org/agent/a" {
			revoked++
		}
	}
	if revoked != 1 {
		t.Errorf("%d records of the revoking decision, want 1", revoked)
	}
}

// TestRevocationWatcherStopsWithTheLastSession: no goroutine watches for policy sets once no session
// is registered.
func TestRevocationWatcherStopsWithTheLastSession(t *testing.T) {
	dir := t.TempDir()
	writePolicy(t, dir, permitBoth)
	core, _ := policyCore(t, dir, nil)
	s, err := core.Open(t.Context(), OpenRequest{TLS: peerTLS(t, "spiffe://example.org/agent/a", time.Now().Add(time.Hour)), Remote: remote})
	if err != nil {
		t.Fatal(err)
	}
	s.Start(t.Context())
	core.revokes.mu.Lock()
	running := core.revokes.stop != nil
	core.revokes.mu.Unlock()
	if !running {
		t.Fatal("no watcher while a session is registered")
	}
	s.End(nil, time.Now())
	core.revokes.mu.Lock()
	defer core.revokes.mu.Unlock()
	if core.revokes.stop != nil || len(core.revokes.live) != 0 {
		t.Fatalf("watcher still registered after the last session ended: %d live", len(core.revokes.live))
	}
}

// policyCore is a Core of target "shop" whose connections Cedar decides with the policies in dir,
// recording to snk (nil: nothing), and its authorizer (whose Engine reloads them).
func policyCore(t *testing.T, dir string, snk *sink) (*Core, *authz.Authorizer) {
	t.Helper()
	schema, err := authz.ParseSchema("svidbroker.cedarschema", policies.Schema)
	if err != nil {
		t.Fatal(err)
	}
	engine, err := authz.New(authz.Config{Dir: dir, Schema: schema, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	az := authz.NewAuthorizer(engine, authz.NewCatalog(nil, nil))
	cfg := Config{Target: "shop", Policy: az, Logger: slog.New(slog.DiscardHandler),
		Authorize: func(_ context.Context, c authz.Connect) (authz.Decision, error) { return az.Connect(c) }}
	if snk != nil {
		cfg.Audit = snk
	}
	core, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return core, az
}

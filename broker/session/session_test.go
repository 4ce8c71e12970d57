package session

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/broker/credential"
	"github.com/svidbroker/svidbroker/broker/identity"
)

// peerTLS is the state of a TLS connection whose client presented an X.509-SVID for id.
func peerTLS(t testing.TB, id string, expires time.Time) tls.ConnectionState {
	t.Helper()
	u, err := url.Parse(id)
	if err != nil {
		t.Fatal(err)
	}
	return tls.ConnectionState{HandshakeComplete: true, PeerCertificates: []*x509.Certificate{{URIs: []*url.URL{u}, NotAfter: expires}}}
}

// sink records in memory; fail makes every write fail.
type sink struct {
	mu   sync.Mutex
	recs []audit.Record
	fail error
}

func (s *sink) Write(rec audit.Record, _ bool) error {
	if s.fail != nil {
		return s.fail
	}
	s.AppendAsync(rec)
	return nil
}
func (s *sink) Flush() error { return s.fail }
func (s *sink) AppendAsync(rec audit.Record) {
	s.mu.Lock()
	s.recs = append(s.recs, rec)
	s.mu.Unlock()
}

func (s *sink) kinds() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, r := range s.recs {
		k := string(r.Kind)
		if r.Kind == audit.KindSessionEnd {
			k += ":" + r.Detail["reason"]
		}
		if r.Kind == audit.KindLease {
			k += ":" + r.Detail["event"]
		}
		out = append(out, k)
	}
	return out
}

// provider issues one lease, renewable or not.
type provider struct{ renew error }

func (provider) Acquire(context.Context, credential.Source) (*credential.Lease, error) {
	return &credential.Lease{ID: "database/creds/ro/L1", Username: "u", Password: "p", TTL: time.Hour}, nil
}
func (p provider) Renew(context.Context, string) (time.Duration, error) { return time.Hour, p.renew }
func (provider) Revoke(context.Context, string) error                   { return nil }

var remote = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5555}

// TestOpenRefusesAsTheCauseSays: each reason to refuse a session is an *Error of its own kind, with
// what was refused recorded; a session whose start was recorded and that then fails gets its end
// record too, and holds no credential.
func TestOpenRefusesAsTheCauseSays(t *testing.T) {
	allow := func(context.Context, authz.Connect) (authz.Decision, error) { return authz.Decision{}, nil }
	deny := func(context.Context, authz.Connect) (authz.Decision, error) {
		return authz.Decision{}, errors.New("not in the allow list")
	}
	leases := credential.NewManager(provider{}, nil, slog.New(slog.DiscardHandler), time.Second, 0)
	t.Cleanup(leases.Close)
	lease := func(ctx context.Context, c authz.Connect, role string, end func(error)) (*credential.Session, error) {
		return leases.Start(ctx, c.Peer.ID.String(), credential.Source{Path: "database/creds/ro"}, end)
	}
	noLease := func(context.Context, authz.Connect, string, func(error)) (*credential.Session, error) {
		return nil, errors.New("vault: permission denied")
	}
	cases := []struct {
		name    string
		cfg     Config
		check   error
		failLog bool
		want    error
		records []string
	}{
		{name: "not ready", cfg: Config{Authorize: allow, Ready: func() error { return errors.New("broker SVID expired") }},
			want: ErrNotReady},
		{name: "SPIRE does not confirm", cfg: Config{Authorize: allow, Attest: func(context.Context, spiffeid.ID) (*identity.Attestation, error) {
			return nil, errors.New("no registration entry")
		}}, want: ErrUnattested},
		{name: "denied", cfg: Config{Authorize: deny}, want: ErrDenied, records: []string{"decision"}},
		{name: "audit unavailable", cfg: Config{Authorize: allow}, failLog: true, want: ErrAuditUnavailable},
		{name: "engine check refuses", cfg: Config{Authorize: allow, Lease: lease}, check: errors.New("parameter \"options\" is not forwarded"),
			want: ErrRefused, records: []string{"session_start", "session_end:session not established: startup refused"}},
		{name: "no credential", cfg: Config{Authorize: allow, Lease: noLease}, want: ErrNoCredential,
			records: []string{"session_start", "error", "session_end:session not established: no backend credential"}},
		{name: "opened", cfg: Config{Authorize: allow, Lease: lease}, records: []string{"session_start", "lease:acquired"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			snk := &sink{}
			if c.failLog {
				snk.fail = errors.New("disk full")
			}
			c.cfg.Target, c.cfg.Audit, c.cfg.Logger = "shop", snk, slog.New(slog.DiscardHandler)
			core, err := New(c.cfg)
			if err != nil {
				t.Fatal(err)
			}
			s, err := core.Open(t.Context(), OpenRequest{TLS: peerTLS(t, "spiffe://example.org/agent/a", time.Now().Add(time.Hour)),
				Remote: remote, Check: func() error { return c.check }, CheckRefusal: "startup refused"})
			switch {
			case c.want == nil && err != nil:
				t.Fatalf("Open: %v", err)
			case c.want != nil && !errors.Is(err, c.want):
				t.Fatalf("Open: %v, want %v", err, c.want)
			case c.want != nil:
				if se, ok := errors.AsType[*Error](err); !ok || se.Peer.String() != "spiffe://example.org/agent/a" {
					t.Errorf("Open's error %#v does not name the peer", err)
				}
				if s != nil {
					t.Errorf("a refused Open returned a session")
				}
			default:
				if s.Lease() == nil || s.Lease().Lease.Password != "p" || s.Peer().ID.String() != "spiffe://example.org/agent/a" {
					t.Errorf("opened session: lease %v, peer %v", s.Lease(), s.Peer().ID)
				}
				s.End(nil, time.Now())
				c.records = append(c.records, "lease:revoked", "session_end:client ended the session")
			}
			if got := snk.kinds(); !slices.Equal(got, c.records) {
				t.Errorf("records %q, want %q", got, c.records)
			}
		})
	}
}

// TestWatchEndsWithTheCause: each of the broker's reasons to end a running session cancels its
// context with that reason as the cause; a stopped watch cancels nothing.
func TestWatchEndsWithTheCause(t *testing.T) {
	lostErr := errors.New("credential: renewing lease L1 failed")
	cases := []struct {
		name string
		fire func(cancelParent context.CancelFunc, lost func(error), revoke func(*Ended))
		want error
	}{
		{"shutdown", func(cancel context.CancelFunc, _ func(error), _ func(*Ended)) { cancel() }, ErrShutdown},
		{"SVID expiry", func(context.CancelFunc, func(error), func(*Ended)) { time.Sleep(2 * time.Hour) }, ErrSVIDExpired},
		{"lease lost", func(_ context.CancelFunc, lost func(error), _ func(*Ended)) { lost(lostErr) }, ErrLeaseLost},
		{"revoked", func(_ context.CancelFunc, _ func(error), revoke func(*Ended)) {
			revoke(&Ended{Why: ErrRevoked, Err: errors.New("connect denied")})
		}, ErrRevoked},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				parent, cancel := context.WithCancel(context.Background())
				defer cancel()
				var lost func(error)
				var revoke func(*Ended)
				ctx, stop := Watch(parent, Watches{EndBy: time.Now().Add(time.Hour),
					Lost:    func(fn func(error)) { lost = fn },
					Revoked: func(fn func(*Ended)) func() { revoke = fn; return func() {} }})
				defer stop()
				c.fire(cancel, lost, revoke)
				synctest.Wait()
				if ctx.Err() == nil {
					t.Fatal("the session's context is not cancelled")
				}
				cause := context.Cause(ctx)
				if !errors.Is(cause, c.want) {
					t.Fatalf("cause %v, want %v", cause, c.want)
				}
				if c.want == ErrLeaseLost && !errors.Is(cause, lostErr) {
					t.Errorf("cause %v does not carry the lease manager's error", cause)
				}
			})
		})
	}
	t.Run("stopped", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			parent, cancel := context.WithCancel(context.Background())
			ctx, stop := Watch(parent, Watches{EndBy: time.Now().Add(time.Hour)})
			stop()
			cancel()
			time.Sleep(2 * time.Hour)
			synctest.Wait()
			if ctx.Err() != nil {
				t.Fatalf("a stopped watch cancelled the context: %v", context.Cause(ctx))
			}
		})
	})
}

// TestOpenWithAnEngineVerifiedPeer: an engine that verified the caller itself (a JWT-SVID) opens the
// session under that identity; one without an ID or expiry is refused as unidentified.
func TestOpenWithAnEngineVerifiedPeer(t *testing.T) {
	var decided spiffeid.ID
	core, err := New(Config{Target: "api", Logger: slog.New(slog.DiscardHandler),
		Authorize: func(_ context.Context, c authz.Connect) (authz.Decision, error) {
			decided = c.Peer.ID
			return authz.Decision{}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	jwt := identity.Peer{ID: spiffeid.RequireFromString("spiffe://example.org/agent/jwt"), Expires: time.Now().Add(time.Minute)}
	s, err := core.Open(t.Context(), OpenRequest{Peer: &jwt, Remote: remote})
	if err != nil {
		t.Fatal(err)
	}
	if s.Peer().ID != jwt.ID || decided != jwt.ID || !s.EndBy().Equal(jwt.Expires) {
		t.Errorf("session of %v decided for %v until %v, want %v until %v", s.Peer().ID, decided, s.EndBy(), jwt.ID, jwt.Expires)
	}
	if _, err := core.Open(t.Context(), OpenRequest{Peer: &identity.Peer{}, Remote: remote}); !errors.Is(err, ErrUnidentified) {
		t.Errorf("Open with an empty peer: %v, want ErrUnidentified", err)
	}
}

package postgres

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/broker/credential"
)

// connectWithRoles runs one client through an engine whose backend picks credential roles with pick,
// and returns the roles Lease was asked for, the records written, and the client's error.
func connectWithRoles(t *testing.T, pick func(context.Context, authz.Connect) (authz.RolePick, error)) ([]string, []audit.Record, error) {
	t.Helper()
	pki := newTestPKI(t)
	sink := &recordingSink{}
	var mu sync.Mutex
	var leased []string
	eng, err := New(Config{
		Target: "test", ServerTLS: pki.brokerServerTLS(t), MaxMessageBytes: 1 << 20, Audit: sink,
		Authorize: func(context.Context, authz.Connect) (authz.Decision, error) {
			return authz.Decision{ID: "d-connect", Allow: true, Reasons: []string{"p-connect"}}, nil
		},
		Logger: slog.New(slog.DiscardHandler),
		Backend: Backend{Address: "127.0.0.1:1", Database: "app", ConnectTimeout: time.Second,
			TLS: &tls.Config{RootCAs: pki.pool, ServerName: "localhost", MinVersion: tls.VersionTLS12},
			Lease: func(_ context.Context, _ authz.Connect, role string, _ func(error)) (*credential.Session, error) {
				mu.Lock()
				leased = append(leased, role)
				mu.Unlock()
				return nil, errors.New("vault: sealed")
			},
			PickRole: pick},
	})
	if err != nil {
		t.Fatal(err)
	}
	clientConn, serverConn := tcpPair(t)
	handshook := make(chan struct{})
	go func() { _, _ = eng.Handshake(t.Context(), serverConn); serverConn.Close(); close(handshook) }()
	cfg, err := pgconn.ParseConfig("host=localhost user=agent dbname=test sslmode=require connect_timeout=5")
	if err != nil {
		t.Fatal(err)
	}
	cfg.TLSConfig, cfg.Fallbacks = pki.clientTLS(t), nil
	cfg.DialFunc = func(context.Context, string, string) (net.Conn, error) { return clientConn, nil }
	_, err = pgconn.ConnectConfig(t.Context(), cfg)
	<-handshook
	sink.mu.Lock()
	defer sink.mu.Unlock()
	mu.Lock()
	defer mu.Unlock()
	return leased, append([]audit.Record(nil), sink.recs...), err
}

// TestCallerWithNoCredentialRoleIsRefusedAtConnect: a caller Cedar picks no role for gets FATAL 28000
// saying what to fix; each role's credential:use decision is recorded with the refusal, and neither a
// session start nor a lease follows.
func TestCallerWithNoCredentialRoleIsRefusedAtConnect(t *testing.T) {
	no := &authz.NoRole{Target: "test", Uses: []authz.RoleUse{
		{Role: "read", Decision: authz.Decision{ID: "d-read"}},
		{Role: "admin", Decision: authz.Decision{ID: "d-admin", Reasons: []string{"no-admin"}}},
	}}
	leased, recs, err := connectWithRoles(t, func(context.Context, authz.Connect) (authz.RolePick, error) {
		return authz.RolePick{Target: "test"}, no
	})
	pe, ok := errors.AsType[*pgconn.PgError](err)
	if !ok || pe.Severity != "FATAL" || pe.Code != "28000" || !strings.Contains(pe.Message, no.Error()) {
		t.Fatalf("connect error %v; want FATAL 28000 saying %q", err, no)
	}
	if len(leased) > 0 {
		t.Fatalf("a lease was asked for %q", leased)
	}
	var decisions []string
	for _, r := range recs {
		switch {
		case r.Kind == audit.KindSessionStart || r.Kind == audit.KindLease:
			t.Errorf("a refused caller has a %s record", r.Kind)
		case r.Kind == audit.KindDecision && r.Decision.Action == "credential:use":
			if r.Decision.Allow || !strings.HasPrefix(r.Detail["refused"], "no credential role: credential:use denied") {
				t.Errorf("decision record %+v %v", r.Decision, r.Detail)
			}
			decisions = append(decisions, r.Decision.ID+" "+r.Decision.Resource)
		}
	}
	if want := []string{`d-read CredentialRole::"test/read"`, `d-admin CredentialRole::"test/admin"`}; strings.Join(decisions, ";") != strings.Join(want, ";") {
		t.Fatalf("credential:use records %q; want %q", decisions, want)
	}
}

// TestPickedCredentialRoleIsLeasedAndRecorded is the control: a caller with a role gets its session
// started with that role named, and the lease is asked for that role.
func TestPickedCredentialRoleIsLeasedAndRecorded(t *testing.T) {
	leased, recs, err := connectWithRoles(t, func(context.Context, authz.Connect) (authz.RolePick, error) {
		return authz.RolePick{Target: "test", Role: "admin", For: []string{"sql:ddl"},
			Decision: authz.Decision{ID: "d-admin", Allow: true, Reasons: []string{"admin-role"}}}, nil
	})
	// The lease fails (Vault sealed): the session is refused after its start, for want of a credential.
	if pe, ok := errors.AsType[*pgconn.PgError](err); !ok || pe.Code != "08006" {
		t.Fatalf("connect error %v; want FATAL 08006 for the failed lease", err)
	}
	if len(leased) != 1 || leased[0] != "admin" {
		t.Fatalf("leases asked for %q; want [admin]", leased)
	}
	var start, decision bool
	for _, r := range recs {
		switch {
		case r.Kind == audit.KindSessionStart:
			start = r.Detail["credential_role"] == "admin" && r.Detail["credential_role_for"] == "sql:ddl"
		case r.Kind == audit.KindDecision && r.Decision != nil && r.Decision.Action == "credential:use":
			decision = r.Decision.Allow && r.Decision.ID == "d-admin" && r.Decision.Resource == `CredentialRole::"test/admin"`
		}
	}
	if !start || !decision {
		t.Fatalf("records %+v: start names the role %v, credential:use decision recorded %v", recs, start, decision)
	}
}

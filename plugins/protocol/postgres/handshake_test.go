package postgres

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/broker/authz"
)

// TestNotReadyIsAFatalErrorTheClientShows: a broker that cannot grant new access (its audit log
// fails) refuses a client with a FATAL error in the startup phase, after TLS, where clients show the
// server's message; answered to SSLRequest, libpq shows only "server sent an error response during
// SSL exchange". A broker whose own SVID is not current cannot complete a TLS handshake the client
// accepts, so it refuses before TLS.
func TestNotReadyIsAFatalErrorTheClientShows(t *testing.T) {
	notReady := errors.New("the audit log is unavailable, so new sessions are refused")
	for _, c := range []struct {
		name            string
		ready, tlsReady func() error
		code            string // the FATAL error's SQLSTATE the client gets; "" for none
	}{
		{"audit log failing", func() error { return notReady }, nil, "57P03"},
		{"own SVID expired", nil, func() error { return errors.New("broker SVID expired") }, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			pki := newTestPKI(t)
			eng, err := New(Config{
				Target: "test", ServerTLS: pki.brokerServerTLS(t), MaxMessageBytes: 1 << 20,
				Authorize: func(context.Context, authz.Connect) (authz.Decision, error) {
					return authz.Decision{}, errors.New("no decision expected")
				},
				Ready: c.ready, TLSReady: c.tlsReady, Logger: slog.New(slog.DiscardHandler),
				Backend: Backend{Address: "127.0.0.1:1", Database: "app", User: "agent", ConnectTimeout: time.Second,
					TLS: &tls.Config{RootCAs: pki.pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}},
			})
			if err != nil {
				t.Fatal(err)
			}
			clientConn, serverConn := tcpPair(t)
			go func() { _, _ = eng.Handshake(t.Context(), serverConn); serverConn.Close() }()
			cfg, err := pgconn.ParseConfig("host=localhost user=agent dbname=test sslmode=require connect_timeout=5")
			if err != nil {
				t.Fatal(err)
			}
			cfg.TLSConfig = pki.clientTLS(t)
			cfg.Fallbacks = nil
			cfg.DialFunc = func(context.Context, string, string) (net.Conn, error) { return clientConn, nil }
			conn, err := pgconn.ConnectConfig(t.Context(), cfg)
			if err == nil {
				conn.Close(context.Background())
				t.Fatal("connected to a broker that is not ready")
			}
			pe, isPg := errors.AsType[*pgconn.PgError](err)
			switch {
			case c.code == "" && isPg:
				t.Errorf("got a server error %v; want the refusal before TLS", pe)
			case c.code != "" && (!isPg || pe.Severity != "FATAL" || pe.Code != c.code || !strings.Contains(pe.Message, notReady.Error())):
				t.Errorf("connect error %v; want FATAL %s saying %q", err, c.code, notReady)
			}
		})
	}
}

// TestASessionNotEstablishedSaysWhy: a session that began (its start is recorded) but could not be
// established ends with a record that says which step failed, naming no host: here, a backend that
// refuses connections, which the client learns as FATAL 08006.
func TestASessionNotEstablishedSaysWhy(t *testing.T) {
	pki := newTestPKI(t)
	sink := &recordingSink{}
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	backendAddr := closed.Addr().String()
	closed.Close()
	eng, err := New(Config{
		Target: "test", ServerTLS: pki.brokerServerTLS(t), MaxMessageBytes: 1 << 20, Audit: sink,
		Authorize: func(context.Context, authz.Connect) (authz.Decision, error) {
			return authz.Decision{ID: "d1", Allow: true, Reasons: []string{"p"}}, nil
		},
		Logger: slog.New(slog.DiscardHandler),
		Backend: Backend{Address: backendAddr, Database: "app", User: "agent", ConnectTimeout: time.Second,
			TLS: &tls.Config{RootCAs: pki.pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}},
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
	if pe, ok := errors.AsType[*pgconn.PgError](err); !ok || pe.Severity != "FATAL" || pe.Code != "08006" {
		t.Fatalf("connect error %v; want FATAL 08006", err)
	}
	<-handshook
	sink.mu.Lock()
	defer sink.mu.Unlock()
	var end string
	for _, r := range sink.recs {
		if r.Kind == audit.KindSessionEnd {
			end = r.Detail["reason"]
		}
	}
	if end != "session not established: "+notEstablishedBackend || strings.Contains(end, "127.0.0.1") {
		t.Fatalf("session end %q; want the step that failed, without the host", end)
	}
}

package postgres

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"runtime/pprof"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/broker/server"
)

// TestNoGoroutineLeak runs a whole engine in process, behind the broker's server, in front of a fake
// PostgreSQL, and drives it with pgx clients that end their sessions every way a client can: Terminate,
// closing the socket, closing it in the middle of a query, cancelling a query, staying until the broker
// shuts down; plus connections that never become sessions. Once everything has stopped, the number of
// goroutines is back where it started.
func TestNoGoroutineLeak(t *testing.T) {
	base := runtime.NumGoroutine()
	pki := newTestPKI(t)
	backend := startFakePG(t, pki)
	defer backend.close()

	eng, err := New(Config{
		Target:    "test",
		ServerTLS: pki.brokerServerTLS(t),
		Authorize: func(context.Context, authz.Connect) (authz.Decision, error) {
			return authz.Decision{Allow: true}, nil
		},
		MaxMessageBytes: 1 << 20,
		Logger:          slog.New(slog.DiscardHandler),
		Backend: Backend{Address: backend.addr(), Database: "app", User: "agent", ConnectTimeout: 5 * time.Second,
			TLS: &tls.Config{RootCAs: pki.pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{
		Listeners:        []server.Listener{{Name: "pg", Address: "127.0.0.1:0", Engine: eng}},
		HandshakeTimeout: 5 * time.Second, MaxConcurrentHandshakes: 64, MaxConnections: 64,
		ShutdownGrace: 200 * time.Millisecond, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	addr := srv.Addr("pg").(*net.TCPAddr)
	ctx, stopServer := context.WithCancel(context.Background())
	defer stopServer()
	served := make(chan error, 1)
	go func() { served <- srv.Run(ctx) }()

	clientTLS := pki.clientTLS(t)
	connect := func(ctx context.Context, mode pgx.QueryExecMode) (*pgx.Conn, error) {
		cfg, err := pgx.ParseConfig(fmt.Sprintf("host=127.0.0.1 port=%d user=agent dbname=app sslmode=disable connect_timeout=5", addr.Port))
		if err != nil {
			return nil, err
		}
		cfg.TLSConfig = clientTLS.Clone()
		cfg.Fallbacks = nil
		cfg.RuntimeParams = map[string]string{"application_name": "leaktest"}
		cfg.DefaultQueryExecMode = mode
		return pgx.ConnectConfig(ctx, cfg)
	}
	query := func(ctx context.Context, c *pgx.Conn, sql string) error {
		var v string
		if err := c.QueryRow(ctx, sql).Scan(&v); err != nil {
			return err
		}
		if v != "v:"+sql {
			return fmt.Errorf("%s returned %q", sql, v)
		}
		return nil
	}

	const n = 20
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		conns   []*pgx.Conn
		held    []*pgx.Conn
		errs    []error
		failedf = func(format string, args ...any) {
			mu.Lock()
			errs = append(errs, fmt.Errorf(format, args...))
			mu.Unlock()
		}
	)
	cctx, cancelClients := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelClients()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mode := pgx.QueryExecModeCacheStatement
			if i%2 == 0 {
				mode = pgx.QueryExecModeSimpleProtocol
			}
			c, err := connect(cctx, mode)
			if err != nil {
				failedf("client %d: connect: %v", i, err)
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			for j := range 3 {
				if err := query(cctx, c, fmt.Sprintf("SELECT 'client %d query %d'", i, j)); err != nil {
					failedf("client %d: query %d: %v", i, j, err)
					return
				}
			}
			switch i % 5 {
			case 0: // polite: Terminate
				if err := c.Close(cctx); err != nil {
					failedf("client %d: close: %v", i, err)
				}
			case 1: // the socket just closes
				_ = c.PgConn().Conn().Close()
			case 2: // the socket closes while a statement runs
				slow := fmt.Sprintf("SELECT 'slow %d'", i)
				done := make(chan error, 1)
				go func() { done <- query(cctx, c, slow) }()
				select {
				case <-backend.slowStarted(slow):
				case <-cctx.Done():
					failedf("client %d: the slow statement never reached the backend", i)
				}
				_ = c.PgConn().Conn().Close()
				if err := <-done; err == nil {
					failedf("client %d: the statement succeeded on a closed connection", i)
				}
			case 3: // a statement is cancelled; the session goes on, then ends politely
				slow := fmt.Sprintf("SELECT 'slow %d'", i)
				done := make(chan error, 1)
				go func() { done <- query(cctx, c, slow) }()
				select {
				case <-backend.slowStarted(slow):
				case <-cctx.Done():
					failedf("client %d: the slow statement never reached the backend", i)
				}
				if err := c.PgConn().CancelRequest(cctx); err != nil {
					failedf("client %d: cancel: %v", i, err)
				}
				var pgErr *pgconn.PgError
				if err := <-done; !errors.As(err, &pgErr) || pgErr.Code != "57014" {
					failedf("client %d: the cancelled statement returned %v", i, err)
				}
				if err := query(cctx, c, fmt.Sprintf("SELECT 'client %d after cancel'", i)); err != nil {
					failedf("client %d: after cancel: %v", i, err)
				}
				if err := c.Close(cctx); err != nil {
					failedf("client %d: close: %v", i, err)
				}
			case 4: // stays until the broker shuts down
				mu.Lock()
				held = append(held, c)
				mu.Unlock()
			}
		}()
	}
	// Connections that never become sessions.
	for _, pre := range [][]byte{
		nil, // connects and closes
		encodeMessages(t, &pgproto3.SSLRequest{}),                                                // closes during TLS
		encodeMessages(t, &pgproto3.CancelRequest{ProcessID: 1, SecretKey: []byte{1, 2, 3, 4}}),  // unknown key
		encodeMessages(t, &pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30}), // plaintext
		{0, 0, 0, 8, 0, 0, 0}, // half a packet
		encodeMessages(t, &pgproto3.GSSEncRequest{}, &pgproto3.GSSEncRequest{}, &pgproto3.SSLRequest{}), // refused
	} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", addr.String())
			if err != nil {
				failedf("raw connection: %v", err)
				return
			}
			defer c.Close()
			if len(pre) > 0 {
				_, _ = c.Write(pre)
				_ = c.SetReadDeadline(time.Now().Add(time.Second))
				_, _ = c.Read(make([]byte, 1))
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		t.Error(err)
	}

	// Shut the broker down: the held sessions end with 57P01.
	stopServer()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("server: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the server did not shut down")
	}
	for _, c := range held {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := query(ctx, c, "SELECT 'after shutdown'")
		cancel()
		var pgErr *pgconn.PgError
		if err == nil || errors.As(err, &pgErr) && pgErr.Code != "57P01" {
			t.Errorf("a held session after shutdown: %v", err)
		}
	}
	for _, c := range conns {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = c.Close(ctx)
		cancel()
		select {
		case <-c.PgConn().CleanupDone():
		case <-time.After(20 * time.Second):
			t.Error("a pgx connection did not finish closing")
		}
	}
	backend.close()

	deadline := time.Now().Add(5 * time.Second)
	for {
		got := runtime.NumGoroutine()
		if got <= base {
			return
		}
		if time.Now().After(deadline) {
			var dump bytes.Buffer
			_ = pprof.Lookup("goroutine").WriteTo(&dump, 2)
			t.Fatalf("%d goroutines left over (%d at the start, %d now):\n%s", got-base, base, got, dump.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

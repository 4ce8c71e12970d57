package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/svidbroker/svidbroker/test/stack"
)

// psql runs the real psql with libpq's environment variables, as an agent would.
func psql(t *testing.T, b *stack.Broker, f *stack.ClientFiles, extraEnv []string, sql string) (string, error) {
	t.Helper()
	_, port, _ := net.SplitHostPort(b.Addr)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql)
	cmd.Env = append(os.Environ(), "PGHOST=localhost", "PGPORT="+port, "PGDATABASE=shop", "PGSSLMODE=verify-full",
		"PGCONNECT_TIMEOUT=10", "PGUSER=agent")
	if f != nil {
		cmd.Env = append(cmd.Env, "PGSSLCERT="+f.Cert, "PGSSLKEY="+f.Key, "PGSSLROOTCERT="+f.RootCert)
	}
	cmd.Env = append(cmd.Env, extraEnv...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return strings.TrimSpace(out.String() + errb.String()), err
	}
	return strings.TrimSpace(out.String()), nil
}

func TestPsqlThroughBrokerWithOnlyAnSVID(t *testing.T) {
	s, b := shared(t)
	for _, persona := range []string{stack.PersonaAnalyst, stack.PersonaSupport} {
		t.Run(persona, func(t *testing.T) {
			f := clientFiles(t, s, persona)
			out, err := psql(t, b, f, nil, "SELECT count(*) FROM customers")
			if err != nil {
				t.Fatalf("psql: %v: %s", err, out)
			}
			if out != "8" {
				t.Fatalf("count(*) = %q, want 8", out)
			}
			// The backend session belongs to the broker's role, over TLS: the agent held no password.
			out, err = psql(t, b, f, nil, "SELECT current_user || ' ' || ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
			if err != nil || out != stack.BrokerDBRole+" true" {
				t.Fatalf("backend session = %q (%v), want %q", out, err, stack.BrokerDBRole+" true")
			}
		})
	}
}

func TestPgxExtendedProtocolThroughBroker(t *testing.T) {
	s, b := shared(t)
	f := clientFiles(t, s, stack.PersonaAnalyst)
	ctx := t.Context()
	conn, err := pgx.ConnectConfig(ctx, pgxConfig(t, b, f))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var name string
	var total float64
	if err := conn.QueryRow(ctx, `SELECT c.name, sum(o.total)::float8 FROM customers c JOIN orders o ON o.customer_id = c.id
		WHERE c.id = $1 GROUP BY c.name`, 2).Scan(&name, &total); err != nil {
		t.Fatal(err)
	}
	if name != "Bob" || total <= 0 {
		t.Fatalf("got %q %v", name, total)
	}
	// A pipeline of several statements in one round trip, and an error that leaves the session usable.
	batch := &pgx.Batch{}
	for i := 1; i <= 5; i++ {
		batch.Queue("SELECT name FROM customers WHERE id = $1", i)
	}
	if err := conn.SendBatch(ctx, batch).Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "SELECT * FROM no_such_table"); err == nil {
		t.Fatal("query of a missing table succeeded")
	}
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM orders").Scan(&n); err != nil || n != 2*stack.SeedCustomers {
		t.Fatalf("after an error: count = %d, %v", n, err)
	}
	// COPY out and in through the relay.
	var buf bytes.Buffer
	if _, err := conn.PgConn().CopyTo(ctx, &buf, "COPY (SELECT id, name FROM customers ORDER BY id) TO STDOUT"); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Count(buf.String(), "\n"); lines != stack.SeedCustomers {
		t.Fatalf("COPY TO gave %d lines", lines)
	}
	// The analyst may not create tables, nor load data...
	if _, err := conn.Exec(ctx, "CREATE TEMP TABLE t (id int, name text)"); err == nil || !strings.Contains(err.Error(), "42501") {
		t.Fatalf("the analyst created a table: %v", err)
	}
	if _, err := conn.PgConn().CopyFrom(ctx, bytes.NewReader(buf.Bytes()), "COPY orders (id) FROM STDIN"); err == nil || !strings.Contains(err.Error(), "42501") {
		t.Fatalf("the analyst loaded rows with COPY: %v", err)
	}
	// ... unless a policy says so: COPY FROM STDIN through a broker whose policies allow it.
	policies := packsWith(t, "loader.cedar", `@id("analyst-scratch")
permit (principal in Group::"analysts", action in [Action::"sql:ddl", Action::"sql:insert"], resource == Table::"shop/public.scratch");`)
	b2, err := s.StartBroker(ctx, stack.BrokerOptions{Name: "svidbroker-copy", Binary: brokerBin, PolicyDir: policies, NoAudit: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Stop()
	loader, err := pgx.ConnectConfig(ctx, pgxConfig(t, b2, f))
	if err != nil {
		t.Fatal(err)
	}
	defer loader.Close(ctx)
	if _, err := loader.Exec(ctx, "CREATE TEMP TABLE scratch (id int, name text)"); err != nil {
		t.Fatal(err)
	}
	if _, err := loader.PgConn().CopyFrom(ctx, &buf, "COPY scratch FROM STDIN"); err != nil {
		t.Fatal(err)
	}
	// (Counted on the client: computed columns over a table made during the session are masked for a
	// caller with masked columns, since it may hold copies of masked values.)
	rows, err := loader.Query(ctx, "SELECT id FROM scratch")
	if err != nil {
		t.Fatal(err)
	}
	n = 0
	for rows.Next() {
		n++
	}
	if rows.Close(); rows.Err() != nil || n != stack.SeedCustomers {
		t.Fatalf("COPY FROM loaded %d rows, %v", n, rows.Err())
	}
}

func TestDeniedAndMalformedClients(t *testing.T) {
	s, b := shared(t)
	analyst := clientFiles(t, s, stack.PersonaAnalyst)
	intruder := clientFiles(t, s, stack.PersonaIntruder)
	cases := []struct {
		name  string
		files *stack.ClientFiles
		env   []string
		want  string
	}{
		{"workload no policy permits", intruder, nil, `spiffe://example.org/agent/intruder: connect to target "shop" denied: no policy permits it`},
		{"no client certificate", &stack.ClientFiles{RootCert: analyst.RootCert}, nil, "certificate"},
		{"plaintext", analyst, []string{"PGSSLMODE=disable"}, "TLS with a client X.509-SVID is required"},
		{"another database", analyst, []string{"PGDATABASE=postgres"}, `serves database "shop", not "postgres"`},
		{"server settings through options", analyst, []string{"PGOPTIONS=-c search_path=evil"}, `startup parameter "options" is not allowed`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := psql(t, b, tc.files, tc.env, "SELECT 1")
			if err == nil {
				t.Fatalf("psql succeeded: %s", out)
			}
			if !strings.Contains(out, tc.want) {
				t.Fatalf("psql error does not say %q:\n%s", tc.want, out)
			}
		})
	}
}

// TestPreTLSInjectionRefused sends plaintext right behind the SSLRequest, as in CVE-2021-23214: those
// bytes must never be read as part of the encrypted session.
func TestPreTLSInjectionRefused(t *testing.T) {
	_, b := shared(t)
	conn, err := net.DialTimeout("tcp", b.Addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	ssl, _ := (&pgproto3.SSLRequest{}).Encode(nil)
	injected, _ := (&pgproto3.Query{String: "SELECT 1"}).Encode(nil)
	if _, err := conn.Write(append(ssl, injected...)); err != nil {
		t.Fatal(err)
	}
	var resp [1]byte
	if _, err := io.ReadFull(conn, resp[:]); err != nil || resp[0] != 'S' {
		t.Fatalf("SSLRequest answer %q, %v", resp, err)
	}
	// The injected bytes are now the first bytes of the TLS handshake, which must fail: the broker
	// closes the connection (possibly after a TLS alert) and never answers the query.
	rest, err := io.ReadAll(conn)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("broker kept the connection open")
	}
	if bytes.Contains(rest, []byte{'T'}) && bytes.Contains(rest, []byte("?column?")) {
		t.Fatal("broker executed the injected query")
	}
	if len(rest) > 0 && rest[0] != 0x15 { // anything sent must be a TLS alert record
		t.Fatalf("unexpected reply %x", rest)
	}
}

// TestStalledHandshakesAreCutOff checks that clients that stall before or during the TLS handshake hold
// a slot only until their deadline, and that the listener keeps serving others.
func TestStalledHandshakesAreCutOff(t *testing.T) {
	s, _ := shared(t)
	b, err := s.StartBroker(t.Context(), stack.BrokerOptions{
		Name:   "svidbroker-stalls",
		Binary: brokerBin,
		Extra:  "\nlimits {\n  handshake_timeout = \"1s\"\n  max_concurrent_handshakes = 3\n}\n",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Stop()
	roots := x509.NewCertPool()
	f := clientFiles(t, s, stack.PersonaAnalyst)
	pemBytes, err := os.ReadFile(f.RootCert)
	if err != nil || !roots.AppendCertsFromPEM(pemBytes) {
		t.Fatal("bundle", err)
	}
	stall := []func(net.Conn) error{
		func(net.Conn) error { return nil }, // says nothing at all
		func(c net.Conn) error { // asks for TLS, then never starts the handshake
			ssl, _ := (&pgproto3.SSLRequest{}).Encode(nil)
			_, err := c.Write(ssl)
			return err
		},
		func(c net.Conn) error { // starts TLS and withholds its certificate (the client's Finished)
			ssl, _ := (&pgproto3.SSLRequest{}).Encode(nil)
			if _, err := c.Write(ssl); err != nil {
				return err
			}
			var one [1]byte
			if _, err := io.ReadFull(c, one[:]); err != nil {
				return err
			}
			// Send a ClientHello and stop reading/writing mid-handshake.
			hello := tls.Client(&writeOnly{c}, &tls.Config{ServerName: "localhost", RootCAs: roots})
			_ = hello.SetDeadline(time.Now().Add(200 * time.Millisecond))
			_ = hello.Handshake()
			return nil
		},
	}
	var conns []net.Conn
	for _, f := range stall {
		c, err := net.DialTimeout("tcp", b.Addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := f(c); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	for i, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		_, err := io.Copy(io.Discard, c)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("stalled client %d was not cut off by the broker", i)
		}
	}
	out, err := psql(t, b, f, nil, "SELECT 1")
	if err != nil || out != "1" {
		t.Fatalf("listener unusable after stalled clients: %q %v", out, err)
	}
}

// TestFloodOfStalledHandshakes opens 500 connections that never finish a handshake against a broker with
// default limits, then connects a real client. The client must get in while the stalled connections are
// still within their handshake deadline, so it did not wait for them to time out.
func TestFloodOfStalledHandshakes(t *testing.T) {
	s, b := shared(t)
	f := clientFiles(t, s, stack.PersonaAnalyst)
	ssl, _ := (&pgproto3.SSLRequest{}).Encode(nil)
	var last net.Conn
	for i := range 500 {
		c, err := net.DialTimeout("tcp", b.Addr, 5*time.Second)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		defer c.Close()
		if i%2 == 0 { // half ask for TLS and then stall; the last one is silent
			if _, err := c.Write(ssl); err != nil {
				t.Fatal(err)
			}
		}
		last = c
	}
	out, err := psql(t, b, f, nil, "SELECT 1")
	if err != nil || out != "1" {
		t.Fatalf("real client behind 500 stalled handshakes: %q %v", out, err)
	}
	// The most recent staller is still pending: the real client did not wait out the deadline.
	_ = last.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	var one [1]byte
	if _, err := last.Read(one[:]); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the last stalled connection was already closed (%v): the client waited for handshake deadlines", err)
	}
}

// writeOnly lets a tls.Client send its ClientHello without reading the server's reply, so the
// handshake stalls at the server.
type writeOnly struct{ net.Conn }

func (w *writeOnly) Read([]byte) (int, error) { return 0, os.ErrDeadlineExceeded }

func portOf(b *stack.Broker) string {
	_, port, _ := net.SplitHostPort(b.Addr)
	return port
}

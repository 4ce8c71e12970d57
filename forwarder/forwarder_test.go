package forwarder

import (
	"context"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

const (
	forwarderPath = "/agent/forwarder"
	brokerPath    = "/svidbroker"
)

// setup is a fake broker with its own SVID, and a running forwarder with another SVID of the same
// trust domain, authorizing the broker as brokerID.
type setup struct {
	broker *fakeBroker
	addr   string // the forwarder's listen address
	fwdID  string
	cancel context.CancelFunc
	done   chan error
}

func start(t *testing.T, proto Protocol, brokerAddr func(*fakeBroker) string, brokerID string, tweak ...func(*Config)) *setup {
	t.Helper()
	ca := newTestCA(t, "example.org")
	b := newFakeBroker(t, ca.svid(t, brokerPath), ca.bundle())
	fwdSVID := ca.svid(t, forwarderPath)
	cfg := Config{Protocol: proto, Broker: b.addr(), BrokerID: spiffeid.RequireFromString(brokerID),
		SVID: fwdSVID, Bundles: ca.bundle(), DialTimeout: 5 * time.Second, HandshakeTimeout: 5 * time.Second,
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil))}
	if brokerAddr != nil {
		cfg.Broker = brokerAddr(b)
	}
	for _, f := range tweak {
		f(&cfg)
	}
	fwd, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &setup{broker: b, addr: ln.Addr().String(), fwdID: fwdSVID.ID.String(), cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- fwd.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-s.done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s
}

func pgConnect(t *testing.T, addr, sslmode string) (*pgx.Conn, error) {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	return pgx.Connect(ctx, "host="+host+" port="+port+" user=agent dbname=shop sslmode="+sslmode+" connect_timeout=10")
}

func TestPostgresClientReachesBrokerAsTheForwardersIdentity(t *testing.T) {
	for _, sslmode := range []string{"disable", "prefer"} {
		t.Run(sslmode, func(t *testing.T) {
			s := start(t, Postgres, nil, "spiffe://example.org"+brokerPath)
			conn, err := pgConnect(t, s.addr, sslmode)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(context.Background())
			var peer string
			if err := conn.QueryRow(t.Context(), "SELECT peer", pgx.QueryExecModeSimpleProtocol).Scan(&peer); err != nil {
				t.Fatal(err)
			}
			if peer != s.fwdID {
				t.Fatalf("the broker saw %q, want the forwarder's SVID %q", peer, s.fwdID)
			}
			s.broker.mu.Lock()
			startup := s.broker.startups[0]
			s.broker.mu.Unlock()
			if startup.Parameters["database"] != "shop" || startup.Parameters["user"] != "agent" {
				t.Fatalf("the broker got startup parameters %v, want the client's", startup.Parameters)
			}
		})
	}
}

// fatal reads what a client gets after sending a StartupMessage to the forwarder: one ErrorResponse.
func startupAndReadError(t *testing.T, addr string) *pgproto3.ErrorResponse {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	buf, _ := (&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: map[string]string{"user": "agent", "database": "shop"}}).Encode(nil)
	if _, err := c.Write(buf); err != nil {
		t.Fatal(err)
	}
	fe := pgproto3.NewFrontend(c, c)
	msg, err := fe.Receive()
	if err != nil {
		t.Fatalf("reading the forwarder's answer: %v", err)
	}
	er, ok := msg.(*pgproto3.ErrorResponse)
	if !ok {
		t.Fatalf("got %T, want an ErrorResponse", msg)
	}
	if _, err := fe.Receive(); !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("after the ErrorResponse: %v, want the connection closed", err)
	}
	return er
}

func TestBrokerFailuresAreToldToThePostgresClient(t *testing.T) {
	closedPort := func(*fakeBroker) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		a := ln.Addr().String()
		ln.Close()
		return a
	}
	cases := []struct {
		name       string
		brokerAddr func(*fakeBroker) string
		brokerID   string
		refuse     *pgproto3.ErrorResponse
		code, want string
	}{
		{"unreachable", closedPort, "spiffe://example.org" + brokerPath, nil, "08001", "cannot reach the broker at 127.0.0.1:"},
		{"wrong broker ID", nil, "spiffe://example.org/not-the-broker", nil, "08001", `unexpected ID "spiffe://example.org/svidbroker"`},
		{"broker refuses before TLS", nil, "spiffe://example.org" + brokerPath,
			&pgproto3.ErrorResponse{Severity: "FATAL", Code: "08006", Message: "svidbroker: not accepting connections: witness unreachable"},
			"08006", "svidbroker: not accepting connections: witness unreachable"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := start(t, Postgres, tc.brokerAddr, tc.brokerID)
			s.broker.refuseTLS = tc.refuse
			er := startupAndReadError(t, s.addr)
			if er.Severity != "FATAL" || er.Code != tc.code || !strings.Contains(er.Message, tc.want) || !strings.HasPrefix(er.Message, "svidbroker connect: ") {
				t.Fatalf("client got %s %s %q; want FATAL %s with %q", er.Severity, er.Code, er.Message, tc.code, tc.want)
			}
			if _, peers := s.broker.count(); len(peers) != 0 {
				t.Fatalf("a TLS session with the broker was established: %v", peers)
			}
		})
	}
	t.Run("pgx reports it", func(t *testing.T) {
		s := start(t, Postgres, closedPort, "spiffe://example.org"+brokerPath)
		_, err := pgConnect(t, s.addr, "disable")
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "08001" {
			t.Fatalf("pgx: %v; want SQLSTATE 08001", err)
		}
	})
}

func TestCancelRequestGoesOverItsOwnMTLSConnection(t *testing.T) {
	s := start(t, Postgres, nil, "spiffe://example.org"+brokerPath)
	c, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	want := &pgproto3.CancelRequest{ProcessID: 42, SecretKey: []byte{0, 0, 0x10, 0x92}}
	buf, _ := want.Encode(nil)
	if _, err := c.Write(buf); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-s.broker.cancels:
		if got.ProcessID != want.ProcessID || string(got.SecretKey) != string(want.SecretKey) {
			t.Fatalf("the broker got cancel %d/%x, want %d/%x", got.ProcessID, got.SecretKey, want.ProcessID, want.SecretKey)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no cancel request reached the broker")
	}
	if _, peers := s.broker.count(); len(peers) != 1 || peers[0] != s.fwdID {
		t.Fatalf("the cancel came from %v, want one mTLS connection as %s", peers, s.fwdID)
	}
	// As with the server, a cancel request gets no answer: the connection just closes.
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("after a cancel request the client read %d bytes, %v; want EOF", n, err)
	}
}

func TestBadStartupPacketsNeverReachTheBroker(t *testing.T) {
	s := start(t, Postgres, nil, "spiffe://example.org"+brokerPath)
	dup := []byte{0, 0, 0, 0, 0, 3, 0, 0}
	for _, kv := range []string{"user", "agent", "user", "postgres"} {
		dup = append(append(dup, kv...), 0)
	}
	dup = append(dup, 0)
	dup[3] = byte(len(dup))
	cases := map[string][]byte{
		"too short":              {0, 0, 0, 4, 0, 0, 0, 0},
		"too long":               {0, 0, 0x27, 0x11, 0, 3, 0, 0},
		"repeated user":          dup,
		"padded SSLRequest":      {0, 0, 0, 9, 0x04, 0xd2, 0x16, 0x2f, 0},
		"unknown protocol magic": {0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x99},
	}
	for name, pkt := range cases {
		t.Run(name, func(t *testing.T) {
			c, err := net.Dial("tcp", s.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(30 * time.Second))
			if _, err := c.Write(pkt); err != nil {
				t.Fatal(err)
			}
			msg, err := pgproto3.NewFrontend(c, c).Receive()
			er, ok := msg.(*pgproto3.ErrorResponse)
			if err != nil || !ok || er.Code != "08P01" {
				t.Fatalf("got %v %v; want an ErrorResponse 08P01", msg, err)
			}
		})
	}
	if accepted, _ := s.broker.count(); accepted != 0 {
		t.Fatalf("the broker was dialed %d times for packets the forwarder refused", accepted)
	}
	// The control: a well-formed client gets through the same forwarder.
	conn, err := pgConnect(t, s.addr, "disable")
	if err != nil {
		t.Fatal(err)
	}
	conn.Close(context.Background())
}

func TestTooManyConnectionsAreRefused(t *testing.T) {
	s := start(t, Postgres, nil, "spiffe://example.org"+brokerPath, func(c *Config) { c.MaxConns = 1 })
	first, err := pgConnect(t, s.addr, "disable")
	if err != nil {
		t.Fatal(err)
	}
	_, err = pgConnect(t, s.addr, "disable")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "53300" {
		t.Fatalf("second connection: %v; want 53300", err)
	}
	first.Close(context.Background())
}

func TestShutdownClosesConnectionsAfterTheDrainTimeout(t *testing.T) {
	s := start(t, Postgres, nil, "spiffe://example.org"+brokerPath, func(c *Config) { c.DrainTimeout = 100 * time.Millisecond })
	conn, err := pgConnect(t, s.addr, "disable")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	s.cancel()
	// Serve returns only once every relay ended: the open session was closed for it.
	select {
	case err := <-s.done:
		s.done <- err // for the cleanup
	case <-time.After(60 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
	if err := conn.Ping(t.Context()); err == nil {
		t.Fatal("the session still works after shutdown")
	}
	if _, err := net.Dial("tcp", s.addr); err == nil {
		t.Fatal("the forwarder still accepts connections after shutdown")
	}
}

func TestExpiredSVIDIsNamedToTheClient(t *testing.T) {
	s := start(t, Postgres, nil, "spiffe://example.org"+brokerPath, func(c *Config) {
		svid, _ := c.SVID.GetX509SVID()
		expired := *svid
		leaf := *svid.Certificates[0]
		leaf.NotAfter = time.Now().Add(-time.Minute)
		expired.Certificates = []*x509.Certificate{&leaf}
		c.SVID = &expired
	})
	er := startupAndReadError(t, s.addr)
	if er.Code != "08001" || !strings.Contains(er.Message, "X.509-SVID (spiffe://example.org"+forwarderPath+") expired at") {
		t.Fatalf("client got %s %q; want 08001 saying the forwarder's SVID expired", er.Code, er.Message)
	}
	if accepted, _ := s.broker.count(); accepted != 0 {
		t.Fatalf("the broker was dialed %d times with an expired SVID", accepted)
	}
}

// TestShutdownCutsOffAClientThatNeverStarts: a client that stops in the middle of its startup (an
// SSLRequest answered, then nothing) does not hold shutdown for its startup timeout.
func TestShutdownCutsOffAClientThatNeverStarts(t *testing.T) {
	s := start(t, Postgres, nil, "spiffe://example.org"+brokerPath, func(c *Config) {
		c.DrainTimeout = 100 * time.Millisecond
		c.ClientTimeout = time.Hour
	})
	c, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	ssl, _ := (&pgproto3.SSLRequest{}).Encode(nil)
	if _, err := c.Write(ssl); err != nil {
		t.Fatal(err)
	}
	var n [1]byte
	if _, err := io.ReadFull(c, n[:]); err != nil || n[0] != 'N' {
		t.Fatalf("SSLRequest answered %q, %v; want N", n[0], err)
	}
	s.cancel()
	select {
	case err := <-s.done:
		s.done <- err
	case <-time.After(60 * time.Second):
		t.Fatal("Serve waited for a silent client's startup timeout")
	}
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("the silent client read %d bytes, %v; want its connection closed", n, err)
	}
}

package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// lineEngine is a real, tiny line protocol: the client says HELLO, the server says WELCOME, then the
// session echoes lines until either side closes.
type lineEngine struct{}

func (lineEngine) Handshake(ctx context.Context, conn net.Conn) (Session, error) {
	r := bufio.NewReader(conn)
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	if line != "HELLO\n" {
		return nil, fmt.Errorf("bad greeting %q", line)
	}
	if _, err := io.WriteString(conn, "WELCOME\n"); err != nil {
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	return &echoSession{conn: conn, r: r}, nil
}

type echoSession struct {
	conn net.Conn
	r    *bufio.Reader
}

func (s *echoSession) Run(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { s.conn.Close() })
	defer stop()
	defer s.conn.Close()
	for {
		line, err := s.r.ReadString('\n')
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if _, err := io.WriteString(s.conn, line); err != nil {
			return err
		}
	}
}

// run is a Server.Run in progress: done closes when Run returns err.
type run struct {
	done chan struct{}
	err  error
}

func start(t *testing.T, cfg Config) (*Server, context.CancelFunc, *run) {
	t.Helper()
	if cfg.Listeners == nil {
		cfg.Listeners = []Listener{{Name: "echo", Address: "127.0.0.1:0", Engine: lineEngine{}}}
	}
	if cfg.HandshakeTimeout == 0 {
		cfg.HandshakeTimeout = 30 * time.Second
	}
	if cfg.MaxConcurrentHandshakes == 0 {
		cfg.MaxConcurrentHandshakes = 4
	}
	if cfg.MaxConnections == 0 {
		cfg.MaxConnections = 16
	}
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &run{done: make(chan struct{})}
	go func() { r.err = s.Run(ctx); close(r.done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
			t.Error("server did not stop")
		}
	})
	return s, cancel, r
}

func dial(t *testing.T, s *Server) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", s.Addr("echo").String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	return c, bufio.NewReader(c)
}

func greet(t *testing.T, c net.Conn, r *bufio.Reader) {
	t.Helper()
	if _, err := io.WriteString(c, "HELLO\n"); err != nil {
		t.Fatal(err)
	}
	if line, err := r.ReadString('\n'); err != nil || line != "WELCOME\n" {
		t.Fatalf("greeting: %q %v", line, err)
	}
}

// closedByServer reports whether the server closed c (EOF or reset) rather than leaving it open.
func closedByServer(c net.Conn, r *bufio.Reader) bool {
	_, err := r.ReadByte()
	return err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
}

func TestStalledHandshakeIsCutOffAtDeadline(t *testing.T) {
	s, _, _ := start(t, Config{HandshakeTimeout: 200 * time.Millisecond})
	c, r := dial(t, s) // says nothing
	if !closedByServer(c, r) {
		t.Fatal("a client that never completed its handshake was not disconnected")
	}
	c2, r2 := dial(t, s)
	greet(t, c2, r2)
}

func TestHandshakeCapEvictsTheOldestPendingClient(t *testing.T) {
	s, _, _ := start(t, Config{MaxConcurrentHandshakes: 2})
	var stallers []*bufio.Reader
	var stallerConns []net.Conn
	for range 2 {
		c, r := dial(t, s) // each holds a slot and says nothing
		stallers, stallerConns = append(stallers, r), append(stallerConns, c)
		time.Sleep(20 * time.Millisecond) // so that the order of arrival is certain
	}
	c, r := dial(t, s)
	greet(t, c, r) // admitted at once, not after the stallers' deadlines
	if !closedByServer(stallerConns[0], stallers[0]) {
		t.Fatal("the oldest pending handshake was not closed")
	}
	// The younger staller still holds its slot.
	_ = stallerConns[1].SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := stallers[1].ReadByte(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the younger pending handshake was closed too: %v", err)
	}
}

func TestSessionCapRefusesExtraClients(t *testing.T) {
	s, _, _ := start(t, Config{MaxConnections: 1})
	c1, r1 := dial(t, s)
	greet(t, c1, r1)
	c2, r2 := dial(t, s)
	if !closedByServer(c2, r2) {
		t.Fatal("a client over max_connections was not refused")
	}
	// The first session is unaffected.
	if _, err := io.WriteString(c1, "ping\n"); err != nil {
		t.Fatal(err)
	}
	if line, err := r1.ReadString('\n'); err != nil || line != "ping\n" {
		t.Fatalf("echo: %q %v", line, err)
	}
}

func TestShutdownDrainsThenForces(t *testing.T) {
	t.Run("sessions that finish within the grace period finish", func(t *testing.T) {
		s, cancel, done := start(t, Config{ShutdownGrace: time.Minute})
		c, r := dial(t, s)
		greet(t, c, r)
		cancel()
		// New connections are refused once shutdown begins.
		deadline := time.Now().Add(10 * time.Second)
		for {
			nc, err := net.DialTimeout("tcp", s.Addr("echo").String(), time.Second)
			if err != nil {
				break
			}
			nc.Close()
			if time.Now().After(deadline) {
				t.Fatal("listener still accepting after shutdown")
			}
			time.Sleep(10 * time.Millisecond)
		}
		// The running session still works, and Run waits for it.
		if _, err := io.WriteString(c, "still here\n"); err != nil {
			t.Fatal(err)
		}
		if line, err := r.ReadString('\n'); err != nil || line != "still here\n" {
			t.Fatalf("session during drain: %q %v", line, err)
		}
		select {
		case <-done.done:
			t.Fatalf("Run returned (%v) while a session was draining", done.err)
		case <-time.After(100 * time.Millisecond):
		}
		c.Close()
		if <-done.done; done.err != nil {
			t.Fatalf("Run: %v", done.err)
		}
	})
	t.Run("sessions still open after the grace period are ended", func(t *testing.T) {
		s, cancel, done := start(t, Config{ShutdownGrace: 100 * time.Millisecond})
		c, r := dial(t, s)
		greet(t, c, r)
		cancel()
		if <-done.done; done.err != nil {
			t.Fatalf("Run: %v", done.err)
		}
		if !closedByServer(c, r) {
			t.Fatal("session outlived the grace period")
		}
	})
}

// TestAdminReadiness: /healthz answers while the process runs; /readyz fails while any check fails,
// naming the failed ones, and with ?verbose lists every check in the style of Kubernetes' health
// endpoints. A check that does not answer within its deadline fails.
func TestAdminReadiness(t *testing.T) {
	var svid, audit error
	checks := []Check{
		{Name: "svid", Check: func(context.Context) error { return svid }},
		{Name: "audit", Check: func(context.Context) error { return audit }},
		{Name: "target/shop/backend", Check: func(context.Context) error { return nil }},
		{Name: "spire-server", Check: func(ctx context.Context) error { <-ctx.Done(); return nil }},
	}
	var vault error
	withTarget := append(checks[:2:2], Check{Name: "target/shop/vault", Optional: true, Check: func(context.Context) error { return vault }})
	s, _, _ := start(t, Config{AdminAddress: "127.0.0.1:0", Checks: checks[:3], CheckTimeout: 100 * time.Millisecond})
	slow, _, _ := start(t, Config{AdminAddress: "127.0.0.1:0", Checks: checks, CheckTimeout: 100 * time.Millisecond})
	targets, _, _ := start(t, Config{AdminAddress: "127.0.0.1:0", Checks: withTarget, CheckTimeout: 100 * time.Millisecond})
	get := func(s *Server, path string) (int, string) {
		resp, err := http.Get("http://" + s.AdminAddr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get(s, "/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz = %d", code)
	}
	for _, c := range []struct {
		name   string
		svid   error
		audit  error
		vault  error
		server *Server
		path   string
		code   int
		body   string
	}{
		{"ready", nil, nil, nil, s, "/readyz", http.StatusOK, "ok\n"},
		{"ready, verbose", nil, nil, nil, s, "/readyz?verbose", http.StatusOK,
			"[+]svid ok\n[+]audit ok\n[+]target/shop/backend ok\nreadyz check passed\n"},
		{"no SVID", errors.New("no SVID yet"), nil, nil, s, "/readyz", http.StatusServiceUnavailable,
			"[-]svid failed: no SVID yet\nreadyz check failed\n"},
		{"audit failing, verbose", nil, errors.New("the audit log is unavailable"), nil, s, "/readyz?verbose", http.StatusServiceUnavailable,
			"[+]svid ok\n[-]audit failed: the audit log is unavailable\n[+]target/shop/backend ok\nreadyz check failed\n"},
		{"a check past its deadline", nil, nil, nil, slow, "/readyz?verbose", http.StatusServiceUnavailable,
			"[+]svid ok\n[+]audit ok\n[+]target/shop/backend ok\n[-]spire-server failed: no answer within the deadline\nreadyz check failed\n"},
		{"a target's Vault sealed", nil, nil, errors.New("vault: sealed"), targets, "/readyz", http.StatusOK, "ok\n"},
		{"a target's Vault sealed, verbose", nil, nil, errors.New("vault: sealed"), targets, "/readyz?verbose", http.StatusOK,
			"[+]svid ok\n[+]audit ok\n[-]target/shop/vault failed: vault: sealed (optional: its target's sessions are refused)\nreadyz check passed\n"},
		{"a target's Vault sealed and no SVID", errors.New("no SVID yet"), nil, errors.New("vault: sealed"), targets, "/readyz", http.StatusServiceUnavailable,
			"[-]svid failed: no SVID yet\nreadyz check failed\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			svid, audit, vault = c.svid, c.audit, c.vault
			if code, body := get(c.server, c.path); code != c.code || body != c.body {
				t.Errorf("%s = %d %q; want %d %q", c.path, code, body, c.code, c.body)
			}
		})
	}
}

func TestNewReportsPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = New(Config{Listeners: []Listener{{Name: "shop", Address: ln.Addr().String(), Engine: lineEngine{}}},
		HandshakeTimeout: time.Second, MaxConcurrentHandshakes: 1, MaxConnections: 1})
	if err == nil {
		t.Fatal("New bound a port already in use")
	}
	if want := `listener "shop"`; !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not name %s", err, want)
	}
}

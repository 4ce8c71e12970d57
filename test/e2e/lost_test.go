package e2e

import (
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/svidbroker/svidbroker/test/stack"
)

// cutProxy relays TCP to target until cut, which drops every connection it relays, as a network or a
// dead host would: no FATAL, no goodbye.
type cutProxy struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln}
	t.Cleanup(func() { ln.Close(); p.cut() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(up, c); up.Close() }()
			go func() { _, _ = io.Copy(c, up); c.Close() }()
		}
	}()
	return p
}

// relaying reports how many connections the proxy carries.
func (p *cutProxy) relaying() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns) / 2
}

func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // a reset, as from a host that is gone
		}
		c.Close()
	}
	p.conns = nil
}

// TestLostBackendIsAnErrorPsqlShows: when the connection to the database dies under a session, psql
// shows the broker's FATAL "the database connection was lost", not "SSL SYSCALL error".
func TestLostBackendIsAnErrorPsqlShows(t *testing.T) {
	s, _ := shared(t)
	proxy := newCutProxy(t, net.JoinHostPort(s.Postgres.Host, strconv.Itoa(s.Postgres.Port)))
	b, err := s.StartBroker(t.Context(), stack.BrokerOptions{Name: "svidbroker-lost-backend", Binary: brokerBin,
		BackendAddress: proxy.ln.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Stop()
	f := clientFiles(t, s, stack.PersonaAnalyst)
	type result struct {
		out string
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := psql(t, b, f, nil, "SELECT pg_sleep(20)")
		done <- result{out, err}
	}()
	for deadline := time.Now().Add(15 * time.Second); proxy.relaying() == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the session never reached the database")
		}
	}
	time.Sleep(2 * time.Second) // the session is established and its statement is running
	proxy.cut()
	r := <-done
	if r.err == nil || !strings.Contains(r.out, "FATAL:  svidbroker: the database connection was lost") || strings.Contains(r.out, "SSL SYSCALL") {
		t.Fatalf("psql after the database connection was lost: %v\n%s", r.err, r.out)
	}
}

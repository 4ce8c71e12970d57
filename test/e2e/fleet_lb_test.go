package e2e

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// roundRobin is the one TCP address a fleet of brokers sits behind, as a plain layer-4 load balancer
// without health checks: each new client connection is forwarded to the next broker in turn, and a
// connection whose broker does not answer is closed, so that its client sees it fail and retries.
type roundRobin struct {
	ln       net.Listener
	backends []string

	mu      sync.Mutex
	next    int
	routes  map[string]int // client address → index of the broker it was forwarded to
	refused int            // connections closed because their broker did not answer
	open    map[net.Conn]struct{}
	wg      sync.WaitGroup
}

// startRoundRobin listens on a loopback port in front of backends, until the test ends.
func startRoundRobin(t *testing.T, backends []string) *roundRobin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &roundRobin{ln: ln, backends: backends, routes: map[string]int{}, open: map[net.Conn]struct{}{}}
	r.wg.Add(1)
	go r.serve()
	t.Cleanup(r.close)
	return r
}

func (r *roundRobin) Addr() string { return r.ln.Addr().String() }

func (r *roundRobin) serve() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.wg.Add(1)
		go r.forward(c)
	}
}

// route is the index of the broker the client at addr was forwarded to; -1 if none.
func (r *roundRobin) route(addr string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if i, ok := r.routes[addr]; ok {
		return i
	}
	return -1
}

// refusals counts the connections closed because their broker did not answer.
func (r *roundRobin) refusals() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.refused
}

func (r *roundRobin) track(c net.Conn, add bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !add {
		delete(r.open, c)
		return true
	}
	if r.open == nil { // closed
		return false
	}
	r.open[c] = struct{}{}
	return true
}

func (r *roundRobin) forward(c net.Conn) {
	defer r.wg.Done()
	defer c.Close()
	r.mu.Lock()
	i := r.next
	r.next = (r.next + 1) % len(r.backends)
	r.routes[c.RemoteAddr().String()] = i
	r.mu.Unlock()
	b, err := net.DialTimeout("tcp", r.backends[i], 2*time.Second)
	if err != nil {
		r.mu.Lock()
		r.refused++
		r.mu.Unlock()
		return
	}
	defer b.Close()
	if !r.track(c, true) || !r.track(b, true) {
		return
	}
	defer r.track(c, false)
	defer r.track(b, false)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(b, c)
		// The client finished sending: pass the half-close on, and let the broker's answer finish.
		_ = b.(*net.TCPConn).CloseWrite()
	}()
	_, _ = io.Copy(c, b)
	// The broker closed, or died: the client's connection ends with it.
	c.Close()
	<-done
}

// close stops accepting and cuts every relayed connection.
func (r *roundRobin) close() {
	r.ln.Close()
	r.mu.Lock()
	for c := range r.open {
		c.Close()
	}
	r.open = nil
	r.mu.Unlock()
	r.wg.Wait()
}

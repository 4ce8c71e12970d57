package server

import (
	"container/list"
	"net"
	"sync"
)

// pending tracks the connections of one listener that have not finished their handshake. At the cap,
// admitting a new connection closes the oldest pending one. A client that stalls mid-handshake
// (CVE-2026-7776 in Boundary) therefore cannot keep others out: to hold every slot an attacker must keep
// opening connections faster than real clients finish theirs, which take milliseconds. Queuing instead
// would make real clients wait behind stalled ones until the stalled ones' deadlines.
type pending struct {
	mu    sync.Mutex
	max   int
	conns *list.List // of net.Conn, oldest first
}

func newPending(max int) *pending {
	return &pending{max: max, conns: list.New()}
}

// admit records conn and returns the handle to release it with, and the connection evicted to make
// room (already closed), if any.
func (p *pending) admit(conn net.Conn) (*list.Element, net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var evicted net.Conn
	if p.conns.Len() >= p.max {
		evicted = p.conns.Remove(p.conns.Front()).(net.Conn)
		evicted.Close()
	}
	return p.conns.PushBack(conn), evicted
}

// release forgets a connection whose handshake ended; it is a no-op if it was evicted.
func (p *pending) release(e *list.Element) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.conns.Remove(e)
}

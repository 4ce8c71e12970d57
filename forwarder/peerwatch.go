package forwarder

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// watchedConn is a connection as its bufio.Reader reads it in JWT mode: with a deadline per read
// when perRead is set, and reads another goroutine can interrupt at once (staying interrupted until
// resumed, whatever deadline a read would set), so that a watch on an idle peer can be stopped
// before the connection is read for the next message.
type watchedConn struct {
	net.Conn
	base time.Duration // perRead after resume

	mu          sync.Mutex
	perRead     time.Duration
	interrupted bool
}

func (c *watchedConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	if c.interrupted {
		c.mu.Unlock()
		return 0, os.ErrDeadlineExceeded
	}
	if c.perRead > 0 {
		_ = c.Conn.SetReadDeadline(time.Now().Add(c.perRead))
	}
	c.mu.Unlock()
	return c.Conn.Read(p)
}

func (c *watchedConn) setPerRead(d time.Duration) {
	c.mu.Lock()
	c.perRead = d
	c.mu.Unlock()
}

// setDeadline sets an absolute read deadline, with no deadline per read.
func (c *watchedConn) setDeadline(t time.Time) {
	c.mu.Lock()
	c.perRead = 0
	_ = c.Conn.SetReadDeadline(t)
	c.mu.Unlock()
}

func (c *watchedConn) interrupt() {
	c.mu.Lock()
	c.interrupted = true
	_ = c.Conn.SetReadDeadline(time.Now())
	c.mu.Unlock()
}

func (c *watchedConn) resume() {
	c.mu.Lock()
	c.interrupted = false
	c.perRead = c.base
	_ = c.Conn.SetReadDeadline(time.Time{})
	c.mu.Unlock()
}

// peerWatch notices a peer that closes its connection while the forwarder is not reading it: a
// client while its response is awaited, the broker between two requests.
type peerWatch struct {
	wc   *watchedConn
	done chan struct{}
	gone atomic.Bool
}

// watchPeer waits, without any deadline, for the next byte on br, which reads wc; if the connection
// ends first, it calls gone (eof tells a clean close from an error). A byte that arrives (the next
// request, pipelined) ends the watch without consuming it.
func watchPeer(wc *watchedConn, br *bufio.Reader, gone func(eof bool)) *peerWatch {
	w := &peerWatch{wc: wc, done: make(chan struct{})}
	wc.setDeadline(time.Time{})
	go func() {
		defer close(w.done)
		_, err := br.Peek(1)
		if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			return
		}
		w.gone.Store(true)
		gone(errors.Is(err, io.EOF))
	}()
	return w
}

// stop ends the watch, leaving br as it was; it reports whether the peer went away.
func (w *peerWatch) stop() bool {
	w.wc.interrupt()
	<-w.done
	w.wc.resume()
	return w.gone.Load()
}

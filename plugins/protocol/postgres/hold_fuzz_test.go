package postgres

import (
	"bytes"
	"errors"
	"io"
	"os"
	"sync"
	"testing"
	"time"
)

// chunkConn is a connection's reading side in memory: it delivers data in chunks of a given size,
// then blocks, as a connection with nothing to read does, until a read deadline is set (then
// os.ErrDeadlineExceeded) or, if eof, ends the stream (io.EOF).
type chunkConn struct {
	mu       sync.Mutex
	cond     *sync.Cond
	data     []byte
	chunk    int
	eof      bool
	deadline bool
	waiting  chan struct{} // gets a value when a Read starts waiting for more
}

func newChunkConn(data []byte, chunk int, eof bool) *chunkConn {
	c := &chunkConn{data: data, chunk: chunk, eof: eof, waiting: make(chan struct{}, 1)}
	c.cond = sync.NewCond(&c.mu)
	return c
}

func (c *chunkConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.data) == 0 && !c.eof && !c.deadline {
		select {
		case c.waiting <- struct{}{}:
		default:
		}
		c.cond.Wait()
	}
	switch {
	case len(c.data) > 0:
		n := copy(p, c.data[:min(len(c.data), c.chunk)])
		c.data = c.data[n:]
		return n, nil
	case c.deadline:
		return 0, os.ErrDeadlineExceeded
	default:
		return 0, io.EOF
	}
}

func (c *chunkConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = !t.IsZero()
	c.cond.Broadcast()
	c.mu.Unlock()
	return nil
}

// FuzzHoldReaderKeepsEveryByteInOrder: whatever a client sends around and during holds reaches the
// session's reader exactly once, in order, however it is split, however many holds watch the
// connection, and whether the client then ends the stream or not. A watch that has read all there is
// reports the client gone exactly when the stream ended or it kept maxHoldSpill bytes.
func FuzzHoldReaderKeepsEveryByteInOrder(f *testing.F) {
	f.Add([]byte("Q\x00\x00\x00\x0dSELECT 1\x00"), uint8(3), uint8(2), uint8(5), false)
	f.Add([]byte("Q\x00\x00\x00\x0dSELECT 1\x00X\x00\x00\x00\x04"), uint8(0), uint8(1), uint8(0), true)
	f.Add(bytes.Repeat([]byte("x"), maxHoldSpill+100), uint8(200), uint8(3), uint8(1), false)
	f.Add([]byte{}, uint8(1), uint8(2), uint8(1), true)
	f.Fuzz(holdReaderKeepsEveryByteInOrder)
}

func holdReaderKeepsEveryByteInOrder(t *testing.T, data []byte, chunk, holds, between uint8, eof bool) {
	src := newChunkConn(bytes.Clone(data), int(chunk)+1, eof)
	r := &holdReader{src: src}
	var got []byte
	buf := make([]byte, int(between)+1)
	for range holds % 4 {
		var err error
		ended := make(chan struct{})
		select {
		case <-src.waiting: // from the session's own read between holds
		default:
		}
		stop := r.watch(func(e error) { err = e; close(ended) })
		select {
		case <-ended:
		case <-src.waiting:
		}
		stop()
		kept := len(r.spill)
		switch {
		case err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, errWithdrawnOverflow):
			t.Fatalf("the watch ended on %v", err)
		case errors.Is(err, errWithdrawnOverflow) && kept < maxHoldSpill:
			t.Fatalf("overflow with %d bytes kept", kept)
		case err == nil && (eof || kept >= maxHoldSpill):
			t.Fatalf("a watch that read all there was (%d bytes kept, end of stream %v) saw the client stay", kept, eof)
		}
		// The session reads some between holds (when there is some: else it would wait, as a session
		// does for its client).
		if len(got) < len(data) {
			n, _ := r.Read(buf)
			got = append(got, buf[:n]...)
		}
	}
	for len(got) < len(data) {
		n, err := r.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			break
		}
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes %q, want %d bytes %q", len(got), trim(got), len(data), trim(data))
	}
	if eof {
		if n, err := r.Read(buf); n != 0 || !errors.Is(err, io.EOF) {
			t.Fatalf("after the stream: %d, %v; want io.EOF", n, err)
		}
	}
}

func trim(b []byte) []byte { return b[:min(len(b), 64)] }

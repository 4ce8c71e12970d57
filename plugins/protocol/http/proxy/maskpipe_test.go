package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"testing/iotest"
)

// pattern is n bytes that differ from their neighbours, so that a lost, repeated or reordered piece
// shows.
func pattern(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestReadAheadDeliversTheBodyInOrder(t *testing.T) {
	data := pattern(10*readBuffer + 123)
	for name, src := range map[string]func() io.Reader{
		"whole":    func() io.Reader { return bytes.NewReader(data) },
		"one byte": func() io.Reader { return iotest.OneByteReader(bytes.NewReader(data[:3*readBuffer])) },
		"half":     func() io.Reader { return iotest.HalfReader(bytes.NewReader(data)) },
	} {
		t.Run(name, func(t *testing.T) {
			in := src()
			ra := newReadAhead(context.Background(), in, func() {})
			defer ra.stop()
			got, err := io.ReadAll(iotest.HalfReader(ra))
			want := data
			if name == "one byte" {
				want = data[:3*readBuffer]
			}
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("got %d bytes (%v), want %d the same", len(got), err, len(want))
			}
		})
	}
}

// An upstream that fails mid-body fails the read after what came before it, never ends it normally.
func TestReadAheadPassesOnTheUpstreamError(t *testing.T) {
	boom := errors.New("connection reset")
	data := pattern(3 * readBuffer)
	ra := newReadAhead(context.Background(), io.MultiReader(bytes.NewReader(data), iotest.ErrReader(boom)), func() {})
	defer ra.stop()
	got, err := io.ReadAll(ra)
	if !errors.Is(err, boom) || !bytes.Equal(got, data) {
		t.Fatalf("got %d bytes, %v; want %d, %v", len(got), err, len(data), boom)
	}
}

// blockedReader blocks in Read until it is closed, as a response body from a stalled upstream does.
type blockedReader struct {
	once   sync.Once
	closed chan struct{}
}

func (b *blockedReader) Read([]byte) (int, error) {
	<-b.closed
	return 0, errors.New("read on closed body")
}

func (b *blockedReader) Close() { b.once.Do(func() { close(b.closed) }) }

// stop returns although the upstream is stalled mid-read: it closes the body and waits for the
// goroutine, which no longer reads after it.
func TestReadAheadStopEndsAStalledRead(t *testing.T) {
	src := &blockedReader{closed: make(chan struct{})}
	ra := newReadAhead(context.Background(), src, src.Close)
	ra.stop()
	select {
	case <-ra.done:
	default:
		t.Fatal("the reading goroutine outlived stop")
	}
	if _, err := ra.Read(make([]byte, 1)); err == nil {
		t.Fatal("a read after stop succeeded")
	}
}

// A request whose context ends (the agent left, the session ended) stops waiting for the upstream.
func TestReadAheadReadEndsWithTheContext(t *testing.T) {
	ctx, cancel := context.WithCancelCause(context.Background())
	src := &blockedReader{closed: make(chan struct{})}
	ra := newReadAhead(ctx, src, src.Close)
	defer ra.stop()
	gone := errors.New("the session ended")
	cancel(gone)
	if _, err := ra.Read(make([]byte, 1)); !errors.Is(err, gone) {
		t.Fatalf("got %v, want %v", err, gone)
	}
}

// chunks records each write it is given.
type chunks struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	n    int
	fail error // returned from the failAt-th write on
	at   int
}

func (c *chunks) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	if c.fail != nil && c.n >= c.at {
		return 0, c.fail
	}
	return c.buf.Write(p)
}

func TestWriteBehindWritesEverythingInOrder(t *testing.T) {
	for _, size := range []int{0, 10, writeBuffer, writeBuffer + 1, 20*writeBuffer + 7} {
		data := pattern(size)
		var dst chunks
		wb := newWriteBehind(context.Background(), &dst)
		for p := data; len(p) > 0; {
			k := min(len(p), 1+len(p)%5000)
			if n, err := wb.Write(p[:k]); n != k || err != nil {
				t.Fatalf("size %d: write: %d, %v", size, n, err)
			}
			p = p[k:]
		}
		if err := wb.close(false); err != nil || !bytes.Equal(dst.buf.Bytes(), data) {
			t.Fatalf("size %d: got %d bytes (%v), want them all in order", size, dst.buf.Len(), err)
		}
		if size <= writeBuffer && wb.done != nil {
			t.Errorf("size %d: a body that fits one buffer started a goroutine", size)
		}
	}
}

// An agent that goes away fails the writes that follow, and close reports it.
func TestWriteBehindStopsAtTheFirstWriteError(t *testing.T) {
	gone := errors.New("broken pipe")
	dst := &chunks{fail: gone, at: 2}
	wb := newWriteBehind(context.Background(), dst)
	data := pattern(writeBuffer)
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		_, err = wb.Write(data)
	}
	if !errors.Is(err, gone) {
		t.Fatalf("writes went on after the agent's connection failed: %v", err)
	}
	if cerr := wb.close(false); !errors.Is(cerr, gone) {
		t.Fatalf("close: %v", cerr)
	}
	if dst.buf.Len() != writeBuffer {
		t.Fatalf("%d bytes reached the agent, want only the first buffer", dst.buf.Len())
	}
}

// A body refused mid-way (close with abort) sends nothing it had not sent: buffers still queued are
// dropped, and the last one is never handed on.
func TestWriteBehindAbortSendsNoMore(t *testing.T) {
	release := make(chan struct{})
	dst := &gate{release: release}
	wb := newWriteBehind(context.Background(), dst)
	data := pattern((pipeDepth - 1) * writeBuffer)
	if _, err := wb.Write(data); err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() { done <- wb.close(true) }()
	// close has marked the queue aborted before it waits for the goroutine; the goroutine's write
	// in progress then ends and no other follows.
	for !wb.isAborted() {
		runtime.Gosched()
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if dst.writes > 1 {
		t.Fatalf("%d buffers were written after the abort", dst.writes-1)
	}
}

func (w *writeBehind) isAborted() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.aborted
}

// gate blocks each write until release is closed, counting them.
type gate struct {
	release chan struct{}
	writes  int
}

func (g *gate) Write(p []byte) (int, error) {
	<-g.release
	g.writes++
	return len(p), nil
}

// An agent that stops reading does not hold the handler past its request's context.
func TestWriteBehindWriteEndsWithTheContext(t *testing.T) {
	ctx, cancel := context.WithCancelCause(context.Background())
	release := make(chan struct{})
	wb := newWriteBehind(ctx, &gate{release: release})
	gone := errors.New("the session ended")
	data := pattern(writeBuffer)
	errc := make(chan error)
	go func() {
		var err error
		for err == nil {
			_, err = wb.Write(data)
		}
		errc <- err
	}()
	cancel(gone)
	if err := <-errc; !errors.Is(err, gone) {
		t.Fatalf("got %v, want %v", err, gone)
	}
	close(release)
	wb.close(true)
}

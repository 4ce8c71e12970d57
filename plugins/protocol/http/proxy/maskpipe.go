package proxy

import (
	"context"
	"io"
	"sync"
)

// A masked JSON body goes through three stages: reading the upstream (TLS decryption), masking, and
// writing to the agent (TLS encryption). One after another in the handler, their times add up;
// readAhead and writeBehind run the first and the last each in a goroutine of its own, joined to
// the masking by a few buffers, so that the three overlap. What they hold is bounded (pipeDepth
// buffers each way, allocated as they are needed) whatever the body's size.
const (
	pipeDepth   = 4
	readBuffer  = 16 << 10 // a TLS record's plaintext at most: one read fills no more
	writeBuffer = 32 << 10
)

// readAhead reads src in a goroutine, up to pipeDepth reads ahead of Read. Its owner must call stop,
// after which src is no longer read.
type readAhead struct {
	ctx     context.Context
	full    chan []byte // reads, in order; closed after the last, with err set
	free    chan []byte
	quit    chan struct{}
	done    chan struct{}
	err     error // what ended the reading (io.EOF at the end); set before full is closed
	cur     []byte
	held    []byte // the buffer cur is in, returned to free when it is used up
	closeFn func()
	once    sync.Once
}

// newReadAhead starts reading src. closeSrc, which stop calls, must end a Read of src in progress
// (closing a response body does).
func newReadAhead(ctx context.Context, src io.Reader, closeSrc func()) *readAhead {
	r := &readAhead{ctx: ctx, full: make(chan []byte, pipeDepth), free: make(chan []byte, pipeDepth),
		quit: make(chan struct{}), done: make(chan struct{}), closeFn: closeSrc}
	go r.run(src)
	return r
}

func (r *readAhead) run(src io.Reader) {
	defer close(r.done)
	defer close(r.full)
	made := 0
	for {
		var b []byte
		select {
		case b = <-r.free:
		default:
			if made < pipeDepth {
				b, made = make([]byte, readBuffer), made+1
				break
			}
			select {
			case b = <-r.free:
			case <-r.quit:
				r.err = io.ErrClosedPipe
				return
			}
		}
		n, err := src.Read(b)
		if n > 0 {
			r.full <- b[:n] // never blocks: full has room for every buffer
		} else {
			r.free <- b
		}
		if err != nil {
			r.err = err
			return
		}
		select {
		case <-r.quit:
			r.err = io.ErrClosedPipe
			return
		default:
		}
	}
}

func (r *readAhead) Read(p []byte) (int, error) {
	if len(r.cur) == 0 {
		if r.held != nil {
			r.free <- r.held[:cap(r.held)] // never blocks: free has room for every buffer
			r.held = nil
		}
		select {
		case b, ok := <-r.full:
			if !ok {
				return 0, r.err
			}
			r.cur, r.held = b, b
		case <-r.ctx.Done():
			return 0, context.Cause(r.ctx)
		}
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

// stop ends the reading and waits for the goroutine.
func (r *readAhead) stop() {
	r.once.Do(func() {
		close(r.quit)
		r.closeFn()
		<-r.done
	})
}

// writeBehind gathers writes into buffers and hands each full one to a goroutine that writes it to
// dst, up to pipeDepth buffers behind. A body that fits in one buffer is written by close, with no
// goroutine. Until close returns, dst is used only by that goroutine.
type writeBehind struct {
	ctx     context.Context
	dst     io.Writer
	cur     []byte
	made    int
	full    chan []byte
	free    chan []byte
	done    chan struct{} // nil until the goroutine starts
	perr    error         // what Write returned: it sticks
	closed  bool
	mu      sync.Mutex
	err     error // the first error writing to dst; later buffers are dropped
	aborted bool  // close(true): buffers still queued are dropped
}

func newWriteBehind(ctx context.Context, dst io.Writer) *writeBehind {
	return &writeBehind{ctx: ctx, dst: dst}
}

func (w *writeBehind) run() {
	defer close(w.done)
	for b := range w.full {
		w.mu.Lock()
		skip := w.err != nil || w.aborted
		w.mu.Unlock()
		if !skip {
			if _, err := w.dst.Write(b); err != nil {
				w.mu.Lock()
				w.err = err
				w.mu.Unlock()
			}
		}
		w.free <- b[:0] // never blocks: free has room for every buffer
	}
}

func (w *writeBehind) failed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

func (w *writeBehind) Write(p []byte) (int, error) {
	if w.perr != nil {
		return 0, w.perr
	}
	n := len(p)
	for len(p) > 0 {
		if w.cur == nil {
			w.cur, w.made = make([]byte, 0, writeBuffer), 1
		}
		if len(w.cur) == cap(w.cur) {
			if err := w.handOff(); err != nil {
				w.perr = err
				return n - len(p), err
			}
		}
		k := copy(w.cur[len(w.cur):cap(w.cur)], p)
		w.cur = w.cur[:len(w.cur)+k]
		p = p[k:]
	}
	return n, nil
}

// handOff passes the current buffer to the goroutine, starting it the first time, and takes a free
// buffer, or makes one while fewer than pipeDepth exist.
func (w *writeBehind) handOff() error {
	if w.done == nil {
		w.full, w.free, w.done = make(chan []byte, pipeDepth), make(chan []byte, pipeDepth), make(chan struct{})
		go w.run()
	}
	if err := w.failed(); err != nil {
		return err
	}
	w.full <- w.cur // never blocks: full has room for every buffer
	w.cur = nil
	select {
	case w.cur = <-w.free:
		return nil
	default:
	}
	if w.made < pipeDepth {
		w.cur, w.made = make([]byte, 0, writeBuffer), w.made+1
		return nil
	}
	select {
	case w.cur = <-w.free:
		return nil
	case <-w.ctx.Done():
		return context.Cause(w.ctx)
	}
}

// close writes what is buffered, unless abort, and waits for the goroutine: after it, dst is the
// caller's again. It returns the first error writing to dst.
func (w *writeBehind) close(abort bool) error {
	if w.closed {
		return w.err
	}
	w.closed = true
	if w.done == nil { // everything fitted in one buffer
		if !abort && len(w.cur) > 0 && w.perr == nil {
			_, w.err = w.dst.Write(w.cur)
		}
		return w.err
	}
	if abort {
		w.mu.Lock()
		w.aborted = true
		w.mu.Unlock()
	} else if len(w.cur) > 0 && w.perr == nil {
		w.full <- w.cur
	}
	w.cur = nil
	close(w.full)
	<-w.done
	return w.err
}

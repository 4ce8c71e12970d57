package forwarder

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// handleHTTPBearer serves one HTTP client connection in JWT mode: each request is read and checked
// (httpreq.go), written again to the broker with the forwarder's JWT-SVID as its bearer, and the
// response is streamed back (httpresp.go). Requests are served in order, one at a time, over one
// broker connection opened at the first request that passes the checks; a refused request is
// answered by the forwarder, and closes the connection, so nothing after it is read as a request.
func (f *Forwarder) handleHTTPBearer(ctx context.Context, log *slog.Logger, c net.Conn) {
	cc := &watchedConn{Conn: c}
	br := bufio.NewReaderSize(cc, f.cfg.MaxHeaderBytes)
	client := &boundedWriter{c: c, limit: f.cfg.IdleTimeout}
	var (
		broker  *tls.Conn
		bwc     *watchedConn
		bbr     *bufio.Reader
		served  int
		dropped int
		reason  = "client closed"
	)
	defer func() {
		if broker != nil {
			broker.Close()
		}
		if served > 0 {
			log.Info("connection closed", "requests", served, "authorization_fields_dropped", dropped, "reason", reason)
		}
	}()
	for {
		// The next request: its first byte within ClientTimeout (IdleTimeout on a kept-alive
		// connection), its header block within ClientTimeout of that.
		wait := f.cfg.ClientTimeout
		if served > 0 {
			wait = f.cfg.IdleTimeout
		}
		// Meanwhile a broker that closes the idle connection closes the client's, so that the
		// client opens a new one (and, for its next request, the forwarder a new broker connection).
		var idle *peerWatch
		if broker != nil {
			idle = watchPeer(bwc, bbr, func(bool) { c.Close() })
		}
		cc.setDeadline(time.Now().Add(wait))
		first, err := br.Peek(1)
		if idle != nil && idle.stop() {
			reason = "the broker closed the connection"
			return
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				reason = "idle"
			} else if served == 0 && !errors.Is(err, io.EOF) {
				log.Info("client sent nothing", "error", err)
			}
			return
		}
		if served == 0 && first[0] == 0x16 {
			log.Warn("client refused: it opened with TLS; use http://, the forwarder does the TLS")
			return
		}
		cc.setDeadline(time.Now().Add(f.cfg.ClientTimeout))
		req, rerr := readClientRequest(br, f.cfg.MaxHeaderBytes)
		if rerr == nil {
			// The body is read with a deadline per read, not one for the whole of it.
			cc.setDeadline(time.Time{})
			cc.setPerRead(f.cfg.ClientTimeout)
			rerr = req.settle()
		}
		if rerr != nil {
			log.Warn("request refused", "status", rerr.status, "reason", rerr.msg)
			f.refuseRequest(cc, rerr)
			reason = "request refused"
			return
		}
		if req.host == "" {
			req.host = hostOf(c)
		}
		dropped += req.dropped
		bearer, err := f.tokens.get(ctx)
		if err != nil {
			log.Error("request refused: no JWT-SVID", "audience", f.cfg.JWTAudience, "error", err)
			f.refuseRequest(cc, &requestError{status: 503, msg: err.Error()})
			reason = "no JWT-SVID"
			return
		}
		if broker == nil {
			if broker, err = f.dialBroker(ctx); err != nil {
				log.Error("client closed: no connection to the broker", "broker", f.cfg.Broker, "error", err)
				f.refuseRequest(cc, &requestError{status: 502, msg: dialFailure(err)})
				reason = "no broker"
				return
			}
			// A drain past its deadline, or Serve's end, cuts a request waiting on the broker.
			stop := context.AfterFunc(ctx, func() { broker.Close() })
			defer stop()
			bwc = &watchedConn{Conn: broker, base: f.cfg.IdleTimeout, perRead: f.cfg.IdleTimeout}
			bbr = bufio.NewReaderSize(bwc, f.cfg.MaxHeaderBytes)
		}
		served++
		keep, why := f.exchange(log, cc, br, client, broker, bbr, req, bearer)
		if !keep {
			reason = why
			return
		}
	}
}

// requestWriteGrace bounds how long the rest of a request may take to reach the broker once its
// response has been relayed in full.
const requestWriteGrace = 10 * time.Second

// exchange sends one request to the broker and relays its response. The request is written while the
// response is read, as a broker may answer (100 Continue, or a refusal) before the body has arrived.
// The broker's final response is relayed only once the body is settled: read whole, or stopped (no
// byte more of it is read) after the broker answered before it ended. A body that failed before that
// is refused by the forwarder, whatever the broker answered; one stopped can no longer fail.
func (f *Forwarder) exchange(log *slog.Logger, cc *watchedConn, br *bufio.Reader, client io.Writer,
	broker *tls.Conn, bbr *bufio.Reader, req *clientRequest, bearer string) (keep bool, reason string) {
	var body *streamedBody // nil when nothing of the body is left to read from the client
	if _, settled := req.body.(*bytes.Reader); req.body != nil && !settled {
		body = &streamedBody{r: req.body, cc: cc, length: req.length}
		req.body = body
	}
	written := make(chan error, 1)
	relayed := make(chan struct{})
	var watch *peerWatch // set before written is sent
	go func() {
		if err := req.writeTo(&boundedWriter{c: broker, limit: f.cfg.IdleTimeout}, bearer); err != nil {
			// Said before the close that makes the response's reader fail, so that the reader's
			// failure is known to be this one. A body that failed recorded it before this
			// returned, so before the broker can answer the cut.
			written <- err
			if !errors.Is(err, errBodyStopped) {
				broker.Close() // an incomplete request must not be completed by anything else
			}
			// A stopped body leaves an incomplete request too, on a connection that ends with
			// this exchange; the broker's answer is still being relayed from it.
			return
		}
		select {
		case <-relayed:
		default:
			// The whole request is read: a client that now goes away is passed on to the broker
			// (which may be holding the request for approval), as a direct client's would be.
			watch = watchPeer(cc, br, func(eof bool) {
				if eof {
					_ = broker.CloseWrite()
				} else {
					_ = broker.Close()
				}
			})
		}
		written <- nil
	}()
	// The body's own failure (berr), found when it is settled. The writer sends its error before
	// the close that cuts the request, so a broker's answer to that cut is read only after the
	// failure is recorded: settling before the final head keeps that answer from the client.
	var berr error
	stopped := false
	settle := func() {
		if body != nil && !stopped && !body.done.Load() {
			// The broker answered (or failed) before the client sent its whole body: where the next
			// request would start is unknown, so the connection ends here, unless the body itself
			// was the failure.
			stopped = true
			berr = body.stop()
		}
	}
	keep, wrote, err := relayResponse(bbr, f.cfg.MaxHeaderBytes, client, req, func() (bool, error) {
		settle()
		return !stopped, berr
	})
	close(relayed)
	settle() // when no final response came
	if stopped {
		keep = false
	}
	var werr error
	select {
	case werr = <-written:
	case <-time.After(requestWriteGrace):
		broker.Close()
		werr = <-written
		keep = false
	}
	clientGone := watch != nil && watch.stop()
	var re *requestError
	switch {
	case berr != nil || errors.As(werr, &re) && !stopped:
		if berr != nil {
			re = bodyError(berr)
		}
		log.Warn("request refused", "status", re.status, "reason", re.msg)
		if !wrote {
			f.refuseRequest(cc, re)
		}
		return false, "request refused"
	case err != nil && !wrote:
		log.Error("client closed: no response from the broker", "error", err)
		f.refuseRequest(cc, &requestError{status: 502, msg: "no response from the broker: " + err.Error()})
		return false, "broker failed"
	case err != nil:
		log.Info("client closed: the response could not be completed", "error", err)
		return false, "response broke off"
	case werr != nil && !stopped:
		return false, "request not sent whole"
	}
	log.Debug("request forwarded")
	switch {
	case clientGone:
		return false, "client closed"
	case !keep:
		return false, "closed after a response"
	}
	return true, ""
}

// refuseRequest answers a refused request and half-closes the client connection.
func (f *Forwarder) refuseRequest(cc *watchedConn, re *requestError) {
	msg := "svidbroker connect: " + re.msg
	if re.detail != "" {
		msg += " (" + re.detail + ")"
	}
	writeHTTPError(cc.Conn, re.status, msg)
	drain(cc.Conn)
}

// hostOf is the Host written for an HTTP/1.0 client that sent none: the address it connected to.
func hostOf(c net.Conn) string {
	if a, ok := c.LocalAddr().(*net.TCPAddr); ok {
		return a.String()
	}
	return "localhost"
}

// boundedWriter puts a deadline on each Write.
type boundedWriter struct {
	c     net.Conn
	limit time.Duration
}

func (b *boundedWriter) Write(p []byte) (int, error) {
	_ = b.c.SetWriteDeadline(time.Now().Add(b.limit))
	return b.c.Write(p)
}

// errBodyStopped is what a stopped body's reader gets: the broker answered before the body ended,
// and the rest of it is not read.
var errBodyStopped = errors.New("the request body was not read to its end: the broker answered first")

// streamedBody is a request body read from the client while the request is written to the broker.
// It records when the body has been read to its end (its length, when known: the broker may answer
// before the read that would return io.EOF), and the first error reading it. stop ends the reading:
// once stop returns, no byte more is read, so the body can no longer fail, and stop tells whether it
// had.
type streamedBody struct {
	r      io.Reader
	cc     *watchedConn // what r reads from
	length int64        // -1 if unknown
	done   atomic.Bool  // read to its end, without error

	stopping atomic.Bool
	mu       sync.Mutex // held through each read of r, so that stop waits for the read under way
	n        int64
	err      error // the first error other than io.EOF, from a read that ended before stop began
	stopped  bool
}

func (b *streamedBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped {
		return 0, errBodyStopped
	}
	n, err := b.r.Read(p)
	b.n += int64(n)
	if errors.Is(err, io.EOF) && b.length > b.n {
		err = io.ErrUnexpectedEOF
	}
	switch {
	case err == nil || errors.Is(err, io.EOF):
		if errors.Is(err, io.EOF) || b.length >= 0 && b.n >= b.length {
			b.done.Store(true)
		}
	case b.stopping.Load():
		// stop interrupted this read, or came as it failed: either way the body is stopped now,
		// before anything acted on the failure, so no cut has been made for the broker to answer.
		b.stopped = true
		return n, errBodyStopped
	default:
		b.err = err
	}
	return n, err
}

// stop interrupts the read under way, if any, waits for it, and makes every later read return
// errBodyStopped without reading. It returns the error the body failed with before, if it did.
func (b *streamedBody) stop() error {
	b.stopping.Store(true)
	b.cc.interrupt()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stopped = true
	return b.err
}

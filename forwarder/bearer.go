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
	cc := &clientConn{Conn: c}
	br := bufio.NewReaderSize(cc, f.cfg.MaxHeaderBytes)
	client := &boundedConn{Conn: c, write: f.cfg.IdleTimeout}
	var (
		broker  *tls.Conn
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
		cc.setDeadline(time.Now().Add(wait))
		first, err := br.Peek(1)
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
			bbr = bufio.NewReaderSize(&boundedConn{Conn: broker, read: f.cfg.IdleTimeout}, f.cfg.MaxHeaderBytes)
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
func (f *Forwarder) exchange(log *slog.Logger, cc *clientConn, br *bufio.Reader, client io.Writer,
	broker *tls.Conn, bbr *bufio.Reader, req *clientRequest, bearer string) (keep bool, reason string) {
	bodyRead := &atomic.Bool{}
	if _, settled := req.body.(*bytes.Reader); req.body == nil || settled {
		bodyRead.Store(true) // nothing of it is left to read from the client
	} else {
		req.body = &eofNotice{r: req.body, length: req.length, done: bodyRead}
	}
	written := make(chan error, 1)
	relayed := make(chan struct{})
	var watch *clientWatch // set before written is sent
	go func() {
		err := req.writeTo(&boundedConn{Conn: broker, write: f.cfg.IdleTimeout}, bearer)
		if err != nil {
			broker.Close() // an incomplete request must not be completed by anything else
		} else {
			select {
			case <-relayed:
			default:
				// The whole request is read: a client that now goes away is passed on to the broker
				// (which may be holding the request for approval), as a direct client's would be.
				watch = watchClient(cc, br, broker)
			}
		}
		written <- err
	}()
	keep, wrote, err := relayResponse(bbr, f.cfg.MaxHeaderBytes, client, req, bodyRead.Load)
	close(relayed)
	interrupted := false
	if !bodyRead.Load() {
		// The broker answered before the client sent its whole body: where the next request would
		// start is unknown, so the connection ends here.
		cc.interrupt()
		interrupted, keep = true, false
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
	case errors.As(werr, &re) && !interrupted:
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
	case werr != nil && !interrupted:
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

// clientWatch notices a client that closes its connection while its response is awaited.
type clientWatch struct {
	cc   *clientConn
	done chan struct{}
	gone atomic.Bool
}

func watchClient(cc *clientConn, br *bufio.Reader, broker *tls.Conn) *clientWatch {
	w := &clientWatch{cc: cc, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		if _, err := br.Peek(1); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			return // the next request (pipelined), or stop
		} else if errors.Is(err, io.EOF) {
			w.gone.Store(true)
			_ = broker.CloseWrite()
		} else {
			w.gone.Store(true)
			_ = broker.Close()
		}
	}()
	return w
}

// stop ends the watch; it reports whether the client went away.
func (w *clientWatch) stop() bool {
	w.cc.interrupt()
	<-w.done
	w.cc.resume()
	return w.gone.Load()
}

// refuseRequest answers a refused request and half-closes the client connection.
func (f *Forwarder) refuseRequest(cc *clientConn, re *requestError) {
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

// boundedConn puts a deadline on each Read and Write when read or write is set.
type boundedConn struct {
	net.Conn
	read, write time.Duration
}

func (b *boundedConn) Read(p []byte) (int, error) {
	if b.read > 0 {
		_ = b.Conn.SetReadDeadline(time.Now().Add(b.read))
	}
	return b.Conn.Read(p)
}

func (b *boundedConn) Write(p []byte) (int, error) {
	if b.write > 0 {
		_ = b.Conn.SetWriteDeadline(time.Now().Add(b.write))
	}
	return b.Conn.Write(p)
}

// clientConn is the client's connection as its bufio.Reader reads it: with a deadline per read while
// a body streams, and a read that another goroutine can interrupt at once (and that stays
// interrupted until resumed, whatever deadline a read would set).
type clientConn struct {
	net.Conn
	mu          sync.Mutex
	perRead     time.Duration
	interrupted bool
}

func (c *clientConn) Read(p []byte) (int, error) {
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

func (c *clientConn) setPerRead(d time.Duration) {
	c.mu.Lock()
	c.perRead = d
	c.mu.Unlock()
}

// setDeadline sets an absolute read deadline (with no deadline per read).
func (c *clientConn) setDeadline(t time.Time) {
	c.mu.Lock()
	c.perRead = 0
	_ = c.Conn.SetReadDeadline(t)
	c.mu.Unlock()
}

func (c *clientConn) interrupt() {
	c.mu.Lock()
	c.interrupted = true
	_ = c.Conn.SetReadDeadline(time.Now())
	c.mu.Unlock()
}

func (c *clientConn) resume() {
	c.mu.Lock()
	c.interrupted = false
	c.perRead = 0
	_ = c.Conn.SetReadDeadline(time.Time{})
	c.mu.Unlock()
}

// eofNotice records when a body has been read from the client to its end: its length, when known
// (the broker may answer before the read that would return io.EOF), else io.EOF.
type eofNotice struct {
	r      io.Reader
	length int64 // -1 if unknown
	n      int64
	done   *atomic.Bool
}

func (e *eofNotice) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	e.n += int64(n)
	if errors.Is(err, io.EOF) || e.length >= 0 && e.n >= e.length {
		e.done.Store(true)
	}
	return n, err
}

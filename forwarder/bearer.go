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
func (f *Forwarder) exchange(log *slog.Logger, cc *watchedConn, br *bufio.Reader, client io.Writer,
	broker *tls.Conn, bbr *bufio.Reader, req *clientRequest, bearer string) (keep bool, reason string) {
	bodyRead := &atomic.Bool{}
	if _, settled := req.body.(*bytes.Reader); req.body == nil || settled {
		bodyRead.Store(true) // nothing of it is left to read from the client
	} else {
		req.body = &eofNotice{r: req.body, length: req.length, done: bodyRead}
	}
	written := make(chan error, 1)
	relayed := make(chan struct{})
	var watch *peerWatch // set before written is sent
	go func() {
		if err := req.writeTo(&boundedWriter{c: broker, limit: f.cfg.IdleTimeout}, bearer); err != nil {
			// Said before the close that makes the response's reader fail, so that the reader's
			// failure is known to be this one.
			written <- err
			broker.Close() // an incomplete request must not be completed by anything else
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
	keep, wrote, err := relayResponse(bbr, f.cfg.MaxHeaderBytes, client, req, bodyRead.Load)
	close(relayed)
	var werr error
	done, interrupted := false, false
	if !bodyRead.Load() {
		// The broker answered (or failed) before the client sent its whole body: where the next
		// request would start is unknown, so the connection ends here, unless the body itself was the
		// failure.
		select {
		case werr = <-written:
			done = true
		default:
			cc.interrupt()
			interrupted = true
		}
		keep = false
	}
	if !done {
		select {
		case werr = <-written:
		case <-time.After(requestWriteGrace):
			broker.Close()
			werr = <-written
			keep = false
		}
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

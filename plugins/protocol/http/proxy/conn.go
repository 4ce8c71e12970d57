package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/svidbroker/svidbroker/broker/identity"
	"github.com/svidbroker/svidbroker/broker/session"
)

// clientConn is one client connection: net/http serves its requests; each principal among them has a
// session of its own.
type clientConn struct {
	e      *Engine
	tls    *tls.Conn
	remote net.Addr

	mu         sync.Mutex
	ctx        context.Context // Run's
	principals map[principalKey]*principal
}

// principalKey names a principal on a connection: how it was identified, and its SPIFFE ID.
type principalKey struct {
	bearer bool
	id     string
}

type principal struct {
	s       *session.Session
	ctx     context.Context
	started time.Time
}

// Run serves the connection's requests until the client closes it, the idle timeout passes, or ctx
// ends; then it ends every session the connection opened.
func (c *clientConn) Run(ctx context.Context) error {
	c.mu.Lock()
	c.ctx = ctx
	c.mu.Unlock()
	g := newGuard(c.tls, c.e.cfg.Limits.MaxHeaderBytes)
	ln := newOneConn(&closeNotify{Conn: g, done: make(chan struct{})})
	srv := &http.Server{
		Handler:           c,
		ReadHeaderTimeout: c.e.cfg.Limits.ReadHeader,
		IdleTimeout:       c.e.cfg.Limits.Idle,
		MaxHeaderBytes:    c.e.cfg.Limits.MaxHeaderBytes,
		ErrorLog:          log.New(io.Discard, "", 0),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	stop := context.AfterFunc(ctx, func() { srv.Close() })
	defer stop()
	err := srv.Serve(ln)
	if errors.Is(err, errConnClosed) || errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	c.endAll(ctx)
	return err
}

// endAll ends the connection's sessions: why is the session's own end, if the broker ended it.
func (c *clientConn) endAll(ctx context.Context) {
	c.mu.Lock()
	ps := c.principals
	c.principals = map[principalKey]*principal{}
	c.mu.Unlock()
	for _, p := range ps {
		var why error
		if p.ctx.Err() != nil {
			why = context.Cause(p.ctx)
		} else if ctx.Err() != nil {
			why = &session.Ended{Why: session.ErrShutdown}
		}
		p.s.End(why, p.started)
	}
}

// session returns the principal's session on this connection, opening it at its first request, and
// opening it again when the broker ended the previous one (its token expired, a reload revoked it).
func (c *clientConn) session(ctx context.Context, peer *identity.Peer) (*principal, error) {
	key := principalKey{}
	if peer != nil {
		key = principalKey{bearer: true, id: peer.ID.String()}
		// The verifier allows clock skew; a session is not opened past the token's expiry and grace.
		if time.Now().After(peer.Expires.Add(c.e.cfg.Session.SVIDExpiryGrace)) {
			return nil, errTokenExpired
		}
	} else if st := c.tls.ConnectionState(); len(st.PeerCertificates) > 0 {
		p, err := identity.PeerFromTLS(st)
		if err != nil {
			return nil, &session.Error{Kind: session.ErrUnidentified, Err: err}
		}
		key.id = p.ID.String()
		// A connection outliving its certificate gets no new session: the client reconnects with its
		// rotated SVID.
		if grace := c.e.cfg.Session.SVIDExpiryGrace; time.Now().After(p.Expires.Add(grace)) {
			return nil, errCertificateExpired
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.principals[key]; p != nil {
		if p.ctx.Err() == nil && (peer == nil || !peer.Expires.After(p.s.Peer().Expires)) {
			return p, nil
		}
		// Ended by the broker, or a later token of the same principal: a new session under it.
		delete(c.principals, key)
		why := context.Cause(p.ctx)
		if p.ctx.Err() == nil {
			why = nil
		}
		p.s.End(why, p.started)
	}
	if len(c.principals) >= c.e.cfg.Limits.MaxPrincipals {
		return nil, errTooManyPrincipals
	}
	s, err := c.e.core.Open(ctx, session.OpenRequest{TLS: c.tls.ConnectionState(), Peer: peer, PeerBy: "JWT-SVID", Remote: c.remote})
	if err != nil {
		return nil, err
	}
	p := &principal{s: s, ctx: s.Start(c.ctx), started: time.Now()}
	c.principals[key] = p
	// A session the broker ends (expiry, lost lease, revocation, shutdown) ends now, its credential
	// revoked, not when the connection closes.
	context.AfterFunc(p.ctx, func() { c.drop(key, p) })
	s.Log().InfoContext(ctx, "session started", "bearer", key.bearer, "svid_expires", s.Peer().Expires.UTC().Format(time.RFC3339))
	return p, nil
}

// drop ends p's session, which the broker ended, and forgets it.
func (c *clientConn) drop(key principalKey, p *principal) {
	c.mu.Lock()
	if c.principals[key] == p {
		delete(c.principals, key)
	}
	c.mu.Unlock()
	p.s.End(context.Cause(p.ctx), p.started)
}

var (
	errTooManyPrincipals  = errors.New("too many principals on one connection")
	errCertificateExpired = errors.New("the connection's client certificate has expired")
	errTokenExpired       = errors.New("the bearer JWT-SVID has expired")
)

// oneConn is a listener of one connection: Accept returns it once, then blocks until it is closed.
type oneConn struct {
	once   sync.Once
	conn   *closeNotify
	ch     chan net.Conn
	closed chan struct{}
}

func newOneConn(c *closeNotify) *oneConn {
	l := &oneConn{conn: c, ch: make(chan net.Conn, 1), closed: make(chan struct{})}
	l.ch <- c
	return l
}

func (l *oneConn) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.conn.done:
		return nil, errConnClosed
	case <-l.closed:
		return nil, errConnClosed
	}
}

func (l *oneConn) Close() error {
	// srv.Close closes the listener, waits for Serve to return, then closes the connection; a
	// connection never served is closed here.
	l.once.Do(func() {
		close(l.closed)
		select {
		case c := <-l.ch:
			c.Close()
		default:
		}
	})
	return nil
}

func (l *oneConn) Addr() net.Addr { return l.conn.LocalAddr() }

// closeNotify tells the listener when net/http closes the connection.
type closeNotify struct {
	net.Conn
	once sync.Once
	done chan struct{}
}

func (c *closeNotify) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { close(c.done) })
	return err
}

package forwarder

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Protocol is what the local clients speak.
type Protocol string

const (
	// Postgres clients connect without TLS; the forwarder makes the broker's SSLRequest itself.
	Postgres Protocol = "postgres"
	// HTTP clients (HTTP/1.1, and MCP over it) connect to http://; the forwarder opens TLS to the
	// broker with ALPN "http/1.1" and relays bytes, or in JWT mode (Config.JWTAudience) rewrites
	// each request with its JWT-SVID as the bearer.
	HTTP Protocol = "http"
)

// Config configures a Forwarder.
type Config struct {
	// Protocol is what the clients speak: Postgres or HTTP. Required.
	Protocol Protocol
	// Broker is the host:port of the broker's listener for that protocol. Required.
	Broker string
	// BrokerID is the SPIFFE ID the broker must present; any other certificate is refused. Required.
	BrokerID spiffeid.ID
	// SVID is the forwarder's X.509-SVID, read at each handshake (a workloadapi.X509Source keeps it
	// current as it rotates). Required, except in JWT mode, where it is not used.
	SVID x509svid.Source
	// Bundles verify the broker's certificate. Required (usually the same X509Source).
	Bundles x509bundle.Source
	// JWTAudience switches an HTTP forwarder to JWT mode: each request goes to the broker with
	// "Authorization: Bearer" and a JWT-SVID for this audience, over TLS without a client
	// certificate, so that the bearer is the request's only identity. The forwarder then parses
	// HTTP (strictly; see httpreq.go) instead of relaying bytes.
	JWTAudience string
	// JWT fetches the JWT-SVIDs (a workloadapi.JWTSource). Required in JWT mode.
	JWT jwtsvid.Source
	// TokenTimeout bounds one fetch of a JWT-SVID. Default 10s.
	TokenTimeout time.Duration
	// MaxHeaderBytes bounds a request's and a response's header block in JWT mode. Default 64 KiB;
	// at least 4 KiB.
	MaxHeaderBytes int
	// DialTimeout bounds the TCP connect to the broker. Default 10s.
	DialTimeout time.Duration
	// HandshakeTimeout bounds the broker's answer to SSLRequest and the TLS handshake. Default 10s.
	HandshakeTimeout time.Duration
	// ClientTimeout bounds how long a new client may take to send its startup packets (PostgreSQL)
	// or its first byte (HTTP). Default 30s.
	ClientTimeout time.Duration
	// IdleTimeout closes a relayed connection on which neither side sent anything for this long.
	// Default 30m.
	IdleTimeout time.Duration
	// DrainTimeout is how long Serve waits, once its context ends, for open connections to finish
	// before closing them. Default 10s.
	DrainTimeout time.Duration
	// MaxConns caps the client connections relayed at once; more are refused. Default 256.
	MaxConns int
	// Logger receives one line per connection and per failure; never data. Default slog.Default().
	Logger *slog.Logger

	// wrapBrokerConn, if set, wraps each TCP connection to the broker before anything is sent on it
	// (tests use it to hold events on the connection in a chosen order).
	wrapBrokerConn func(net.Conn) net.Conn
}

// Validate fills in defaults and rejects what cannot work.
func (c *Config) Validate() error {
	switch c.Protocol {
	case Postgres, HTTP:
	case "":
		return errors.New("forwarder: no protocol; set postgres or http")
	default:
		return fmt.Errorf("forwarder: protocol %q is not postgres or http", c.Protocol)
	}
	if c.Broker == "" {
		return errors.New("forwarder: no broker address; set host:port of the broker's listener")
	}
	if _, _, err := net.SplitHostPort(c.Broker); err != nil {
		return fmt.Errorf("forwarder: broker address %q: %w (want host:port)", c.Broker, err)
	}
	if c.BrokerID.IsZero() {
		return errors.New("forwarder: no broker SPIFFE ID; the broker is authorized by its exact ID only")
	}
	if c.JWTAudience != "" {
		if c.Protocol != HTTP {
			return fmt.Errorf("forwarder: a JWT audience is for protocol http only, not %s", c.Protocol)
		}
		if c.JWT == nil {
			return errors.New("forwarder: a JWT audience but no JWT-SVID source")
		}
		if c.Bundles == nil {
			return errors.New("forwarder: no X.509 bundle source to verify the broker with")
		}
	} else if c.SVID == nil || c.Bundles == nil {
		return errors.New("forwarder: no X.509-SVID source")
	}
	if c.MaxHeaderBytes < 0 || c.MaxHeaderBytes > 0 && c.MaxHeaderBytes < 4096 {
		return errors.New("forwarder: MaxHeaderBytes must be at least 4096")
	}
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = 64 << 10
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&c.DialTimeout, 10 * time.Second}, {&c.HandshakeTimeout, 10 * time.Second}, {&c.ClientTimeout, 30 * time.Second},
		{&c.IdleTimeout, 30 * time.Minute}, {&c.DrainTimeout, 10 * time.Second}, {&c.TokenTimeout, 10 * time.Second}} {
		if *d.v < 0 {
			return errors.New("forwarder: timeouts must not be negative")
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if c.MaxConns < 0 {
		return errors.New("forwarder: MaxConns must not be negative")
	}
	if c.MaxConns == 0 {
		c.MaxConns = 256
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Forwarder relays local clients to the broker over mutual TLS with its own SVID.
type Forwarder struct {
	cfg    Config
	tls    *tls.Config
	tokens *tokens // JWT mode only
}

// New returns a Forwarder for a validated cfg.
func New(cfg Config) (*Forwarder, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var tc *tls.Config
	var toks *tokens
	if cfg.JWTAudience != "" {
		// No client certificate: the broker must take the bearer as the request's principal, with
		// nothing else on the connection that it could decide on instead, or fall back to when the
		// token is refused.
		tc = tlsconfig.TLSClientConfig(cfg.Bundles, tlsconfig.AuthorizeID(cfg.BrokerID))
		toks = newTokens(cfg.JWT, cfg.JWTAudience, cfg.TokenTimeout)
	} else {
		tc = tlsconfig.MTLSClientConfig(cfg.SVID, cfg.Bundles, tlsconfig.AuthorizeID(cfg.BrokerID))
	}
	// go-spiffe sets InsecureSkipVerify only to replace the host name check with its own chain and ID
	// check in VerifyPeerCertificate. No session cache: Go skips VerifyPeerCertificate on resumption.
	tc.ClientSessionCache = nil
	tc.MinVersion = tls.VersionTLS12
	if cfg.Protocol == HTTP {
		// The bytes relayed are HTTP/1.1; the broker must not pick h2 for this connection.
		tc.NextProtos = []string{"http/1.1"}
	}
	return &Forwarder{cfg: cfg, tls: tc, tokens: toks}, nil
}

// Serve accepts clients on ln until ctx ends, then stops accepting, waits up to DrainTimeout for open
// connections to end, and closes the rest. It closes ln.
func (f *Forwarder) Serve(ctx context.Context, ln net.Listener) error {
	log := f.cfg.Logger
	connCtx, cancelConns := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelConns()
	var wg sync.WaitGroup
	slots := make(chan struct{}, f.cfg.MaxConns)
	refusals := make(chan struct{}, maxRefusals)
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var err error
	var backoff time.Duration
	for {
		var c net.Conn
		c, err = ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				err = nil
				break
			}
			if errors.Is(err, net.ErrClosed) {
				err = fmt.Errorf("forwarder: accept: %w", err)
				break
			}
			// Out of file descriptors and the like pass: back off rather than spin or stop serving.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			log.Warn("accept failed; retrying", "error", err, "backoff", backoff)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
			}
			continue
		}
		backoff = 0
		select {
		case slots <- struct{}{}:
		default:
			log.Warn("client refused: too many connections", "client", clientName(c), "max_conns", f.cfg.MaxConns)
			select {
			case refusals <- struct{}{}:
				go func() {
					defer func() { <-refusals }()
					f.refuse(c, "53300", fmt.Sprintf("svidbroker connect: too many connections (max %d)", f.cfg.MaxConns))
				}()
			default: // a flood: no answer, just the close
				c.Close()
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			f.handle(connCtx, c)
		}()
	}
	ln.Close()
	log.Info("stopped accepting; waiting for open connections", "drain_timeout", f.cfg.DrainTimeout)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(f.cfg.DrainTimeout):
		log.Info("closing connections still open after the drain timeout", "drain_timeout", f.cfg.DrainTimeout)
		cancelConns()
		<-done
	}
	return err
}

// handle serves one client connection; it closes c.
func (f *Forwarder) handle(ctx context.Context, c net.Conn) {
	defer c.Close()
	// Past the drain timeout, a client still in its startup (or a relay) is cut off at once.
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	log := f.cfg.Logger.With("client", clientName(c))
	switch f.cfg.Protocol {
	case Postgres:
		f.handlePostgres(ctx, log, c)
	case HTTP:
		if f.tokens != nil {
			f.handleHTTPBearer(ctx, log, c)
		} else {
			f.handleHTTP(ctx, log, c)
		}
	}
}

// maxRefusals bounds the refusals being written at once; beyond it a refused client is just closed.
const maxRefusals = 32

// refuse tells a client it cannot be served, in its protocol, and closes c. Whatever the client sent
// is left unread (libpq reads an ErrorResponse at any point of its startup), then drained briefly so
// that the close does not reset the connection before the client has read the answer.
func (f *Forwarder) refuse(c net.Conn, sqlstate, msg string) {
	defer c.Close()
	switch f.cfg.Protocol {
	case Postgres:
		writeFatal(c, sqlstate, msg)
	case HTTP:
		writeHTTPError(c, 503, msg)
	}
	drain(c)
}

// clientName is how logs name a client: its address, or "unix" for a Unix socket peer.
func clientName(c net.Conn) string {
	if a := c.RemoteAddr(); a != nil && a.String() != "" && a.String() != "@" {
		return a.String()
	}
	return "unix"
}

// drain half-closes c and reads (and drops) what the client still sends, briefly and boundedly, so
// that closing with unread bytes does not reset the connection before the client has read the answer.
func drain(c net.Conn) {
	if cw, ok := c.(halfCloser); ok {
		_ = cw.CloseWrite()
	}
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	_, _ = io.Copy(io.Discard, io.LimitReader(c, 1<<20))
}

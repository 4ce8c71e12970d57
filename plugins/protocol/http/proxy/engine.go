package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/svidbroker/svidbroker/broker/identity"
	"github.com/svidbroker/svidbroker/broker/server"
	"github.com/svidbroker/svidbroker/broker/session"
)

// ALPN is the protocol name the engine offers: HTTP/1.1 only.
const ALPN = "http/1.1"

// ServerTLS returns the TLS configuration http targets terminate clients with: the broker presents
// its SVID and asks for a client certificate, which, when one is sent, must be an X.509-SVID of a
// trusted trust domain. A client without one names its principal with a JWT-SVID bearer per request.
func ServerTLS(svid x509svid.Source, bundles x509bundle.Source, trusted []spiffeid.TrustDomain) *tls.Config {
	c := tlsconfig.MTLSServerConfig(svid, bundles, identity.AuthorizeTrustDomains(trusted))
	verify := c.VerifyPeerCertificate
	c.ClientAuth = tls.RequestClientCert
	c.VerifyPeerCertificate = func(raw [][]byte, chains [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return nil // no certificate: the requests must bring bearers
		}
		return verify(raw, chains)
	}
	c.MinVersion = tls.VersionTLS12
	c.SessionTicketsDisabled = true
	c.NextProtos = []string{ALPN}
	return c
}

// Engine is the http targets' engine.
type Engine struct {
	cfg       Config
	core      *session.Core
	transport *http.Transport
}

var _ server.Engine = (*Engine)(nil)

// New checks cfg and returns an Engine.
func New(cfg Config) (*Engine, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.Logger = cfg.Logger.With("target", cfg.Target, "protocol", "http")
	sc := cfg.Session
	sc.Target, sc.Logger = cfg.Target, cfg.Logger
	if sc.Approve == nil {
		sc.Approve = cfg.Approve
	}
	core, err := session.New(sc)
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	upTLS := cfg.Upstream.TLS.Clone()
	upTLS.NextProtos = []string{ALPN}
	dialer := &net.Dialer{Timeout: cfg.Limits.Upstream, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		DialContext:            dialer.DialContext,
		TLSClientConfig:        upTLS,
		TLSHandshakeTimeout:    cfg.Limits.Upstream,
		ResponseHeaderTimeout:  cfg.Limits.Upstream,
		IdleConnTimeout:        cfg.Limits.Idle,
		MaxIdleConns:           256,
		MaxIdleConnsPerHost:    256,
		MaxResponseHeaderBytes: int64(cfg.Limits.MaxHeaderBytes),
		DisableCompression:     true, // bodies are masked as they come: never decompressed behind the agent's back
		ForceAttemptHTTP2:      false,
	}
	return &Engine{cfg: cfg, core: core, transport: tr}, nil
}

// Close releases the upstream connections kept for reuse.
func (e *Engine) Close() { e.transport.CloseIdleConnections() }

// Handshake runs the TLS handshake; sessions open per principal, at its first request.
func (e *Engine) Handshake(ctx context.Context, raw net.Conn) (server.Session, error) {
	conn := tls.Server(raw, e.cfg.ServerTLS)
	if err := conn.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("proxy: TLS handshake: %w", err)
	}
	if err := raw.SetDeadline(time.Time{}); err != nil {
		conn.Close()
		return nil, err
	}
	return &clientConn{e: e, tls: conn, remote: raw.RemoteAddr(), principals: map[principalKey]*principal{}}, nil
}

// errConnClosed ends the one-connection listener.
var errConnClosed = errors.New("proxy: connection closed")

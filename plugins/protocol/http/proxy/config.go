package proxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/textproto"
	"strings"
	"time"

	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/broker/identity"
	"github.com/svidbroker/svidbroker/broker/inspect"
	"github.com/svidbroker/svidbroker/broker/session"
	"github.com/svidbroker/svidbroker/plugins/protocol/http/route"
)

// Request is one HTTP request as policy decides it: the fields of authz.HTTPRequest.
type Request struct {
	Target string            // "api"
	Route  string            // the route pattern as written: "GET /v1/customers/{id}"
	Method string            // "GET"
	Path   string            // the path forwarded (route.Match.Path), no query
	Params map[string]string // path parameters
	Query  map[string]string // declared query parameters present
	Body   map[string]any    // declared body members present: string, int64 or bool
}

// Policy decides requests and response fields (authz.Authorizer, through a small adapter in cmd).
type Policy interface {
	// HTTP decides r; a refusal is an error whose text tells the agent what was refused.
	HTTP(c authz.Connect, r Request, ap authz.ApprovalState) (authz.Decision, error)
	// FieldMasks decides field:read-unmasked for each of fields, catalog fields (their paths as
	// written) of r's route, in one batch: one strategy per field, in order; "" leaves it clear, else
	// it names the strategy (def when the policies name none).
	FieldMasks(c authz.Connect, r Request, fields []string, ap authz.ApprovalState, def string) []string
}

// Upstream is the API requests go to.
type Upstream struct {
	// Address is the upstream's host:port; requests go to https://Address.
	Address string
	// TLS verifies the upstream (identity.BackendConfig); with auth = "svid" it presents the broker's
	// SVID. Required.
	TLS *tls.Config
	// CredentialHeader carries the session's credential (its lease's Password), after
	// CredentialPrefix. Default "Authorization". Without a lease nothing is sent.
	CredentialHeader string
	CredentialPrefix string
}

// Limits bound what one request may hold. Zero fields take the defaults.
type Limits struct {
	// MaxHeaderBytes bounds one request's head. Default DefaultMaxHeaderBytes.
	MaxHeaderBytes int
	// MaxBodyBytes bounds the request body, which is read whole and checked. Default 1 MiB.
	MaxBodyBytes int
	// MaxEventBytes bounds one event of a masked text/event-stream response. Default sse's.
	MaxEventBytes int
	// MaxPrincipals bounds the principals one connection may carry at once. Default 16.
	MaxPrincipals int
	// ReadHeader bounds the reading of a request's head, Idle the wait between requests, Upstream the
	// wait for the upstream's response headers and each read of its body. Defaults 10s, 90s, 30s.
	ReadHeader, Idle, Upstream time.Duration
	// ReadBody bounds the reading of a request's body, from its head's end. Default 30s.
	ReadBody time.Duration
	// Write bounds each write of a response to the client (the head, each piece of the body).
	// Default 30s.
	Write time.Duration
}

// Defaults of Limits.
const (
	DefaultMaxHeaderBytes = 64 << 10
	DefaultMaxBodyBytes   = 1 << 20
	DefaultMaxPrincipals  = 16
	DefaultReadHeader     = 10 * time.Second
	DefaultIdle           = 90 * time.Second
	DefaultUpstream       = 30 * time.Second
	DefaultReadBody       = 30 * time.Second
	DefaultWrite          = 30 * time.Second
)

// Config configures an Engine for one target.
type Config struct {
	// Target names the target in decisions, records and errors.
	Target string
	// ServerTLS terminates clients: ServerTLS(...) asks for, and verifies when given, an X.509-SVID.
	ServerTLS *tls.Config
	// JWT, if set, verifies "Authorization: Bearer" JWT-SVIDs, which then name the request's
	// principal; nil: the Authorization header is never read, only stripped.
	JWT *identity.JWTVerifier
	// Session configures the session core; its Target is set to Target.
	Session session.Config
	// Routes are the target's routes, with what each declares of its request (query, body).
	Routes *route.Table
	// Policy decides requests and fields. Required.
	Policy Policy
	// Masker masks fields; DefaultMask is the strategy when a policy names none (default redact).
	Masker      *inspect.Masker
	DefaultMask inspect.Strategy
	// FullData records masked response bodies (capped) for requests whose decision carries
	// @record("full").
	FullData bool
	// Upstream is where permitted requests go.
	Upstream Upstream
	Limits   Limits
	// Approve holds requests for a person's approval; nil refuses those that need one.
	Approve session.ApproveFunc
	// Logger receives operational logs; never bodies or secrets. Default slog.Default().
	Logger *slog.Logger
	// Serve, if set, serves each request once its principal's session is known, in place of the
	// engine's routes, checks and forwarding: a protocol carried over HTTP (MCP) keeps the engine's
	// TLS, principals, sessions, limits, credential and transport (UpstreamRequest, RoundTrip).
	// Routes and Policy are then not used.
	Serve ServeFunc
}

func (c *Config) validate() error {
	switch {
	case c.ServerTLS == nil:
		return errors.New("proxy: ServerTLS is required")
	case c.Serve != nil:
		if c.Upstream.Address == "" || c.Upstream.TLS == nil {
			return errors.New("proxy: Upstream.Address and Upstream.TLS are required")
		}
	case c.Routes == nil:
		return errors.New("proxy: Routes is required (an empty table refuses every request)")
	case c.Policy == nil:
		return errors.New("proxy: Policy is required: http targets are decided per request")
	case c.Upstream.Address == "" || c.Upstream.TLS == nil:
		return errors.New("proxy: Upstream.Address and Upstream.TLS are required")
	}
	if c.Upstream.CredentialHeader == "" {
		c.Upstream.CredentialHeader = "Authorization"
	}
	if err := checkCredentialHeader(c.Upstream.CredentialHeader); err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	c.Upstream.CredentialHeader = textproto.CanonicalMIMEHeaderKey(c.Upstream.CredentialHeader)
	l := &c.Limits
	for _, f := range []struct {
		v   *int
		def int
	}{{&l.MaxHeaderBytes, DefaultMaxHeaderBytes}, {&l.MaxBodyBytes, DefaultMaxBodyBytes}, {&l.MaxPrincipals, DefaultMaxPrincipals}} {
		if *f.v <= 0 {
			*f.v = f.def
		}
	}
	for _, f := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&l.ReadHeader, DefaultReadHeader}, {&l.Idle, DefaultIdle}, {&l.Upstream, DefaultUpstream}, {&l.ReadBody, DefaultReadBody}, {&l.Write, DefaultWrite}} {
		if *f.v <= 0 {
			*f.v = f.def
		}
	}
	if c.Masker == nil {
		c.Masker, _ = inspect.NewMasker(nil)
	}
	if c.DefaultMask == "" {
		c.DefaultMask = inspect.Redact
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// checkCredentialHeader refuses a header name that is not a token, or one whose meaning belongs to
// the connection or the framing rather than to the API.
func checkCredentialHeader(name string) error {
	if name == "" {
		return errors.New("the credential header is empty")
	}
	for i := 0; i < len(name); i++ {
		if !tokenByte(name[i]) {
			return fmt.Errorf("credential header %q is not a header name (letters, digits and !#$%%&'*+-.^_`|~)", name)
		}
	}
	canon := http.CanonicalHeaderKey(name)
	if hopByHop[canon] || canon == "Host" || canon == "Cookie" || canon == "Content-Length" || canon == "Content-Type" ||
		strings.HasPrefix(canon, "Proxy-") {
		return fmt.Errorf("credential header %q is a header of the connection or the body, not of the API: name the header the API reads its token from", name)
	}
	return nil
}

// tokenByte reports whether c may appear in a header name (RFC 9110 token).
func tokenByte(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

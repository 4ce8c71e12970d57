package postgres

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/svidbroker/svidbroker/broker/approval"
	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/broker/identity"
	"github.com/svidbroker/svidbroker/broker/inspect"
	"github.com/svidbroker/svidbroker/broker/metrics"
	"github.com/svidbroker/svidbroker/broker/server"
	sess "github.com/svidbroker/svidbroker/broker/session"
	"github.com/svidbroker/svidbroker/broker/tracing"
	"github.com/svidbroker/svidbroker/plugins/protocol/postgres/sqlclass"
)

// ALPN is the protocol name PostgreSQL clients offer for TLS.
const ALPN = "postgresql"

// DefaultWriteTimeout bounds one write to a client or backend that has stopped reading.
const DefaultWriteTimeout = time.Minute

// Config configures an Engine for one target.
type Config struct {
	// Target names the target in logs and errors.
	Target string
	// ServerTLS terminates clients. It must require and verify a client SVID (identity.ServerConfig)
	// and offer the ALPN name "postgresql".
	ServerTLS *tls.Config
	// Authorize decides whether an authenticated caller may connect to this target (Cedar's "connect",
	// or an exact allow list, which has no decision to return). Its error is shown to the client, so it
	// must hold no secret.
	Authorize func(context.Context, authz.Connect) (authz.Decision, error)
	// Audit records sessions and statements: every statement's record is written to the store before
	// the statement is forwarded, and nothing commits before its records are on stable storage
	// (commitPoints). Nil records nothing.
	Audit audit.Sink
	// AuditPerStatement makes every statement wait until its record is on stable storage (audit
	// durability = "statement").
	AuditPerStatement bool
	// NoResults leaves result summaries out of the audit log.
	NoResults bool
	// FullData records result rows too, as the client saw them (masked), up to a cap per statement.
	FullData bool
	// AuditFailOpen lets statements run unrecorded when the audit store fails, instead of refusing
	// them. Every session that runs statements unrecorded logs it once, at error level.
	AuditFailOpen bool
	// Attest, if set, looks up what SPIRE attested about the client. A failed lookup refuses the
	// session: the broker stops trusting a caller when SPIRE does, or when it cannot ask.
	Attest func(context.Context, spiffeid.ID) (*identity.Attestation, error)
	// Backend is where sessions go.
	Backend Backend
	// Ready reports whether the broker may grant new access (it holds a valid SVID, its audit log
	// works). When it fails, a new client gets a FATAL error saying why, once TLS is up and it has sent
	// its startup message, where clients show the server's errors (libpq reports an error sent in
	// answer to SSLRequest only as "server sent an error response during SSL exchange"). Its text goes
	// to clients, so it must hold no secret or host name. Nil means always ready.
	Ready func() error
	// TLSReady reports whether the broker can complete a TLS handshake a client accepts (its own SVID
	// is current). When it fails, clients are refused before TLS. Nil means always.
	TLSReady func() error
	// SVIDExpiryGrace is how long a session may outlive its client's SVID before the broker ends it.
	SVIDExpiryGrace time.Duration
	// MaxMessageBytes caps one protocol message in either direction.
	MaxMessageBytes int
	// WriteTimeout bounds each write to a peer. Default DefaultWriteTimeout.
	WriteTimeout time.Duration
	// Logger receives operational logs; never row data or secrets. Default slog.Default().
	Logger *slog.Logger

	// Policy decides every statement (sql:*) and every tagged column of a result
	// (column:read-unmasked). Nil (a target authorized by an exact allow list) still parses every
	// statement, refuses what does not parse and refuses admin constructs, but masks nothing.
	Policy *authz.Authorizer
	// Masker masks values. Default: one without a hash key (the hash strategy then gives NULL).
	Masker *inspect.Masker
	// DefaultMask is the strategy for a column whose read-unmasked is denied by a policy that names
	// none. Default inspect.Redact.
	DefaultMask inspect.Strategy
	// Approvals is the queue approvers resolve held statements through. A held statement waits on it
	// unless Approve is set.
	Approvals *approval.Queue
	// Approve waits for a person's approval of a held statement, in place of Approvals. With neither,
	// statements that need an approval are refused.
	Approve ApproveFunc
	// Grants, if set, lets an approval granted earlier cover a statement its binding (caller,
	// target, libpg_query fingerprint or session) covers, without a new hold (sess.DeskApprover).
	Grants sess.GrantFunc
	// ApprovalTimeout bounds the wait for an approval. Default DefaultApprovalTimeout.
	ApprovalTimeout time.Duration
	// Timeouts are the ceilings of the session's timeouts and its idle-in-transaction limit (see
	// Timeouts); zero fields take the defaults.
	Timeouts Timeouts
	// Metrics, if set, counts the target's sessions, statements and approvals (broker/metrics).
	Metrics *metrics.Metrics
	// Tracing, if set, gives each session a span, with its decisions, holds, credential lease and
	// statements relayed as children (broker/tracing).
	Tracing *tracing.Tracing
}

// DefaultApprovalTimeout bounds the wait for an approval.
const DefaultApprovalTimeout = 5 * time.Minute

// classifierCacheEntries bounds the engine's statement classification cache.
const classifierCacheEntries = 4096

// Engine is the PostgreSQL protocol engine.
type Engine struct {
	cfg        Config
	core       *sess.Core      // opens, watches and ends sessions
	cancels    *cancelRegistry // this engine's, or its router's: see NewRouter
	classifier *sqlclass.Cache
	metas      metaShare
}

// errCancelRequest ends a connection that carried a cancel request: it is not a session.
var errCancelRequest = errors.New("postgres: cancel request handled")

var _ server.Engine = (*Engine)(nil)

// New checks cfg and returns an Engine.
func New(cfg Config) (*Engine, error) {
	switch {
	case cfg.ServerTLS == nil || cfg.ServerTLS.ClientAuth != tls.RequireAnyClientCert && cfg.ServerTLS.ClientAuth != tls.RequireAndVerifyClientCert:
		return nil, errors.New("postgres: ServerTLS must require a client certificate")
	case !slices.Contains(cfg.ServerTLS.NextProtos, ALPN):
		return nil, fmt.Errorf("postgres: ServerTLS must offer ALPN %q", ALPN)
	case cfg.Authorize == nil:
		return nil, errors.New("postgres: Authorize is required")
	case cfg.MaxMessageBytes <= 0:
		return nil, errors.New("postgres: MaxMessageBytes must be positive")
	}
	if err := cfg.Backend.validate(); err != nil {
		return nil, err
	}
	if err := cfg.Timeouts.Validate(); err != nil {
		return nil, err
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.Logger = cfg.Logger.With("target", cfg.Target, "protocol", "postgres")
	if cfg.Masker == nil {
		cfg.Masker, _ = inspect.NewMasker(nil)
	}
	if cfg.DefaultMask == "" {
		cfg.DefaultMask = inspect.Redact
	}
	if cfg.ApprovalTimeout <= 0 {
		cfg.ApprovalTimeout = DefaultApprovalTimeout
	}
	if cfg.Approve == nil && cfg.Approvals != nil {
		cfg.Approve = sess.QueueApprover(cfg.Approvals, cfg.Logger)
	}
	core, err := sess.New(sess.Config{
		Target: cfg.Target, Authorize: cfg.Authorize, Policy: cfg.Policy, Attest: cfg.Attest, Ready: cfg.Ready,
		PickRole: cfg.Backend.PickRole, Lease: cfg.Backend.Lease,
		Audit: cfg.Audit, AuditPerStatement: cfg.AuditPerStatement, AuditFailOpen: cfg.AuditFailOpen,
		SVIDExpiryGrace: cfg.SVIDExpiryGrace, Logger: cfg.Logger,
		Protocol: "postgres", OperationKind: "sql", Metrics: cfg.Metrics,
		Tracing: cfg.Tracing, SpanAttributes: []attribute.KeyValue{semconv.DBSystemNamePostgreSQL},
	})
	if err != nil {
		return nil, err
	}
	return &Engine{cfg: cfg, core: core, cancels: newCancelRegistry(DefaultConnectTimeout),
		classifier: sqlclass.NewCache(classifierCacheEntries)}, nil
}

// Handshake authenticates a client and connects it to the backend. See server.Engine.
// The server has set raw's deadline to the handshake deadline; it is cleared once the session starts.
func (e *Engine) Handshake(ctx context.Context, raw net.Conn) (server.Session, error) {
	conn, err := e.upgrade(ctx, raw)
	if err != nil {
		return nil, err
	}
	msg, err := readStartupPacket(conn)
	if err != nil {
		sendFatal(pgproto3.NewBackend(conn, conn), "08P01", "svidbroker: invalid startup message")
		return nil, err
	}
	return e.start(ctx, raw, conn, msg)
}

// start runs a session from its first message inside TLS: the core (broker/session) opens it, and
// the engine connects the backend and finishes the protocol's startup.
func (e *Engine) start(ctx context.Context, raw net.Conn, conn *tls.Conn, msg pgproto3.FrontendMessage) (server.Session, error) {
	client := pgproto3.NewBackend(conn, conn)
	client.SetMaxBodyLen(e.cfg.MaxMessageBytes)

	if c, ok := msg.(*pgproto3.CancelRequest); ok {
		return nil, e.cancel(ctx, c)
	}
	startup, ok := msg.(*pgproto3.StartupMessage)
	if !ok {
		sendFatal(client, "08P01", fmt.Sprintf("svidbroker: expected a StartupMessage inside TLS, got %s", msgName(msg)))
		return nil, fmt.Errorf("postgres: %s inside TLS", msgName(msg))
	}
	if startup.ProtocolVersion != pgproto3.ProtocolVersion30 {
		sendFatal(client, "0A000", "svidbroker: only protocol version 3.0 is supported")
		return nil, fmt.Errorf("postgres: protocol version %#x", startup.ProtocolVersion)
	}
	var params map[string]string
	cs, err := e.core.Open(ctx, sess.OpenRequest{TLS: conn.ConnectionState(), Remote: raw.RemoteAddr(),
		Check: func() error {
			clientParams, timeouts, err := e.cfg.Timeouts.startupTimeouts(startup.Parameters)
			if err != nil {
				return err
			}
			if params, err = e.cfg.Backend.runtimeParams(clientParams, e.cfg.Target); err != nil {
				return err
			}
			maps.Copy(params, timeouts)
			return nil
		},
		CheckRefusal: notEstablishedParams})
	if err != nil {
		return nil, e.refuseOpen(client, err)
	}
	log := cs.Log()
	peer := cs.Peer()
	rec := recorder{sink: e.cfg.Audit, session: cs.ID(), spiffeID: peer.ID.String(), target: e.cfg.Target,
		noResults: e.cfg.NoResults, fullData: e.cfg.FullData, perStatement: e.cfg.AuditPerStatement, failOpen: cs.AuditFailOpen()}
	user, password := e.cfg.Backend.User, ""
	lease := cs.Lease()
	if lease != nil {
		user, password = lease.Lease.Username, lease.Lease.Password
	}
	var meta *dbMeta
	be, err := e.cfg.Backend.connect(ctx, params, e.cfg.MaxMessageBytes, user, password, func(pc *pgconn.PgConn) error {
		if e.cfg.Policy == nil {
			return nil
		}
		var err error
		tagged, catalog := taggedColumns(e.cfg.Policy.Catalog, e.cfg.Target)
		if meta, err = loadMeta(ctx, pc, tagged, catalog, e.classifier.Classify); err != nil {
			return err
		}
		meta = e.metas.intern(meta)
		return nil
	})
	if err != nil {
		cs.Abort(notEstablishedBackend)
		// The detail stays in the log; the client learns only that the backend is unavailable.
		log.ErrorContext(ctx, "backend connection failed", "error", err)
		sendFatal(client, "08006", fmt.Sprintf("svidbroker: target %q is unavailable", e.cfg.Target))
		return nil, err
	}

	for name, value := range be.ParameterStatuses {
		if err = checkParameter(name, value); err != nil {
			be.Conn.Close()
			cs.Abort(notEstablishedMisconfigured)
			log.ErrorContext(ctx, "backend refused", "error", err)
			sendFatal(client, "08006", fmt.Sprintf("svidbroker: target %q is misconfigured: %v", e.cfg.Target, err))
			return nil, err
		}
	}
	client.Send(&pgproto3.AuthenticationOk{})
	for _, k := range sortedKeys(be.ParameterStatuses) {
		client.Send(&pgproto3.ParameterStatus{Name: k, Value: be.ParameterStatuses[k]})
	}
	// The client gets a key of the broker's, not the backend's: cancel requests never reach the
	// backend unauthenticated.
	key := e.cancels.add(e.cfg.Backend.Address, be.PID, be.SecretKey)
	var secret [4]byte
	binary.BigEndian.PutUint32(secret[:], key.secret)
	client.Send(&pgproto3.BackendKeyData{ProcessID: key.pid, SecretKey: secret[:]})
	client.Send(&pgproto3.ReadyForQuery{TxStatus: be.TxStatus})
	abort := func(err error) (server.Session, error) {
		e.cancels.remove(key)
		be.Conn.Close()
		cs.Abort(notEstablishedClient)
		return nil, err
	}
	if err := client.Flush(); err != nil {
		return abort(err)
	}
	if err := raw.SetDeadline(time.Time{}); err != nil {
		return abort(err)
	}
	backend, err := newBackendWire(be, e.cfg.MaxMessageBytes)
	if err != nil {
		return abort(err)
	}
	log.InfoContext(ctx, "session started", "svid_expires", peer.Expires.UTC().Format(time.RFC3339))
	return &session{
		log: log, client: newClientWire(conn, conn, e.cfg.MaxMessageBytes), clientConn: conn, backend: backend, backendConn: be.Conn,
		writeTimeout: e.cfg.WriteTimeout, endBy: cs.EndBy(), rec: rec,
		lease: lease, core: cs,
		insp: inspection{authz: e.cfg.Policy, connect: cs.Connect(), classifier: e.classifier, meta: meta, masker: e.cfg.Masker,
			defaultMask: e.cfg.DefaultMask, approve: e.cfg.Approve, grants: e.cfg.Grants, approvalTimeout: e.cfg.ApprovalTimeout},
		stmts: map[string]*prepared{}, portals: map[string]*portal{}, cancelKey: key, cancels: e.cancels,
		timeouts: e.cfg.Timeouts,
	}, nil
}

// refuseOpen tells the client, in PostgreSQL's terms, why the core did not open its session, and
// returns the error that ends the handshake.
func (e *Engine) refuseOpen(client *pgproto3.Backend, err error) error {
	se, ok := errors.AsType[*sess.Error](err)
	if !ok {
		return err
	}
	switch {
	case errors.Is(err, sess.ErrUnidentified):
		return se.Err
	case errors.Is(err, sess.ErrNotReady):
		sendFatal(client, "57P03", "svidbroker: not accepting connections: "+se.Err.Error())
		return fmt.Errorf("postgres: not ready: %w", err)
	case errors.Is(err, sess.ErrUnattested):
		sendFatal(client, "28000", fmt.Sprintf("svidbroker: SPIRE did not confirm %s: %v", se.Peer, se.Err))
	case errors.Is(err, sess.ErrDenied), errors.Is(err, sess.ErrNoRole):
		sendFatal(client, "28000", fmt.Sprintf("svidbroker: %s: %v", se.Peer, se.Err))
	case errors.Is(err, sess.ErrAuditUnavailable):
		sendFatal(client, "58030", "svidbroker: the audit log is unavailable, so sessions are refused")
	case errors.Is(err, sess.ErrRefused):
		sendFatal(client, "08P01", "svidbroker: "+se.Err.Error())
	case errors.Is(err, sess.ErrNoCredential):
		// The detail stays in the log; the client learns only that there is no credential.
		sendFatal(client, "08006", fmt.Sprintf("svidbroker: no credential for target %q could be obtained", e.cfg.Target))
	}
	return fmt.Errorf("postgres: %w", err)
}

// Why a session that began was not established, as its end record says it.
const (
	notEstablishedParams        = "the client's startup parameters were refused"
	notEstablishedBackend       = "backend unavailable"
	notEstablishedMisconfigured = "misconfigured backend"
	notEstablishedClient        = "the client left during startup"
)

// upgrade runs the pre-TLS exchange and the TLS handshake. Plaintext sessions are refused.
func (e *Engine) upgrade(ctx context.Context, raw net.Conn) (*tls.Conn, error) {
	var first [1]byte
	if _, err := io.ReadFull(raw, first[:]); err != nil {
		return nil, err
	}
	if first[0] == 0x16 { // a TLS handshake record: direct TLS, which requires ALPN "postgresql"
		conn := tls.Server(&prefixConn{Conn: raw, prefix: first[:]}, e.cfg.ServerTLS)
		if err := conn.HandshakeContext(ctx); err != nil {
			return nil, fmt.Errorf("postgres: direct TLS handshake: %w", err)
		}
		if conn.ConnectionState().NegotiatedProtocol != ALPN {
			conn.Close()
			return nil, fmt.Errorf("postgres: direct TLS without ALPN %q", ALPN)
		}
		return conn, nil
	}
	r := io.MultiReader(bytes.NewReader(first[:]), raw)
	for gss := false; ; {
		msg, err := readStartupPacket(r)
		if err != nil {
			return nil, err
		}
		switch m := msg.(type) {
		case *pgproto3.SSLRequest:
			if e.cfg.TLSReady != nil {
				if err := e.cfg.TLSReady(); err != nil {
					// No TLS handshake the client would accept can follow, so the refusal goes now, where
					// libpq says only that there was one: the reason is on /readyz and in the log.
					sendFatal(pgproto3.NewBackend(raw, raw), "08006", "svidbroker: not accepting connections: "+err.Error())
					return nil, fmt.Errorf("postgres: not ready: %w", err)
				}
			}
			if _, err := raw.Write([]byte{'S'}); err != nil {
				return nil, err
			}
			conn := tls.Server(raw, e.cfg.ServerTLS)
			if err := conn.HandshakeContext(ctx); err != nil {
				return nil, fmt.Errorf("postgres: TLS handshake: %w", err)
			}
			return conn, nil
		case *pgproto3.GSSEncRequest:
			if gss {
				return nil, errors.New("postgres: repeated GSSENCRequest")
			}
			gss = true
			if _, err := raw.Write([]byte{'N'}); err != nil { // no GSSAPI encryption; the client may ask for TLS next
				return nil, err
			}
			r = raw
		case *pgproto3.CancelRequest:
			// libpq sends cancel requests without TLS; the key is the proof, as with the server itself.
			return nil, e.cancel(ctx, m)
		case *pgproto3.StartupMessage:
			plain := pgproto3.NewBackend(raw, raw)
			sendFatal(plain, "28000", "svidbroker: TLS with a client X.509-SVID is required (use sslmode=require or stronger, with sslcert and sslkey)")
			return nil, errors.New("postgres: plaintext StartupMessage refused")
		default:
			return nil, fmt.Errorf("postgres: %s refused before TLS", msgName(msg))
		}
	}
}

// Router serves several targets on one listener: the startup parameter "database" names the target.
// The targets share the broker's TLS configuration (the first target's is used for the handshake), and
// one cancel registry: a cancel request names no target, and arrives on the listener of the session it
// cancels (libpq sends it to the address it connected to).
type Router struct {
	first   *Engine
	targets map[string]*Engine
}

var _ server.Engine = (*Router)(nil)

// NewRouter routes to engines by their target names.
func NewRouter(engines ...*Engine) (*Router, error) {
	if len(engines) == 0 {
		return nil, errors.New("postgres: a router needs engines")
	}
	r := &Router{first: engines[0], targets: map[string]*Engine{}}
	for _, e := range engines {
		if _, dup := r.targets[e.cfg.Target]; dup {
			return nil, fmt.Errorf("postgres: target %q twice on one listener", e.cfg.Target)
		}
		r.targets[e.cfg.Target] = e
	}
	for _, e := range engines {
		e.cancels = r.first.cancels // before any session starts: the engines serve only through r
	}
	return r, nil
}

// Handshake upgrades the connection, reads the startup message and hands the session to the engine of
// the target it names.
func (r *Router) Handshake(ctx context.Context, raw net.Conn) (server.Session, error) {
	conn, err := r.first.upgrade(ctx, raw)
	if err != nil {
		return nil, err
	}
	msg, err := readStartupPacket(conn)
	if err != nil {
		sendFatal(pgproto3.NewBackend(conn, conn), "08P01", "svidbroker: invalid startup message")
		return nil, err
	}
	if m, ok := msg.(*pgproto3.StartupMessage); ok {
		db := m.Parameters["database"]
		e, ok := r.targets[db]
		if !ok {
			names := make([]string, 0, len(r.targets))
			for n := range r.targets {
				names = append(names, n)
			}
			slices.Sort(names)
			sendFatal(pgproto3.NewBackend(conn, conn), "3D000", fmt.Sprintf("svidbroker: no target %q on this listener; name one of %s as the database",
				db, strings.Join(names, ", ")))
			return nil, fmt.Errorf("postgres: no target %q", db)
		}
		return e.start(ctx, raw, conn, msg)
	}
	return r.first.start(ctx, raw, conn, msg) // cancel requests, and refusals of anything else
}

// cancel acts on a cancel request with a valid key (cancelRegistry.cancel: it withdraws a statement
// held for approval, and reaches the backend session), and never says whether the key was valid
// (neither does the server).
func (e *Engine) cancel(ctx context.Context, m *pgproto3.CancelRequest) error {
	outcome, err := e.cancels.cancel(ctx, m)
	if outcome == cancelWithdrew || outcome == cancelWithdrewAndForwarded {
		e.cfg.Logger.Info("cancel request withdrew a statement held for approval")
	}
	switch {
	case err != nil:
		e.cfg.Logger.Warn("cancel request not delivered to the backend", "error", err)
	case outcome == cancelForwarded || outcome == cancelWithdrewAndForwarded:
		e.cfg.Logger.Info("cancel request forwarded to the backend")
	case outcome == cancelUnknownKey:
		e.cfg.Logger.Info("cancel request with an unknown key ignored")
	}
	return errCancelRequest
}

// prefixConn replays bytes already read from Conn before reading on.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

func sendFatal(b *pgproto3.Backend, code, msg string) {
	b.Send(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: code, Message: msg})
	_ = b.Flush()
}

func msgName(m pgproto3.FrontendMessage) string {
	return strings.TrimPrefix(fmt.Sprintf("%T", m), "*pgproto3.")
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on Linux
	return b
}

func randomUint32() uint32 { return binary.BigEndian.Uint32(randomBytes(4)) }

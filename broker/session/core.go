package session

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/broker/credential"
	"github.com/svidbroker/svidbroker/broker/identity"
	"github.com/svidbroker/svidbroker/broker/metrics"
	"github.com/svidbroker/svidbroker/broker/tracing"
)

// Config configures the core of one target's sessions.
type Config struct {
	// Target names the target in decisions, records and logs.
	Target string
	// Authorize decides whether an identified caller may connect (Cedar's "connect", or an exact allow
	// list, which has no decision to return). Its error is shown to the client, so it must hold no
	// secret. Required.
	Authorize func(context.Context, authz.Connect) (authz.Decision, error)
	// Policy, when set, is the policy set Authorize decides with: when a new set comes into force,
	// every live session's connect is decided again, and a session it no longer permits ends
	// (ErrRevoked). Nil (an allow list) never revokes.
	Policy *authz.Authorizer
	// Attest, if set, looks up what SPIRE attested about the client. A failed lookup refuses the
	// session: the broker stops trusting a caller when SPIRE does, or when it cannot ask.
	Attest func(context.Context, spiffeid.ID) (*identity.Attestation, error)
	// Ready reports whether the broker may grant new access (it holds a valid SVID, its audit log
	// works). Its error goes to clients, so it must hold no secret or host name. Nil means always.
	Ready func() error
	// PickRole, if set, picks the session's credential role (authz.Authorizer.PickRole), which Lease
	// is then given. A caller it picks no role for is refused.
	PickRole func(context.Context, authz.Connect) (authz.RolePick, error)
	// Lease, if set, gives each session a backend credential of its own. end must be called if the
	// credential cannot be kept; the session then ends (ErrLeaseLost).
	Lease func(ctx context.Context, c authz.Connect, role string, end func(error)) (*credential.Session, error)
	// Audit records sessions. Nil records nothing.
	Audit audit.Sink
	// AuditPerStatement makes the start record wait until it is on stable storage (audit durability
	// = "statement"); otherwise it is written to the store.
	AuditPerStatement bool
	// AuditFailOpen lets sessions start unrecorded when the audit store fails (audit on_failure =
	// "continue"); each such session logs it once, at error level.
	AuditFailOpen bool
	// SVIDExpiryGrace is how long a session may outlive its client's SVID.
	SVIDExpiryGrace time.Duration
	// Approve waits for a person's approval of a held operation (QueueApprover), at most
	// ApprovalTimeout. Nil refuses operations that need one.
	Approve         ApproveFunc
	ApprovalTimeout time.Duration
	// Grants, if set, lets an approval granted earlier cover an operation without a new hold
	// (DeskApprover).
	Grants GrantFunc
	// Protocol names the engine's protocol ("postgres", "http") and OperationKind its operations
	// ("sql", "http") in metrics.
	Protocol, OperationKind string
	// Metrics, if set, counts sessions, operations and approvals (broker/metrics).
	Metrics *metrics.Metrics
	// Tracing, if set, gives each session a span, and each operation decided, hold and credential
	// lease a child span (broker/tracing). SpanAttributes are the protocol's semantic conventions
	// every session span carries (db.system.name = "postgresql").
	Tracing        *tracing.Tracing
	SpanAttributes []attribute.KeyValue
	// Logger is the engine's logger; each session's adds the session, the SPIFFE ID, the remote
	// address, what SPIRE attested and the credential role. Default slog.Default().
	Logger *slog.Logger
}

// DefaultApprovalTimeout bounds the wait for an approval.
const DefaultApprovalTimeout = 5 * time.Minute

// Core opens, watches and ends the sessions of one target, whatever their protocol.
type Core struct {
	cfg     Config
	revokes revocations
	metrics *metrics.Target // nil without Config.Metrics
}

// New checks cfg and returns a Core.
func New(cfg Config) (*Core, error) {
	if cfg.Authorize == nil {
		return nil, errors.New("session: Authorize is required")
	}
	if cfg.PickRole != nil && cfg.Lease == nil {
		return nil, errors.New("session: a target whose credential role is picked needs Lease")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ApprovalTimeout <= 0 {
		cfg.ApprovalTimeout = DefaultApprovalTimeout
	}
	c := &Core{cfg: cfg, metrics: cfg.Metrics.Target(cfg.Target, cfg.Protocol, cfg.OperationKind)}
	c.revokes.core = c
	return c, nil
}

// OpenRequest is an authenticated client an engine asks to open a session for, once its protocol's
// handshake and TLS are done.
type OpenRequest struct {
	// TLS is the client connection's state: its verified certificate chain names the caller.
	TLS tls.ConnectionState
	// Peer, if set, is a caller the engine identified itself, by a credential it verified (a JWT-SVID
	// against the trust bundles): it replaces the TLS certificate's identity, and its Expires bounds
	// the session as an SVID's does. Nil: the TLS client certificate names the caller.
	Peer *identity.Peer
	// PeerBy names the credential that identified Peer, for the start record ("JWT-SVID"). Without
	// Peer, the caller is identified by its "X.509-SVID".
	PeerBy string
	// Remote is the client's address.
	Remote net.Addr
	// Check, if set, is the engine's own check of what the client asked for (its startup parameters,
	// say): it runs once the session's start is recorded and before a credential is leased. Its
	// error refuses the session (ErrRefused), and is shown to the client.
	Check func() error
	// CheckRefusal names a failed Check in the session's end record ("the client's startup
	// parameters were refused"); it must quote nothing the client sent.
	CheckRefusal string
}

// Open identifies the client, asks SPIRE what it attested, decides the connect, picks the credential
// role, records the session's start and leases its credential. On error (an *Error) nothing is
// granted, what was refused is recorded, and the engine tells its client in its protocol's terms.
func (c *Core) Open(ctx context.Context, req OpenRequest) (*Session, error) {
	var peer identity.Peer
	var err error
	ctx, span := c.startSpan(ctx)
	if req.Peer != nil {
		peer = *req.Peer
		if peer.ID.IsZero() || peer.Expires.IsZero() {
			c.metrics.SessionRefused("", refusalReasons[ErrUnidentified])
			refusedSpan(span, ErrUnidentified)
			return nil, &Error{Kind: ErrUnidentified, Err: errors.New("session: the engine's peer has no SPIFFE ID or expiry")}
		}
	} else if peer, err = identity.PeerFromTLS(req.TLS); err != nil {
		c.metrics.SessionRefused("", refusalReasons[ErrUnidentified])
		refusedSpan(span, ErrUnidentified)
		return nil, &Error{Kind: ErrUnidentified, Err: err}
	}
	remote := ""
	var source netip.Addr
	if req.Remote != nil {
		remote = req.Remote.String()
		if ap, err := netip.ParseAddrPort(remote); err == nil {
			source = ap.Addr().Unmap()
		}
	}
	id := newID()
	log := c.cfg.Logger.With("session", id, "spiffe_id", peer.ID.String(), "remote", remote)
	if span.IsRecording() {
		span.SetAttributes(tracing.SessionKey.String(id), tracing.SPIFFEIDKey.String(peer.ID.String()))
	}
	s := &Session{core: c, id: id, log: log, remote: remote, span: span, metrics: c.metrics.ForSession(),
		rec: recorder{sink: c.cfg.Audit, session: id, spiffeID: peer.ID.String(), target: c.cfg.Target, perStatement: c.cfg.AuditPerStatement}}
	s.decider = Decider{Hold: s.hold, Policy: c.cfg.Policy} // Session.Decide counts what it decides
	if c.cfg.AuditFailOpen {
		var once sync.Once
		s.rec.failOpen = func(err error) {
			once.Do(func() {
				s.log.Error("audit log unavailable: statements of this session run UNRECORDED (audit on_failure = continue)", "error", err)
			})
		}
	}
	refuse := func(kind, err error, d authz.Decision) (*Session, error) {
		c.metrics.SessionRefused(peer.ID.String(), refusalReasons[kind])
		refusedSpan(span, kind)
		return nil, &Error{Kind: kind, Err: err, Peer: peer.ID, Decision: d}
	}
	if c.cfg.Ready != nil {
		if err := c.cfg.Ready(); err != nil {
			log.WarnContext(ctx, "connection refused: the broker is not ready", "error", err)
			return refuse(ErrNotReady, err, authz.Decision{})
		}
	}
	if c.cfg.Attest != nil {
		if peer.Attestation, err = c.cfg.Attest(ctx, peer.ID); err != nil {
			log.WarnContext(ctx, "connection refused: SPIRE did not confirm the caller", "error", err)
			return refuse(ErrUnattested, err, authz.Decision{})
		}
		s.log = s.log.With("selectors", peer.Attestation.Selectors, "node_attestation", peer.Attestation.NodeAttestationType)
	}
	s.connect = authz.Connect{Peer: peer, Target: c.cfg.Target, Source: source, TLS: req.TLS}
	s.decision, err = c.cfg.Authorize(ctx, s.connect)
	if err != nil {
		s.log.WarnContext(ctx, "connection denied", "reason", err)
		refusal := audit.Record{Kind: audit.KindDecision, Remote: remote, Decision: AuditDecision(s.decision, "connect", c.cfg.Target)}
		if s.decision.ID == "" { // an exact allow list refused it, not a policy
			refusal.Detail = map[string]string{"refused": "not in the target's allow list"}
		}
		s.rec.async(refusal)
		return refuse(ErrDenied, err, s.decision)
	}
	if c.cfg.PickRole != nil {
		if s.role, err = c.pickRole(ctx, s); err != nil {
			return refuse(ErrNoRole, err, authz.Decision{})
		}
		s.log = s.log.With("credential_role", s.role.Role)
	}
	by := "X.509-SVID"
	if req.Peer != nil {
		by = req.PeerBy
	}
	start := audit.Record{Kind: audit.KindSessionStart, Remote: remote,
		Detail: map[string]string{"svid_expires": peer.Expires.UTC().Format(time.RFC3339), "authenticated_by": by}}
	if s.decision.ID != "" {
		start.Decision = AuditDecision(s.decision, "connect", c.cfg.Target)
	}
	if s.role.Role != "" {
		start.Detail["credential_role"], start.Detail["credential_role_for"] = s.role.Role, strings.Join(s.role.For, ",")
	}
	if err := s.rec.sessionStart(start); err != nil {
		s.log.ErrorContext(ctx, "session refused: audit log unavailable", "error", err)
		return refuse(ErrAuditUnavailable, err, s.decision)
	}
	if s.role.Role != "" {
		s.rec.async(roleRecord(s.role, c.cfg.Target, remote))
	}
	// From here on the log holds the session's start; a session that fails to open also gets its end.
	if req.Check != nil {
		if err := req.Check(); err != nil {
			refusedSpan(span, ErrRefused) // before Abort, which would end it as aborted
			s.Abort(req.CheckRefusal)
			return refuse(ErrRefused, err, s.decision)
		}
	}
	if c.cfg.Lease != nil {
		lctx, lspan := c.cfg.Tracing.Start(ctx, spanCredential, trace.SpanKindClient)
		if s.role.Role != "" && lspan.IsRecording() {
			lspan.SetAttributes(tracing.RoleKey.String(s.role.Role))
		}
		lease, err := c.cfg.Lease(lctx, s.connect, s.role.Role, s.leaseLost)
		if err != nil {
			lspan.SetStatus(codes.Error, "no backend credential")
		}
		lspan.End()
		if err != nil {
			refusedSpan(span, ErrNoCredential)
			// The detail stays in the log; the client learns only that there is no credential.
			s.log.ErrorContext(ctx, "no backend credential", "error", err)
			s.rec.async(audit.Record{Kind: audit.KindError, Error: "no backend credential"})
			s.Abort("no backend credential")
			return refuse(ErrNoCredential, err, s.decision)
		}
		s.setLease(lease)
		acquired := LeaseRecord(lease.Lease.ID, "acquired")
		if s.role.Role != "" {
			acquired.Detail["credential_role"] = s.role.Role
		}
		s.rec.async(acquired)
	}
	s.opened()
	return s, nil
}

// AuditDecision is decision d, of action on target, as the audit log records it.
func AuditDecision(d authz.Decision, action, target string) *audit.Decision {
	ad := &audit.Decision{ID: d.ID, Action: action, Resource: fmt.Sprintf("Target::%q", target), Allow: d.Allow,
		Policies: d.Reasons, Approval: d.Obligations.Approval, Record: d.Obligations.Record, Mask: d.Obligations.Mask, PolicySet: d.PolicySet}
	if len(d.Errors) > 0 {
		ad.ErrorPolicy = d.Errors[0].PolicyID
	}
	return ad
}

// LeaseRecord records an event of a session's backend credential.
func LeaseRecord(id, event string) audit.Record {
	return audit.Record{Kind: audit.KindLease, LeaseID: id, Detail: map[string]string{"event": event}}
}

func newID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on Linux
	return fmt.Sprintf("%x", b)
}

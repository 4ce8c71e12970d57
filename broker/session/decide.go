package session

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/broker/metrics"
	"github.com/svidbroker/svidbroker/broker/tracing"
)

// Operation is one thing a client asks of the target (a statement, a request, a tool call), as its
// engine classified it. The core knows no protocol: Decide (or Part) is the engine's Cedar request,
// built from its classification.
type Operation struct {
	// Action names the operation's kind in audit records and approvals ("sql", "http").
	Action string
	// Ahead marks a decision ahead of the operation's run (a statement prepared, decided again at each
	// execution): metrics count it only when it is refused or held.
	Ahead bool
	// Kind, if set, is the operation's class in metrics (a statement's kind: "select", "ddl"), from
	// the engine's fixed set, never client text. Default Config.OperationKind.
	Kind string
	// Text is the operation as approvers see it and the audit log records it.
	Text string
	// Fingerprint is what an approval of the operation binds, besides the caller and target: a
	// statement's libpg_query fingerprint, an HTTP route and a digest of its body, an MCP tool and
	// a digest of its arguments. Empty: an approval covers the held operation alone.
	Fingerprint string
	// Key, if not nil, is a comparable fingerprint of the classification: operations with equal keys
	// get the same decision within one policy epoch (Decider.Policy), so an allowed verdict is reused.
	// Nil: never reused.
	Key any
	// Decide decides the operation with approval state ap: an error is a refusal, and is shown to
	// the client. Required unless Part is set.
	Decide func(ap authz.ApprovalState) (authz.Decision, error)
	// Part, if set, decides an operation of Parts parts (the statements of one SQL string) in place
	// of Decide: part i with approval state ap. The parts are decided in order, and the first refused
	// refuses the operation. A part that needs an approval holds the whole operation; once approved,
	// that part is decided again and the parts after it are decided with the approval granted. The
	// verdict's decision is the last part's. Zero parts are allowed, with no decision.
	Part  func(i int, ap authz.ApprovalState) (authz.Decision, error)
	Parts int
	// Approval is the approval state to decide with (an approval granted earlier); zero for none.
	Approval authz.ApprovalState
	// NoHold refuses an operation that needs an approval instead of holding it.
	NoHold bool
	// Notify and Withdrawable are HoldRequest's, for a held operation (Session.Decide's holds).
	Notify       func(request string) error
	Withdrawable func(withdraw context.CancelCauseFunc) (end func() error)
	// Prepare, if set, is the engine's own work on an allowing verdict that depends only on the
	// classification and the decision (which columns or fields to mask, say). Its result is the
	// verdict's Plan, kept and reused with the verdict; its error refuses the operation, as the
	// verdict's Err. A plan that masks some of what the operation returns says so (MaskingPlan): an
	// Allow verdict whose plan masks something is a Mask verdict.
	Prepare func(v Verdict) (plan any, err error)
	// Record, if set, is the operation's audit record, which Session.Decide writes, with the
	// decision, before it returns an allowing verdict; Durable makes it wait until the record is on
	// stable storage.
	Record  *audit.Record
	Durable bool
	// Parent, if valid, is the span the operation's decide span is a child of (an HTTP request's);
	// otherwise the session's. SpanAttributes are the operation's own, from its classification
	// (db.operation.name), which the engine builds only when tracing is on (Session.Tracing); a
	// statement's text only in its normalized form, and only with tracing's StatementText.
	Parent         trace.SpanContext
	SpanAttributes []attribute.KeyValue
}

// Outcome is what a verdict lets happen.
type Outcome uint8

const (
	// Block: the operation does not run.
	Block Outcome = iota
	// Allow: it runs as asked.
	Allow
	// Mask: it runs, and what policy hides is masked (the decision's Obligations.Mask, or the
	// engine's own per-field decisions).
	Mask
	// Held: it needed a person's approval and got it; it runs.
	Held
)

func (o Outcome) String() string {
	return [...]string{"block", "allow", "mask", "held"}[o]
}

// Verdict is the core's answer to an operation.
type Verdict struct {
	Outcome Outcome
	// Decision is the deciding decision: its policies (Reasons) say why.
	Decision authz.Decision
	// Approval is the approval state it was decided with ("required" when it needed an approval it
	// did not get: it could not be held, or the policies still required one once it was granted);
	// Request the approval request, if one was made.
	Approval authz.ApprovalState
	Request  string
	// Err says why a blocked operation was refused (ErrBlocked, ErrApproval, a *Withdrawn,
	// ErrAuditUnavailable, or Prepare's error); Cause is the reason Err gives after its kind (the
	// policy's error, the approval's outcome), for an engine that words refusals itself.
	Err, Cause error
	// Plan is what Operation.Prepare made of an allowing verdict.
	Plan any
}

// MaskingPlan is a Plan that masks what the operation returns: Session.Decide records what it masks
// in the operation's record (Statement.Masked), for a verdict decided anew or kept; and an allowing
// verdict whose plan masks something is a Mask verdict (Decider.Decide), as metrics count it
// (operations_total's outcome="masked") and its decide span names it.
type MaskingPlan interface {
	// Masked names what is masked and how ("$.ssn=partial"); empty for nothing.
	Masked() []string
}

// ErrBlocked is a verdict's error for an operation the policies refused, and ErrApproval for one that
// needed an approval it did not get.
var (
	ErrBlocked  = errors.New("operation denied")
	ErrApproval = errors.New("approval not granted")
)

// Why an operation that needs an approval did not get one without a hold (Verdict.Cause).
var (
	errNeedsApproval = errors.New("it needs a person's approval")
	errStillRequired = errors.New("the policies still require approval after it was granted")
)

// Decider decides the operations of one session: from a verdict kept for the operation's key, or by
// the operation's decision, holding it for a person's approval when a policy requires one.
// Session.Decide is a Decider's, and records what it decides. An engine whose relay keeps a
// session's state itself (the Postgres engine) may keep one of its own, and record what it decides
// in its own terms.
type Decider struct {
	// Hold holds op, which decision d requires an approval for, and waits for the outcome (Hold,
	// with the session's fields and op's). It returns the approval state to decide op again with,
	// the request's ID, and an error unless it was approved. Nil refuses what needs an approval.
	Hold func(ctx context.Context, op Operation, d authz.Decision) (authz.ApprovalState, string, error)
	// Policy, if set, is the policy set operations are decided with: a kept verdict is reused only in
	// the epoch it was decided in (authz.Epoch: one policy set, one second of its clock, so that a
	// policy on the time of day is decided again). Nil: kept verdicts hold until the session ends.
	Policy *authz.Authorizer
	// Metrics, if set, counts each operation decided by its outcome, with the time the broker took
	// (Session.Metrics gives a session's).
	Metrics *metrics.Target
	// Tracing, if set, gives each operation decided a span, a child of Operation.Parent or else of
	// Session, the session's span (Session.Tracing and Session.SpanContext give a session's).
	Tracing *tracing.Tracing
	Session trace.SpanContext

	verdicts verdictCache
}

// verdictCache keeps the verdicts of allowed operations by key, within one epoch.
type verdictCache struct {
	mu      sync.Mutex
	epoch   authz.Epoch
	entries map[verdictKey]Verdict
}

type verdictKey struct {
	key any
	ap  authz.ApprovalState
}

// maxVerdicts bounds a session's kept verdicts.
const maxVerdicts = 256

// Decide decides op through the session's Decider, and records it: a refused operation's refusal,
// with the decision that refused it, and an allowed one's op.Record. An operation that is refused gets
// a Block verdict whose Err says why, wrapping ErrBlocked (with the policy's error), ErrApproval, a
// *Withdrawn or ErrAuditUnavailable; the engine turns it into its protocol's error.
func (s *Session) Decide(ctx context.Context, op Operation) Verdict {
	start := time.Now()
	var span trace.Span
	// Counted here, once recorded (a record that fails blocks it): s.decider has no metrics of its own.
	v, epoch, kept := s.decider.kept(op)
	if !kept {
		if t := s.core.cfg.Tracing; t.On() {
			ctx, span = startDecide(ctx, t, &op, s.SpanContext(), s.core.cfg.OperationKind)
		}
		v = s.decider.decideNew(ctx, op, epoch)
	}
	if v.Outcome == Block {
		s.refusalRecord(op, v)
	} else {
		v = s.recorded(op, v)
	}
	countOperation(s.metrics, op, v, start)
	if span != nil {
		endDecide(span, v)
	}
	return v
}

// hold is a Session's Decider.Hold.
func (s *Session) hold(ctx context.Context, op Operation, d authz.Decision) (authz.ApprovalState, string, error) {
	return Hold(ctx, HoldRequest{Metrics: s.metrics, Tracing: s.core.cfg.Tracing, Session: s.id, SPIFFEID: s.connect.Peer.ID.String(), Target: s.core.cfg.Target,
		Text: op.Text, Decision: d, Action: op.Action, Approve: s.core.cfg.Approve, Timeout: s.core.cfg.ApprovalTimeout,
		Grants: s.core.cfg.Grants, Fingerprint: op.Fingerprint, Attestation: s.connect.Peer.Attestation,
		Notify: op.Notify, Withdrawable: op.Withdrawable, Record: s.rec.async, Log: s.log})
}

// Decide decides op: from a verdict kept for its key in the epoch in force, or by op's decision,
// holding it for approval when the decision requires one, then op.Prepare. A verdict is kept when op
// has a key, it was allowed without a hold (an approval is asked for every time it is needed), and
// no new epoch began while it was decided. It records nothing but a hold's approval records.
func (d *Decider) Decide(ctx context.Context, op Operation) Verdict {
	if d.Metrics == nil && !d.Tracing.On() {
		return d.decideKept(ctx, op)
	}
	start := time.Now()
	var span trace.Span
	v, epoch, kept := d.kept(op)
	if !kept {
		if d.Tracing.On() {
			ctx, span = startDecide(ctx, d.Tracing, &op, d.Session, "")
		}
		v = d.decideNew(ctx, op, epoch)
	}
	countOperation(d.Metrics, op, v, start)
	if span != nil {
		endDecide(span, v)
	}
	return v
}

// countOperation counts op's verdict v, decided since start; one decided ahead of its run only when
// it is refused or held.
func countOperation(m *metrics.Target, op Operation, v Verdict, start time.Time) {
	if m != nil && (!op.Ahead || v.Outcome == Block || v.Outcome == Held) {
		m.Operation(op.Kind, metricOutcomes[v.Outcome], time.Since(start))
	}
}

// metricOutcomes are the verdicts' outcomes as metrics count them.
var metricOutcomes = [...]int{Block: metrics.Refused, Allow: metrics.Allowed, Mask: metrics.Masked, Held: metrics.Held}

// kept returns the verdict kept for op in the epoch in force, if there is one, and that epoch. A kept
// verdict is a lookup: it gets no decide span of its own (a span per repeated statement would cost
// more than the lookup it times, and the verdict was traced when it was decided).
func (d *Decider) kept(op Operation) (Verdict, authz.Epoch, bool) {
	var epoch authz.Epoch
	if d.Policy != nil {
		epoch = d.Policy.Epoch()
	}
	if op.Key == nil {
		return Verdict{}, epoch, false
	}
	v, ok := d.verdicts.get(epoch, verdictKey{key: op.Key, ap: op.Approval})
	return v, epoch, ok
}

func (d *Decider) decideKept(ctx context.Context, op Operation) Verdict {
	v, epoch, ok := d.kept(op)
	if ok {
		return v
	}
	return d.decideNew(ctx, op, epoch)
}

// decideNew decides op, which had no verdict kept in epoch, then op.Prepare, and keeps the verdict
// when it may: op has a key, it was allowed without a hold, and no new epoch began meanwhile.
func (d *Decider) decideNew(ctx context.Context, op Operation, epoch authz.Epoch) Verdict {
	v := d.decide(ctx, &op)
	if v.Outcome != Block && op.Prepare != nil {
		plan, err := op.Prepare(v)
		if err != nil {
			return Verdict{Decision: v.Decision, Approval: v.Approval, Request: v.Request, Err: err, Cause: err}
		}
		v.Plan = plan
		if mp, ok := plan.(MaskingPlan); ok && v.Outcome == Allow && len(mp.Masked()) > 0 {
			v.Outcome = Mask
		}
	}
	if op.Key != nil && v.Outcome != Block && v.Outcome != Held && (d.Policy == nil || d.Policy.Epoch() == epoch) {
		d.verdicts.put(epoch, verdictKey{key: op.Key, ap: op.Approval}, v)
	}
	return v
}

func (d *Decider) decide(ctx context.Context, op *Operation) Verdict {
	part, parts := op.Part, op.Parts
	if part == nil {
		part, parts = func(_ int, ap authz.ApprovalState) (authz.Decision, error) { return op.Decide(ap) }, 1
	}
	ap := op.Approval
	var last authz.Decision
	request, held := "", false
	blocked := func(kind, cause error, dec authz.Decision, ap authz.ApprovalState) Verdict {
		return Verdict{Decision: dec, Approval: ap, Request: request, Err: fmt.Errorf("%w: %w", kind, cause), Cause: cause}
	}
	for i := range parts {
		dec, err := part(i, ap)
		if err != nil {
			return blocked(ErrBlocked, err, dec, ap)
		}
		if dec.Obligations.Approval == "required" && ap.State != "approved" {
			if op.NoHold || d.Hold == nil {
				return blocked(ErrApproval, errNeedsApproval, dec, authz.ApprovalState{State: "required"})
			}
			if ap, request, err = d.Hold(ctx, *op, dec); err != nil {
				if _, ok := errors.AsType[*Withdrawn](err); ok {
					return Verdict{Decision: dec, Approval: ap, Request: request, Err: err, Cause: err}
				}
				return blocked(ErrApproval, err, dec, ap)
			}
			again, err := part(i, ap)
			switch {
			case err != nil:
				return blocked(ErrBlocked, err, again, ap)
			case again.Obligations.Approval == "required":
				return blocked(ErrApproval, errStillRequired, again, authz.ApprovalState{State: "required"})
			}
			dec, held = again, true
		}
		last = dec
	}
	if held {
		return Verdict{Outcome: Held, Decision: last, Approval: ap, Request: request}
	}
	return Verdict{Outcome: outcome(last), Decision: last, Approval: ap}
}

func outcome(d authz.Decision) Outcome {
	if d.Obligations.Mask != "" {
		return Mask
	}
	return Allow
}

// recorded writes op's record for an allowing verdict; a record that cannot be written blocks it.
func (s *Session) recorded(op Operation, v Verdict) Verdict {
	if op.Record == nil || s.rec.sink == nil {
		return v
	}
	rec := *op.Record
	if v.Decision.ID != "" {
		rec.Decision = AuditDecision(v.Decision, op.Action, s.core.cfg.Target)
	}
	if mp, ok := v.Plan.(MaskingPlan); ok && rec.Statement != nil {
		if masked := mp.Masked(); len(masked) > 0 {
			st := *rec.Statement
			st.Masked = masked
			rec.Statement = &st
		}
	}
	stamped := s.rec.stamp(rec)
	err := s.rec.sink.Write(stamped, op.Durable)
	if err == nil && op.Durable {
		err = s.rec.sink.Flush()
	}
	if err != nil {
		if s.rec.failOpen != nil {
			s.rec.failOpen(err)
			return v
		}
		return Verdict{Decision: v.Decision, Approval: v.Approval, Request: v.Request, Err: fmt.Errorf("%w: %v", ErrAuditUnavailable, err), Cause: err}
	}
	return v
}

// refusalRecord records a refused operation, with the decision that refused it.
func (s *Session) refusalRecord(op Operation, v Verdict) {
	rec := audit.Record{Kind: audit.KindDecision, Decision: AuditDecision(v.Decision, op.Action, s.core.cfg.Target),
		Detail: map[string]string{"refused": v.Err.Error()}}
	if op.Record != nil {
		// The operation's record, as a refusal: it never reached the backend.
		rec = *op.Record
		rec.Kind = audit.KindDenied
		rec.Decision = AuditDecision(v.Decision, op.Action, s.core.cfg.Target)
		rec.Detail = maps.Clone(op.Record.Detail)
		if rec.Detail == nil {
			rec.Detail = map[string]string{}
		}
		rec.Detail["refused"] = v.Err.Error()
	}
	rec.Decision.Allow = false
	if v.Request != "" {
		rec.Detail["approval_request"] = v.Request
	}
	s.rec.async(rec)
}

func (c *verdictCache) get(epoch authz.Epoch, k verdictKey) (Verdict, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.epoch != epoch {
		return Verdict{}, false
	}
	v, ok := c.entries[k]
	return v, ok
}

func (c *verdictCache) put(epoch authz.Epoch, k verdictKey, v Verdict) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.epoch != epoch || c.entries == nil || len(c.entries) >= maxVerdicts {
		c.epoch, c.entries = epoch, map[verdictKey]Verdict{}
	}
	c.entries[k] = v
}

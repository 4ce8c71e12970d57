package session

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/broker/authz"
)

// Operation is one thing a client asks of the target (a statement, a request, a tool call), as its
// engine classified it. The core knows no protocol: Decide is the engine's Cedar request, built from
// its classification.
type Operation struct {
	// Action names the operation's kind in audit records and approvals ("sql", "http").
	Action string
	// Text is the operation as approvers see it and the audit log records it.
	Text string
	// Key, if not nil, is a comparable fingerprint of the classification: operations with equal keys
	// get the same decision under one policy set, so an allowed verdict is reused. Nil: never reused.
	Key any
	// Decide decides the operation with approval state ap: an error is a refusal, and is shown to
	// the client. Required.
	Decide func(ap authz.ApprovalState) (authz.Decision, error)
	// Approval is the approval state to decide with (an approval granted earlier); zero for none.
	Approval authz.ApprovalState
	// NoHold refuses an operation that needs an approval instead of holding it.
	NoHold bool
	// Notify and Withdrawable are HoldRequest's, for a held operation.
	Notify       func(request string) error
	Withdrawable func(withdraw context.CancelCauseFunc) (end func() error)
	// Record, if set, is the operation's audit record, which Decide writes, with the decision, before
	// it returns an allowing verdict; Durable makes it wait until the record is on stable storage.
	Record  *audit.Record
	Durable bool
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
	// Approval is the approval state it was decided with; Request the approval request, if one was made.
	Approval authz.ApprovalState
	Request  string
	// Err says why a blocked operation was refused (ErrBlocked, a *Withdrawn, ErrAuditUnavailable).
	Err error
}

// ErrBlocked is a verdict's error for an operation the policies refused, and ErrApproval for one that
// needed an approval it did not get.
var (
	ErrBlocked  = errors.New("operation denied")
	ErrApproval = errors.New("approval not granted")
)

// DecideConfig is how a session's operations are held for approval.
type DecideConfig struct {
	Approve ApproveFunc
	Timeout time.Duration
}

// verdictCache keeps the verdicts of allowed operations by key, under one policy set.
type verdictCache struct {
	mu      sync.Mutex
	digest  string
	entries map[verdictKey]Verdict
}

type verdictKey struct {
	key any
	ap  authz.ApprovalState
}

// maxVerdicts bounds a session's kept verdicts.
const maxVerdicts = 256

// Decide decides op: from a verdict kept for its key under the policy set in force, or by op.Decide,
// holding it for approval (Hold) when the decision requires one, and recording op.Record. An
// operation that is refused gets a Block verdict whose Err says why, wrapping ErrBlocked (with the
// policy's error), ErrApproval, a *Withdrawn or ErrAuditUnavailable; the engine turns it into its
// protocol's error.
func (s *Session) Decide(ctx context.Context, op Operation) Verdict {
	digest := ""
	if p := s.core.cfg.Policy; p != nil {
		digest = p.Engine.Digest()
	}
	vk := verdictKey{key: op.Key, ap: op.Approval}
	if op.Key != nil {
		if v, ok := s.verdicts.get(digest, vk); ok {
			return s.recorded(op, v)
		}
	}
	v := s.decide(ctx, op)
	if v.Outcome == Block {
		s.refusalRecord(op, v)
		return v
	}
	if op.Key != nil && v.Outcome != Held {
		s.verdicts.put(digest, vk, v) // an approval is asked for every time it is needed
	}
	return s.recorded(op, v)
}

func (s *Session) decide(ctx context.Context, op Operation) Verdict {
	ap := op.Approval
	d, err := op.Decide(ap)
	if err != nil {
		return Verdict{Decision: d, Approval: ap, Err: fmt.Errorf("%w: %w", ErrBlocked, err)}
	}
	if d.Obligations.Approval != "required" || ap.State == "approved" {
		return Verdict{Outcome: outcome(d), Decision: d, Approval: ap}
	}
	if op.NoHold {
		return Verdict{Decision: d, Approval: authz.ApprovalState{State: "required"}, Err: fmt.Errorf("%w: it needs a person's approval", ErrApproval)}
	}
	ap, request, err := Hold(ctx, HoldRequest{Session: s.id, SPIFFEID: s.connect.Peer.ID.String(), Target: s.core.cfg.Target,
		Text: op.Text, Decision: d, Action: op.Action, Approve: s.approve.Approve, Timeout: s.approve.Timeout,
		Notify: op.Notify, Withdrawable: op.Withdrawable, Record: s.rec.async, Log: s.log})
	if err != nil {
		if _, ok := errors.AsType[*Withdrawn](err); !ok {
			err = fmt.Errorf("%w: %w", ErrApproval, err)
		}
		return Verdict{Decision: d, Approval: ap, Request: request, Err: err}
	}
	again, err := op.Decide(ap)
	switch {
	case err != nil:
		return Verdict{Decision: again, Approval: ap, Request: request, Err: fmt.Errorf("%w: %w", ErrBlocked, err)}
	case again.Obligations.Approval == "required":
		return Verdict{Decision: again, Approval: ap, Request: request,
			Err: fmt.Errorf("%w: the policies still require approval after it was granted", ErrApproval)}
	}
	return Verdict{Outcome: Held, Decision: again, Approval: ap, Request: request}
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
		return Verdict{Decision: v.Decision, Approval: v.Approval, Request: v.Request, Err: fmt.Errorf("%w: %v", ErrAuditUnavailable, err)}
	}
	return v
}

// refusalRecord records a refused operation, with the decision that refused it.
func (s *Session) refusalRecord(op Operation, v Verdict) {
	rec := audit.Record{Kind: audit.KindDecision, Decision: AuditDecision(v.Decision, op.Action, s.core.cfg.Target),
		Detail: map[string]string{"refused": v.Err.Error()}}
	if op.Record != nil {
		rec = *op.Record
		rec.Decision = AuditDecision(v.Decision, op.Action, s.core.cfg.Target)
		rec.Detail = map[string]string{"refused": v.Err.Error()}
	}
	rec.Decision.Allow = false
	if v.Request != "" {
		rec.Detail["approval_request"] = v.Request
	}
	s.rec.async(rec)
}

func (c *verdictCache) get(digest string, k verdictKey) (Verdict, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.digest != digest {
		return Verdict{}, false
	}
	v, ok := c.entries[k]
	return v, ok
}

func (c *verdictCache) put(digest string, k verdictKey, v Verdict) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.digest != digest || c.entries == nil || len(c.entries) >= maxVerdicts {
		c.digest, c.entries = digest, map[verdictKey]Verdict{}
	}
	c.entries[k] = v
}

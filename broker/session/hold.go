package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/svidbroker/svidbroker/broker/approval"
	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/broker/identity"
	"github.com/svidbroker/svidbroker/broker/metrics"
	"github.com/svidbroker/svidbroker/broker/tracing"
)

// Approval is a request for a person's approval of one operation.
type Approval struct {
	// ID identifies the request; the engine tells its client (HoldRequest.Notify).
	ID       string
	Session  string
	SPIFFEID string
	Target   string
	// Statement is the operation's text as approvers see it: a SQL statement, an HTTP request line.
	Statement string
	// Decision is the decision that requires approval.
	Decision authz.Decision
	// Action is the operation's kind ("sql", "http", "mcp"); Fingerprint what an approval binds.
	Action      string
	Fingerprint string
	// Attestation is what SPIRE attested about the caller; nil when it was not asked.
	Attestation *identity.Attestation
}

// GrantFunc looks for an approval granted earlier whose binding covers a (its caller, target,
// fingerprint or session, within its scope and expiry), and uses it: ok reports one, grant names it
// and st is the approval state to decide the operation with. Its error refuses the operation.
type GrantFunc func(ctx context.Context, a Approval) (grant string, st authz.ApprovalState, ok bool, err error)

// ApproveFunc waits for the outcome of an approval request. It returns the approval state to decide
// the operation again with ("approved", "denied" or "expired"), or an error, which denies. ctx carries
// the approval deadline, and is cancelled when the request is withdrawn, with the reason as its cause
// (context.Cause): the function should then return at once, and take the request off its approvers'
// list. Whatever it returns then, the operation does not run.
type ApproveFunc func(ctx context.Context, a Approval) (authz.ApprovalState, error)

// QueueApprover waits on q, which approvers resolve (the admin API).
func QueueApprover(q *approval.Queue, log *slog.Logger) ApproveFunc {
	return func(ctx context.Context, a Approval) (authz.ApprovalState, error) {
		log.InfoContext(ctx, "operation held for approval", "request", a.ID, "session", a.Session,
			"spiffe_id", a.SPIFFEID, "policies", a.Decision.Reasons)
		return q.Wait(ctx, approval.Request{ID: a.ID, Session: a.Session, SPIFFEID: a.SPIFFEID,
			Target: a.Target, Statement: a.Statement, Policies: a.Decision.Reasons, Decision: a.Decision.ID})
	}
}

// ErrWithdrawnSessionEnd is why a held operation is withdrawn when its session ends.
var ErrWithdrawnSessionEnd = errors.New("its session ended")

// Withdrawn is Hold's error for an operation withdrawn before an approval could run it.
type Withdrawn struct {
	Request string
	Why     error
}

func (w *Withdrawn) Error() string {
	return fmt.Sprintf("approval request %s was withdrawn: %v", w.Request, w.Why)
}

// HoldRequest is an operation a decision holds for a person's approval.
type HoldRequest struct {
	// Session, SPIFFEID and Target say whose operation it is, to approvers and in records.
	Session, SPIFFEID, Target string
	// Text is the operation as approvers see it.
	Text string
	// Decision is the decision that requires approval; Action names its action in the audit record.
	Decision authz.Decision
	Action   string
	// Approve waits for the outcome; nil refuses the operation (no approver is configured).
	Approve ApproveFunc
	// Grants, if set, is asked first: an approval granted earlier that covers the operation lets it
	// run without a new request, recorded as used.
	Grants GrantFunc
	// Fingerprint is what an approval of the operation binds (Operation.Fingerprint); Attestation
	// what SPIRE attested about the caller (nil: not asked).
	Fingerprint string
	Attestation *identity.Attestation
	// Timeout bounds the wait.
	Timeout time.Duration
	// Notify, if set, tells the client that the operation waits, and the request's ID. Its error
	// refuses the operation without asking anyone.
	Notify func(request string) error
	// Withdrawable, if set, lets the engine withdraw the request while it waits (its client cancelled
	// the operation or went away): it gets withdraw, and returns end, which stops that and says why
	// the request was withdrawn (nil: it was not).
	Withdrawable func(withdraw context.CancelCauseFunc) (end func() error)
	// Record writes an audit record of the session without waiting; Log is the session's logger.
	Record func(audit.Record)
	Log    *slog.Logger
	// Metrics, if set, counts the hold and its outcome (Session.Metrics gives a session's).
	Metrics *metrics.Target
	// Tracing, if set, gives the hold a span, a child of the span in ctx (the decision's).
	Tracing *tracing.Tracing
}

// Hold records the request, tells the client, waits for the approval (at most Timeout, and no longer
// than ctx, the session's) and records the outcome. It returns the approval state to decide the
// operation again with, the request's ID, and an error unless it was approved: a *Withdrawn when the
// request was withdrawn, whatever the approver said.
func Hold(ctx context.Context, h HoldRequest) (authz.ApprovalState, string, error) {
	if h.Approve == nil {
		return authz.ApprovalState{State: "required"}, "", errors.New("it needs a person's approval, and no approver is configured")
	}
	req := Approval{ID: newID(), Session: h.Session, SPIFFEID: h.SPIFFEID, Target: h.Target, Statement: h.Text, Decision: h.Decision,
		Action: h.Action, Fingerprint: h.Fingerprint, Attestation: h.Attestation}
	if h.Grants != nil {
		grant, st, ok, err := h.Grants(ctx, req)
		if err != nil {
			return authz.ApprovalState{State: "failed"}, "", fmt.Errorf("the approvals store could not be asked for a grant: %v", err)
		}
		if ok {
			h.Record(audit.Record{Kind: audit.KindApproval, Detail: map[string]string{"request": grant, "state": "used",
				"approver": st.Approver, "fingerprint": h.Fingerprint}})
			h.Log.Info("operation covered by an earlier approval", "grant", grant, "approver", st.Approver)
			return st, grant, nil
		}
	}
	held := AuditDecision(h.Decision, h.Action, h.Target)
	held.Allow = false // held, not allowed: its approval field says what it waits for
	h.Record(audit.Record{Kind: audit.KindApproval, Detail: map[string]string{"request": req.ID, "state": "pending"}, Decision: held})
	if h.Notify != nil {
		if err := h.Notify(req.ID); err != nil {
			return authz.ApprovalState{}, req.ID, err
		}
	}
	h.Metrics.ApprovalHeld()
	heldAt := time.Now()
	ctx, span := h.Tracing.Start(ctx, spanHold, trace.SpanKindInternal, tracing.ApprovalKey.String(req.ID))
	defer span.End()
	wctx, withdraw := context.WithCancelCause(ctx)
	defer withdraw(nil)
	end := func() error { return nil }
	if h.Withdrawable != nil {
		end = h.Withdrawable(withdraw)
	}
	wctx, cancel := context.WithTimeout(wctx, h.Timeout)
	defer cancel()
	st, err := h.Approve(wctx, req)
	why := end()
	if why == nil && ctx.Err() != nil {
		why = ErrWithdrawnSessionEnd
	}
	if why != nil {
		// Also when an approval came just as it was withdrawn: the operation's client is gone, or it
		// cancelled the operation, so nothing runs.
		reason := why.Error()
		if errors.Is(context.Cause(ctx), ErrShutdown) {
			reason = "the broker shut down; its client is gone, and with an approver that keeps requests (oidc) the request stays pending: approved after the restart, it covers the operation sent again"
		}
		if err == nil && st.State == "approved" {
			reason += "; an approval by " + st.Approver + " came as it was withdrawn, too late to run it"
		}
		h.Log.Info("operation held for approval withdrawn", "request", req.ID, "reason", why)
		h.Record(audit.Record{Kind: audit.KindApproval, Detail: map[string]string{"request": req.ID, "state": "withdrawn", "reason": reason}})
		h.Metrics.ApprovalDone("withdrawn", time.Since(heldAt))
		span.SetAttributes(tracing.ApprovalStateKey.String("withdrawn"))
		return authz.ApprovalState{State: "withdrawn"}, req.ID, &Withdrawn{Request: req.ID, Why: why}
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded) || err == nil && st.State == "expired":
		st.State = "expired"
		err = fmt.Errorf("approval request %s timed out", req.ID)
	case err != nil:
		st.State = "failed"
		err = fmt.Errorf("approval request %s failed: %v", req.ID, err)
	case st.State == "denied":
		err = fmt.Errorf("approval request %s was denied", req.ID)
	case st.State != "approved":
		err = fmt.Errorf("approval request %s ended as %q", req.ID, st.State)
	}
	h.Record(audit.Record{Kind: audit.KindApproval, Detail: map[string]string{"request": req.ID, "state": st.State, "approver": st.Approver}})
	h.Metrics.ApprovalDone(approvalOutcome(st.State), time.Since(heldAt))
	span.SetAttributes(tracing.ApprovalStateKey.String(approvalOutcome(st.State)))
	return st, req.ID, err
}

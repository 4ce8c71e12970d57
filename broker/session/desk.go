package session

import (
	"context"
	"errors"
	"log/slog"
	"strconv"

	"github.com/svidbroker/svidbroker/broker/approval"
	"github.com/svidbroker/svidbroker/broker/authz"
)

// DeskApprover raises held operations on d, which people decide (approval.Store: the console, the
// CLI), and waits for the outcome; its GrantFunc lets an approval granted earlier cover a later
// operation its binding covers.
func DeskApprover(d *approval.Desk, log *slog.Logger) (ApproveFunc, GrantFunc) {
	approve := func(ctx context.Context, a Approval) (authz.ApprovalState, error) {
		req := DeskRequest(a)
		deadline, ok := ctx.Deadline()
		if !ok {
			return authz.ApprovalState{State: "failed"}, errors.New("a hold without a deadline")
		}
		if err := d.Raise(ctx, req, deadline.Sub(d.Now())); err != nil {
			return authz.ApprovalState{State: "failed"}, err
		}
		log.InfoContext(ctx, "operation held for approval", "request", a.ID, "session", a.Session,
			"spiffe_id", a.SPIFFEID, "policies", a.Decision.Reasons, "required", req.Required, "owner", req.Owner)
		// A wait the broker's shutdown ends leaves the request pending (approval.ErrBrokerStopping).
		wctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
		wctx, cancelT := context.WithDeadline(wctx, deadline)
		defer cancelT()
		stop := context.AfterFunc(ctx, func() {
			cause := context.Cause(ctx)
			if errors.Is(cause, ErrShutdown) {
				cause = approval.ErrBrokerStopping
			}
			cancel(cause)
		})
		defer stop()
		defer cancel(nil)
		r, err := d.Wait(wctx, a.ID)
		if err != nil {
			return authz.ApprovalState{State: r.State}, err
		}
		switch r.State {
		case approval.StateApproved, approval.StateUsed:
			return authz.ApprovalState{State: "approved", Approver: r.Approvers()}, nil
		case approval.StateDenied:
			return authz.ApprovalState{State: "denied", Approver: r.Denier()}, nil
		default:
			return authz.ApprovalState{State: r.State}, nil
		}
	}
	grants := func(ctx context.Context, a Approval) (string, authz.ApprovalState, bool, error) {
		r, ok, err := d.Use(ctx, approval.Binding{SPIFFEID: a.SPIFFEID, Target: a.Target, Session: a.Session,
			Fingerprint: a.Fingerprint, TextDigest: approval.TextDigest(a.Statement)})
		if err != nil || !ok {
			return "", authz.ApprovalState{}, false, err
		}
		return r.ID, authz.ApprovalState{State: "approved", Approver: r.Approvers()}, true, nil
	}
	return approve, grants
}

// DeskRequest is a's request as a Desk keeps it: its binding, what SPIRE attested about the caller,
// the agent's owner, and how many people must approve (the deciding policies' @approvals).
func DeskRequest(a Approval) approval.Request {
	req := approval.Request{ID: a.ID, Session: a.Session, SPIFFEID: a.SPIFFEID, Target: a.Target, Statement: a.Statement,
		Policies: a.Decision.Reasons, Decision: a.Decision.ID, Action: a.Action, Fingerprint: a.Fingerprint, Required: 1}
	if n, err := strconv.Atoi(a.Decision.Obligations.Approvals); err == nil && n > 1 {
		req.Required = n
	}
	if at := a.Attestation; at != nil {
		req.Attestation, req.Attested = append([]string(nil), at.Selectors...), true
		req.Owner = approval.OwnerOf(at.Selectors)
	}
	return req
}

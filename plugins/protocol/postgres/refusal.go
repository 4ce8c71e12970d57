package postgres

import (
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/broker/authz"
	sess "github.com/svidbroker/svidbroker/broker/session"
)

// Why a statement was refused, as its audit record says it (Detail "refused"). An approval that did
// not end in approval is "approval " and its outcome: expired, denied, failed or required, or
// "withdrawn: " and why (hold.go).
const (
	refusedForbidden   = "forbidden by policy"
	refusedDefault     = "no policy permitted it: denied by default"
	refusedPolicyError = "a policy failed to evaluate, which denies"
	refusedUnparsed    = "it does not parse"
	refusedNoPolicies  = "an admin action on a target without policies"
	refusedUnmaskable  = "its data could include masked columns, which COPY cannot mask"
	refusedProtocol    = "the protocol does not allow it"
	refusedLimit       = "a session limit"
)

// refusal is a refused statement: the error the client gets, and why, for the audit log.
type refusal struct {
	resp   *pgproto3.ErrorResponse
	reason string
	// d is the policy decision that refused the statement, or that held it for an approval it did not
	// get; its ID is empty when no policy decided the refusal.
	d authz.Decision
	// request is the approval request the statement was held for.
	request string
	// use, for a refused use of a masked column: the decision's action and resource, and the clause.
	use *refusedUse
	// decided: the session's decider refused it, and its metrics counted it.
	decided bool
}

// Error is the client's message: a refusal of a statement's plan is the error of its verdict
// (sess.Operation.Prepare).
func (r *refusal) Error() string { return r.resp.Message }

// refused is a refusal no policy decided.
func refused(resp *pgproto3.ErrorResponse, reason string) *refusal {
	return &refusal{resp: resp, reason: reason}
}

// policyRefusal is a refusal by the decision d, which denied.
func policyRefusal(resp *pgproto3.ErrorResponse, d authz.Decision) *refusal {
	r := &refusal{resp: resp, d: d, reason: refusedDefault}
	switch {
	case len(d.Errors) > 0:
		r.reason = refusedPolicyError
	case len(d.Reasons) > 0:
		r.reason = refusedForbidden
	}
	return r
}

// approvalRefusal is a refusal of a statement that d held for approval, which ended as state.
func approvalRefusal(resp *pgproto3.ErrorResponse, d authz.Decision, request, state string) *refusal {
	if state == "" || state == "approved" || state == "pending" {
		state = "failed"
	}
	return &refusal{resp: resp, d: d, reason: "approval " + state, request: request}
}

// record fills in rec, the refused statement's record: never an allowing decision, and why.
func (r *refusal) record(rec *audit.Record, target string) {
	rec.Kind = audit.KindDenied
	rec.Error = "SQLSTATE " + r.resp.Code
	rec.Detail = map[string]string{"refused": r.reason}
	if r.request != "" {
		rec.Detail["request"] = r.request
	}
	if r.d.ID != "" {
		rec.Decision = sess.AuditDecision(r.d, "sql", target)
		rec.Decision.Allow = false // the statement's outcome, also when a policy held it for approval
	}
	r.use.record(rec)
}

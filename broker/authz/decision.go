package authz

import (
	"crypto/rand"
	"encoding/hex"
	"slices"

	"github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"
)

// Request is one question to Cedar.
type Request struct {
	Principal types.EntityUID
	Action    types.EntityUID
	Resource  types.EntityUID
	Context   types.Record
	// Entities are the principal, the resource, their ancestors and anything policies may reach.
	Entities types.EntityGetter
}

// Decision is Cedar's answer, with what the broker must do about it.
type Decision struct {
	// ID identifies the decision in the audit log.
	ID string
	// Allow is true only when a permit matched, no forbid matched, and nothing errored.
	Allow bool
	// Reasons are the @ids of the deciding policies: the matching forbids when one matched, else the
	// matching permits; empty for a default deny.
	Reasons []string
	// Errors are the policies whose evaluation failed; any error makes the decision a deny.
	Errors []PolicyError
	// Obligations come from the annotations of the deciding policies.
	Obligations Obligations
	// PolicySet identifies the policy set that decided (a digest of its files).
	PolicySet string
}

// PolicyError is a policy that failed to evaluate.
type PolicyError struct {
	PolicyID string `json:"policy"`
	Message  string `json:"message"`
}

// Obligations are what the deciding policies require besides allow or deny. When several policies set
// the same obligation, the strictest wins.
type Obligations struct {
	// Approval is "required" when a person must approve before the request runs.
	Approval string `hcl:"approval,optional" json:"approval,omitempty"`
	// Approvals is how many distinct people must approve ("2"; empty: one), from @approvals.
	Approvals string `hcl:"approvals,optional" json:"approvals,omitempty"`
	// Record is "metadata" or "full": how much of the session the audit log keeps.
	Record string `hcl:"record,optional" json:"record,omitempty"`
	// Mask is the strategy for a denied column:read-unmasked: "partial", "hash", "redact" or "null".
	Mask string `hcl:"mask,optional" json:"mask,omitempty"`
}

func newDecisionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// decision turns cedar-go's result into a Decision, with errors denying.
func decision(set *policySet, d cedar.Decision, diag cedar.Diagnostic) Decision {
	out := Decision{ID: newDecisionID(), PolicySet: set.digest}
	for _, e := range diag.Errors {
		out.Errors = append(out.Errors, PolicyError{PolicyID: string(e.PolicyID), Message: e.Message})
	}
	if len(out.Errors) > 0 {
		for _, e := range out.Errors {
			out.Reasons = append(out.Reasons, e.PolicyID)
		}
		return out
	}
	out.Allow = d == cedar.Allow
	for _, r := range diag.Reasons {
		id := string(r.PolicyID)
		out.Reasons = append(out.Reasons, id)
		out.Obligations.merge(set.byID[id].Policy.Annotations())
	}
	return out
}

func (o *Obligations) merge(a cedar.Annotations) {
	o.Approval = stricter(o.Approval, string(a["approval"]), annotationValues["approval"])
	o.Approvals = stricter(o.Approvals, string(a["approvals"]), annotationValues["approvals"])
	o.Record = stricter(o.Record, string(a["record"]), annotationValues["record"])
	o.Mask = stricter(o.Mask, string(a["mask"]), annotationValues["mask"])
}

// stricter returns whichever of a and b comes later in order (values are listed weakest first).
func stricter(a, b string, order []string) string {
	if slices.Index(order, b) > slices.Index(order, a) {
		return b
	}
	return a
}

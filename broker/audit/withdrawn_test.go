package audit

import (
	"strings"
	"testing"
)

// TestAWithdrawnApprovalSaysWhy: an approval request withdrawn because its client cancelled the
// statement or went away reads as withdrawn, with the reason; the refusal of its statement names the
// request and the reason too. Neither names an approver that did not approve.
func TestAWithdrawnApprovalSaysWhy(t *testing.T) {
	approvalLine := Format(Entry{Seq: 1, Record: Record{Kind: KindApproval, Session: "a",
		Detail: map[string]string{"request": "r9", "state": "withdrawn", "reason": "the client disconnected"}}})
	if !strings.Contains(approvalLine, "request r9 withdrawn: the client disconnected") || strings.Contains(approvalLine, " by ") {
		t.Errorf("approval line %q", approvalLine)
	}
	refusalLine := Format(Entry{Seq: 2, Record: Record{Kind: KindDenied, Session: "a", Error: "SQLSTATE 57014",
		Statement: &Statement{Protocol: "simple", Text: "DROP TABLE orders"},
		Detail:    map[string]string{"refused": "approval withdrawn: the client sent a cancel request", "request": "r9"}}})
	if !strings.Contains(refusalLine, "DROP TABLE orders; refused (SQLSTATE 57014): approval withdrawn: the client sent a cancel request, request r9") {
		t.Errorf("refusal line %q", refusalLine)
	}
}

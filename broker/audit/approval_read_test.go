package audit

import (
	"strings"
	"testing"
	"time"
)

// The records of an approvals desk: each person's decision, and a grant's use, say who and how.
func TestReplayOfApprovalVotesAndGrants(t *testing.T) {
	at := time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		detail map[string]string
		has    []string
		hasNot []string
	}{
		{map[string]string{"request": "r1", "state": "vote", "vote": "approve", "approver": "ada@example.com", "issuer": "https://idp",
			"approvals": "1 of 2", "outcome": "pending", "reason": "ticket 42"},
			[]string{"request r1 approved by ada@example.com (https://idp), 1 of 2 of the approvals needed: ticket 42"}, []string{"granted"}},
		{map[string]string{"request": "r1", "state": "vote", "vote": "approve", "approver": "bob@example.com", "issuer": "https://idp",
			"approvals": "2 of 2", "outcome": "approved", "scope": "fingerprint", "until": "2026-12-07T01:30:00Z"},
			[]string{"approved by bob@example.com", "granted, scope fingerprint until 2026-12-07T01:30:00Z"}, nil},
		{map[string]string{"request": "r2", "state": "vote", "vote": "deny", "approver": "ada@example.com", "issuer": "https://idp",
			"approvals": "0 of 1", "outcome": "denied", "reason": "not now"},
			[]string{"request r2 denied by ada@example.com", ": not now"}, []string{"granted"}},
		{map[string]string{"request": "r1", "state": "used", "approver": "ada@example.com, bob@example.com"},
			[]string{"granted earlier by ada@example.com, bob@example.com covered this operation (used grant r1)"}, nil},
		{map[string]string{"request": "r3", "state": "notified", "event": "raised", "destination": "slack", "outcome": "sent"},
			[]string{"request r3 raised notification to the slack sent"}, []string{"error"}},
		{map[string]string{"request": "r3", "state": "notified", "event": "approved", "destination": "webhook", "outcome": "failed",
			"error": "503 Service Unavailable; gave up after 5 attempts"},
			[]string{"request r3 approved notification to the webhook failed: 503 Service Unavailable; gave up after 5 attempts"}, nil},
	} {
		line := Format(Entry{Record: Record{Time: at, Kind: KindApproval, Session: "s", Detail: c.detail}})
		for _, s := range c.has {
			if !strings.Contains(line, s) {
				t.Errorf("%q does not say %q", line, s)
			}
		}
		for _, s := range c.hasNot {
			if strings.Contains(line, s) {
				t.Errorf("%q says %q", line, s)
			}
		}
	}
}

package postgres

import (
	"context"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/svidbroker/svidbroker/broker/authz"
)

// BenchmarkStatementDecide measures the client side's work per simple-protocol statement under
// Cedar policies, without sockets: classification (a cache hit for literal variants), the decision
// (a kept verdict after the first) and forwarding. "held" decides a statement a policy holds for
// approval, granted at once: decided, held and decided again every time.
func BenchmarkStatementDecide(b *testing.B) {
	run := func(b *testing.B, sql string, held bool) {
		s, _, _ := newVerdictSession(b)
		if held {
			s.insp.approve = func(_ context.Context, _ Approval) (authz.ApprovalState, error) {
				return authz.ApprovalState{State: "approved", Approver: "alice"}, nil
			}
		}
		i := 0
		for b.Loop() {
			i++
			if err := s.onQuery(&pgproto3.Query{String: sql + strconv.Itoa(i)}); err != nil {
				b.Fatal(err)
			}
			if got := snapshotQueue(&s.queue); len(got) != 1 || got[0] != itQuery {
				b.Fatalf("queue %v, want the statement forwarded", got)
			}
			s.queue.pop()
		}
	}
	b.Run("allowed", func(b *testing.B) { run(b, "SELECT abalance FROM pgbench_accounts WHERE aid = ", false) })
	b.Run("held", func(b *testing.B) { run(b, "UPDATE pgbench_accounts SET abalance = 1 WHERE aid = ", true) })
}

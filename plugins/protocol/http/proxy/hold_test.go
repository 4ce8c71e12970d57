package proxy

import (
	"context"
	"testing"
	"time"

	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/broker/session"
)

// approver hands held requests to the test and waits for its answer or the request's end.
type approver struct {
	held   chan session.Approval
	answer chan authz.ApprovalState
	ended  chan error
}

func newApprover() *approver {
	return &approver{held: make(chan session.Approval, 4), answer: make(chan authz.ApprovalState, 4), ended: make(chan error, 4)}
}

func (a *approver) approve(ctx context.Context, req session.Approval) (authz.ApprovalState, error) {
	a.held <- req
	select {
	case st := <-a.answer:
		return st, nil
	case <-ctx.Done():
		a.ended <- context.Cause(ctx)
		return authz.ApprovalState{}, ctx.Err()
	}
}

func TestHeldRequestRunsOnlyOnceApproved(t *testing.T) {
	ap := newApprover()
	r := newRig(t, rigOptions{routes: customerRoutes, config: func(c *Config) { c.Approve = ap.approve }})
	r.policy.approve = func(req Request) bool { return req.Method == "DELETE" }
	done := make(chan int, 1)
	go func() {
		status, _, _ := get(t, r.client(t, agentID), newReq(t, "DELETE", r.url("/v1/orders/9"), ""))
		done <- status
	}()
	held := <-ap.held
	if held.Statement != "DELETE /v1/orders/9" || len(r.up.requests()) != 0 {
		t.Fatalf("held %+v; %d forwarded while held", held, len(r.up.requests()))
	}
	ap.answer <- authz.ApprovalState{State: "approved", Approver: "alice"}
	if status := <-done; status != 200 || len(r.up.requests()) != 1 {
		t.Fatalf("after approval: %d, %d forwarded", status, len(r.up.requests()))
	}
	// Denied: 403, nothing forwarded.
	go func() {
		status, _, _ := get(t, r.client(t, agentID), newReq(t, "DELETE", r.url("/v1/orders/10"), ""))
		done <- status
	}()
	<-ap.held
	ap.answer <- authz.ApprovalState{State: "denied", Approver: "alice"}
	if status := <-done; status != 403 || len(r.up.requests()) != 1 {
		t.Fatalf("after denial: %d, %d forwarded", status, len(r.up.requests()))
	}
}

func TestHeldRequestIsWithdrawnWhenTheClientLeaves(t *testing.T) {
	ap := newApprover()
	r := newRig(t, rigOptions{routes: customerRoutes, config: func(c *Config) { c.Approve = ap.approve }})
	r.policy.approve = func(req Request) bool { return true }
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		req := newReq(t, "DELETE", r.url("/v1/orders/9"), "").WithContext(ctx)
		c := r.client(t, agentID)
		if resp, err := c.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	<-ap.held
	cancel() // the client closes its connection
	select {
	case why := <-ap.ended:
		if why != errClientLeft {
			t.Fatalf("withdrawn because %v", why)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the held request was not withdrawn when its client left")
	}
	// The withdrawal is recorded, and nothing was forwarded, even if an approval comes now.
	ap.answer <- authz.ApprovalState{State: "approved"}
	deadline := time.Now().Add(5 * time.Second)
	for {
		withdrawn := false
		for _, rec := range r.sink.all() {
			withdrawn = withdrawn || rec.Kind == audit.KindApproval && rec.Detail["state"] == "withdrawn"
		}
		if withdrawn {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no withdrawal recorded")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(r.up.requests()) != 0 {
		t.Fatal("a withdrawn request was forwarded")
	}
}

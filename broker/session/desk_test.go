package session

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/svidbroker/svidbroker/broker/approval"
	"github.com/svidbroker/svidbroker/broker/approval/oidc"
	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/broker/authz"
)

func openDeskTest(t *testing.T, snk *sink) (*Session, *approval.Desk) {
	t.Helper()
	j, err := approval.OpenJournal(filepath.Join(t.TempDir(), "approvals.journal"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	desk, err := approval.NewDesk(approval.DeskConfig{Backend: j, Record: func(r audit.Record) error { return snk.Write(r, true) },
		Authorize: func(p oidc.Person, _ approval.Request) error {
			if !slices.Contains(p.Groups, "dba") {
				return errors.New("approve denied: no policy permits it")
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	approve, grants := DeskApprover(desk, slog.New(slog.DiscardHandler))
	core, err := New(Config{Target: "api", Audit: snk, Logger: slog.New(slog.DiscardHandler), Approve: approve, Grants: grants,
		ApprovalTimeout: time.Minute,
		Authorize:       func(context.Context, authz.Connect) (authz.Decision, error) { return authz.Decision{}, nil }})
	if err != nil {
		t.Fatal(err)
	}
	s, err := core.Open(t.Context(), OpenRequest{TLS: peerTLS(t, "spiffe://example.org/agent/a", time.Now().Add(time.Hour)), Remote: remote})
	if err != nil {
		t.Fatal(err)
	}
	return s, desk
}

// approveNext approves the next request raised on desk, as ada, with scope.
func approveNext(t *testing.T, desk *approval.Desk, scope approval.Scope) <-chan error {
	done := make(chan error, 1)
	ada := oidc.Person{Issuer: "https://idp.test", Subject: "ada", Email: "approver@example.com", Groups: []string{"dba"}}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for ctx.Err() == nil {
			p, err := desk.Pending(ctx)
			if err != nil {
				done <- err
				return
			}
			if len(p) > 0 {
				_, err := desk.Decide(ctx, p[0].ID, ada, true, "ok", scope)
				done <- err
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		done <- ctx.Err()
	}()
	return done
}

func approvalStates(snk *sink) []string {
	snk.mu.Lock()
	defer snk.mu.Unlock()
	var out []string
	for _, r := range snk.recs {
		if r.Kind == audit.KindApproval {
			out = append(out, r.Detail["state"])
		}
	}
	return out
}

// A fingerprint grant lets a later operation of the same fingerprint run without a new hold,
// recorded as used; an operation of another fingerprint is held again.
func TestDeskGrantCoversLaterOperations(t *testing.T) {
	snk := &sink{}
	s, desk := openDeskTest(t, snk)
	op := func(text, fp string) Operation {
		var calls int
		return Operation{Action: "http", Text: text, Fingerprint: fp, Decide: decider("hold", &calls),
			Record: &audit.Record{Kind: audit.KindStatement}}
	}
	done := approveNext(t, desk, approval.Scope{Kind: "fingerprint", For: 10 * time.Minute})
	if v := s.Decide(t.Context(), op("POST /v1/refunds", "http:POST /v1/refunds sha256:aa")); v.Outcome != Held {
		t.Fatalf("held operation: %v (%v)", v.Outcome, v.Err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	v := s.Decide(t.Context(), op("POST /v1/refunds", "http:POST /v1/refunds sha256:aa"))
	if v.Outcome != Held || v.Approval.Approver != "approver@example.com" {
		t.Fatalf("covered operation: %v (%v) %+v", v.Outcome, v.Err, v.Approval)
	}
	if got := approvalStates(snk); !slices.Equal(got, []string{"pending", "vote", "approved", "used"}) {
		t.Fatalf("approval records %q", got)
	}
	// Another argument digest is not covered: it is held again, and denied here.
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		for ctx.Err() == nil {
			if p, _ := desk.Pending(ctx); len(p) > 0 {
				ada := oidc.Person{Issuer: "https://idp.test", Subject: "ada", Email: "approver@example.com", Groups: []string{"dba"}}
				_, _ = desk.Decide(ctx, p[0].ID, ada, false, "not this one", approval.Scope{})
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	defer cancel()
	if v := s.Decide(t.Context(), op("POST /v1/refunds", "http:POST /v1/refunds sha256:bb")); v.Outcome != Block || !errors.Is(v.Err, ErrApproval) {
		t.Fatalf("another digest: %v (%v)", v.Outcome, v.Err)
	}
}

// A once approval runs the held operation, and the same operation again is held again.
func TestDeskOnceApprovalRunsOnce(t *testing.T) {
	snk := &sink{}
	s, desk := openDeskTest(t, snk)
	var calls int
	op := Operation{Action: "sql", Text: "ALTER TABLE t ADD c int", Fingerprint: "sql:1", Decide: decider("hold", &calls),
		Record: &audit.Record{Kind: audit.KindStatement}}
	done := approveNext(t, desk, approval.Scope{Kind: "once"})
	if v := s.Decide(t.Context(), op); v.Outcome != Held {
		t.Fatalf("held: %v (%v)", v.Outcome, v.Err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	grant, _, ok, err := s.core.cfg.Grants(ctx, Approval{SPIFFEID: "spiffe://example.org/agent/a", Target: "api", Session: s.id,
		Fingerprint: "sql:1", Statement: "ALTER TABLE t ADD c int"})
	if ok || err != nil {
		t.Fatalf("a once approval covered a second run (grant %s, %v)", grant, err)
	}
	if got := approvalStates(snk); !slices.Equal(got, []string{"pending", "vote", "approved"}) {
		t.Fatalf("approval records %q", got)
	}
}

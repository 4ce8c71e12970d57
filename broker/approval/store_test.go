package approval

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/svidbroker/svidbroker/broker/approval/oidc"
	"github.com/svidbroker/svidbroker/broker/audit"
)

// people of the tests: the approving group is "dba".
var (
	ada   = oidc.Person{Issuer: "https://idp.test", Subject: "ada", Email: "approver@example.com", Groups: []string{"dba"}}
	bob   = oidc.Person{Issuer: "https://idp.test", Subject: "bob", Email: "bob@example.com", Groups: []string{"dba"}}
	alice = oidc.Person{Issuer: "https://idp.test", Subject: "alice", Email: "alice@example.com", Groups: []string{"engineering"}}
	owner = oidc.Person{Issuer: "https://idp.test", Subject: "owner", Email: "owner@example.com", Groups: []string{"dba"}}
)

// dbaOnly stands for Cedar's approve: only the dba group approves.
func dbaOnly(p oidc.Person, _ Request) error {
	if !slices.Contains(p.Groups, "dba") {
		return errors.New("approve denied: no policy permits it")
	}
	return nil
}

type recorder struct {
	mu   sync.Mutex
	recs []audit.Record
	fail error
}

func (r *recorder) write(rec audit.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return r.fail
	}
	r.recs = append(r.recs, rec)
	return nil
}

func (r *recorder) states() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, rec := range r.recs {
		s := rec.Detail["state"]
		if v := rec.Detail["vote"]; v != "" {
			s += ":" + v + ":" + rec.Detail["approver"]
		}
		out = append(out, s)
	}
	return out
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newDesk(t *testing.T, path string, rec *recorder, clk *clock) (*Desk, *Journal) {
	t.Helper()
	j, err := OpenJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	d, err := NewDesk(DeskConfig{Backend: j, Authorize: dbaOnly, Record: rec.write, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	return d, j
}

func held(id, fp string) Request {
	return Request{ID: id, Session: "s1", SPIFFEID: "spiffe://example.org/agent/migrator", Target: "shop",
		Statement: "ALTER TABLE orders ADD COLUMN note text", Action: "sql", Fingerprint: fp,
		Attestation: []string{"unix:uid:1000", "agent:owner:owner@example.com"}, Attested: true, Owner: "owner@example.com"}
}

func binding(fp string) Binding {
	return Binding{SPIFFEID: "spiffe://example.org/agent/migrator", Target: "shop", Session: "s1", Fingerprint: fp,
		TextDigest: TextDigest("ALTER TABLE orders ADD COLUMN note text")}
}

func TestDeskOnceApprovalIsSingleUse(t *testing.T) {
	rec, clk := &recorder{}, &clock{t: time.Unix(1_800_000_000, 0)}
	d, _ := newDesk(t, filepath.Join(t.TempDir(), "approvals.journal"), rec, clk)
	ctx := context.Background()
	if err := d.Raise(ctx, held("r1", "fp-a"), time.Minute); err != nil {
		t.Fatal(err)
	}
	type result struct {
		r   Request
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := d.Wait(ctx, "r1")
		done <- result{r, err}
	}()
	p, err := d.Pending(ctx)
	if err != nil || len(p) != 1 || p[0].ID != "r1" || p[0].Owner != "owner@example.com" || p[0].Required != 1 {
		t.Fatalf("pending: %+v, %v", p, err)
	}
	r, err := d.Decide(ctx, "r1", ada, true, "migration ticket 42", Scope{Kind: "once"})
	if err != nil || r.State != StateApproved {
		t.Fatalf("decide: %+v, %v", r, err)
	}
	res := <-done
	if res.err != nil || res.r.State != StateApproved || res.r.Approvers() != "approver@example.com" {
		t.Fatalf("wait: %+v, %v", res.r, res.err)
	}
	// The held statement used it: the same statement again needs a new approval.
	if got, _ := d.Get(ctx, "r1"); got.State != StateUsed {
		t.Fatalf("after the held statement ran, state %q, want used", got.State)
	}
	if _, ok, err := d.Use(ctx, binding("fp-a")); ok || err != nil {
		t.Fatalf("a second use of a once approval was covered (%v)", err)
	}
	// Deciding it again is refused.
	if _, err := d.Decide(ctx, "r1", bob, true, "", Scope{Kind: "once"}); !errors.Is(err, ErrRefused) {
		t.Fatalf("deciding a used request: %v", err)
	}
	if got := rec.states(); !slices.Equal(got, []string{"vote:approve:approver@example.com"}) {
		t.Fatalf("audit records %q", got)
	}
	if rec.recs[0].Detail["reason"] != "migration ticket 42" || rec.recs[0].Detail["issuer"] != "https://idp.test" ||
		rec.recs[0].Detail["scope"] != "once" || rec.recs[0].Session != "s1" {
		t.Fatalf("vote record %+v", rec.recs[0])
	}
}

func TestDeskSeparationOfDuties(t *testing.T) {
	rec, clk := &recorder{}, &clock{t: time.Unix(1_800_000_000, 0)}
	d, _ := newDesk(t, filepath.Join(t.TempDir(), "approvals.journal"), rec, clk)
	ctx := context.Background()
	r := held("r2", "fp")
	r.Required = 2
	if err := d.Raise(ctx, r, time.Minute); err != nil {
		t.Fatal(err)
	}
	// The agent's owner is refused though in the approving group, whatever the address's case.
	upper := owner
	upper.Email = "Owner@Example.com"
	if _, err := d.Decide(ctx, "r2", upper, true, "", Scope{Kind: "once"}); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "owns the agent") {
		t.Fatalf("owner: %v", err)
	}
	// Cedar refuses a person outside the approving group.
	if _, err := d.Decide(ctx, "r2", alice, true, "", Scope{Kind: "once"}); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "no policy permits") {
		t.Fatalf("outside the group: %v", err)
	}
	got, err := d.Decide(ctx, "r2", ada, true, "", Scope{Kind: "once"})
	if err != nil || got.State != StatePending || len(got.Approvals) != 1 {
		t.Fatalf("first of two: %+v, %v", got, err)
	}
	// Nobody approves twice: the same person, or the same subject under another address.
	again := ada
	again.Email = "ada.other@example.com"
	for _, p := range []oidc.Person{ada, again} {
		if _, err := d.Decide(ctx, "r2", p, true, "", Scope{Kind: "once"}); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "already decided") {
			t.Fatalf("second approval by %s: %v", p.Email, err)
		}
	}
	if _, ok, _ := d.Use(ctx, binding("fp")); ok {
		t.Fatal("one approval of two covered the statement")
	}
	got, err = d.Decide(ctx, "r2", bob, true, "", Scope{Kind: "once"})
	if err != nil || got.State != StateApproved || got.Approvers() != "approver@example.com, bob@example.com" {
		t.Fatalf("second of two: %+v, %v", got, err)
	}
	if s := rec.states(); !slices.Equal(s, []string{"vote:approve:approver@example.com", "vote:approve:bob@example.com"}) {
		t.Fatalf("audit %q", s)
	}
	if rec.recs[0].Detail["approvals"] != "1 of 2" || rec.recs[1].Detail["approvals"] != "2 of 2" {
		t.Fatalf("audit approvals %q, %q", rec.recs[0].Detail["approvals"], rec.recs[1].Detail["approvals"])
	}
}

func TestDeskDenialResolvesAtOnce(t *testing.T) {
	rec, clk := &recorder{}, &clock{t: time.Unix(1_800_000_000, 0)}
	d, _ := newDesk(t, filepath.Join(t.TempDir(), "approvals.journal"), rec, clk)
	ctx := context.Background()
	r := held("r3", "fp")
	r.Required = 2
	if err := d.Raise(ctx, r, time.Minute); err != nil {
		t.Fatal(err)
	}
	got, err := d.Decide(ctx, "r3", ada, false, "not during the sale", Scope{})
	if err != nil || got.State != StateDenied || got.Denier() != "approver@example.com" {
		t.Fatalf("deny: %+v, %v", got, err)
	}
	if w, err := d.Wait(ctx, "r3"); err != nil || w.State != StateDenied {
		t.Fatalf("wait after a denial: %+v, %v", w, err)
	}
}

func TestDeskFingerprintScope(t *testing.T) {
	rec, clk := &recorder{}, &clock{t: time.Unix(1_800_000_000, 0)}
	d, _ := newDesk(t, filepath.Join(t.TempDir(), "approvals.journal"), rec, clk)
	ctx := context.Background()
	if err := d.Raise(ctx, held("r4", "refund sha256:aaa"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Decide(ctx, "r4", ada, true, "", Scope{Kind: "fingerprint", For: 10 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if w, err := d.Wait(wctx, "r4"); err != nil || w.State != StateApproved {
		t.Fatalf("wait: %+v, %v", w, err)
	}
	// The same fingerprint is covered, repeatedly, within the time.
	for range 2 {
		if g, ok, err := d.Use(ctx, binding("refund sha256:aaa")); !ok || err != nil || g.ID != "r4" {
			t.Fatalf("same fingerprint not covered: %v", err)
		}
	}
	// Another argument digest, another caller, another target: not covered.
	if _, ok, _ := d.Use(ctx, binding("refund sha256:bbb")); ok {
		t.Fatal("an approval for one argument digest covered another")
	}
	b := binding("refund sha256:aaa")
	b.SPIFFEID = "spiffe://example.org/agent/other"
	if _, ok, _ := d.Use(ctx, b); ok {
		t.Fatal("another caller was covered")
	}
	b = binding("refund sha256:aaa")
	b.Target = "billing"
	if _, ok, _ := d.Use(ctx, b); ok {
		t.Fatal("another target was covered")
	}
	// Past its end, no more, and a sweep records it expired.
	clk.add(10 * time.Minute)
	if _, ok, _ := d.Use(ctx, binding("refund sha256:aaa")); ok {
		t.Fatal("an expired grant covered")
	}
	if err := d.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if g, _ := d.Get(ctx, "r4"); g.State != StateExpired || g.Uses != 2 {
		t.Fatalf("after the sweep: %+v", g)
	}
	if s := rec.states(); s[len(s)-1] != "expired" || !strings.Contains(rec.recs[len(rec.recs)-1].Detail["reason"], "covering 2") {
		t.Fatalf("audit %q", s)
	}
}

func TestDeskSessionScope(t *testing.T) {
	rec, clk := &recorder{}, &clock{t: time.Unix(1_800_000_000, 0)}
	d, _ := newDesk(t, filepath.Join(t.TempDir(), "approvals.journal"), rec, clk)
	ctx := context.Background()
	if err := d.Raise(ctx, held("r5", "fp-1"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Decide(ctx, "r5", ada, true, "", Scope{Kind: "session", For: 5 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Wait(ctx, "r5"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := d.Use(ctx, binding("another statement")); !ok {
		t.Fatal("a session grant did not cover another statement of its session")
	}
	b := binding("fp-1")
	b.Session = "s2"
	if _, ok, _ := d.Use(ctx, b); ok {
		t.Fatal("a session grant covered another session")
	}
	if _, err := d.Decide(ctx, "r5", bob, true, "", Scope{Kind: "session", For: time.Minute}); !errors.Is(err, ErrRefused) {
		t.Fatalf("decide on a granted request: %v", err)
	}
}

func TestDeskScopesValidated(t *testing.T) {
	rec, clk := &recorder{}, &clock{t: time.Unix(1_800_000_000, 0)}
	d, _ := newDesk(t, filepath.Join(t.TempDir(), "approvals.journal"), rec, clk)
	ctx := context.Background()
	if err := d.Raise(ctx, held("r6", "fp"), time.Minute); err != nil {
		t.Fatal(err)
	}
	for _, s := range []Scope{{Kind: "forever"}, {Kind: "session"}, {Kind: "fingerprint", For: 48 * time.Hour}, {Kind: "once", For: -time.Second}} {
		if _, err := d.Decide(ctx, "r6", ada, true, "", s); err == nil || !strings.Contains(err.Error(), "scope") {
			t.Fatalf("scope %+v accepted: %v", s, err)
		}
	}
	if _, err := d.Decide(ctx, "r6", ada, true, strings.Repeat("x", maxReasonBytes+1), Scope{Kind: "once"}); !errors.Is(err, ErrRefused) {
		t.Fatalf("an oversized reason: %v", err)
	}
	if _, err := d.Decide(ctx, "r6", oidc.Person{Email: "x@example.com"}, true, "", Scope{Kind: "once"}); !errors.Is(err, ErrRefused) {
		t.Fatalf("a person without issuer and subject: %v", err)
	}
	// The control: a valid scope after those refusals.
	if r, err := d.Decide(ctx, "r6", ada, true, "", Scope{Kind: "fingerprint", For: time.Hour}); err != nil || r.State != StateApproved {
		t.Fatalf("valid scope: %+v, %v", r, err)
	}
}

// An audit store that fails refuses the decision: nothing is approved that is not recorded.
func TestDeskAuditFailureRefusesDecision(t *testing.T) {
	rec, clk := &recorder{fail: errors.New("audit store unavailable")}, &clock{t: time.Unix(1_800_000_000, 0)}
	d, _ := newDesk(t, filepath.Join(t.TempDir(), "approvals.journal"), rec, clk)
	ctx := context.Background()
	if err := d.Raise(ctx, held("r7", "fp"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Decide(ctx, "r7", ada, true, "", Scope{Kind: "once"}); err == nil || !strings.Contains(err.Error(), "audit store unavailable") {
		t.Fatalf("decide with audit down: %v", err)
	}
	if r, _ := d.Get(ctx, "r7"); r.State != StatePending || len(r.Approvals) != 0 {
		t.Fatalf("a decision was kept though its record failed: %+v", r)
	}
}

func TestDeskWaitExpiresAndWithdraws(t *testing.T) {
	rec, clk := &recorder{}, &clock{t: time.Unix(1_800_000_000, 0)}
	d, _ := newDesk(t, filepath.Join(t.TempDir(), "approvals.journal"), rec, clk)
	ctx := context.Background()
	if err := d.Raise(ctx, held("r8", "fp"), time.Minute); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithDeadline(ctx, time.Now()) // already past
	defer cancel()
	if r, err := d.Wait(wctx, "r8"); !errors.Is(err, context.DeadlineExceeded) || r.State != StateExpired {
		t.Fatalf("expired wait: %+v, %v", r, err)
	}
	if err := d.Raise(ctx, held("r9", "fp"), time.Minute); err != nil {
		t.Fatal(err)
	}
	cctx, stop := context.WithCancelCause(ctx)
	stop(errors.New("the client sent a cancel request"))
	if r, err := d.Wait(cctx, "r9"); err == nil || r.State != StateWithdrawn || r.Ended != "the client sent a cancel request" {
		t.Fatalf("withdrawn wait: %+v, %v", r, err)
	}
	if _, err := d.Decide(ctx, "r9", ada, true, "", Scope{Kind: "once"}); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "withdrawn") {
		t.Fatalf("deciding a withdrawn request: %v", err)
	}
}

// A broker restart with a request pending: it is still there after, approved then, and its
// once-grant covers the statement when the agent sends it again, once.
func TestDeskSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "approvals.journal")
	rec, clk := &recorder{}, &clock{t: time.Unix(1_800_000_000, 0)}
	d, j := newDesk(t, path, rec, clk)
	ctx := context.Background()
	if err := d.Raise(ctx, held("r10", "fp-ddl"), 5*time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := d.Raise(ctx, held("r11", "fp-other"), 5*time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Decide(ctx, "r11", ada, false, "no", Scope{}); err != nil {
		t.Fatal(err)
	}
	j.Close() // the broker dies with r10's statement held

	d2, _ := newDesk(t, path, rec, clk)
	p, err := d2.Pending(ctx)
	if err != nil || len(p) != 1 || p[0].ID != "r10" || p[0].Waiting || p[0].Fingerprint != "fp-ddl" {
		t.Fatalf("pending after the restart: %+v, %v", p, err)
	}
	if r, _ := d2.Get(ctx, "r11"); r.State != StateDenied {
		t.Fatalf("a denial did not survive the restart: %+v", r)
	}
	if _, err := d2.Decide(ctx, "r10", ada, true, "", Scope{Kind: "once"}); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := d2.Use(ctx, binding("fp-other")); ok {
		t.Fatal("another statement was covered")
	}
	// The same fingerprint with other constants: a once approval is for the exact text.
	b := binding("fp-ddl")
	b.TextDigest = TextDigest("ALTER TABLE orders ADD COLUMN other text")
	if _, ok, _ := d2.Use(ctx, b); ok {
		t.Fatal("a once approval covered another text of the same fingerprint")
	}
	if g, ok, err := d2.Use(ctx, binding("fp-ddl")); !ok || err != nil || g.ID != "r10" {
		t.Fatalf("the retried statement was not covered: %v", err)
	}
	if _, ok, _ := d2.Use(ctx, binding("fp-ddl")); ok {
		t.Fatal("a once approval covered twice")
	}
	// And the use survives a restart too.
	d3, _ := newDesk(t, path, rec, clk)
	if _, ok, _ := d3.Use(ctx, binding("fp-ddl")); ok {
		t.Fatal("a used once approval covered again after a restart")
	}
}

// A once-approval whose held operation still waits is that operation's: another operation with the
// same fingerprint does not take it.
func TestDeskOnceGrantBelongsToItsWaiter(t *testing.T) {
	rec, clk := &recorder{}, &clock{t: time.Unix(1_800_000_000, 0)}
	d, _ := newDesk(t, filepath.Join(t.TempDir(), "approvals.journal"), rec, clk)
	ctx := context.Background()
	if err := d.Raise(ctx, held("r12", "fp"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Decide(ctx, "r12", ada, true, "", Scope{Kind: "once"}); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := d.Use(ctx, binding("fp")); ok {
		t.Fatal("another operation took the waiting operation's once approval")
	}
	if r, err := d.Wait(ctx, "r12"); err != nil || r.State != StateApproved {
		t.Fatalf("the waiter: %+v, %v", r, err)
	}
}

func TestJournalTornLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "approvals.journal")
	rec, clk := &recorder{}, &clock{t: time.Unix(1_800_000_000, 0)}
	d, j := newDesk(t, path, rec, clk)
	if err := d.Raise(context.Background(), held("r13", "fp"), time.Minute); err != nil {
		t.Fatal(err)
	}
	j.f.Write([]byte(`{"id":"r14","state":"pend`))
	j.Close()
	d2, _ := newDesk(t, path, rec, clk)
	if _, err := d2.Get(context.Background(), "r13"); err != nil {
		t.Fatal(err)
	}
	if _, err := d2.Get(context.Background(), "r14"); !errors.Is(err, ErrUnknown) {
		t.Fatalf("a torn line read: %v", err)
	}
}

func TestOwnerOf(t *testing.T) {
	for _, c := range []struct {
		sel  []string
		want string
	}{
		{nil, ""},
		{[]string{"unix:uid:1", "agent:owner:a@example.com"}, "a@example.com"},
		{[]string{"agent:owner:b@example.com", "agent:owner:a@example.com", "agent:owner:b@example.com"}, "a@example.com,b@example.com"},
		{[]string{"agent:owner:"}, ""},
	} {
		if got := OwnerOf(c.sel); got != c.want {
			t.Errorf("OwnerOf(%q) = %q, want %q", c.sel, got, c.want)
		}
	}
}

// A wait the broker's shutdown ends leaves the request pending, to be approved after the restart.
func TestDeskShutdownKeepsRequestPending(t *testing.T) {
	rec, clk := &recorder{}, &clock{t: time.Unix(1_800_000_000, 0)}
	d, _ := newDesk(t, filepath.Join(t.TempDir(), "approvals.journal"), rec, clk)
	ctx := context.Background()
	if err := d.Raise(ctx, held("r20", "fp"), time.Minute); err != nil {
		t.Fatal(err)
	}
	cctx, stop := context.WithCancelCause(ctx)
	stop(ErrBrokerStopping)
	if r, err := d.Wait(cctx, "r20"); !errors.Is(err, ErrBrokerStopping) || r.State != StatePending || r.Waiting {
		t.Fatalf("wait ended by shutdown: %+v, %v", r, err)
	}
	if p, _ := d.Pending(ctx); len(p) != 1 {
		t.Fatalf("pending after shutdown: %+v", p)
	}
}

// The journal is compacted as it grows, and what it keeps survives that and a restart.
func TestJournalCompactsAsItGrows(t *testing.T) {
	path := filepath.Join(t.TempDir(), "approvals.journal")
	rec, clk := &recorder{}, &clock{t: time.Unix(1_800_000_000, 0)}
	d, j := newDesk(t, path, rec, clk)
	ctx := context.Background()
	if err := d.Raise(ctx, held("keep", "fp"), time.Hour); err != nil {
		t.Fatal(err)
	}
	for i := range compactAfter + 10 {
		id := fmt.Sprintf("w%d", i)
		if err := d.Raise(ctx, held(id, "fp"), time.Minute); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Decide(ctx, id, ada, false, "", Scope{}); err != nil {
			t.Fatal(err)
		}
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if lines := st.Size() / 200; lines > 3*compactAfter { // a line is several hundred bytes
		t.Fatalf("the journal was not compacted: %d bytes", st.Size())
	}
	j.Close()
	d2, _ := newDesk(t, path, rec, clk)
	if r, err := d2.Get(ctx, "keep"); err != nil || r.State != StatePending {
		t.Fatalf("the pending request after compactions and a restart: %+v, %v", r, err)
	}
}

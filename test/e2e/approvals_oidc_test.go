package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/svidbroker/svidbroker/broker/approval"
	approveroidc "github.com/svidbroker/svidbroker/broker/approval/oidc"
	"github.com/svidbroker/svidbroker/broker/audit"
	oidcprovider "github.com/svidbroker/svidbroker/test/oidc"
	"github.com/svidbroker/svidbroker/test/stack"
)

// startOIDC runs the stack's OpenID provider for one test.
func startOIDC(t *testing.T, s *stack.Stack) *stack.OIDC {
	t.Helper()
	o, err := s.StartOIDC(t.Context(), stack.OIDCOptions{Name: fmt.Sprintf("oidc-%d", time.Now().UnixNano()), DevicePollInterval: "1s"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Stop() })
	return o
}

// idTokenOf logs user in with the device flow at the real provider (its device page, with the
// user's password) and returns the ID token, as `svidbroker approvals` does.
func idTokenOf(t *testing.T, o *stack.OIDC, user string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	v, err := approveroidc.New(ctx, o.CLIConfig())
	if err != nil {
		t.Fatal(err)
	}
	d, err := v.StartDevice(ctx)
	if err != nil {
		t.Fatal(err)
	}
	u, err := o.User(user)
	if err != nil {
		t.Fatal(err)
	}
	client, err := o.Client()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := oidcprovider.NewBrowser(client, "").ResolveDevice(ctx, d.VerificationURIComplete, u.Username, u.Password, true); err != nil {
		t.Fatal(err)
	}
	_, raw, err := v.PollDeviceToken(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// approversBlock is the approvers block of a broker whose approvers log in at o.
func approversBlock(o *stack.OIDC, store, stateDir string) string {
	state := ""
	if stateDir != "" {
		state = fmt.Sprintf("  state_dir = %q\n", stateDir)
	}
	return fmt.Sprintf(`
approvers {
  store = %q
%s  oidc {
    issuer    = %q
    client_id = %q
    ca_file   = %q
  }
}
`, store, state, o.Issuer, stack.OIDCCLIClient, o.CAFile)
}

// approvalsAPI calls a broker's approvals API with an ID token; it returns the status and body.
func approvalsAPI(t *testing.T, b *stack.Broker, token, method, path string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		j, _ := json.Marshal(body)
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, "http://"+b.AdminAddr+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, out
}

// waitPendingOIDC polls b's approvals API until a request whose statement contains what is pending.
func waitPendingOIDC(t *testing.T, b *stack.Broker, token, what string) approval.Request {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		code, body := approvalsAPI(t, b, token, "GET", "/approvals", nil)
		if code != http.StatusOK {
			t.Fatalf("GET /approvals: %d %s", code, body)
		}
		var reqs []approval.Request
		if err := json.Unmarshal(body, &reqs); err != nil {
			t.Fatal(err)
		}
		for _, r := range reqs {
			if strings.Contains(r.Statement, what) {
				return r
			}
		}
	}
	t.Fatalf("no pending approval for %q", what)
	return approval.Request{}
}

// TestApprovalsSharedByTwoBrokers: the migrator's DDL is held on one broker; the approver, logged in
// at the real provider, sees it through another broker of the fleet (the PostgreSQL store), a person
// outside the dba group is refused there by Cedar, the approver's approval is taken, and the psql
// held on the first broker goes on and creates its table.
func TestApprovalsSharedByTwoBrokers(t *testing.T) {
	s, _ := shared(t)
	ctx := t.Context()
	admin := withdrawTables(t, s)
	if _, err := admin.Exec(ctx, "GRANT CREATE ON SCHEMA public TO "+stack.BrokerDBRole); err != nil {
		t.Fatal(err)
	}
	o := startOIDC(t, s)
	run := time.Now().Format("150405")
	var brokers [2]*stack.Broker
	var chains [2]string
	for i := range brokers {
		m := &fleetMember{name: fmt.Sprintf("svidbroker-appr%d-%s", i+1, run)}
		m.chain, m.keys = m.name, filepath.Join(s.Dir, m.name+"-audit-keys")
		if err := audit.GenerateKeys(m.keys, m.chain); err != nil {
			t.Fatal(err)
		}
		brokerPersona, err := s.Persona(stack.PersonaBroker)
		if err != nil {
			t.Fatal(err)
		}
		if err := stack.ChownTree(m.keys, int(brokerPersona.UID), int(brokerPersona.UID)); err != nil {
			t.Fatal(err)
		}
		b, err := s.StartBroker(ctx, stack.BrokerOptions{Name: m.name, Binary: brokerBin, NoAudit: true, Approver: "oidc",
			Extra: fleetAudit(s, m) + approversBlock(o, "postgres", "")})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Stop() })
		brokers[i], chains[i] = b, m.chain
	}
	approverToken := idTokenOf(t, o, stack.ApproverEmail)
	aliceToken := idTokenOf(t, o, stack.AliceEmail)

	table := fmt.Sprintf("fleet_approved_%d", time.Now().UnixNano())
	p := startPsql(t, brokers[0], clientFiles(t, s, stack.PersonaMigrator), "CREATE TABLE "+withdrawSchema+"."+table+" (a int)")
	req := waitPendingOIDC(t, brokers[1], approverToken, table)
	if req.Fingerprint == "" || req.Required != 1 || !req.Attested || req.Action != "sql" {
		t.Fatalf("the request as the other broker shows it: %+v", req)
	}
	// Alice, an engineer, is refused by Cedar, through either broker.
	code, body := approvalsAPI(t, brokers[1], aliceToken, "POST", "/approvals/"+req.ID+"/approve", approval.DecisionBody{Reason: "looks fine"})
	if code != http.StatusForbidden || !strings.Contains(string(body), "approve") {
		t.Fatalf("alice's approval: %d %s", code, body)
	}
	// No token, no list.
	if code, _ := approvalsAPI(t, brokers[1], "", "GET", "/approvals", nil); code != http.StatusUnauthorized {
		t.Fatalf("GET /approvals without a token: %d", code)
	}
	if tableExists(t, admin, table) {
		t.Fatal("the DDL ran before anyone approved it")
	}
	code, body = approvalsAPI(t, brokers[1], approverToken, "POST", "/approvals/"+req.ID+"/approve", approval.DecisionBody{Reason: "migration 42"})
	if code != http.StatusOK {
		t.Fatalf("the approver's approval: %d %s", code, body)
	}
	done := make(chan error, 1)
	go func() { done <- p.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the held psql: %v\n%s", err, p.out.String())
		}
	case <-time.After(45 * time.Second):
		t.Fatalf("the held psql did not go on after the approval through the other broker\n%s", p.out.String())
	}
	if !tableExists(t, admin, table) {
		t.Fatal("the approved DDL did not run")
	}
	// The first broker's audit chain says who approved it, at which provider.
	var n int
	if err := admin.QueryRow(ctx, `SELECT count(*) FROM svidbroker_audit WHERE chain = $1 AND rec LIKE '%"state":"approved"%' AND rec LIKE $2`,
		chains[0], "%"+stack.ApproverEmail+"%").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Error("the holding broker's audit chain does not record the approval with the approver")
	}
	if _, err := admin.Exec(ctx, "DROP TABLE "+withdrawSchema+"."+table); err != nil {
		t.Fatal(err)
	}
}

// TestApprovalsSurviveARestart: a broker dies with the migrator's DDL pending and starts again; the approver
// approves it after the restart, and the migrator's statement sent again runs on that once-approval,
// once: the third time it is held again.
func TestApprovalsSurviveARestart(t *testing.T) {
	s, _ := shared(t)
	ctx := t.Context()
	admin := withdrawTables(t, s)
	o := startOIDC(t, s)
	name := fmt.Sprintf("svidbroker-apprstate-%s", time.Now().Format("150405"))
	state := approvalsStateDir(t, s, name)
	opts := stack.BrokerOptions{Name: name, Binary: brokerBin, Approver: "oidc", Extra: approversBlock(o, "journal", state)}
	b, err := s.StartBroker(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Stop() })
	token := idTokenOf(t, o, stack.ApproverEmail)
	files := clientFiles(t, s, stack.PersonaMigrator)
	table := fmt.Sprintf("restart_approved_%d", time.Now().UnixNano())
	ddl := "CREATE TABLE " + withdrawSchema + "." + table + " (a int)"
	p := startPsql(t, b, files, ddl)
	req := waitPendingOIDC(t, b, token, table)
	// The broker dies (its journal was fsynced at the raise).
	if err := b.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = p.Wait() // its broker is gone
	if b, err = s.StartBroker(ctx, opts); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Stop() })
	if got := waitPendingOIDC(t, b, token, table); got.ID != req.ID {
		t.Fatalf("after the restart, pending %s, want %s", got.ID, req.ID)
	}
	if code, body := approvalsAPI(t, b, token, "POST", "/approvals/"+req.ID+"/approve", approval.DecisionBody{Scope: "once"}); code != http.StatusOK {
		t.Fatalf("approve after the restart: %d %s", code, body)
	}
	// Sent again, the statement runs on the once-approval, without a new hold.
	p = startPsql(t, b, files, ddl)
	if err := p.Wait(); err != nil {
		t.Fatalf("the statement sent again: %v\n%s", err, p.out.String())
	}
	if !tableExists(t, admin, table) {
		t.Fatal("the approved DDL did not run")
	}
	if _, err := admin.Exec(ctx, "DROP TABLE "+withdrawSchema+"."+table); err != nil {
		t.Fatal(err)
	}
	// A second use of the once-approval: held again, as a new request, which the approver denies.
	p = startPsql(t, b, files, ddl)
	again := waitPendingOIDC(t, b, token, table)
	if again.ID == req.ID {
		t.Fatal("the used request is pending again")
	}
	if code, body := approvalsAPI(t, b, token, "POST", "/approvals/"+again.ID+"/deny", approval.DecisionBody{Reason: "once was enough"}); code != http.StatusOK {
		t.Fatalf("deny: %d %s", code, body)
	}
	if err := p.Wait(); err == nil || tableExists(t, admin, table) {
		t.Fatalf("the second use ran: %v\n%s", err, p.out.String())
	}
}

// approvalsStateDir makes the approvals journal's directory of broker name, the broker's uid's.
func approvalsStateDir(t *testing.T, s *stack.Stack, name string) string {
	t.Helper()
	state := filepath.Join(s.Dir, name+"-approvals")
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	brokerPersona, err := s.Persona(stack.PersonaBroker)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(state, int(brokerPersona.UID), int(brokerPersona.UID)); err != nil {
		t.Fatal(err)
	}
	return state
}

package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/svidbroker/svidbroker/broker/approval"
	"github.com/svidbroker/svidbroker/broker/approval/oidc"
	"github.com/svidbroker/svidbroker/broker/audit"
	oidcprovider "github.com/svidbroker/svidbroker/test/oidc"
)

// approvalsWorld is a real OpenID provider, a desk on a journal and the approvals API over it.
type approvalsWorld struct {
	idp    *oidcprovider.Local
	caFile string
	desk   *approval.Desk
	api    *httptest.Server
	recs   []audit.Record
}

func newApprovalsWorld(t *testing.T) *approvalsWorld {
	t.Helper()
	users := []oidcprovider.User{
		{Username: "approver@example.com", Password: "pw-a", Email: "approver@example.com", EmailVerified: true, Groups: []string{"dba"}},
		{Username: "alice@example.com", Password: "pw-b", Email: "alice@example.com", EmailVerified: true, Groups: []string{"engineering"}},
		{Username: "owner@example.com", Password: "pw-c", Email: "owner@example.com", EmailVerified: true, Groups: []string{"dba"}},
	}
	idp, err := oidcprovider.StartLocal(&oidcprovider.Config{Users: users, DevicePollInterval: "1s",
		Clients: []oidcprovider.Client{{ID: "svidbroker-cli", Type: "native"}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { idp.Close() })
	w := &approvalsWorld{idp: idp, caFile: filepath.Join(t.TempDir(), "ca.pem")}
	if err := os.WriteFile(w.caFile, idp.CAPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	j, err := approval.OpenJournal(filepath.Join(t.TempDir(), "approvals.journal"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	w.desk, err = approval.NewDesk(approval.DeskConfig{Backend: j,
		Record: func(r audit.Record) error { w.recs = append(w.recs, r); return nil },
		Authorize: func(p oidc.Person, _ approval.Request) error {
			if !slices.Contains(p.Groups, "dba") {
				return errors.New("approve denied: no policy permits it")
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	v, err := oidc.New(t.Context(), oidc.Config{IssuerURL: idp.Issuer(), ClientID: "svidbroker-cli", CAFile: w.caFile})
	if err != nil {
		t.Fatal(err)
	}
	w.api = httptest.NewServer(approval.APIHandler(w.desk, func(ctx context.Context, raw string) (oidc.Person, error) {
		return v.VerifyIDToken(ctx, raw, "")
	}))
	t.Cleanup(w.api.Close)
	return w
}

// run runs `svidbroker approvals args...`, logging in as user (password pw) through the provider's
// device page when the command asks; "" expects no login (a kept token).
func (w *approvalsWorld) run(t *testing.T, user, pw string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	full := append([]string{args[0], "--admin", w.api.URL, "--issuer", w.idp.Issuer(), "--ca-file", w.caFile}, args[1:]...)
	pr, pw2 := io.Pipe()
	var out strings.Builder
	done := make(chan error, 1)
	go func() {
		err := approvalsCmd(ctx, full, &out, pw2)
		pw2.Close()
		done <- err
	}()
	sc := bufio.NewScanner(pr)
	loggedIn := false
	for sc.Scan() {
		line := sc.Text()
		if u, ok := strings.CutPrefix(line, "To log in, open "); ok {
			if user == "" {
				t.Errorf("the command asked for a login: %s", line)
				cancel()
				continue
			}
			b := oidcprovider.NewBrowser(w.idp.Client(), "")
			if _, err := b.ResolveDevice(ctx, u, user, pw, true); err != nil {
				t.Errorf("device login: %v", err)
				cancel()
			}
			loggedIn = true
		}
	}
	err := <-done
	if user != "" && !loggedIn {
		t.Errorf("no device login was asked for")
	}
	return out.String(), err
}

func held(id, owner string) approval.Request {
	return approval.Request{ID: id, Session: "s1", SPIFFEID: "spiffe://example.org/agent/migrator", Target: "shop",
		Statement: "ALTER TABLE orders ADD COLUMN note text", Action: "sql", Fingerprint: "sql:abc",
		Attestation: []string{"agent:name:migrator", "agent:owner:" + owner}, Attested: true, Owner: owner}
}

// An approver logs in with the device flow at the real provider and approves through the API; a
// person outside the group and the agent's owner are refused; a kept token is reused.
func TestApprovalsCLIDeviceFlow(t *testing.T) {
	w := newApprovalsWorld(t)
	ctx := t.Context()
	for _, id := range []string{"r1", "r2"} {
		if err := w.desk.Raise(ctx, held(id, "owner@example.com"), 5*time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	tokenFile := filepath.Join(t.TempDir(), "token")
	out, err := w.run(t, "approver@example.com", "pw-a", "list", "--token-file", tokenFile)
	if err != nil || !strings.Contains(out, "r1") || !strings.Contains(out, "ALTER TABLE orders") || !strings.Contains(out, "owner@example.com") {
		t.Fatalf("list: %v\n%s", err, out)
	}
	if st, err := os.Stat(tokenFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v", st, err)
	}
	// The kept token: no second login.
	out, err = w.run(t, "", "", "approve", "--token-file", tokenFile, "--reason", "ticket 42", "r1")
	if err != nil || !strings.Contains(out, "request r1 is approved (1 of 1 approvals)") {
		t.Fatalf("approve: %v\n%s", err, out)
	}
	r, _ := w.desk.Get(ctx, "r1")
	if r.State != approval.StateApproved || r.Approvals[0].Email != "approver@example.com" || r.Approvals[0].Reason != "ticket 42" ||
		r.Approvals[0].Issuer != w.idp.Issuer() {
		t.Fatalf("r1 after the approval: %+v", r)
	}
	if len(w.recs) != 1 || w.recs[0].Detail["approver"] != "approver@example.com" {
		t.Fatalf("audit records %+v", w.recs)
	}
	// Alice is outside the approving group: refused, and the request stays pending.
	out, err = w.run(t, "alice@example.com", "pw-b", "approve", "r2")
	if err == nil || !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "no policy permits") {
		t.Fatalf("alice: %v\n%s", err, out)
	}
	// The owner is in the group, and refused as the agent's owner.
	out, err = w.run(t, "owner@example.com", "pw-c", "approve", "r2")
	if err == nil || !strings.Contains(err.Error(), "owns the agent") {
		t.Fatalf("owner: %v\n%s", err, out)
	}
	if r, _ := w.desk.Get(ctx, "r2"); r.State != approval.StatePending || len(r.Approvals) != 0 {
		t.Fatalf("r2 after the refusals: %+v", r)
	}
	// The control: the approver denies it.
	if out, err := w.run(t, "", "", "deny", "--token-file", tokenFile, "--reason", "not now", "r2"); err != nil || !strings.Contains(out, "denied") {
		t.Fatalf("deny: %v\n%s", err, out)
	}
}

func TestApprovalsAPIRefusesWithoutAValidToken(t *testing.T) {
	w := newApprovalsWorld(t)
	for _, auth := range []string{"", "Bearer ", "Bearer not-a-token", "Basic abc"} {
		req := httptest.NewRequest("GET", "/approvals", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		w.api.Config.Handler.ServeHTTP(rec, req)
		if rec.Code != 401 {
			t.Fatalf("Authorization %q: %d", auth, rec.Code)
		}
	}
}

func TestAdminURLKeepsTokensPrivate(t *testing.T) {
	for raw, ok := range map[string]bool{
		"http://127.0.0.1:8210": true, "http://[::1]:8210": true, "http://localhost:8210": true, "https://broker.example.org": true,
		"http://broker.example.org:8210": false, "http://10.0.0.5:8210": false, "ftp://127.0.0.1": false, "127.0.0.1:8210": false,
	} {
		if _, err := adminURL(raw); (err == nil) != ok {
			t.Errorf("adminURL(%q): %v", raw, err)
		}
	}
}

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/svidbroker/svidbroker/test/stack"
)

// TestApproversSetUpAndTheApproverLogsIn: the demo's approvers part on a real stack and the real
// test OpenID provider: the broker options say approver = "oidc" with a console, the approver's
// password is in a file only its owner reads and in no guide, and the tour's device-flow login with
// that password gets an ID token, while a wrong password gets none.
func TestApproversSetUpAndTheApproverLogsIn(t *testing.T) {
	s := stack.New(t, stack.Config{})
	d, err := newDemo(t.TempDir(), t.TempDir())
	must(t, err)
	var opts stack.BrokerOptions
	o, c, err := d.setupApprovers(t.Context(), s, &opts)
	must(t, err)
	if opts.Approver != "oidc" || opts.ApprovalTimeout != demoApprovalTimeout {
		t.Errorf("approver %q, approval_timeout %q", opts.Approver, opts.ApprovalTimeout)
	}
	for _, want := range []string{"approvers {", `issuer    = "` + o.Issuer + `"`, "console {", c.Addr} {
		if !strings.Contains(opts.Extra, want) {
			t.Errorf("the broker's extra configuration lacks %q:\n%s", want, opts.Extra)
		}
	}
	st, err := os.Stat(d.path(approverPasswordFile))
	must(t, err)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600", approverPasswordFile, st.Mode().Perm())
	}
	pw, err := os.ReadFile(d.path(approverPasswordFile))
	must(t, err)
	u, err := o.User(stack.ApproverEmail)
	must(t, err)
	if strings.TrimSpace(string(pw)) != u.Password {
		t.Fatal("the password file does not hold the approver's password")
	}

	must(t, d.writeApprovers(o, c, "127.0.0.1:1"))
	a, err := d.readApprovers()
	must(t, err)
	if a.Issuer != o.Issuer || a.ConsoleURL != c.URL || a.Approver != stack.ApproverEmail {
		t.Errorf("approvers.json = %+v", a)
	}
	guide := d.approversGuide(a, true) + d.mcpGuide()
	if strings.Contains(guide, u.Password) {
		t.Error("the guide shows the approver's password")
	}
	if !strings.Contains(guide, c.URL) || !strings.Contains(guide, approverPasswordFile) {
		t.Errorf("the guide does not say where to log in and where the password is:\n%s", guide)
	}

	token, err := d.approverToken(t.Context(), a)
	must(t, err)
	if strings.Count(token, ".") != 2 {
		t.Errorf("the device flow's ID token is not a JWT: %q", token)
	}
	must(t, os.WriteFile(d.path(approverPasswordFile), []byte("not-the-password\n"), 0o600))
	if _, err := d.approverToken(t.Context(), a); err == nil {
		t.Error("the device flow logged the approver in with a wrong password")
	}
}

// TestTestCatalogBesideThePolicies: the packs' tests name ../../catalog.hcl and the catalog its pin
// files; writeTestCatalog puts the repository's copies in each directory given.
func TestTestCatalogBesideThePolicies(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	must(t, writeTestCatalog(a, b))
	root, err := stack.RepoRoot()
	must(t, err)
	for _, name := range []string{"catalog.hcl", "tools.pins.json"} {
		want, err := os.ReadFile(filepath.Join(root, "policies", name))
		must(t, err)
		for _, dir := range []string{a, b} {
			got, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s/%s: %v (equal to the repository's: %v)", dir, name, err, bytes.Equal(got, want))
			}
		}
	}
}

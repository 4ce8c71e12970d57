package authz

import (
	"errors"
	"strings"
	"testing"

	"github.com/svidbroker/svidbroker/policies"
)

const approvePolicies = `
@id("dba-approves-ddl")
permit (principal, action == Action::"approve", resource in Target::"api")
when { principal.groups.contains("dba") && resource.action == "sql" && context.attested };

@id("no-approval-of-unattested-owner")
forbid (principal, action == Action::"approve", resource)
when { resource.owner == principal.email };
`

func TestApproveIsCedar(t *testing.T) {
	a := httpEngine(t, approvePolicies)
	req := ApprovalRequest{ID: "r1", Target: "api", Action: "sql", Text: "DROP TABLE t", Fingerprint: "fp",
		SPIFFEID: "spiffe://example.org/agent/migrator", Owner: "owner@example.com", Attested: true,
		Selectors: []string{"agent:owner:owner@example.com"}}
	dba := Person{Email: "approver@example.com", Issuer: "https://idp", Groups: []string{"dba", "security"}}
	if d, err := a.Approve(dba, req); err != nil || !d.Allow || d.Reasons[0] != "dba-approves-ddl" {
		t.Fatalf("a dba approving DDL: %+v, %v", d, err)
	}
	// A person outside the approving group is refused, and the error says what to permit.
	eng := Person{Email: "alice@example.com", Issuer: "https://idp", Groups: []string{"engineering"}}
	_, err := a.Approve(eng, req)
	if !errors.Is(err, ErrDenied) || !strings.Contains(err.Error(), `Action::"approve"`) || !strings.Contains(err.Error(), "alice@example.com") {
		t.Fatalf("engineering approving DDL: %v", err)
	}
	// The owner is refused by the forbid, even in the group.
	owner := Person{Email: "owner@example.com", Issuer: "https://idp", Groups: []string{"dba"}}
	if _, err := a.Approve(owner, req); !errors.Is(err, ErrDenied) || !strings.Contains(err.Error(), "no-approval-of-unattested-owner") {
		t.Fatalf("owner approving: %v", err)
	}
	// Another target's requests are not covered, nor an unattested caller's.
	other := req
	other.Target = "shop"
	if _, err := a.Approve(dba, other); !errors.Is(err, ErrDenied) {
		t.Fatalf("another target: %v", err)
	}
	un := req
	un.Attested = false
	if _, err := a.Approve(dba, un); !errors.Is(err, ErrDenied) {
		t.Fatalf("unattested caller: %v", err)
	}
}

func TestApprovalsAnnotation(t *testing.T) {
	a := httpEngine(t, `@id("two") @approval("required") @approvals("2")
permit (principal, action == Action::"http:post", resource in Target::"api");`)
	d, err := a.HTTP(httpConnect("x"), HTTPRequest{Target: "api", Route: "POST /v1/refunds", Method: "POST", Path: "/v1/refunds"}, ApprovalState{})
	if err != nil || d.Obligations.Approvals != "2" || d.Obligations.Approval != "required" {
		t.Fatalf("@approvals(\"2\"): %+v, %v", d.Obligations, err)
	}
	// A count the broker does not know is refused when the policies load.
	sc, err := ParseSchemaFor("svidbroker.cedarschema", policies.Schema, httpCatalog)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writePolicies(t, dir, map[string]string{"p.cedar": `@id("many") @approval("required") @approvals("7")
permit (principal, action == Action::"http:post", resource in Target::"api");`})
	if _, err := New(Config{Dir: dir, Schema: sc}); err == nil || !strings.Contains(err.Error(), "@approvals") {
		t.Fatalf("@approvals(\"7\") loaded: %v", err)
	}
}

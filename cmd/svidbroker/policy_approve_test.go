package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const approvePolicy = `@id("dba-approves-ddl")
@reason("schema changes are the DBAs' call")
permit (principal, action == Action::"approve", resource in Target::"shop")
when { principal.groups.contains("dba") && resource.action == "sql" && resource.policies.contains("ddl-hold") };

@id("owner-never-approves")
forbid (principal, action == Action::"approve", resource)
when { resource.owner == principal.email };
`

func TestPolicyExplainApprove(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "p.cedar"), []byte(approvePolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := writeBrokerConfig(t, dir)
	base := []string{"policy", "explain", "--config", cfg, "--principal", "spiffe://example.org/agent/migrator",
		"--selectors", "agent:name:migrator,agent:owner:owner@example.com", "--action", "approve", "--target", "shop",
		"--held-action", "sql", "--held-policies", "ddl-hold"}
	for _, tc := range []struct {
		name  string
		extra []string
		want  []string
	}{
		{"a dba", []string{"--approver", "approver@example.com", "--approver-groups", "dba,security"},
			[]string{"decision   ALLOW", `request    Person::"approver@example.com"  approve  ApprovalRequest::"explain"`, "reason     dba-approves-ddl: schema changes are the DBAs' call"}},
		{"an engineer", []string{"--approver", "alice@example.com", "--approver-groups", "engineering"},
			[]string{"decision   DENY", "no permit matched (default deny)"}},
		{"the owner", []string{"--approver", "owner@example.com", "--approver-groups", "dba"},
			[]string{"decision   DENY", "forbidden by owner-never-approves"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(append(append([]string{}, base...), tc.extra...), &stdout, &stderr); code != 0 {
				t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, stdout.String(), stderr.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("output does not contain\n  %s\n%s", w, stdout.String())
				}
			}
		})
	}
	var stdout, stderr bytes.Buffer
	if code := run(base, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "approve needs --approver EMAIL") {
		t.Fatalf("approve without an approver: exit %d, %s", code, stderr.String())
	}
}

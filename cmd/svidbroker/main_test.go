package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCLI(t *testing.T) {
	dir := t.TempDir()
	typo := filepath.Join(dir, "typo.hcl")
	if err := os.WriteFile(typo, []byte("trust_domain = \"example.org\"\nworkload_api_sockt = \"unix:///x\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr []string
	}{
		{name: "no command", args: nil, code: 2, stderr: []string{"Usage:"}},
		{name: "unknown command", args: []string{"srve"}, code: 2, stderr: []string{`unknown command "srve"; did you mean "serve"?`, "Run 'svidbroker help'"}},
		{name: "unknown subcommand", args: []string{"policy", "cna"}, code: 2, stderr: []string{`unknown command "cna"; did you mean "can"?`, "Run 'svidbroker policy -h'"}},
		{name: "unknown audit subcommand", args: []string{"audit", "verfy"}, code: 2, stderr: []string{`did you mean "verify"?`, "Run 'svidbroker audit -h'"}},
		{name: "unknown flag", args: []string{"policy", "can", "--bogus"}, code: 2,
			stderr: []string{"flag provided but not defined: -bogus", "Run 'svidbroker policy can -h' for its flags."}},
		{name: "flag before the command", args: []string{"--config", "x.hcl"}, code: 2, stderr: []string{"unknown flag --config", "'svidbroker serve --config FILE'"}},
		{name: "version", args: []string{"version"}, code: 0, stdout: "svidbroker "},
		{name: "--version", args: []string{"--version"}, code: 0, stdout: "svidbroker "},
		{name: "version with an argument", args: []string{"version", "x"}, code: 2, stderr: []string{"takes no arguments"}},
		{name: "serve without config", args: []string{"serve"}, code: 2, stderr: []string{"--config FILE is required", "Run 'svidbroker serve -h'"}},
		{name: "replay without a session", args: []string{"replay", "--dir", dir}, code: 2, stderr: []string{"give one SESSION"}},
		{name: "serve with missing file", args: []string{"serve", "--config", filepath.Join(dir, "nope.hcl")}, code: 1, stderr: []string{"no such file"}},
		{name: "serve with a typo", args: []string{"serve", "--config", typo}, code: 1,
			stderr: []string{typo + ":2:", `"workload_api_sockt"`, `Did you mean "workload_api_socket"?`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tc.args, &stdout, &stderr)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, stdout.String(), stderr.String())
			}
			if !strings.HasPrefix(stdout.String(), tc.stdout) {
				t.Errorf("stdout %q does not start with %q", stdout.String(), tc.stdout)
			}
			for _, want := range tc.stderr {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("stderr does not contain %q:\n%s", want, stderr.String())
				}
			}
		})
	}
}

func TestPolicyCommands(t *testing.T) {
	dir := t.TempDir()
	pol := filepath.Join(dir, "p.cedar")
	if err := os.WriteFile(pol, []byte(`@id("agents") permit (principal in Group::"agents", action == Action::"connect", resource == Target::"shop");`), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := `catalog "shop" {}
group "agents" { ids = ["spiffe://example.org/agent/*"] }
test "agent connects" {
  principal = "spiffe://example.org/agent/a"
  action    = "connect"
  target    = "shop"
  expect    = "allow"
}
`
	if err := os.WriteFile(filepath.Join(dir, "ok.test.hcl"), []byte(tests), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"policy", "validate", dir}, &out, &errb); code != 0 || !strings.Contains(out.String(), "1 policies, valid") {
		t.Fatalf("validate: %d %s %s", code, out.String(), errb.String())
	}
	out.Reset()
	if code := run([]string{"policy", "test", dir}, &out, &errb); code != 0 || !strings.Contains(out.String(), "1 passed, 0 failed") {
		t.Fatalf("test: %d %s %s", code, out.String(), errb.String())
	}
	// A failing expectation exits non-zero and shows what differs.
	failing := strings.Replace(tests, `expect    = "allow"`, `expect    = "deny"`+"\n  reasons = [\"nobody\"]", 1)
	if err := os.WriteFile(filepath.Join(dir, "ok.test.hcl"), []byte(failing), 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if code := run([]string{"policy", "test", dir}, &out, &errb); code != 1 {
		t.Fatalf("failing test exited %d", code)
	}
	for _, want := range []string{"FAIL", "ok.test.hcl:3", `decision: expected deny, got allow by "agents"`,
		`deciding policies: expected "nobody", got "agents"`, "0 passed, 1 failed"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output does not contain %q:\n%s", want, out.String())
		}
	}
	for _, dump := range []string{"[", "{", "%!"} {
		if strings.Contains(out.String(), dump) {
			t.Errorf("output holds a Go value dump (%q):\n%s", dump, out.String())
		}
	}
	// An invalid policy is refused, naming file:line and the @id.
	if err := os.WriteFile(pol, []byte(`@id("typo") permit (principal, action == Action::"conect", resource);`), 0o644); err != nil {
		t.Fatal(err)
	}
	errb.Reset()
	if code := run([]string{"policy", "validate", dir}, &out, &errb); code != 1 || !strings.Contains(errb.String(), pol+":1 @id(\"typo\")") {
		t.Fatalf("invalid policy: %d %s", code, errb.String())
	}
}

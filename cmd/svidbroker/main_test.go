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
		{name: "unknown command", args: []string{"srve"}, code: 2, stderr: []string{`unknown command "srve"`}},
		{name: "version", args: []string{"version"}, code: 0, stdout: "svidbroker "},
		{name: "serve without config", args: []string{"serve"}, code: 2, stderr: []string{"--config FILE"}},
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

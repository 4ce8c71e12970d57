package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

// TestConnectCommandMistakes: a command line `svidbroker connect` cannot use exits 2 with what is
// wrong; a missing Workload API exits 1 saying what to set. Nothing listens in either case.
func TestConnectCommandMistakes(t *testing.T) {
	t.Setenv("SPIFFE_ENDPOINT_SOCKET", "")
	missing := "unix://" + filepath.Join(t.TempDir(), "no-agent.sock")
	ok := []string{"--protocol", "postgres", "--listen", "127.0.0.1:0", "--broker", "127.0.0.1:5432", "--broker-id", "spiffe://example.org/svidbroker"}
	with := func(flag, value string) []string {
		out := []string{"connect"}
		for i := 0; i < len(ok); i += 2 {
			if ok[i] == flag {
				if value != "" {
					out = append(out, flag, value)
				}
				continue
			}
			out = append(out, ok[i], ok[i+1])
		}
		return out
	}
	cases := []struct {
		name   string
		args   []string
		code   int
		stderr []string
	}{
		{"no broker ID", with("--broker-id", ""), 2, []string{"--broker-id is required", "usage: svidbroker connect "}},
		{"no listen address", with("--listen", ""), 2, []string{"--listen is required"}},
		{"unknown protocol", with("--protocol", "mysql"), 2, []string{`--protocol "mysql": want postgres or http`}},
		{"broker ID not a SPIFFE ID", with("--broker-id", "https://example.org/svidbroker"), 2, []string{`--broker-id "https://example.org/svidbroker"`, "want spiffe://TRUST-DOMAIN/PATH"}},
		{"every interface", with("--listen", ":0"), 2, []string{"listen address is not loopback: :0", "--allow-remote"}},
		{"another host's address", with("--listen", "0.0.0.0:0"), 2, []string{"not loopback"}},
		{"JWT audience for postgres", append(with("", ""), "--jwt-audience", "svidbroker"), 2, []string{"--jwt-audience is for --protocol http only"}},
		{"tiny header limit", append(with("--protocol", "http"), "--jwt-audience", "svidbroker", "--max-header-bytes", "100"), 2, []string{"--max-header-bytes 100: want at least 4096"}},
		{"JWT mode without a SPIRE agent", append(with("--protocol", "http"), "--jwt-audience", "svidbroker", "--socket", missing, "--svid-timeout", "1s"), 1, []string{"no X.509-SVID from the Workload API within 1s", "is the SPIRE agent running"}},
		{"no Workload API socket", append(with("", ""), "--svid-timeout", "1s"), 1, []string{"no Workload API socket: set --socket or SPIFFE_ENDPOINT_SOCKET"}},
		{"no SPIRE agent", append(with("", ""), "--socket", missing, "--svid-timeout", "1s"), 1, []string{"no X.509-SVID from the Workload API within 1s", "is the SPIRE agent running"}},
		{"remote allowed, with a warning", append(with("--listen", "0.0.0.0:0"), "--allow-remote", "--socket", missing, "--svid-timeout", "1s"), 1,
			[]string{"WARNING: listening on 0.0.0.0:0, which is not loopback", "no X.509-SVID"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tc.args, &stdout, &stderr)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstderr: %s", code, tc.code, stderr.String())
			}
			if stdout.Len() != 0 {
				t.Errorf("printed a listen address although it failed: %q", stdout.String())
			}
			for _, want := range tc.stderr {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("stderr does not contain %q:\n%s", want, stderr.String())
				}
			}
		})
	}
}

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/svidbroker/svidbroker/test/stack"
)

// TestPgAgent builds examples/pg-agent and runs it as agent personas (their own uids, so SPIRE attests
// them like any agent): it gets its SVID from the Workload API itself, with no file and no password,
// and reaches the shared broker by the broker's SPIFFE ID.
func TestPgAgent(t *testing.T) {
	s, b := shared(t)
	built := filepath.Join(t.TempDir(), "pg-agent")
	if out, err := exec.Command("go", "build", "-o", built, "github.com/svidbroker/svidbroker/examples/pg-agent").CombinedOutput(); err != nil {
		t.Fatalf("build pg-agent: %v\n%s", err, out)
	}
	// Personas' uids cannot enter the test's temporary directories.
	bin, err := s.Install(built, "pg-agent")
	if err != nil {
		t.Fatal(err)
	}
	// run runs pg-agent as persona; s.Command sets SPIFFE_ENDPOINT_SOCKET (and the persona's manifest).
	run := func(t *testing.T, persona string, dropEnv bool, args ...string) (stdout, stderr string, code int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
		defer cancel()
		cmd, err := s.Command(ctx, persona, bin, append([]string{"-addr", b.Addr, "-broker-id", brokerIDName}, args...)...)
		if err != nil {
			t.Fatal(err)
		}
		if dropEnv {
			cmd.Env = slices.DeleteFunc(cmd.Env, func(kv string) bool { return strings.HasPrefix(kv, "SPIFFE_ENDPOINT_SOCKET=") })
		}
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err = cmd.Run()
		var ee *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &ee):
			code = ee.ExitCode()
		default:
			t.Fatal(err)
		}
		t.Logf("pg-agent as %s %q: exit %d\nstdout:\n%sstderr:\n%s", persona, args, code, out.String(), errb.String())
		return out.String(), errb.String(), code
	}
	// rows checks the default query's output: three customers, in id order, emails as keyed hashes.
	rows := func(t *testing.T, stdout, stderr string, code int) {
		t.Helper()
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		if strings.Contains(stdout, "@") {
			t.Fatalf("LEAK: an email in clear:\n%s", stdout)
		}
		lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
		if len(lines) != 3 {
			t.Fatalf("want 3 rows, got:\n%s", stdout)
		}
		for i, l := range lines {
			f := strings.Split(l, "\t")
			if len(f) != 3 || f[0] != strconv.Itoa(i+1) || f[1] == "" || !isHash(f[2]) {
				t.Fatalf("row %d is %q; want id, name and an email masked as h:<hash>", i+1, l)
			}
		}
		if !strings.HasPrefix(lines[0], "1\tAlice\th:") {
			t.Fatalf("first row %q is not Alice's", lines[0])
		}
	}

	t.Run("analyst reads masked rows", func(t *testing.T) {
		t.Parallel()
		stdout, stderr, code := run(t, stack.PersonaAnalyst, false)
		rows(t, stdout, stderr, code)
	})
	t.Run("socket flag", func(t *testing.T) {
		t.Parallel()
		stdout, stderr, code := run(t, stack.PersonaAnalyst, true, "-socket", s.SPIRE.AgentSocket)
		rows(t, stdout, stderr, code)
	})
	t.Run("denied statement", func(t *testing.T) {
		t.Parallel()
		stdout, stderr, code := run(t, stack.PersonaAnalyst, false, "-query", "DELETE FROM orders")
		if code != 1 || stdout != "" || !strings.Contains(stderr, "ERROR 42501: ") {
			t.Fatalf("exit %d, stdout %q, stderr %q; want exit 1 and SQLSTATE 42501", code, stdout, stderr)
		}
	})
	t.Run("held statement's notice", func(t *testing.T) {
		t.Parallel()
		// The agent is told at once that its statement waits, and for which request.
		table := fmt.Sprintf("pgagent_held_%d", time.Now().UnixNano())
		type result struct {
			stdout, stderr string
			code           int
		}
		done := make(chan result, 1)
		go func() {
			stdout, stderr, code := run(t, stack.PersonaMigrator, false, "-query", "CREATE TEMP TABLE "+table+" (a int)")
			done <- result{stdout, stderr, code}
		}()
		req := waitPending(t, b, table)
		httpReq, _ := http.NewRequest("POST", "http://"+b.AdminAddr+"/approvals/"+req.ID+"/approve", nil)
		httpReq.Header.Set("X-Approver", "dba@example.com")
		resp, err := http.DefaultClient.Do(httpReq)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("approve: %v %v", resp, err)
		}
		resp.Body.Close()
		r := <-done
		want := "NOTICE 00000: svidbroker: this statement is waiting for approval; request " + req.ID + "\n"
		if r.code != 0 || !strings.Contains(r.stderr, want) {
			t.Fatalf("exit %d, stderr %q; want exit 0 and %q", r.code, r.stderr, want)
		}
	})
	t.Run("wrong broker ID", func(t *testing.T) {
		t.Parallel()
		// The broker is the right process but not the SPIFFE ID the agent was told to expect.
		_, stderr, code := run(t, stack.PersonaAnalyst, false, "-broker-id", "spiffe://example.org/not-the-broker")
		if code != 1 || !strings.Contains(stderr, "unexpected ID") {
			t.Fatalf("exit %d, stderr %q; want exit 1 refusing the broker's SPIFFE ID", code, stderr)
		}
	})
	t.Run("intruder refused", func(t *testing.T) {
		t.Parallel()
		stdout, stderr, code := run(t, stack.PersonaIntruder, false)
		if code != 1 || stdout != "" || !strings.Contains(stderr, "FATAL 28000: ") {
			t.Fatalf("exit %d, stdout %q, stderr %q; want the broker's refusal with a SQLSTATE", code, stdout, stderr)
		}
	})
}

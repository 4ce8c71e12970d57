package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/test/stack"
)

// connectProc is a running `svidbroker connect`, with where it listens and what it logged.
type connectProc struct {
	cmd  *exec.Cmd
	addr string // from its one line on stdout

	mu     sync.Mutex
	stderr bytes.Buffer
}

func (p *connectProc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.Write(b)
}

func (p *connectProc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// connectCommand is `svidbroker connect args...` as persona, from a copy of the binary the personas'
// uids can execute, with the stack's Workload API in SPIFFE_ENDPOINT_SOCKET.
func connectCommand(t *testing.T, s *stack.Stack, ctx context.Context, persona string, args ...string) *exec.Cmd {
	t.Helper()
	bin, err := s.Install(brokerBin, "svidbroker-connect")
	if err != nil {
		t.Fatal(err)
	}
	cmd, err := s.Command(ctx, persona, bin, append([]string{"connect"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	return cmd
}

// startConnect runs `svidbroker connect --protocol postgres` as persona against broker b, and waits
// for it to print its listen address. It gets SIGINT when the test ends, and must exit cleanly.
func startConnect(t *testing.T, s *stack.Stack, b *stack.Broker, persona string) *connectProc {
	t.Helper()
	return startConnectTo(t, s, persona, b.Addr)
}

// startConnectTo is startConnect with the broker's address given.
func startConnectTo(t *testing.T, s *stack.Stack, persona, brokerAddr string) *connectProc {
	t.Helper()
	return startConnectArgs(t, s, persona, "--protocol", "postgres", "--listen", "127.0.0.1:0", "--broker", brokerAddr, "--broker-id", brokerIDName)
}

// startConnectArgs runs `svidbroker connect args...` as persona, as startConnect does.
func startConnectArgs(t *testing.T, s *stack.Stack, persona string, args ...string) *connectProc {
	t.Helper()
	cmd := connectCommand(t, s, context.Background(), persona, args...)
	p := &connectProc{cmd: cmd}
	cmd.Stderr = p
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1)
	go func() {
		r := bufio.NewReader(out)
		line, _ := r.ReadString('\n')
		lines <- strings.TrimSpace(line)
		_, _ = io.Copy(io.Discard, r)
	}()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = cmd.Process.Signal(os.Interrupt)
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("svidbroker connect after SIGINT: %v", err)
				}
			case <-time.After(60 * time.Second):
				_ = cmd.Process.Kill()
				<-done
				t.Error("svidbroker connect did not exit on SIGINT")
			}
		}
		t.Logf("svidbroker connect as %s logged:\n%s", persona, p.log())
	})
	select {
	case p.addr = <-lines:
	case <-time.After(90 * time.Second):
		t.Fatalf("svidbroker connect printed no address:\n%s", p.log())
	}
	if p.addr == "" {
		_ = cmd.Wait()
		stopped = true
		t.Fatalf("svidbroker connect exited:\n%s", p.log())
	}
	return p
}

// plainPsql is psql reaching the forwarder at addr without TLS and without any certificate: a client
// that has no SVID.
func plainPsql(addr, sslmode, sql string) *exec.Cmd {
	host, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command("psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql)
	env := []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, "PGHOST="+host, "PGPORT="+port, "PGDATABASE=shop", "PGUSER=agent",
		"PGSSLMODE="+sslmode, "PGCONNECT_TIMEOUT=10")
	return cmd
}

func runPlainPsql(t *testing.T, addr, sslmode, sql string) (string, error) {
	t.Helper()
	cmd := plainPsql(addr, sslmode, sql)
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// sessionOfStatement finds, in broker b's audit log, the session that ran a statement containing
// marker, and returns that session's SPIFFE ID as its start record says.
func sessionOfStatement(t *testing.T, b *stack.Broker, marker string) string {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		ids := map[string]string{}
		session := ""
		err := audit.Read(b.AuditDir, b.Chain, func(e audit.Entry) error {
			r := e.Record
			if r.Kind == audit.KindSessionStart {
				ids[r.Session] = r.SPIFFEID
			}
			if r.Statement != nil && strings.Contains(r.Statement.Text, marker) {
				session = r.Session
			}
			return nil
		})
		if err == nil && session != "" {
			return ids[session]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no statement with %q in the audit log (%v)", marker, err)
		}
	}
}

// TestConnectForwardsPlainPsqlUnderTheForwardersSVID: psql with no certificate and no TLS
// (sslmode=disable, and prefer, whose SSLRequest the forwarder declines) reaches PostgreSQL through
// `svidbroker connect` running as a persona; the broker attributes the session to that persona's
// SPIFFE ID, applies its policy (the analyst's masking, the intruder's refusal) and the backend
// session is the broker's own role over TLS.
func TestConnectForwardsPlainPsqlUnderTheForwardersSVID(t *testing.T) {
	s, b := shared(t)
	analyst := startConnect(t, s, b, stack.PersonaAnalyst)
	for _, sslmode := range []string{"disable", "prefer"} {
		t.Run(sslmode, func(t *testing.T) {
			marker := fmt.Sprintf("connect_%s_%d", sslmode, time.Now().UnixNano())
			out, err := runPlainPsql(t, analyst.addr, sslmode, "SELECT count(*) AS "+marker+" FROM customers")
			if err != nil || out != "8" {
				t.Fatalf("psql through svidbroker connect: %v: %q, want 8", err, out)
			}
			if id := sessionOfStatement(t, b, marker); id != "spiffe://example.org/agent/analyst" {
				t.Fatalf("the audit log attributes the session to %q, want the analyst's SPIFFE ID", id)
			}
		})
	}
	t.Run("analyst's masking applies", func(t *testing.T) {
		out, err := runPlainPsql(t, analyst.addr, "disable", "SELECT email FROM customers ORDER BY id LIMIT 1")
		if err != nil || !isHash(out) {
			t.Fatalf("email = %q (%v), want it masked as h:<hash>", out, err)
		}
	})
	t.Run("backend session", func(t *testing.T) {
		out, err := runPlainPsql(t, analyst.addr, "disable", "SELECT current_user || ' ' || ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
		if err != nil || out != stack.BrokerDBRole+" true" {
			t.Fatalf("backend session = %q (%v), want %q", out, err, stack.BrokerDBRole+" true")
		}
	})
	t.Run("a client that insists on TLS is told no", func(t *testing.T) {
		out, err := runPlainPsql(t, analyst.addr, "require", "SELECT 1")
		if err == nil || !strings.Contains(out, "server does not support SSL") {
			t.Fatalf("psql sslmode=require: %v: %q; want a refusal", err, out)
		}
	})
	t.Run("intruder refused by the broker", func(t *testing.T) {
		intruder := startConnect(t, s, b, stack.PersonaIntruder)
		out, err := runPlainPsql(t, intruder.addr, "disable", "SELECT 1")
		if err == nil || !strings.Contains(out, "spiffe://example.org/agent/intruder: connect to target \"shop\" denied") {
			t.Fatalf("psql as the intruder's forwarder: %v: %q; want the broker's connect denial", err, out)
		}
	})
}

// TestConnectCancelRequestReachesTheBroker: psql's SIGINT sends a CancelRequest to the forwarder on a
// new connection; the forwarder passes it on over a new mTLS connection, and the broker withdraws the
// statement it holds for approval, as it does for a client that reaches it directly.
func TestConnectCancelRequestReachesTheBroker(t *testing.T) {
	s, b := shared(t)
	admin := withdrawTables(t, s)
	migrator := startConnect(t, s, b, stack.PersonaMigrator)
	table := fmt.Sprintf("connect_interrupted_%d", time.Now().UnixNano())
	cmd := plainPsql(migrator.addr, "disable", "CREATE TABLE "+withdrawSchema+"."+table+" (a int)")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	req := waitPending(t, b, table)
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	if got := out.String(); err == nil || !strings.Contains(got, "canceling statement due to user request") || !strings.Contains(got, "approval request "+req.ID+" was withdrawn") {
		t.Fatalf("psql after SIGINT: %v\n%s", err, got)
	}
	waitWithdrawalRecorded(t, b, req.ID, table, "the client sent a cancel request")
	if tableExists(t, admin, table) {
		t.Fatal("an interrupted DDL ran")
	}
	if !strings.Contains(migrator.log(), "cancel request passed to the broker") {
		t.Fatalf("the forwarder did not log the cancel request:\n%s", migrator.log())
	}
}

// TestConnectRefusals: no SVID for the process, a listen address other hosts can reach, and a broker
// that is not there, each end in a message that says what to fix.
func TestConnectRefusals(t *testing.T) {
	s, b := shared(t)
	run := func(t *testing.T, persona string, args ...string) (string, int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
		defer cancel()
		cmd := connectCommand(t, s, ctx, persona, args...)
		var errb bytes.Buffer
		cmd.Stderr = &errb
		err := cmd.Run()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		return errb.String(), cmd.ProcessState.ExitCode()
	}
	base := []string{"--protocol", "postgres", "--broker", b.Addr, "--broker-id", brokerIDName}
	t.Run("non-loopback listen", func(t *testing.T) {
		stderr, code := run(t, stack.PersonaAnalyst, append(base, "--listen", "0.0.0.0:0")...)
		if code != 2 || !strings.Contains(stderr, "listen address is not loopback: 0.0.0.0:0") || !strings.Contains(stderr, "--allow-remote") {
			t.Fatalf("exit %d, stderr %q; want a usage error naming --allow-remote", code, stderr)
		}
	})
	t.Run("no SVID for this process", func(t *testing.T) {
		// The test's own uid (root) has no registration entry.
		ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, brokerBin, append([]string{"connect", "--listen", "127.0.0.1:0", "--svid-timeout", "3s",
			"--socket", s.SPIRE.Endpoint()}, base...)...)
		var errb bytes.Buffer
		cmd.Stderr = &errb
		err := cmd.Run()
		if err == nil || cmd.ProcessState.ExitCode() != 1 || !strings.Contains(errb.String(), "no X.509-SVID from the Workload API within 3s") {
			t.Fatalf("%v, stderr %q; want exit 1 saying no SVID came", err, errb.String())
		}
	})
	t.Run("broker not there", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		gone := ln.Addr().String()
		ln.Close()
		p := startConnectTo(t, s, stack.PersonaAnalyst, gone)
		out, err := runPlainPsql(t, p.addr, "disable", "SELECT 1")
		if err == nil || !strings.Contains(out, "svidbroker connect: cannot reach the broker at "+gone) {
			t.Fatalf("psql: %v: %q; want the forwarder's 08001 naming the broker", err, out)
		}
	})
}

// TestConnectUnixSocketIsTheWorkloadsOnly: on a Unix socket, psql (libpq's host=/dir) reaches the
// broker through the forwarder when it runs as the forwarder's uid, and another persona's uid cannot
// connect to the socket at all: it cannot borrow the forwarder's identity.
func TestConnectUnixSocketIsTheWorkloadsOnly(t *testing.T) {
	s, b := shared(t)
	analyst, err := s.Persona(stack.PersonaAnalyst)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp(s.Dir, "connect-sock-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, int(analyst.UID), int(analyst.UID)); err != nil {
		t.Fatal(err)
	}
	sock := dir + "/.s.PGSQL.6432" // libpq's name for port 6432 in directory dir
	cmd := connectCommand(t, s, context.Background(), stack.PersonaAnalyst,
		"--protocol", "postgres", "--listen", "unix:"+sock, "--broker", b.Addr, "--broker-id", brokerIDName)
	p := &connectProc{cmd: cmd}
	cmd.Stderr = p
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		t.Logf("svidbroker connect logged:\n%s", p.log())
	})
	line, _ := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "unix:"+sock {
		t.Fatalf("svidbroker connect printed %q, want unix:%s\n%s", line, sock, p.log())
	}
	psqlAs := func(persona string) (string, error) {
		ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
		defer cancel()
		c, err := s.Command(ctx, persona, "psql", "-X", "-A", "-t", "-c", "SELECT count(*) FROM customers")
		if err != nil {
			t.Fatal(err)
		}
		c.Env = append(c.Env, "PGHOST="+dir, "PGPORT=6432", "PGDATABASE=shop", "PGUSER=agent", "PGSSLMODE=disable", "PGCONNECT_TIMEOUT=10")
		o, err := c.CombinedOutput()
		return strings.TrimSpace(string(o)), err
	}
	if got, err := psqlAs(stack.PersonaAnalyst); err != nil || got != "8" {
		t.Fatalf("psql as the forwarder's uid: %v: %q, want 8", err, got)
	}
	got, err := psqlAs(stack.PersonaSupport)
	if err == nil || !strings.Contains(got, "Permission denied") {
		t.Fatalf("psql as another uid: %v: %q; want the socket to refuse it", err, got)
	}
}

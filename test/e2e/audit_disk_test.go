package e2e

import (
	"context"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/mod/sumdb/note"

	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/test/stack"
)

// TestAuditDiskFullRecoversAndRestarts fills the audit log's filesystem under a running broker, frees
// it, goes on, fills it again, kills the broker while it is full, frees it, and restarts it. While
// full, statements and new connections are refused and /readyz fails; once space is free the broker
// takes statements again by itself and /readyz passes; after the kill it starts again on the chain,
// whatever incomplete line the failed writes left. The chain verifies, and records each failed write.
func TestAuditDiskFullRecoversAndRestarts(t *testing.T) {
	s, _ := shared(t)
	name := fmt.Sprintf("svidbroker-diskfull-%d", time.Now().UnixNano())
	dir := smallAuditFS(t, s, name+"-fs")
	opts := stack.BrokerOptions{Name: name, Binary: brokerBin, AuditDir: dir}
	b, err := s.StartBroker(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { b.Stop() }()
	f := clientFiles(t, s, stack.PersonaAnalyst)

	// fill fills the filesystem, then runs statements until the log cannot take one.
	fill := func(round int) {
		t.Helper()
		conn, err := pgx.ConnectConfig(t.Context(), pgxConfig(t, b, f))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		fillFS(t, dir)
		for i := range 5000 {
			var n int
			if err = conn.QueryRow(t.Context(), fmt.Sprintf("SELECT %d", i)).Scan(&n); err != nil {
				break
			}
		}
		if err == nil || !strings.Contains(err.Error(), "audit log is unavailable") {
			t.Fatalf("round %d: statements on a full audit store: %v", round, err)
		}
		// While the disk stays full, the broker's retries cut the incomplete bytes and may write the
		// failure's record in their room before the next write fails again: new connections and
		// /readyz can pass for such a moment, and every statement is still refused. Poll until both
		// show the failure.
		var out, body string
		var code int
		refused := false
		for deadline := time.Now().Add(60 * time.Second); !refused && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			out, err = psql(t, b, f, nil, "SELECT 1")
			code, body = readyz(t, b)
			refused = err != nil && strings.Contains(out, "the audit log is unavailable") &&
				code == http.StatusServiceUnavailable && strings.Contains(body, "audit")
		}
		if !refused {
			t.Fatalf("round %d: on a full audit store, a new connection: %v %s; /readyz: %d %q", round, err, out, code, body)
		}
	}
	free := func() {
		t.Helper()
		if err := os.Remove(filepath.Join(dir, "filler")); err != nil {
			t.Fatal(err)
		}
	}
	// goOn waits (polling, with a generous deadline) until the broker is ready and takes a session.
	goOn := func(what string) {
		t.Helper()
		var out string
		var code int
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			if code, _ = readyz(t, b); code == http.StatusOK {
				if out, err = psql(t, b, f, nil, "SELECT 'after-"+what+"'"); err == nil && out == "after-"+what {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: /readyz %d, psql %q %v", what, code, out, err)
			}
		}
	}

	fill(1)
	free()
	goOn("free")

	fill(2)
	if err := b.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	free()
	if b, err = s.StartBroker(t.Context(), opts); err != nil {
		t.Fatalf("restart after a kill on a full disk: %v", err)
	}
	goOn("restart")
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	rep := verifyChain(t, b)
	if !rep.OK() || rep.Torn != nil {
		t.Fatalf("chain after the full disks: %+v", rep)
	}
	if len(rep.FailedWrites) == 0 || !strings.Contains(strings.Join(rep.FailedWrites, "\n"), "no space left on device") {
		t.Fatalf("the chain does not record the failed writes: %q", rep.FailedWrites)
	}
	logged := map[string]bool{}
	if err := audit.Read(b.AuditDir, b.Chain, func(e audit.Entry) error {
		if st := e.Record.Statement; st != nil && e.Record.Kind == audit.KindStatement {
			logged[st.Text] = true
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, text := range []string{"SELECT 'after-free'", "SELECT 'after-restart'"} {
		if !logged[text] {
			t.Errorf("%q ran but is not in the log", text)
		}
	}
	t.Logf("failed writes recorded: %q", rep.FailedWrites)
}

// TestAuditWitnessSeesACutLog runs a broker whose checkpoints also go to a witness directory, then
// cuts the log and its checkpoints file back together: `audit verify` alone verifies the cut chain
// only through its last checkpoint; with the witness it fails; the broker refuses to start on it.
func TestAuditWitnessSeesACutLog(t *testing.T) {
	s, _ := shared(t)
	name := fmt.Sprintf("svidbroker-witnessed-%d", time.Now().UnixNano())
	witness := filepath.Join(s.Dir, name+"-witness")
	opts := stack.BrokerOptions{Name: name, Binary: brokerBin, AuditWitnessDir: witness}
	b, err := s.StartBroker(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	f := clientFiles(t, s, stack.PersonaAnalyst)
	if out, err := psql(t, b, f, nil, "SELECT 'before-the-cut'"); err != nil {
		t.Fatalf("psql: %v %s", err, out)
	}
	if err := b.Stop(); err != nil { // a final checkpoint, which the witness takes
		t.Fatal(err)
	}
	verify := func(extra ...string) (string, error) {
		args := append([]string{"audit", "verify", "--dir", b.AuditDir, "--chain", b.Chain, "--mac-key", filepath.Join(b.AuditKeys, audit.MACKeyFile)}, extra...)
		out, err := exec.Command(brokerBin, args...).CombinedOutput()
		return string(out), err
	}
	if out, err := verify("--witness", witness); err != nil || !strings.Contains(out, "verified against the witness through record") {
		t.Fatalf("the whole chain against the witness: %v\n%s", err, out)
	}
	// Keep only the start record and its checkpoint: the session's records and theirs are gone.
	for _, file := range []string{b.Chain + ".jsonl", b.Chain + ".checkpoints"} {
		path := filepath.Join(b.AuditDir, file)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		first, _, _ := strings.Cut(string(data), "\n")
		if err := os.WriteFile(path, []byte(first+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := verify(); err != nil || !strings.Contains(out, "verified through record 1 (the last signed checkpoint") || strings.Contains(out, "intact") {
		t.Fatalf("the cut chain alone: %v\n%s", err, out)
	}
	if out, err := verify("--witness", witness); err == nil || !strings.Contains(out, "were removed") {
		t.Fatalf("the cut chain against the witness: %v\n%s", err, out)
	}
	if _, err := s.StartBroker(t.Context(), opts); err == nil {
		t.Fatal("the broker started on a chain the witness shows cut")
	}
}

// TestAuditPostgresWitness runs a broker whose witness is a table in PostgreSQL, where the broker's
// role may only insert and select, reached with its SVID. An auditor verifies against it with their own
// credentials; a log cut together with its checkpoints fails against it.
func TestAuditPostgresWitness(t *testing.T) {
	s, _ := shared(t)
	ctx := t.Context()
	admin, err := s.Postgres.Connect(ctx, "shop")
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	for _, q := range []string{audit.WitnessSchema, "GRANT SELECT, INSERT ON svidbroker_audit_witness TO " + stack.BrokerDBRole} {
		if _, err := admin.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	opts := stack.BrokerOptions{Name: fmt.Sprintf("svidbroker-pgwitness-%d", time.Now().UnixNano()), Binary: brokerBin, AuditWitness: fmt.Sprintf(`    postgres {
      address     = "%s:%d"
      database    = "shop"
      user        = %q
      ca_file     = %q
      server_name = "localhost"
    }`, s.Postgres.Host, s.Postgres.Port, stack.BrokerDBRole, s.Postgres.CAPath)}
	b, err := s.StartBroker(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := psql(t, b, clientFiles(t, s, stack.PersonaAnalyst), nil, "SELECT 'pg-witnessed'"); err != nil {
		t.Fatalf("psql: %v %s", err, out)
	}
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	var held int
	if err := admin.QueryRow(ctx, "SELECT count(*) FROM svidbroker_audit_witness WHERE chain = $1", b.Chain).Scan(&held); err != nil || held < 2 {
		t.Fatalf("the witness holds %d checkpoints of the chain (%v); want the start's and the final one at least", held, err)
	}
	url := fmt.Sprintf("postgres://%s@%s:%d/shop?sslmode=verify-full&sslrootcert=%s", s.Postgres.Superuser, s.Postgres.Host, s.Postgres.Port, s.Postgres.CAPath)
	verify := func() (string, error) {
		cmd := exec.Command(brokerBin, "audit", "verify", "--dir", b.AuditDir, "--chain", b.Chain, "--mac-key", filepath.Join(b.AuditKeys, audit.MACKeyFile), "--witness-postgres", url)
		cmd.Env = append(os.Environ(), "PGPASSWORD="+s.Postgres.SuperuserPassword())
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := verify(); err != nil || !strings.Contains(out, "verified against the witness through record") {
		t.Fatalf("the whole chain against the PostgreSQL witness: %v\n%s", err, out)
	}
	for _, file := range []string{b.Chain + ".jsonl", b.Chain + ".checkpoints"} {
		path := filepath.Join(b.AuditDir, file)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		first, _, _ := strings.Cut(string(data), "\n")
		if err := os.WriteFile(path, []byte(first+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := verify(); err == nil || !strings.Contains(out, "were removed") {
		t.Fatalf("the cut chain against the PostgreSQL witness: %v\n%s", err, out)
	}
}

// TestAuditHTTPSWitnessDownStopsNewAccess runs a broker whose witness is an HTTPS service. While the
// witness answers, sessions run and an auditor verifies against it; when it stops answering, the
// broker keeps serving until a checkpoint has waited longer than max_lag, then refuses new sessions
// and fails /readyz; once the witness answers again, it takes sessions again by itself.
func TestAuditHTTPSWitnessDownStopsNewAccess(t *testing.T) {
	s, _ := shared(t)
	name := fmt.Sprintf("svidbroker-httpswitness-%d", time.Now().UnixNano())
	keys := filepath.Join(s.Dir, name+"-keys")
	if err := audit.GenerateKeys(keys, name); err != nil {
		t.Fatal(err)
	}
	broker, _ := s.Persona(stack.PersonaBroker)
	if err := stack.ChownTree(keys, int(broker.UID), int(broker.UID)); err != nil {
		t.Fatal(err)
	}
	v, err := audit.LoadVerifier(filepath.Join(keys, audit.VerifierKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	var down atomic.Bool
	h := audit.WitnessHandler(&audit.FileWitness{Dir: t.TempDir()}, note.VerifierList(v))
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		h.ServeHTTP(w, r)
	}))
	defer srv.Close()
	ca := filepath.Join(s.Dir, name+"-ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	url := srv.URL + "/v1/checkpoints"
	opts := stack.BrokerOptions{Name: name, Binary: brokerBin, AuditKeys: keys,
		AuditWitness: fmt.Sprintf("    url = %q\n    ca_file = %q\n    timeout = \"1s\"\n    max_lag = \"2s\"", url, ca)}
	b, err := s.StartBroker(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Stop()
	f := clientFiles(t, s, stack.PersonaAnalyst)
	if out, err := psql(t, b, f, nil, "SELECT 'witnessed'"); err != nil || out != "witnessed" {
		t.Fatalf("psql with the witness up: %q %v", out, err)
	}
	// until polls cond with a generous deadline: it checks that something happens, never how fast.
	until := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(60 * time.Second); !cond(); time.Sleep(200 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s did not happen", what)
			}
		}
	}
	verify := func() (string, error) {
		out, err := exec.Command(brokerBin, "audit", "verify", "--dir", b.AuditDir, "--chain", b.Chain, "--mac-key", filepath.Join(keys, audit.MACKeyFile),
			"--witness", url, "--witness-ca", ca).CombinedOutput()
		return string(out), err
	}
	until("verification against the HTTPS witness", func() bool {
		out, err := verify()
		return err == nil && strings.Contains(out, "verified against the witness through record")
	})

	down.Store(true)
	until("refusal once the witness is overdue", func() bool {
		code, body := readyz(t, b)
		out, err := psql(t, b, f, nil, "SELECT 'while-down'")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "audit") && err != nil && strings.Contains(out, "the audit log is unavailable")
	})
	if _, body := readyzAt(t, b, "/readyz?verbose"); !strings.Contains(body, "[-]audit-witness failed") {
		t.Fatalf("/readyz?verbose does not list the witness: %s", body)
	}
	down.Store(false)
	until("sessions again once the witness answers", func() bool {
		out, err := psql(t, b, f, nil, "SELECT 'after-witness'")
		code, _ := readyz(t, b)
		return err == nil && out == "after-witness" && code == http.StatusOK
	})
}

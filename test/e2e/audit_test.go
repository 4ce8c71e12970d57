package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/test/stack"
)

func verifyChain(t *testing.T, b *stack.Broker) *audit.Report {
	t.Helper()
	key, err := audit.LoadMACKey(filepath.Join(b.AuditKeys, audit.MACKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	v, err := audit.LoadVerifier(filepath.Join(b.AuditKeys, audit.VerifierKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := audit.Verify(b.AuditDir, b.Chain, key, v)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// TestAuditRecordsWhatHappened runs psql as the analyst and as the intruder, then reads the broker's
// chain: it verifies, and answers who, what, under which decision and what came back.
func TestAuditRecordsWhatHappened(t *testing.T) {
	s, b := shared(t)
	marker := fmt.Sprintf("audit-marker-%d", time.Now().UnixNano())
	analyst := clientFiles(t, s, stack.PersonaAnalyst)
	if out, err := psql(t, b, analyst, nil, "SELECT count(*), '"+marker+"' FROM customers"); err != nil {
		t.Fatalf("psql: %v %s", err, out)
	}
	if _, err := psql(t, b, clientFiles(t, s, stack.PersonaIntruder), nil, "SELECT 1"); err == nil {
		t.Fatal("intruder admitted")
	}
	var rep *audit.Report
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if rep = verifyChain(t, b); rep.OK() && rep.Checkpoints > 0 {
			break
		}
	}
	if !rep.OK() || rep.Records == 0 || rep.Checkpoints == 0 {
		t.Fatalf("chain: %+v", rep)
	}
	var session string
	err := audit.Read(b.AuditDir, b.Chain, func(e audit.Entry) error {
		if st := e.Record.Statement; st != nil && strings.Contains(st.Text, marker) {
			session = e.Record.Session
		}
		return nil
	})
	if err != nil || session == "" {
		t.Fatalf("the statement is not in the log (%v)", err)
	}
	tl, err := audit.Timeline(audit.Files(b.AuditDir, b.Chain), session)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]audit.Record{}
	for _, e := range tl {
		kinds[e.Record.Kind] = e.Record
	}
	start, res := kinds[audit.KindSessionStart], kinds[audit.KindResult]
	if start.SPIFFEID != "spiffe://example.org/agent/analyst" || start.Decision == nil || !start.Decision.Allow ||
		len(start.Decision.Policies) == 0 || start.Decision.Policies[0] != "analyst-connect" {
		t.Fatalf("session start %+v", start)
	}
	if res.Result == nil || res.Result.Tag != "SELECT 1" || res.Result.Rows != 1 {
		t.Fatalf("result %+v", res.Result)
	}
	if _, ok := kinds[audit.KindSessionEnd]; !ok {
		t.Fatal("no session end")
	}
	denied, err := audit.Sessions(audit.Files(b.AuditDir, b.Chain), audit.Filter{SPIFFEID: "spiffe://example.org/agent/intruder", Decision: "deny"})
	if err != nil || len(denied) == 0 {
		t.Fatalf("the intruder's refusal is not searchable: %v %v", denied, err)
	}
}

// TestKillDashNineLosesNothingAnswered runs statements through a broker and kills it with SIGKILL
// mid-load. Every statement the client got a result for is in the log, and the chain verifies.
func TestKillDashNineLosesNothingAnswered(t *testing.T) {
	s, _ := shared(t)
	b, err := s.StartBroker(t.Context(), stack.BrokerOptions{Name: "svidbroker-kill9", Binary: brokerBin})
	if err != nil {
		t.Fatal(err)
	}
	f := clientFiles(t, s, stack.PersonaAnalyst)
	cfg := pgxConfig(t, b, f)
	answered := make(chan []string, 4)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for w := range 4 {
		go func() {
			var got []string
			defer func() { answered <- got }()
			conn, err := pgx.ConnectConfig(ctx, cfg)
			if err != nil {
				return
			}
			defer conn.Close(context.Background())
			for i := 0; ; i++ {
				m := fmt.Sprintf("kill9-%d-%d", w, i)
				var out string
				if err := conn.QueryRow(ctx, "SELECT '"+m+"'::text").Scan(&out); err != nil {
					return
				}
				got = append(got, m)
			}
		}()
	}
	time.Sleep(1500 * time.Millisecond)
	if err := b.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var all []string
	for range 4 {
		all = append(all, <-answered...)
	}
	if len(all) < 20 {
		t.Fatalf("only %d statements ran before the kill", len(all))
	}
	logged := map[string]bool{}
	if err := audit.Read(b.AuditDir, b.Chain, func(e audit.Entry) error {
		if st := e.Record.Statement; st != nil {
			logged[st.Text] = true
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, m := range all {
		if !logged["SELECT '"+m+"'::text"] {
			t.Fatalf("statement %s was answered but is not in the log", m)
		}
	}
	if rep := verifyChain(t, b); !rep.OK() {
		t.Fatalf("chain after kill -9: %v", rep.Problems)
	}
	t.Logf("%d answered statements, all in the log", len(all))
}

// TestFullAuditStoreRefusesStatements puts a broker's audit log on a small filesystem and fills it.
// The next statement is refused (nothing unrecorded reaches the database), and new connections are
// refused until the store is fixed.
func TestFullAuditStoreRefusesStatements(t *testing.T) {
	s, _ := shared(t)
	dir := smallAuditFS(t, s, "small-audit-fs")
	// The packs, and a policy that lets the analyst insert into the probe table.
	policies := packsWith(t, "probe.cedar", `@id("analyst-probe-insert")
permit (principal in Group::"analysts", action == Action::"sql:insert", resource == Table::"shop/public.audit_probe");`)
	b, err := s.StartBroker(t.Context(), stack.BrokerOptions{Name: "svidbroker-fullaudit", Binary: brokerBin, AuditDir: dir, PolicyDir: policies})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Stop()
	f := clientFiles(t, s, stack.PersonaAnalyst)
	cfg := pgxConfig(t, b, f)
	conn, err := pgx.ConnectConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(t.Context(), "SELECT 1").Scan(&n); err != nil {
		t.Fatal(err)
	}
	// Fill the filesystem, as another writer would.
	fillFS(t, dir)
	// The chain's last page may still have room; insert until the log cannot grow, then check that
	// the refused insert never ran.
	admin, err := s.Postgres.Connect(t.Context(), "shop")
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	for _, q := range []string{"CREATE TABLE audit_probe (x int)", "GRANT INSERT ON audit_probe TO " + stack.BrokerDBRole} {
		if _, err := admin.Exec(t.Context(), q); err != nil {
			t.Fatal(err)
		}
	}
	ran := 0
	for ; ran < 2000; ran++ {
		if _, err = conn.Exec(t.Context(), fmt.Sprintf("INSERT INTO audit_probe VALUES (%d)", ran)); err != nil {
			break
		}
	}
	if err == nil || !strings.Contains(err.Error(), "audit log is unavailable") {
		t.Fatalf("after %d inserts on a full audit store: %v", ran, err)
	}
	var rows int
	if err := admin.QueryRow(t.Context(), "SELECT count(*) FROM audit_probe").Scan(&rows); err != nil || rows != ran {
		t.Fatalf("%d inserts were answered but %d rows exist (%v): an unrecorded statement ran", ran, rows, err)
	}
	out, err := psql(t, b, f, nil, "SELECT 1")
	if err == nil {
		t.Fatalf("new connection accepted with a failed audit log: %s", out)
	}
	if code, body := readyz(t, b); code != http.StatusServiceUnavailable || !strings.Contains(body, "audit") {
		t.Fatalf("/readyz = %d %q", code, body)
	}
}

// TestRecordedResultsAreMasked: the migrator's statements are recorded in full (@record("full")), rows
// included, exactly as the client saw them; no recording anywhere holds a value in clear.
func TestRecordedResultsAreMasked(t *testing.T) {
	s, b := shared(t)
	marker := fmt.Sprintf("data-marker-%d", time.Now().UnixNano())
	migrator := clientFiles(t, s, stack.PersonaMigrator)
	out, err := psql(t, b, migrator, nil, "SELECT id, name, email, ssn, '"+marker+"' AS m FROM customers WHERE id = 1")
	if err != nil || out != "1|Alice|***|***|"+marker {
		t.Fatalf("psql: %q %v", out, err)
	}
	if _, err := psql(t, b, clientFiles(t, s, stack.PersonaAnalyst), nil, "DELETE FROM orders WHERE total < 0"); err == nil {
		t.Fatal("the analyst's DELETE ran")
	}
	var got *audit.Result
	var deniedRec *audit.Record
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && (got == nil || deniedRec == nil); time.Sleep(200 * time.Millisecond) {
		err = audit.Read(b.AuditDir, b.Chain, func(e audit.Entry) error {
			r := e.Record
			if res := r.Result; res != nil && len(res.Data) == 1 && len(res.Data[0]) == 5 && res.Data[0][4] != nil && *res.Data[0][4] == marker {
				got = res
			}
			if r.Kind == audit.KindDenied && r.Statement != nil && r.Statement.Text == "DELETE FROM orders WHERE total < 0" {
				deniedRec = &r
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if got == nil {
		t.Fatal("the migrator's rows are not in the log")
	}
	row := []string{}
	for _, v := range got.Data[0] {
		row = append(row, *v)
	}
	if strings.Join(row, "|") != "1|Alice|***|***|"+marker || strings.Join(got.Columns, ",") != "id,name,email,ssn,m" {
		t.Fatalf("recorded %q %q", got.Columns, row)
	}
	if deniedRec == nil || deniedRec.Decision == nil || deniedRec.Decision.Allow || deniedRec.Error != "SQLSTATE 42501" {
		t.Fatalf("denied statement record %+v", deniedRec)
	}
	// Nothing in the chain holds a protected value in clear.
	chain, err := os.ReadFile(filepath.Join(b.AuditDir, b.Chain+".jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{aliceEmail, aliceSSN} {
		if strings.Contains(string(chain), secret) {
			t.Fatalf("the audit log holds %q in clear", secret)
		}
	}
}

// TestFullAuditStoreWithOnFailureContinue: an operator who set audit.on_failure = "continue" keeps
// serving when the store fills: statements run (unrecorded) and new connections are accepted.
func TestFullAuditStoreWithOnFailureContinue(t *testing.T) {
	s, _ := shared(t)
	dir := smallAuditFS(t, s, "small-audit-fs-continue")
	b, err := s.StartBroker(t.Context(), stack.BrokerOptions{Name: "svidbroker-failopen", Binary: brokerBin, AuditDir: dir, AuditOnFailure: "continue"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Stop()
	f := clientFiles(t, s, stack.PersonaAnalyst)
	conn, err := pgx.ConnectConfig(t.Context(), pgxConfig(t, b, f))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	fillFS(t, dir)
	// Well past the point where the log can grow: every statement still runs.
	for i := range 500 {
		var n int
		if err := conn.QueryRow(t.Context(), fmt.Sprintf("SELECT %d", i)).Scan(&n); err != nil || n != i {
			t.Fatalf("statement %d with on_failure = continue: %v", i, err)
		}
	}
	if out, err := psql(t, b, f, nil, "SELECT 1"); err != nil || out != "1" {
		t.Fatalf("a new connection with on_failure = continue: %q %v", out, err)
	}
	// The store did fail, and the broker said that the session ran unrecorded.
	logText, err := os.ReadFile(b.LogPath())
	if err != nil || !strings.Contains(string(logText), "UNRECORDED") {
		t.Fatalf("the broker's log does not say statements ran unrecorded (%v)", err)
	}
}

// smallAuditFS mounts a 256 KiB tmpfs owned by the broker's uid, for an audit log that fills up.
func smallAuditFS(t *testing.T, s *stack.Stack, name string) string {
	dir := filepath.Join(s.Dir, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	broker, _ := s.Persona(stack.PersonaBroker)
	opts := fmt.Sprintf("size=256k,mode=0700,uid=%d,gid=%d", broker.UID, broker.UID)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", opts, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount a small tmpfs for the audit log: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", dir).Run() })
	return dir
}

// fillFS fills the filesystem of dir, as another writer would.
func fillFS(t *testing.T, dir string) {
	filler, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	defer filler.Close()
	chunk := make([]byte, 4096)
	for {
		if _, err := filler.Write(chunk); err != nil {
			return
		}
	}
}

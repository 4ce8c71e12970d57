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
	// The refusal's record may be written just after psql shows the refusal: poll for it.
	var denied []audit.SessionSummary
	for deadline := time.Now().Add(10 * time.Second); len(denied) == 0 && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if denied, err = audit.Sessions(audit.Files(b.AuditDir, b.Chain), audit.Filter{SPIFFEID: "spiffe://example.org/agent/intruder", Decision: "deny"}); err != nil {
			t.Fatal(err)
		}
	}
	if len(denied) == 0 {
		t.Fatal("the intruder's refusal is not searchable")
	}
}

// durabilities are the audit durability levels; the tests of failures run in each.
var durabilities = []string{"commit", "statement"}

// TestKillDashNineLosesNoRecordOfWhatRan runs reads and writes through a broker, in both protocols, in
// and out of transaction blocks, each carrying a unique marker, and kills the broker with SIGKILL
// mid-load; then restarts it on the same chain. The chain verifies; every statement whose result a
// client received is in the log; and every committed change (the markers in the table, read as the
// superuser) has its record.
func TestKillDashNineLosesNoRecordOfWhatRan(t *testing.T) {
	s, _ := shared(t)
	admin, err := s.Postgres.Connect(t.Context(), "shop")
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	for _, q := range []string{"CREATE TABLE IF NOT EXISTS crash_markers (m text)", "GRANT INSERT ON crash_markers TO " + stack.BrokerDBRole} {
		if _, err := admin.Exec(t.Context(), q); err != nil {
			t.Fatal(err)
		}
	}
	policies := packsWith(t, "crash.cedar", `@id("analyst-crash-markers")
permit (principal in Group::"analysts", action == Action::"sql:insert", resource == Table::"shop/public.crash_markers");`)
	f := clientFiles(t, s, stack.PersonaAnalyst)
	for _, durability := range durabilities {
		t.Run(durability, func(t *testing.T) {
			opts := stack.BrokerOptions{Name: "svidbroker-kill9-" + durability, Binary: brokerBin, PolicyDir: policies, AuditDurability: durability}
			b, err := s.StartBroker(t.Context(), opts)
			if err != nil {
				t.Fatal(err)
			}
			prefix := fmt.Sprintf("kill9-%s-%d", durability, time.Now().UnixNano())
			answered := loadUntilKilled(t, b, pgxConfig(t, b, f), prefix)
			// The same broker again, on the same chain: it starts only on a chain that verifies.
			again, err := s.StartBroker(t.Context(), opts)
			if err != nil {
				t.Fatal(err)
			}
			defer again.Stop()
			if rep := verifyChain(t, again); !rep.OK() {
				t.Fatalf("chain after kill -9: %v", rep.Problems)
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
			for _, text := range answered {
				if !logged[text] {
					t.Fatalf("%q was answered but is not in the log", text)
				}
			}
			rows, err := admin.Query(t.Context(), "SELECT m FROM crash_markers WHERE m LIKE $1", prefix+"%")
			if err != nil {
				t.Fatal(err)
			}
			committed, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range committed {
				if !logged[insertMarker(m)] {
					t.Fatalf("marker %s was committed but its statement is not in the log", m)
				}
			}
			if len(answered) < 40 || len(committed) < 10 {
				t.Fatalf("only %d statements answered and %d changes committed before the kill", len(answered), len(committed))
			}
			t.Logf("%d answered statements and %d committed changes, all in the log", len(answered), len(committed))
		})
	}
}

func insertMarker(m string) string { return "INSERT INTO crash_markers VALUES ('" + m + "')" }

// loadUntilKilled runs six clients through b until it is killed with SIGKILL: reads and autocommitted
// inserts in the simple and the extended protocol, and blocks of inserts in both. It returns the texts
// of the statements whose results came back.
func loadUntilKilled(t *testing.T, b *stack.Broker, cfg *pgx.ConnConfig, prefix string) []string {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	type worker struct {
		simple, write, block bool
	}
	workers := []worker{{simple: true}, {}, {simple: true, write: true}, {write: true}, {simple: true, write: true, block: true}, {write: true, block: true}}
	answered := make(chan []string, len(workers))
	for w, kind := range workers {
		go func() {
			var got []string
			defer func() { answered <- got }()
			c := cfg.Copy()
			if kind.simple {
				c.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
			}
			conn, err := pgx.ConnectConfig(ctx, c)
			if err != nil {
				return
			}
			defer conn.Close(context.Background())
			for i := 0; ; i++ {
				m := fmt.Sprintf("%s-%d-%d", prefix, w, i)
				switch {
				case !kind.write:
					text := "SELECT '" + m + "'::text"
					var out string
					if err := conn.QueryRow(ctx, text).Scan(&out); err != nil || out != m {
						return
					}
					got = append(got, text)
				case !kind.block:
					if _, err := conn.Exec(ctx, insertMarker(m)); err != nil {
						return
					}
					got = append(got, insertMarker(m))
				default:
					tx, err := conn.Begin(ctx)
					if err != nil {
						return
					}
					var texts []string
					for j := range 3 {
						text := insertMarker(fmt.Sprintf("%s-%d", m, j))
						if _, err := tx.Exec(ctx, text); err != nil {
							return
						}
						texts = append(texts, text)
					}
					if err := tx.Commit(ctx); err != nil {
						return
					}
					got = append(got, texts...)
				}
			}
		}()
	}
	time.Sleep(1500 * time.Millisecond)
	if err := b.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var all []string
	for range workers {
		all = append(all, <-answered...)
	}
	return all
}

// TestFullAuditStoreRefusesStatements puts a broker's audit log on a small filesystem and fills it.
// The next statement is refused (nothing unrecorded reaches the database), and new connections are
// refused until the store is fixed.
func TestFullAuditStoreRefusesStatements(t *testing.T) {
	for _, durability := range durabilities {
		t.Run(durability, func(t *testing.T) { fullAuditStoreRefusesStatements(t, durability) })
	}
}

func fullAuditStoreRefusesStatements(t *testing.T, durability string) {
	s, _ := shared(t)
	dir := smallAuditFS(t, s, "small-audit-fs-"+durability)
	// The packs, and a policy that lets the analyst insert into the probe table.
	policies := packsWith(t, "probe.cedar", `@id("analyst-probe-insert")
permit (principal in Group::"analysts", action == Action::"sql:insert", resource == Table::"shop/public.audit_probe");`)
	b, err := s.StartBroker(t.Context(), stack.BrokerOptions{Name: "svidbroker-fullaudit-" + durability, Binary: brokerBin, AuditDir: dir,
		PolicyDir: policies, AuditDurability: durability})
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
	for _, q := range []string{"CREATE TABLE IF NOT EXISTS audit_probe (x int)", "TRUNCATE audit_probe", "GRANT INSERT ON audit_probe TO " + stack.BrokerDBRole} {
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
	// The refusal comes after TLS, as a FATAL error psql shows (not "error response during SSL exchange").
	if !strings.Contains(out, "FATAL:  svidbroker: not accepting connections: the audit log is unavailable") {
		t.Fatalf("psql does not show why the connection was refused:\n%s", out)
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
	for _, durability := range durabilities {
		t.Run(durability, func(t *testing.T) { fullAuditStoreWithOnFailureContinue(t, durability) })
	}
}

func fullAuditStoreWithOnFailureContinue(t *testing.T, durability string) {
	s, _ := shared(t)
	dir := smallAuditFS(t, s, "small-audit-fs-continue-"+durability)
	b, err := s.StartBroker(t.Context(), stack.BrokerOptions{Name: "svidbroker-failopen-" + durability, Binary: brokerBin, AuditDir: dir,
		AuditOnFailure: "continue", AuditDurability: durability})
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

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/test/stack"
)

// TestPostgresAuditSinkForFleets keeps two brokers' chains in the stack's real PostgreSQL: both verify
// after concurrent writing, a second writer for a chain is refused, a duplicate entry cannot fork a
// chain, and edits, deletions and a truncated tail made with SQL are all reported.
func TestPostgresAuditSinkForFleets(t *testing.T) {
	s, _ := shared(t)
	ctx := t.Context()
	admin, err := s.Postgres.Connect(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	if _, err := admin.Exec(ctx, "CREATE DATABASE audit_fleet"); err != nil {
		t.Fatal(err)
	}
	keysDir := t.TempDir()
	if err := audit.GenerateKeys(keysDir, "fleet"); err != nil {
		t.Fatal(err)
	}
	key, _ := audit.LoadMACKey(filepath.Join(keysDir, audit.MACKeyFile))
	signer, _ := audit.LoadSigner(filepath.Join(keysDir, audit.SigningKeyFile))
	verifier, _ := audit.LoadVerifier(filepath.Join(keysDir, audit.VerifierKeyFile))
	connect := func() *pgx.Conn {
		c, err := s.Postgres.Connect(ctx, "audit_fleet")
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	open := func(chain string) (*audit.Log, error) {
		return audit.OpenPostgres(ctx, audit.Config{Chain: chain, MACKey: key, Signer: signer, CheckpointInterval: time.Hour}, connect())
	}
	var wg sync.WaitGroup
	for _, chain := range []string{"broker-1", "broker-2"} {
		l, err := open(chain)
		if err != nil {
			t.Fatal(err)
		}
		if chain == "broker-1" {
			if _, err := open(chain); err == nil || !strings.Contains(err.Error(), "another broker") {
				t.Fatalf("a second writer for %s: %v", chain, err)
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var inner sync.WaitGroup
			for w := range 4 {
				inner.Add(1)
				go func() {
					defer inner.Done()
					for i := range 50 {
						r := audit.Record{Kind: audit.KindStatement, Session: fmt.Sprint(w),
							Statement: &audit.Statement{Protocol: "simple", Text: fmt.Sprintf("SELECT %d", w*100+i)}}
						if err := l.Append(r); err != nil {
							t.Error(err)
							return
						}
					}
				}()
			}
			inner.Wait()
			if err := l.Close(); err != nil { // signs a final checkpoint
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	vconn := connect()
	defer vconn.Close(context.Background())
	check := func(chain, want string) {
		t.Helper()
		rep, err := audit.VerifyPostgres(ctx, vconn, chain, key, verifier)
		if err != nil {
			t.Fatal(err)
		}
		got := strings.Join(rep.Problems, "\n")
		if want == "" && (!rep.OK() || rep.Records != 201 || rep.Checkpoints != 2) { // the start record and its checkpoint, 200, the final checkpoint
			t.Fatalf("%s: %+v", chain, rep)
		}
		if want != "" && !strings.Contains(got, want) {
			t.Fatalf("%s: problems do not say %q:\n%s", chain, want, got)
		}
	}
	check("broker-1", "")
	check("broker-2", "")

	db := connect()
	defer db.Close(context.Background())
	if _, err := db.Exec(ctx, "INSERT INTO svidbroker_audit SELECT chain, seq, prev, rec, mac FROM svidbroker_audit WHERE chain = 'broker-1' AND seq = 3"); err == nil {
		t.Fatal("a duplicate entry forked the chain")
	}
	for _, q := range []string{
		`UPDATE svidbroker_audit SET rec = replace(rec, '"SELECT', '"select') WHERE chain = 'broker-1' AND seq = 5`,
		`DELETE FROM svidbroker_audit WHERE chain = 'broker-1' AND seq = 9`,
		`DELETE FROM svidbroker_audit WHERE chain = 'broker-2' AND seq > 190`,
	} {
		if _, err := db.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	check("broker-1", "record 5 was altered")
	check("broker-1", "records 9 to 9 are missing")
	check("broker-2", "signed at record 201, but the log ends at record 190 (truncated)")
}

// TestBrokerAuditsToPostgres runs a broker whose audit block names a PostgreSQL database, which it
// reaches with its own SVID. A psql session lands in the database's chain, which verifies.
func TestBrokerAuditsToPostgres(t *testing.T) {
	s, _ := shared(t)
	ctx := t.Context()
	admin, err := s.Postgres.Connect(ctx, "shop")
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	if _, err := admin.Exec(ctx, "GRANT CREATE ON SCHEMA public TO "+stack.BrokerDBRole); err != nil {
		t.Fatal(err)
	}
	keys := filepath.Join(s.Dir, "pg-audit-keys")
	if err := audit.GenerateKeys(keys, "pg-audit"); err != nil {
		t.Fatal(err)
	}
	broker, _ := s.Persona(stack.PersonaBroker)
	if err := stack.ChownTree(keys, int(broker.UID), int(broker.UID)); err != nil {
		t.Fatal(err)
	}
	b, err := s.StartBroker(ctx, stack.BrokerOptions{Name: "svidbroker-pgaudit", Binary: brokerBin, NoAudit: true, Extra: fmt.Sprintf(`
audit {
  chain            = "pg-chain"
  mac_key_file     = %q
  signing_key_file = %q
  checkpoint_interval = "1s"
  postgres {
    address     = "%s:%d"
    database    = "shop"
    user        = %q
    ca_file     = %q
    server_name = "localhost"
  }
}
`, filepath.Join(keys, audit.MACKeyFile), filepath.Join(keys, audit.SigningKeyFile), s.Postgres.Host, s.Postgres.Port, stack.BrokerDBRole, s.Postgres.CAPath)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Stop()
	marker := fmt.Sprintf("pg-audit-%d", time.Now().UnixNano())
	if out, err := psql(t, b, clientFiles(t, s, stack.PersonaAnalyst), nil, "SELECT '"+marker+"'"); err != nil {
		t.Fatalf("psql: %v %s", err, out)
	}
	key, _ := audit.LoadMACKey(filepath.Join(keys, audit.MACKeyFile))
	verifier, _ := audit.LoadVerifier(filepath.Join(keys, audit.VerifierKeyFile))
	var rep *audit.Report
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(300 * time.Millisecond) {
		if rep, err = audit.VerifyPostgres(ctx, admin, "pg-chain", key, verifier); err == nil && rep.OK() && rep.Checkpoints > 0 {
			break
		}
	}
	if err != nil || !rep.OK() || rep.Records < 3 || rep.Checkpoints == 0 {
		t.Fatalf("chain in PostgreSQL: %+v %v", rep, err)
	}
	var n int
	if err := admin.QueryRow(ctx, "SELECT count(*) FROM svidbroker_audit WHERE chain = 'pg-chain' AND rec LIKE '%"+marker+"%'").Scan(&n); err != nil || n != 1 {
		t.Fatalf("statement rows: %d %v", n, err)
	}
	// An auditor verifies and searches the chain with the CLI and credentials of their own.
	url := fmt.Sprintf("postgres://%s@%s:%d/shop?sslmode=verify-full&sslrootcert=%s", s.Postgres.Superuser, s.Postgres.Host, s.Postgres.Port, s.Postgres.CAPath)
	for _, args := range [][]string{
		{"audit", "verify", "--postgres", url, "--chain", "pg-chain", "--mac-key", filepath.Join(keys, audit.MACKeyFile)},
		{"audit", "sessions", "--postgres", url, "--chain", "pg-chain", "--spiffe-id", "spiffe://example.org/agent/analyst"},
	} {
		cmd := exec.Command(brokerBin, args...)
		cmd.Env = append(os.Environ(), "PGPASSWORD="+s.Postgres.SuperuserPassword())
		out, err := cmd.CombinedOutput()
		if err != nil || !(strings.Contains(string(out), "verified through record") || strings.Contains(string(out), "1 operations")) {
			t.Fatalf("svidbroker %s: %v\n%s", args[1], err, out)
		}
	}
}

package e2e

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/test/stack"
)

// lockCases: a lock is not a read. Readers may not take row locks, table locks or advisory locks, nor
// keep a transaction past their session; the migrator may lock what it migrates.
var lockCases = []inspectCase{
	{stack.PersonaAnalyst, "SELECT id FROM orders FOR UPDATE", denied("LOCK on table public.orders", "no policy permits it")},
	{stack.PersonaAnalyst, "SELECT id FROM orders FOR SHARE", denied("LOCK on table public.orders")},
	{stack.PersonaAnalyst, "SELECT id FROM orders FOR NO KEY UPDATE", denied("LOCK on table public.orders")},
	{stack.PersonaAnalyst, "SELECT id FROM orders FOR KEY SHARE", denied("LOCK on table public.orders")},
	{stack.PersonaAnalyst, "SELECT o.id FROM orders o JOIN customers c ON c.id = o.customer_id FOR UPDATE OF o", denied("LOCK on table")},
	{stack.PersonaAnalyst, "SELECT pg_advisory_lock(42)", denied("LOCK statement")},
	{stack.PersonaAnalyst, "SELECT pg_try_advisory_xact_lock(42)", denied("LOCK statement")},
	{stack.PersonaAnalyst, "SELECT pg_catalog.pg_advisory_lock_shared(1, 2)", denied("LOCK statement")},
	{stack.PersonaAnalyst, "BEGIN; LOCK TABLE orders IN ACCESS EXCLUSIVE MODE; COMMIT", denied("LOCK on table public.orders")},
	{stack.PersonaAnalyst, "BEGIN; SELECT 1; PREPARE TRANSACTION 'agent-kept'", denied("LOCK statement")},
	{stack.PersonaAnalyst, "COMMIT PREPARED 'someone-elses'", denied("LOCK statement")},
	{stack.PersonaSupport, "SELECT id FROM orders WHERE id = 1 FOR UPDATE", denied("LOCK on table public.orders")},
	{stack.PersonaSupport, "SELECT pg_advisory_lock(42)", denied("LOCK statement")},
	// Controls: reads and transactions as before; the migrator locks.
	{stack.PersonaAnalyst, "SELECT count(*) FROM orders WHERE customer_id = 1", gives("2")},
	{stack.PersonaAnalyst, "BEGIN; SELECT count(*) FROM orders WHERE customer_id = 1; COMMIT", gives("BEGIN\n2\nCOMMIT")},
	{stack.PersonaMigrator, "BEGIN; SELECT count(*) FROM (SELECT id FROM orders WHERE customer_id = 1 FOR UPDATE) l; ROLLBACK", gives("BEGIN\n2\nROLLBACK")},
	{stack.PersonaMigrator, "SELECT pg_try_advisory_lock(42)::text", gives("true")},
}

func TestLocksFromReadOnlyAgents(t *testing.T) {
	s, b := shared(t)
	runCases(t, s, b, lockCases)
}

// timeoutCases: agents cannot turn the timeouts off or raise them above the target's ceilings (the
// defaults: statement_timeout 5m, lock_timeout 1m, idle_in_transaction 3m); sessions start at the
// ceilings, and RESET returns there.
var timeoutCases = []inspectCase{
	{stack.PersonaAnalyst, "SET statement_timeout = 0", denied("statement_timeout = 0", "turns the timeout off", "5m0s")},
	{stack.PersonaAnalyst, "SET statement_timeout = '1h'", denied("statement_timeout", "ceiling of 5m0s")},
	{stack.PersonaAnalyst, "SET LOCAL lock_timeout = '2min'", denied("lock_timeout", "ceiling of 1m0s")},
	{stack.PersonaAnalyst, "SET idle_in_transaction_session_timeout = 0", denied("idle_in_transaction_session_timeout", "3m0s")},
	{stack.PersonaAnalyst, "SET statement_timeout = '100us'", denied("statement_timeout", "less than 1ms")},
	{stack.PersonaAnalyst, "SET statement_timeout = '0x7fffffff'", denied("statement_timeout", "up to 5m0s")},
	{stack.PersonaAnalyst, "SELECT set_config('statement_timeout', '0', false)", denied("baseline-no-admin-sql", "set_config")},
	// Controls.
	{stack.PersonaAnalyst, "SHOW statement_timeout", gives("5min")},
	{stack.PersonaAnalyst, "SHOW lock_timeout", gives("1min")},
	{stack.PersonaAnalyst, "SET statement_timeout = '10s'; SHOW statement_timeout", gives("SET\n10s")},
	{stack.PersonaAnalyst, "BEGIN; SET LOCAL lock_timeout = 500; SHOW lock_timeout; COMMIT", gives("BEGIN\nSET\n500ms\nCOMMIT")},
	{stack.PersonaAnalyst, "SET statement_timeout = '10s'; RESET statement_timeout; SHOW statement_timeout", gives("SET\nRESET\n5min")},
	{stack.PersonaAnalyst, "SET idle_in_transaction_session_timeout = '1min'; SHOW idle_in_transaction_session_timeout", gives("SET\n1min")},
}

func TestTimeoutsStayUnderTheTargetsCeilings(t *testing.T) {
	s, b := shared(t)
	runCases(t, s, b, timeoutCases)
	// Startup parameters are held to the same ceilings.
	f := clientFiles(t, s, stack.PersonaAnalyst)
	for value, ok := range map[string]bool{"0": false, "6min": false, "2s": true} {
		cfg := pgxConfig(t, b, f)
		cfg.RuntimeParams["statement_timeout"] = value
		conn, err := pgx.ConnectConfig(t.Context(), cfg)
		if !ok {
			if err == nil {
				conn.Close(context.Background())
				t.Errorf("startup statement_timeout = %s accepted", value)
			} else if !strings.Contains(err.Error(), "statement_timeout") {
				t.Errorf("startup statement_timeout = %s: %v does not name the setting", value, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("startup statement_timeout = %s: %v", value, err)
		}
		var got string
		if err := conn.QueryRow(t.Context(), "SHOW statement_timeout").Scan(&got); err != nil || got != value {
			t.Errorf("statement_timeout = %q (%v), want %q", got, err, value)
		}
		conn.Close(context.Background())
	}
	// libpq's options (-c statement_timeout=0) stay refused altogether.
	if out, err := psql(t, b, f, []string{"PGOPTIONS=-c statement_timeout=0"}, "SELECT 1"); err == nil || !strings.Contains(out, "options") {
		t.Errorf("PGOPTIONS: %v: %s", err, out)
	}
}

// TestIdleInTransactionSessionIsEnded: the broker ends a session left idle in a transaction past its
// target's limit, with 25P03 to the client and a session end that says why; a statement that runs
// longer than the limit, and idleness outside a transaction, end nothing.
func TestIdleInTransactionSessionIsEnded(t *testing.T) {
	s, _ := shared(t)
	ctx := t.Context()
	const limit = 2 * time.Second
	b, err := s.StartBroker(ctx, stack.BrokerOptions{Name: "svidbroker-idle", Binary: brokerBin,
		TargetExtra: "  timeouts {\n    idle_in_transaction = \"" + limit.String() + "\"\n  }\n"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Stop()
	conn := connect(t, s, b, stack.PersonaAnalyst)
	// Controls: busy in a transaction for longer than the limit, then idle outside one. The
	// transaction is one query string, so that no gap between its statements (a loaded machine can
	// make one last seconds) is idleness in a transaction.
	busy := "BEGIN; SELECT pg_sleep(" + strconv.Itoa(int((2 * limit).Seconds())) + "); COMMIT"
	if _, err := conn.Exec(ctx, busy); err != nil {
		t.Fatalf("%s: %v", busy, err)
	}
	time.Sleep(2 * limit)
	if _, err := conn.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatalf("a session idle outside a transaction was ended: %v", err)
	}
	// Idle in a transaction: the broker's FATAL arrives without the client sending anything.
	if _, err := conn.Exec(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "SELECT count(*) FROM orders"); err != nil {
		t.Fatal(err)
	}
	wait, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err = conn.PgConn().WaitForNotification(wait)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "25P03" || pgErr.Severity != "FATAL" ||
		!strings.Contains(pgErr.Message, "idle in a transaction") || !strings.Contains(pgErr.Message, limit.String()) {
		t.Fatalf("got %v, want FATAL 25P03 naming the limit", err)
	}
	// The audit log says the broker ended it, and why.
	found := ""
	for deadline := time.Now().Add(10 * time.Second); found == "" && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		_ = audit.Read(b.AuditDir, b.Chain, func(e audit.Entry) error {
			if e.Record.Kind == audit.KindSessionEnd && strings.Contains(e.Record.Detail["reason"], "idle in a transaction") {
				found = e.Record.Detail["reason"]
			}
			return nil
		})
	}
	if !strings.Contains(found, limit.String()) {
		t.Fatalf("no session end in the audit log says the session was idle in a transaction past %s (found %q)", limit, found)
	}
}

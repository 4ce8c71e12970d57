package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/broker/credential"
	"github.com/svidbroker/svidbroker/test/stack"
)

// fleetMember is one broker of a fleet: its name (log, configuration, lease journal) and its own
// chain in the shared PostgreSQL audit store, with its own keys.
type fleetMember struct {
	name, chain, keys, journal string
	broker                     *stack.Broker
}

// fleetAudit is the audit block of a fleet member: its own chain, in the stack's database "shop",
// which the broker reaches with its own SVID.
func fleetAudit(s *stack.Stack, m *fleetMember) string {
	return fmt.Sprintf(`
audit {
  chain               = %q
  mac_key_file        = %q
  signing_key_file    = %q
  checkpoint_interval = "1s"
  postgres {
    address     = "%s:%d"
    database    = "shop"
    user        = %q
    ca_file     = %q
    server_name = "localhost"
  }
}
`, m.chain, filepath.Join(m.keys, audit.MACKeyFile), filepath.Join(m.keys, audit.SigningKeyFile),
		s.Postgres.Host, s.Postgres.Port, stack.BrokerDBRole, s.Postgres.CAPath)
}

// fleetLoad is what the clients of a fleet got acknowledged.
type fleetLoad struct {
	mu sync.Mutex
	// texts are the statements whose results came back; inserted the markers of acknowledged inserts.
	texts    []string
	inserted []string
	// victimRoles are the PostgreSQL roles of pgx sessions that went through the victim.
	victimRoles []string
	acked       atomic.Int64
	// reconnects counts connections a client opened again after one failed; pgxReconnects those of
	// the pgx clients, whose sessions outlive a statement.
	reconnects, pgxReconnects atomic.Int64
	// warm is done once every client has its share of statements acknowledged; killed is set once
	// the victim is dead.
	warm   sync.WaitGroup
	killed atomic.Bool
}

func (l *fleetLoad) ack(texts []string, markers ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.texts = append(l.texts, texts...)
	l.inserted = append(l.inserted, markers...)
	l.acked.Add(int64(len(texts)))
}

func fleetInsert(m string) string { return "INSERT INTO fleet_markers VALUES ('" + m + "')" }
func fleetSelect(m string) string { return "SELECT m FROM fleet_markers WHERE m = '" + m + "'" }

// statementRetries bounds how often a client retries a statement whose connection failed.
const statementRetries = 40

// Each client runs until it has run this many statements (psql) or rounds (pgx) after the kill,
// and no more than maxStatements; the kill comes once each has warmUp acknowledged.
const (
	psqlAfterKill, pgxAfterKill = 6, 20
	psqlWarmUp, pgxWarmUp       = 2, 10
	maxStatements               = 5000
)

// TestFleetSurvivesABrokersDeath runs three brokers on one stack, each with its own chain in the
// shared PostgreSQL audit store and its own lease journal, every session on a credential leased from
// Vault, behind one round-robin TCP address. psql and pgx clients insert unique markers and read
// them back through it, reconnecting when a connection fails; mid-load one broker gets SIGKILL.
//   - Every client finishes, through the brokers left.
//   - Every acknowledged statement is in some broker's chain, every acknowledged insert is in the
//     table, and every row in the table has its statement in a chain.
//   - Every chain verifies with `svidbroker audit verify` against the PostgreSQL store.
//   - The dead broker's leases are revoked when it restarts on its journal: Vault no longer knows
//     them, their PostgreSQL roles are gone, and its chain shows each acquired, then revoked at
//     the start (only revoked when the kill came before the acquisition record's flush).
//   - The metrics show it: the survivors started sessions after the kill, and the restarted broker
//     counts the leases it revoked.
func TestFleetSurvivesABrokersDeath(t *testing.T) {
	s, _ := shared(t)
	ctx := t.Context()
	admin, err := s.Postgres.Connect(ctx, "shop")
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	for _, q := range []string{
		"CREATE TABLE IF NOT EXISTS fleet_markers (m text PRIMARY KEY)",
		// Each session's role is a fresh one from Vault: the table is open to every role, and Cedar
		// decides who may write it.
		"GRANT SELECT, INSERT ON fleet_markers TO PUBLIC",
		// The audit tables, in the same database.
		"GRANT CREATE ON SCHEMA public TO " + stack.BrokerDBRole,
	} {
		if _, err := admin.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	policies := packsWith(t, "fleet.cedar", `@id("analyst-fleet-markers")
permit (principal in Group::"analysts", action == Action::"sql:insert", resource == Table::"shop/public.fleet_markers");`)
	v, root := startVault(t)
	configureVault(t, s, root, "1h", "2h") // long enough that only a revocation removes a role
	brokerPersona, err := s.Persona(stack.PersonaBroker)
	if err != nil {
		t.Fatal(err)
	}

	run := time.Now().Format("150405")
	fleet := make([]*fleetMember, 3)
	start := func(m *fleetMember) {
		t.Helper()
		if _, err := os.Stat(filepath.Join(m.keys, audit.MACKeyFile)); errors.Is(err, os.ErrNotExist) {
			if err := audit.GenerateKeys(m.keys, m.chain); err != nil {
				t.Fatal(err)
			}
			if err := stack.ChownTree(m.keys, int(brokerPersona.UID), int(brokerPersona.UID)); err != nil {
				t.Fatal(err)
			}
		}
		block, err := s.VaultBlock(m.name, v.Addr, v.CACertPEM)
		if err != nil {
			t.Fatal(err)
		}
		if m.broker, err = s.StartBroker(ctx, stack.BrokerOptions{Name: m.name, Binary: brokerBin, VaultRoles: true,
			PolicyDir: policies, NoAudit: true, Extra: block + fleetAudit(s, m)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range fleet {
		name := fmt.Sprintf("svidbroker-fleet%d-%s", i+1, run)
		fleet[i] = &fleetMember{name: name, chain: name, keys: filepath.Join(s.Dir, name+"-audit-keys"),
			journal: filepath.Join(s.Dir, name+"-leases")} // where VaultBlock puts the journal
		start(fleet[i])
	}
	defer func() {
		for _, m := range fleet {
			m.broker.Stop()
		}
	}()
	const victim = 1
	dead := fleet[victim].broker
	lb := startRoundRobin(t, []string{fleet[0].broker.Addr, fleet[1].broker.Addr, fleet[2].broker.Addr})
	front := &stack.Broker{Addr: lb.Addr()} // what clients see: one address
	analyst := clientFiles(t, s, stack.PersonaAnalyst)

	startedAt := func(b *stack.Broker) float64 {
		_, fams := scrape(t, b)
		return metricAt(fams, "svidbroker_sessions_started_total", map[string]string{"target": "shop", "protocol": "postgres"})
	}
	// A session held on the victim itself, so that it surely dies holding a lease.
	holder, err := pgx.ConnectConfig(ctx, pgxConfig(t, dead, analyst))
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(context.Background())
	heldRole := currentUser(t, holder)

	load := &fleetLoad{}
	prefix := "fleet-" + run
	loadCtx, cancelLoad := context.WithTimeout(ctx, 2*time.Minute)
	defer cancelLoad()
	type client struct {
		name string
		run  func() error
		// ready, if set, is closed once the client has its first connection.
		ready chan struct{}
	}
	var clients []client
	// The pgx clients connect one after the other, before the psql clients: the rotation then puts the
	// second of them (pgx1) on the victim, so that a long-lived session surely dies with it.
	for w, mode := range []struct {
		simple, block bool
	}{{simple: true}, {}, {block: true}, {simple: true, block: true}} {
		name := fmt.Sprintf("pgx%d", w)
		cfg := pgxConfig(t, front, analyst)
		ready := make(chan struct{})
		clients = append(clients, client{name, func() error {
			return fleetPgxClient(loadCtx, cfg, lb, victim, mode.simple, mode.block, prefix+"-"+name, load, ready)
		}, ready})
	}
	for w := range 3 {
		name := fmt.Sprintf("psql%d", w)
		clients = append(clients, client{name, func() error {
			return fleetPsqlClient(t, front, analyst, prefix+"-"+name, load)
		}, nil})
	}
	errs := make(chan error, len(clients))
	load.warm.Add(len(clients))
	for _, c := range clients {
		go func() {
			if err := c.run(); err != nil {
				errs <- fmt.Errorf("client %s: %w", c.name, err)
				return
			}
			errs <- nil
		}()
		if c.ready != nil {
			<-c.ready
		}
	}

	// Mid-load: once every client has statements acknowledged, the victim dies.
	warm := make(chan struct{})
	go func() { load.warm.Wait(); close(warm) }()
	select {
	case <-loadCtx.Done():
		t.Fatalf("the load stalled at %d acknowledged statements", load.acked.Load())
	case <-warm:
	}
	survivorsAtKill := []float64{startedAt(fleet[0].broker), startedAt(fleet[2].broker)}
	if err := dead.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	load.killed.Store(true)
	ackedAtKill := load.acked.Load()
	var failed []string
	for range clients {
		if err := <-errs; err != nil {
			failed = append(failed, err.Error())
		}
	}
	if len(failed) > 0 {
		t.Fatalf("clients did not finish through the brokers left:\n%s", strings.Join(failed, "\n"))
	}
	t.Logf("%d statements acknowledged, %d of them after the kill; %d reconnects (%d of pgx sessions); %d connections refused by the dead broker",
		load.acked.Load(), load.acked.Load()-ackedAtKill, load.reconnects.Load(), load.pgxReconnects.Load(), lb.refusals())
	if lb.refusals() == 0 || load.reconnects.Load() == 0 || load.pgxReconnects.Load() == 0 {
		t.Fatalf("no client met the dead broker (%d refused connections, %d reconnects, %d of pgx sessions): the test proved nothing",
			lb.refusals(), load.reconnects.Load(), load.pgxReconnects.Load())
	}
	for i, m := range []*fleetMember{fleet[0], fleet[2]} {
		if after := startedAt(m.broker); after <= survivorsAtKill[i] {
			t.Errorf("%s: sessions started %v at the kill and %v at the end: it took no client over", m.name, survivorsAtKill[i], after)
		}
	}

	// The dead broker's leases: in its journal; those of the sessions it held at its death (the
	// holder's and those of pgx sessions through it) still live in Vault, their roles still there. The
	// journal may also name a lease revoked just before the kill, not yet removed from it: revoking
	// it again succeeds, as in Vault.
	journal, err := credential.OpenJournal(fleet[victim].journal)
	if err != nil {
		t.Fatal(err)
	}
	orphans, err := journal.List()
	if err != nil {
		t.Fatal(err)
	}
	live := 0
	for _, id := range orphans {
		if _, err := root.Sys().LookupWithContext(ctx, id); err == nil {
			live++
		}
	}
	load.victimRoles = append(load.victimRoles, heldRole)
	if live == 0 || live < len(load.victimRoles) {
		t.Fatalf("the dead broker's journal holds %d leases, %d of them live in Vault, though %d sessions on it held one: the test would prove nothing",
			len(orphans), live, len(load.victimRoles))
	}
	for _, role := range load.victimRoles {
		if !roleExists(t, role) {
			t.Fatalf("role %s of a session the dead broker held vanished before the restart: the test would prove nothing", role)
		}
	}
	// The victim again, on its journal and chain.
	start(fleet[victim])
	for _, id := range orphans {
		if _, err := root.Sys().LookupWithContext(ctx, id); err == nil {
			t.Errorf("lease %s of the dead broker is still live after its restart", id)
		}
	}
	for _, role := range load.victimRoles {
		waitRoleGone(t, role)
	}
	if left, err := journal.List(); err != nil || len(left) != 0 {
		t.Errorf("the journal still holds %v (%v) after the restart's sweep", left, err)
	}
	if _, fams := scrape(t, fleet[victim].broker); metricAt(fams, "svidbroker_vault_leases_total", map[string]string{"event": "revoked"}) < float64(len(orphans)) {
		t.Errorf("the restarted broker counts %v leases revoked; it revoked %d left by its predecessor",
			metricAt(fams, "svidbroker_vault_leases_total", map[string]string{"event": "revoked"}), len(orphans))
	}

	// The chains: closed cleanly (each signs a final checkpoint), then read and verified.
	for _, m := range fleet {
		if err := m.broker.Stop(); err != nil {
			t.Errorf("%s: stop: %v", m.name, err)
		}
	}
	logged := map[string]string{} // statement text → chain
	// The dead broker's chain shows each orphaned lease acquired by a session of the dead run, then
	// revoked at the restart (or only revoked, when the kill came before the acquisition's flush).
	leaseEvents := map[string][]string{}
	for _, m := range fleet {
		n := 0
		if err := audit.Postgres(ctx, admin, m.chain)(func(e audit.Entry) error {
			r := e.Record
			if st := r.Statement; st != nil && r.Kind == audit.KindStatement && strings.Contains(st.Text, prefix) {
				logged[st.Text] = m.chain
				n++
			}
			if r.Kind == audit.KindLease && m == fleet[victim] {
				event := r.Detail["event"]
				if r.Session == "" {
					event += " " + r.Detail["found"]
				}
				leaseEvents[r.LeaseID] = append(leaseEvents[r.LeaseID], event)
			}
			return nil
		}); err != nil {
			t.Fatalf("%s: read the chain: %v", m.chain, err)
		}
		if n == 0 {
			t.Errorf("chain %s holds none of the load's statements: its broker served none", m.chain)
		}
	}
	for _, id := range orphans {
		// A session the kill caught between its lease and the flush of its acquisition record (queued,
		// not waited for, ahead of its first statement, whose record would flush it) ran nothing the
		// chain acknowledged: the restart's record is then the lease's only one.
		ev := leaseEvents[id]
		unflushed := len(ev) == 1 && ev[0] == "revoked at start"
		if !unflushed && (len(ev) < 2 || ev[0] != "acquired" || ev[len(ev)-1] != "revoked at start" || slices.Contains(ev, "revoked")) {
			t.Errorf("the dead broker's chain has lease %s %q; want it acquired, then revoked at start", id, strings.Join(ev, ", "))
		}
	}
	for _, text := range load.texts {
		if logged[text] == "" {
			t.Errorf("acknowledged but in no chain: %s", text)
		}
	}
	rows, err := admin.Query(ctx, "SELECT m FROM fleet_markers WHERE m LIKE $1", prefix+"-%")
	if err != nil {
		t.Fatal(err)
	}
	committed, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	inTable := map[string]bool{}
	for _, m := range committed {
		inTable[m] = true
		if logged[fleetInsert(m)] == "" {
			t.Errorf("marker %s is in the table but its INSERT is in no chain", m)
		}
	}
	for _, m := range load.inserted {
		if !inTable[m] {
			t.Errorf("the insert of %s was acknowledged but the row is not in the table", m)
		}
	}
	url := fmt.Sprintf("postgres://%s@%s:%d/shop?sslmode=verify-full&sslrootcert=%s", s.Postgres.Superuser, s.Postgres.Host, s.Postgres.Port, s.Postgres.CAPath)
	for _, m := range fleet {
		cmd := exec.CommandContext(ctx, brokerBin, "audit", "verify", "--postgres", url, "--chain", m.chain, "--mac-key", filepath.Join(m.keys, audit.MACKeyFile))
		cmd.Env = append(os.Environ(), "PGPASSWORD="+s.Postgres.SuperuserPassword())
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "verified through record") {
			t.Errorf("svidbroker audit verify --chain %s: %v\n%s", m.chain, err, out)
		}
	}
	t.Logf("%d acknowledged statements and %d committed rows, all in the three chains; %d orphaned leases (%d live) revoked at the restart",
		len(load.texts), len(committed), len(orphans), live)
}

// connectionFailed says whether err means that the session is gone (the client reconnects), rather
// than that the statement was refused or failed in it.
func connectionFailed(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Severity == "FATAL" || pe.Severity == "PANIC"
	}
	return err != nil
}

// fleetPgxClient runs rounds on one connection through the fleet, reconnecting when it fails, until
// pgxAfterKill rounds ran after the kill: an insert of a unique marker (in a transaction block of two
// if block), then a read of it. A round cut by a failed connection is run again with new markers. It
// records the roles of the sessions that went through broker victim, and closes ready once it has
// its first connection.
func fleetPgxClient(ctx context.Context, cfg *pgx.ConnConfig, lb *roundRobin, victim int, simple, block bool, prefix string, load *fleetLoad, ready chan<- struct{}) error {
	var once, warmed sync.Once
	signal := func() { once.Do(func() { close(ready) }) }
	defer signal()
	defer warmed.Do(load.warm.Done)
	if simple {
		cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	}
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	connect := func() error {
		if conn != nil {
			conn.Close(context.Background())
			conn = nil
		}
		c, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			return err
		}
		var role string
		if err := c.QueryRow(ctx, "SELECT current_user").Scan(&role); err != nil {
			c.Close(context.Background())
			return err
		}
		if lb.route(c.PgConn().Conn().LocalAddr().String()) == victim {
			load.mu.Lock()
			load.victimRoles = append(load.victimRoles, role)
			load.mu.Unlock()
		}
		conn = c
		signal()
		return nil
	}
	round := func(i, attempt int) error {
		m := fmt.Sprintf("%s-%d-%d", prefix, i, attempt)
		var texts, markers []string
		if block {
			tx, err := conn.Begin(ctx)
			if err != nil {
				return err
			}
			for j := range 2 {
				mj := fmt.Sprintf("%s-%d", m, j)
				if _, err := tx.Exec(ctx, fleetInsert(mj)); err != nil {
					tx.Rollback(context.Background())
					return err
				}
				texts, markers = append(texts, fleetInsert(mj)), append(markers, mj)
			}
			if err := tx.Commit(ctx); err != nil {
				return err
			}
		} else {
			if _, err := conn.Exec(ctx, fleetInsert(m)); err != nil {
				return err
			}
			texts, markers = append(texts, fleetInsert(m)), append(markers, m)
		}
		load.ack(texts, markers...)
		var got string
		if err := conn.QueryRow(ctx, fleetSelect(markers[0])).Scan(&got); err != nil {
			return err
		}
		if got != markers[0] {
			return fmt.Errorf("%s read back %q", fleetSelect(markers[0]), got)
		}
		load.ack([]string{fleetSelect(markers[0])})
		return nil
	}
	afterKill := 0
	for i := 0; afterKill < pgxAfterKill; i++ {
		if i == maxStatements {
			return fmt.Errorf("the victim was not killed within %d rounds", maxStatements)
		}
		if load.killed.Load() {
			afterKill++
		}
		if i == pgxWarmUp {
			warmed.Do(load.warm.Done)
		}
		// A pause between rounds keeps the load from starving the psql clients of the machine.
		time.Sleep(5 * time.Millisecond)
		var err error
		for attempt := 0; attempt < statementRetries; attempt++ {
			if conn == nil || conn.IsClosed() {
				if attempt > 0 || i > 0 {
					load.reconnects.Add(1)
					load.pgxReconnects.Add(1)
				}
				if err = connect(); err != nil {
					if !connectionFailed(err) {
						return err
					}
					time.Sleep(100 * time.Millisecond)
					continue
				}
			}
			if err = round(i, attempt); err == nil {
				break
			}
			if !connectionFailed(err) {
				return fmt.Errorf("round %d: %w", i, err)
			}
			conn.Close(context.Background())
			conn = nil
		}
		if err != nil {
			return fmt.Errorf("round %d: gave up after %d attempts: %w", i, statementRetries, err)
		}
	}
	return nil
}

// fleetPsqlClient runs psql processes through the fleet, each a connection of its own, until
// psqlAfterKill of them ran after the kill: inserts of unique markers and reads of the last one.
// psql exits with 2 when its connection failed; the client then runs the statement again, with a
// new marker for an insert.
func fleetPsqlClient(t *testing.T, front *stack.Broker, f *stack.ClientFiles, prefix string, load *fleetLoad) error {
	var warmed sync.Once
	defer warmed.Do(load.warm.Done)
	last := ""
	afterKill := 0
	for i := 0; afterKill < psqlAfterKill; i++ {
		if i == maxStatements {
			return fmt.Errorf("the victim was not killed within %d statements", maxStatements)
		}
		if load.killed.Load() {
			afterKill++
		}
		if i == psqlWarmUp {
			warmed.Do(load.warm.Done)
		}
		var out string
		var err error
		for attempt := 0; attempt < statementRetries; attempt++ {
			if attempt > 0 {
				load.reconnects.Add(1)
			}
			m := fmt.Sprintf("%s-%d-%d", prefix, i, attempt)
			text := fleetInsert(m)
			if i%2 == 1 {
				text = fleetSelect(last)
			}
			out, err = psql(t, front, f, nil, text)
			var exit *exec.ExitError
			if errors.As(err, &exit) && exit.ExitCode() == 2 {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			if err != nil {
				return fmt.Errorf("%s: %v: %s", text, err, out)
			}
			if i%2 == 1 {
				if out != last {
					return fmt.Errorf("%s read back %q", text, out)
				}
				load.ack([]string{text})
			} else {
				last = m
				load.ack([]string{text}, m)
			}
			break
		}
		if err != nil {
			return fmt.Errorf("statement %d: gave up after %d attempts: %v: %s", i, statementRetries, err, out)
		}
	}
	return nil
}

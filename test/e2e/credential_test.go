package e2e

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/svidbroker/svidbroker/test/stack"
)

// vaultBroker starts a broker whose target uses dynamic credentials from v, with its lease journal
// named after name (so that a broker restarted under the same name finds its predecessor's leases).
func vaultBroker(t *testing.T, s *stack.Stack, v *vaultTarget, name, journalName string) *stack.Broker {
	t.Helper()
	block, err := s.VaultBlock(journalName, v.Addr, v.CACertPEM)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.StartBroker(t.Context(), stack.BrokerOptions{Name: name, Binary: brokerBin, VaultRoles: true, Extra: block})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func currentUser(t *testing.T, c *pgx.Conn) string {
	t.Helper()
	var u string
	if err := c.QueryRow(t.Context(), "SELECT current_user").Scan(&u); err != nil {
		t.Fatal(err)
	}
	return u
}

func waitRoleGone(t *testing.T, role string) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); roleExists(t, role); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("role %s still exists", role)
		}
	}
}

// TestDynamicCredentialPerSession: each session logs in to PostgreSQL with a role Vault created for it,
// renewed while the session lives (beyond the lease's TTL), distinct per agent, and gone afterwards.
func TestDynamicCredentialPerSession(t *testing.T) {
	s, _ := shared(t)
	v, root := startVault(t)
	configureVault(t, s, root, "3s", "1m")
	b := vaultBroker(t, s, v, "svidbroker-vault", "vault-journal")
	defer b.Stop()
	ctx := t.Context()

	analyst, err := pgx.ConnectConfig(ctx, pgxConfig(t, b, clientFiles(t, s, stack.PersonaAnalyst)))
	if err != nil {
		t.Fatal(err)
	}
	support, err := pgx.ConnectConfig(ctx, pgxConfig(t, b, clientFiles(t, s, stack.PersonaSupport)))
	if err != nil {
		t.Fatal(err)
	}
	ua, us := currentUser(t, analyst), currentUser(t, support)
	if !strings.HasPrefix(ua, "v-shop-read-") || !strings.HasPrefix(us, "v-shop-read-") || ua == us {
		t.Fatalf("sessions run as %q and %q; want two distinct dynamic roles", ua, us)
	}
	if !roleExists(t, ua) || !roleExists(t, us) {
		t.Fatal("dynamic roles missing while their sessions live")
	}
	// Past the lease's 3 s TTL: the broker renewed it, so the role still exists and works.
	time.Sleep(5 * time.Second)
	var n int
	if err := analyst.QueryRow(ctx, "SELECT count(*) FROM orders").Scan(&n); err != nil || n != 2*stack.SeedCustomers {
		t.Fatalf("after the TTL: %d %v", n, err)
	}
	if !roleExists(t, ua) {
		t.Fatal("the analyst's role expired while its session lived")
	}
	analyst.Close(ctx)
	support.Close(ctx)
	waitRoleGone(t, ua)
	waitRoleGone(t, us)
	// The audit log has each lease as lease events: acquired when the session began, revoked at its end.
	checkLeaseEvents(t, b, mustPersonaID(t, s, stack.PersonaAnalyst))

	// Vault sealed: new sessions are refused within the configured deadline, with no fallback.
	if v.compat != nil {
		if code, body := readyzAt(t, b, "/readyz?verbose"); code != http.StatusOK || !strings.Contains(body, "[+]target/shop/vault ok\n") {
			t.Fatalf("/readyz?verbose = %d\n%s", code, body)
		}
		v.compat.Seal()
		out, err := psql(t, b, clientFiles(t, s, stack.PersonaAnalyst), nil, "SELECT 1")
		// Readiness lists which dependency fails: Vault, for the target whose credential comes from it;
		// the broker stays ready, for targets that do not need Vault.
		code, body := readyzAt(t, b, "/readyz?verbose")
		v.compat.Unseal()
		if code != http.StatusOK || !strings.Contains(body, "[-]target/shop/vault failed: vault: sys/health answered HTTP 503 (optional: its target's sessions are refused)\n") ||
			!strings.Contains(body, "[+]target/shop/backend ok\n") || !strings.HasSuffix(body, "readyz check passed\n") {
			t.Errorf("/readyz?verbose with Vault sealed = %d\n%s", code, body)
		}
		if err == nil || !strings.Contains(out, "no credential for target") {
			t.Fatalf("with Vault sealed: %v\n%s", err, out)
		}
	}
	log, _ := os.ReadFile(filepath.Join(s.LogDir, "svidbroker-vault.log"))
	if strings.Contains(string(log), "A1a-") {
		t.Fatal("a leased password appears in the broker's log")
	}
}

// TestOrphanedLeasesRevokedAfterKill kills the broker with SIGKILL mid-session; the restarted broker
// revokes the lease it left behind, so the role disappears.
func TestOrphanedLeasesRevokedAfterKill(t *testing.T) {
	s, _ := shared(t)
	v, root := startVault(t)
	configureVault(t, s, root, "1h", "2h") // long enough that only the sweep can remove it
	b := vaultBroker(t, s, v, "svidbroker-vault-kill", "vault-journal-kill")
	c, err := pgx.ConnectConfig(t.Context(), pgxConfig(t, b, clientFiles(t, s, stack.PersonaAnalyst)))
	if err != nil {
		t.Fatal(err)
	}
	role := currentUser(t, c)
	if err := b.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	c.Close(context.Background())
	if !roleExists(t, role) {
		t.Fatal("the role vanished without a sweep; the test would prove nothing")
	}
	b2 := vaultBroker(t, s, v, "svidbroker-vault-restart", "vault-journal-kill")
	defer b2.Stop()
	waitRoleGone(t, role)
}

// TestSessionEndsAtLeaseMaxTTL: a lease renewed up to its max TTL (4s here) cannot be kept, so the
// broker ends the session before the credential expires (dropping the role would not end it) and
// tells the client why; the role is then revoked.
func TestSessionEndsAtLeaseMaxTTL(t *testing.T) {
	s, _ := shared(t)
	v, root := startVault(t)
	configureVault(t, s, root, "2s", "4s")
	b := vaultBroker(t, s, v, "svidbroker-vault-maxttl", "vault-journal-maxttl")
	defer b.Stop()
	ctx := t.Context()
	c, err := pgx.ConnectConfig(ctx, pgxConfig(t, b, clientFiles(t, s, stack.PersonaAnalyst)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	role := currentUser(t, c)
	time.Sleep(7 * time.Second)
	var one int
	err = c.QueryRow(ctx, "SELECT 1").Scan(&one)
	if err == nil {
		t.Fatal("the session outlived its lease's max TTL")
	}
	waitRoleGone(t, role)
	log, _ := os.ReadFile(b.LogPath())
	if !strings.Contains(string(log), "reached its maximum lifetime") {
		t.Fatalf("the broker's log does not say why the session ended; client saw: %v", err)
	}
}

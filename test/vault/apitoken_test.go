package vault_test

import (
	"context"
	"crypto/sha256"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/jackc/pgx/v5"

	"github.com/svidbroker/svidbroker/test/stack"
	"github.com/svidbroker/svidbroker/test/vault"
)

// clock is a settable clock for the server's Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// apiEngine starts PostgreSQL with a token table tok.issued, and a server with the API-token engine
// mounted at api/ (roles api-read and api-write, tokens living a minute, at most three).
func apiEngine(t *testing.T) (*vaultapi.Client, *pgx.Conn, *clock) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	pg, err := stack.StartPostgres(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := pg.Close(); err != nil {
			t.Error(err)
		}
	})
	db, err := pg.Postgres.Connect(ctx, "shop")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close(context.Background()) })
	if _, err := db.Exec(ctx, `CREATE SCHEMA tok; CREATE TABLE tok.issued (token_sha256 bytea PRIMARY KEY, role text NOT NULL, expires_at timestamptz NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Now()}
	srv, err := vault.Start(vault.Options{Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	root := client(t, srv)
	root.SetToken(srv.RootToken)
	if err := root.Sys().MountWithContext(ctx, "api", &vaultapi.MountInput{Type: "api-token"}); err != nil {
		t.Fatal(err)
	}
	p := pg.Postgres
	write(t, root, "api/config", map[string]any{
		"connection_url": "postgresql://{{username}}:{{password}}@" + p.Host + ":" + strconv.Itoa(p.Port) + "/shop?sslmode=verify-full&sslrootcert=" + p.CAPath,
		"username":       p.Superuser, "password": p.SuperuserPassword(), "table": "tok.issued"})
	for _, r := range []string{"api-read", "api-write"} {
		write(t, root, "api/roles/"+r, map[string]any{"default_ttl": "1m", "max_ttl": "3m"})
	}
	return root, db, clk
}

// row reads the token's row: its role and expiry; ok false when there is none.
func row(t *testing.T, db *pgx.Conn, token string) (role string, expires time.Time, ok bool) {
	t.Helper()
	sum := sha256.Sum256([]byte(token))
	err := db.QueryRow(t.Context(), `SELECT role, expires_at FROM tok.issued WHERE token_sha256 = $1`, sum[:]).Scan(&role, &expires)
	if err == pgx.ErrNoRows {
		return "", time.Time{}, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return role, expires, true
}

func TestAPITokenLeaseRenewRevoke(t *testing.T) {
	root, db, clk := apiEngine(t)
	ctx := t.Context()
	sec, err := root.Logical().ReadWithContext(ctx, "api/creds/api-write")
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := sec.Data["token"].(string)
	if tok == "" || sec.LeaseID == "" || !sec.Renewable || sec.LeaseDuration != 60 {
		t.Fatalf("creds: token %t, lease %q, renewable %t, duration %d; want a token with a renewable 60s lease",
			tok != "", sec.LeaseID, sec.Renewable, sec.LeaseDuration)
	}
	if _, ok := sec.Data["username"]; ok {
		t.Errorf("the secret has a username; want only token")
	}
	role, exp, ok := row(t, db, tok)
	if !ok || role != "api-write" {
		t.Fatalf("token row: %q, %t; want role api-write", role, ok)
	}
	if d := exp.Sub(clk.now()); d < 59*time.Second || d > 61*time.Second {
		t.Errorf("the row expires in %s, want the lease's 60s", d)
	}
	other, err := root.Logical().ReadWithContext(ctx, "api/creds/api-read")
	if err != nil {
		t.Fatal(err)
	}
	otherTok := other.Data["token"].(string)
	if otherTok == tok {
		t.Fatal("two leases got the same token")
	}

	// Renew: the row's expiry moves with the lease, capped by max_ttl.
	clk.add(30 * time.Second)
	r, err := root.Sys().RenewWithContext(ctx, sec.LeaseID, 120)
	if err != nil {
		t.Fatal(err)
	}
	if r.LeaseDuration != 120 {
		t.Errorf("renewed lease_duration %d, want 120", r.LeaseDuration)
	}
	_, exp2, _ := row(t, db, tok)
	if want := clk.now().Add(120 * time.Second); exp2.Sub(want).Abs() > time.Second {
		t.Errorf("after renewal the row expires at %s, want %s", exp2, want)
	}
	r, err = root.Sys().RenewWithContext(ctx, sec.LeaseID, 3600)
	if err != nil {
		t.Fatal(err)
	}
	if r.LeaseDuration > 150 || r.Renewable {
		t.Errorf("renewal past max_ttl: duration %d renewable %t, want at most 150s left and not renewable", r.LeaseDuration, r.Renewable)
	}

	// Revoke: the row is gone (the API then refuses the token); the other lease's row stays.
	if err := root.Sys().RevokeWithContext(ctx, sec.LeaseID); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := row(t, db, tok); ok {
		t.Fatal("the token's row is still there after its lease was revoked")
	}
	if _, _, ok := row(t, db, otherTok); !ok {
		t.Fatal("revoking one lease deleted another lease's token")
	}
	if _, err := root.Sys().RenewWithContext(ctx, sec.LeaseID, 60); status(err) != http.StatusBadRequest {
		t.Errorf("renewing a revoked lease: %v, want 400", err)
	}
}

func TestAPITokenExpiryDeletesTheRow(t *testing.T) {
	root, db, clk := apiEngine(t)
	sec, err := root.Logical().ReadWithContext(t.Context(), "api/creds/api-read")
	if err != nil {
		t.Fatal(err)
	}
	tok := sec.Data["token"].(string)
	if _, _, ok := row(t, db, tok); !ok {
		t.Fatal("no row for a fresh token")
	}
	clk.add(61 * time.Second) // past the lease: the server revokes it on its next check
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, _, ok := row(t, db, tok); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the expired lease's token row was never deleted")
		}
	}
	if _, err := root.Logical().WriteWithContext(t.Context(), "sys/leases/lookup", map[string]any{"lease_id": sec.LeaseID}); status(err) != http.StatusBadRequest {
		t.Errorf("looking up the expired lease: %v, want 400 (gone)", err)
	}
}

func TestAPITokenRefusals(t *testing.T) {
	root, _, _ := apiEngine(t)
	ctx := t.Context()
	if _, err := root.Logical().ReadWithContext(ctx, "api/creds/api-admin"); status(err) != http.StatusBadRequest || !strings.Contains(err.Error(), "unknown role: api-admin") {
		t.Errorf("creds of an unknown role: %v, want 400 naming it", err)
	}
	if _, err := root.Logical().WriteWithContext(ctx, "api/config", map[string]any{"table": "tokens"}); status(err) != http.StatusBadRequest || !strings.Contains(err.Error(), "schema.table") {
		t.Errorf("config with an unqualified table: %v, want 400 saying schema.table", err)
	}
	const pw = "not-the-password-1234"
	_, err := root.Logical().WriteWithContext(ctx, "api/config", map[string]any{
		"connection_url": "postgresql://{{username}}:{{password}}@127.0.0.1:1/shop?connect_timeout=2", "username": "x", "password": pw})
	if status(err) != http.StatusBadRequest || strings.Contains(err.Error(), pw) {
		t.Errorf("config that cannot connect: %v, want 400 without the password", err)
	}
}

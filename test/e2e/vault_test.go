package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/jackc/pgx/v5"

	"github.com/svidbroker/svidbroker/test/stack"
	"github.com/svidbroker/svidbroker/test/vault"
)

// TestVaultCompatibleServer exercises the test Vault through github.com/hashicorp/vault/api, as the
// broker will: cert auth with the broker's real SVID, an ACL-limited token, and dynamic PostgreSQL
// credentials whose role exists in the real database only while its lease lives.
func TestVaultCompatibleServer(t *testing.T) {
	s, _ := shared(t)
	ctx := t.Context()
	v, root := startVault(t)

	if h, err := root.Sys().HealthWithContext(ctx); err != nil || h.Sealed || !h.Initialized {
		t.Fatalf("health: %+v %v", h, err)
	}
	must(t, stack.EnableAuth(ctx, root, "cert", "cert"))
	must(t, stack.Mount(ctx, root, "database", "database", nil))
	must(t, root.Sys().PutPolicyWithContext(ctx, "broker", `path "database/creds/shop-read" { capabilities = ["read"] }
path "sys/leases/*" { capabilities = ["update"] }`))
	bundle, err := os.ReadFile(s.SPIRE.BundlePath)
	if err != nil {
		t.Fatal(err)
	}
	write(t, root, "auth/cert/certs/svidbroker", map[string]any{"certificate": string(bundle),
		"allowed_uri_sans": []string{"spiffe://example.org/svidbroker"}, "token_policies": []string{"broker"}, "token_ttl": "1h"})
	pg := s.Postgres
	// A wrong password must not come back in the error (Vault once leaked connection URLs this way).
	canary := "canary-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	_, err = root.Logical().WriteWithContext(ctx, "database/config/shop", dbConfig(pg, canary))
	if err == nil || strings.Contains(err.Error(), canary) {
		t.Fatalf("database config with a wrong password: %v", err)
	}
	write(t, root, "database/config/shop", dbConfig(pg, pg.SuperuserPassword()))
	for name, ttl := range map[string]string{"shop-read": "30s", "shop-admin": "30s"} {
		write(t, root, "database/roles/"+name, map[string]any{"db_name": "shop", "default_ttl": ttl, "max_ttl": "45s",
			"creation_statements": []string{`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`,
				`GRANT SELECT ON customers, orders TO "{{name}}";`},
			"revocation_statements": []string{`DROP OWNED BY "{{name}}"; DROP ROLE IF EXISTS "{{name}}";`}})
	}

	// The broker logs in with its own X.509-SVID; another workload's SVID is refused.
	if _, err := login(t, v, clientFiles(t, s, stack.PersonaAnalyst)); err == nil {
		t.Fatal("the analyst's SVID logged in as the broker")
	}
	broker, err := login(t, v, clientFiles(t, s, stack.PersonaBroker))
	if err != nil {
		t.Fatal(err)
	}
	self, err := broker.Auth().Token().LookupSelfWithContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := self.TokenPolicies(); len(p) != 1 || p[0] != "broker" {
		t.Fatalf("token policies %v", p)
	}
	if _, err := broker.Logical().ReadWithContext(ctx, "database/creds/shop-admin"); !isStatus(err, http.StatusForbidden) {
		t.Fatalf("the token read a path its policy does not grant: %v", err)
	}
	if err := broker.Sys().PutPolicyWithContext(ctx, "x", `path "*" { capabilities = ["sudo"] }`); !isStatus(err, http.StatusForbidden) {
		t.Fatalf("the token wrote a policy: %v", err)
	}

	secret, err := broker.Logical().ReadWithContext(ctx, "database/creds/shop-read")
	if err != nil {
		t.Fatal(err)
	}
	user, _ := secret.Data["username"].(string)
	pass, _ := secret.Data["password"].(string)
	if !roleExists(t, user) {
		t.Fatalf("role %s was not created", user)
	}
	cfg, err := pg.ConnConfig("shop")
	if err != nil {
		t.Fatal(err)
	}
	cfg.User, cfg.Password = user, pass
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("SCRAM login with the dynamic credential: %v", err)
	}
	var n int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM customers").Scan(&n); err != nil || n != stack.SeedCustomers {
		t.Fatalf("query as the dynamic role: %d %v", n, err)
	}
	c.Close(ctx)

	renewed, err := broker.Sys().RenewWithContext(ctx, secret.LeaseID, 3600)
	if err != nil {
		t.Fatal(err)
	}
	if renewed.LeaseDuration > 45 || renewed.LeaseDuration < 30 {
		t.Fatalf("renewed for %ds; want it capped by max_ttl (45s)", renewed.LeaseDuration)
	}
	if err := broker.Sys().RevokeWithContext(ctx, secret.LeaseID); err != nil {
		t.Fatal(err)
	}
	if roleExists(t, user) {
		t.Fatalf("role %s outlived its revoked lease", user)
	}

	// A lease that is not renewed expires, and its role is dropped on time.
	write(t, root, "database/roles/shop-read", map[string]any{"db_name": "shop", "default_ttl": "1s", "max_ttl": "2s",
		"creation_statements": []string{`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}';`}})
	short, err := broker.Logical().ReadWithContext(ctx, "database/creds/shop-read")
	if err != nil {
		t.Fatal(err)
	}
	shortUser, _ := short.Data["username"].(string)
	deadline := time.Now().Add(15 * time.Second)
	for roleExists(t, shortUser) {
		if time.Now().After(deadline) {
			t.Fatalf("role %s outlived its expired lease", shortUser)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Sealed: 503, as a real Vault answers. (Only the test server can be sealed by a test.)
	if v.compat != nil {
		v.compat.Seal()
		if _, err := broker.Logical().ReadWithContext(ctx, "database/creds/shop-read"); !isStatus(err, http.StatusServiceUnavailable) {
			t.Fatalf("sealed: %v", err)
		}
		v.compat.Unseal()
	}
	if err := broker.Auth().Token().RevokeSelfWithContext(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := broker.Auth().Token().LookupSelfWithContext(ctx); !isStatus(err, http.StatusForbidden) {
		t.Fatalf("a revoked token still works: %v", err)
	}
}

func dbConfig(pg *stack.Postgres, password string) map[string]any {
	return map[string]any{"plugin_name": "postgresql-database-plugin", "allowed_roles": []string{"shop-read", "shop-admin"},
		"connection_url": fmt.Sprintf("postgresql://{{username}}:{{password}}@%s:%d/shop?sslmode=verify-full&sslrootcert=%s", pg.Host, pg.Port, pg.CAPath),
		"username":       pg.Superuser, "password": password}
}

func vaultClient(t testing.TB, v *vaultTarget, f *stack.ClientFiles) *vaultapi.Client {
	t.Helper()
	cfg := vaultapi.DefaultConfig()
	cfg.Address = v.Addr
	tlsCfg := &vaultapi.TLSConfig{CACertBytes: v.CACertPEM}
	if f != nil {
		tlsCfg.ClientCert, tlsCfg.ClientKey = f.Cert, f.Key
	}
	if err := cfg.ConfigureTLS(tlsCfg); err != nil {
		t.Fatal(err)
	}
	c, err := vaultapi.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.ClearToken()
	return c
}

func login(t *testing.T, v *vaultTarget, f *stack.ClientFiles) (*vaultapi.Client, error) {
	t.Helper()
	c := vaultClient(t, v, f)
	secret, err := c.Logical().WriteWithContext(t.Context(), "auth/cert/login", map[string]any{"name": "svidbroker"})
	if err != nil {
		return nil, err
	}
	c.SetToken(secret.Auth.ClientToken)
	return c, nil
}

func write(t testing.TB, c *vaultapi.Client, path string, data map[string]any) {
	t.Helper()
	if _, err := c.Logical().WriteWithContext(t.Context(), path, data); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func isStatus(err error, code int) bool {
	var re *vaultapi.ResponseError
	return errors.As(err, &re) && re.StatusCode == code
}

func roleExists(t *testing.T, name string) bool {
	t.Helper()
	s, _ := shared(t)
	c, err := s.Postgres.Connect(context.Background(), "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var n int
	if err := c.QueryRow(context.Background(), "SELECT count(*) FROM pg_roles WHERE rolname = $1", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n == 1
}

// vaultTarget is the Vault a test talks to: the test server by default, or a real Vault (or OpenBao)
// when VAULT_ADDR and VAULT_TOKEN (a bootstrap token) are set, with VAULT_CACERT naming its CA. Use a
// throwaway server on this machine (`vault server -dev-tls`): the tests enable the cert and jwt auth
// methods, the database engine (at database/ and pg-shop/) and kv version 2 (at secret/) unless they
// are there, point the engines at the test stack's PostgreSQL, and serve the jwt method's keys on
// 127.0.0.1. See docs/vault.md.
type vaultTarget struct {
	Addr      string
	CACertPEM []byte
	RootToken string
	compat    *vault.Server // nil for a real Vault, which tests cannot seal
}

// startVault starts (or reaches) the Vault for a test and returns it with a root client.
func startVault(t testing.TB) (*vaultTarget, *vaultapi.Client) {
	t.Helper()
	var v *vaultTarget
	if addr, tok := os.Getenv("VAULT_ADDR"), os.Getenv("VAULT_TOKEN"); addr != "" && tok != "" {
		ca, err := os.ReadFile(os.Getenv("VAULT_CACERT"))
		if err != nil {
			t.Fatalf("VAULT_ADDR is set: VAULT_CACERT must name its CA: %v", err)
		}
		v = &vaultTarget{Addr: addr, CACertPEM: ca, RootToken: tok}
	} else {
		srv, err := vault.Start(vault.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
		v = &vaultTarget{Addr: srv.Addr, CACertPEM: srv.CACertPEM, RootToken: srv.RootToken, compat: srv}
	}
	root := vaultClient(t, v, nil)
	root.SetToken(v.RootToken)
	return v, root
}

// configureVault sets Vault up as test/stack does for the demo.
func configureVault(t testing.TB, s *stack.Stack, root *vaultapi.Client, ttl, maxTTL string) {
	t.Helper()
	if err := s.ConfigureVault(t.Context(), root, ttl, maxTTL); err != nil {
		t.Fatal(err)
	}
}

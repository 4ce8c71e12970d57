package e2e

import (
	"context"
	"encoding/pem"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/jackc/pgx/v5"

	"github.com/svidbroker/svidbroker/test/stack"
)

// jwtLogin is the vault block's login for the jwt auth role "svidbroker" and audience "vault".
const jwtLogin = "jwt {\n    role     = \"svidbroker\"\n    audience = \"vault\"\n  }"

// configureJWTAuth enables the jwt auth method, trusting the keys of SPIRE's JWT bundle, served as a
// JWKS over TLS as SPIRE's OIDC discovery provider would serve them, with a role that admits only
// the broker's SPIFFE ID with audience "vault" and gives it policy "broker".
func configureJWTAuth(t *testing.T, s *stack.Stack, root *vaultapi.Client) {
	t.Helper()
	svids, err := s.FetchSVIDs(t.Context(), stack.PersonaBroker, "vault")
	if err != nil {
		t.Fatal(err)
	}
	keys := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(svids.JWTBundle)
	}))
	t.Cleanup(keys.Close)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: keys.Certificate().Raw})
	must(t, stack.EnableAuth(t.Context(), root, "jwt", "jwt"))
	write(t, root, "auth/jwt/config", map[string]any{"jwks_url": keys.URL + "/keys", "jwks_ca_pem": string(ca)})
	write(t, root, "auth/jwt/role/svidbroker", map[string]any{"role_type": "jwt", "bound_audiences": []string{"vault"},
		"bound_subject": svids.ID, "user_claim": "sub", "token_policies": []string{"broker"}, "token_ttl": "1h"})
}

// TestVaultJWTLoginAndGenericPath: the broker logs in to Vault with a JWT-SVID from the real SPIRE
// (the jwt method verifying it against SPIRE's JWT bundle), and takes each session's credential from
// a database engine mounted elsewhere, named by vault_path.
func TestVaultJWTLoginAndGenericPath(t *testing.T) {
	s, _ := shared(t)
	v, root := startVault(t)
	ctx := t.Context()
	configureVault(t, s, root, "1m", "10m")
	configureJWTAuth(t, s, root)
	must(t, stack.Mount(ctx, root, "pg-shop", "database", nil))
	write(t, root, "pg-shop/config/shop", dbConfig(s.Postgres, s.Postgres.SuperuserPassword()))
	write(t, root, "pg-shop/roles/shop-read", map[string]any{"db_name": "shop", "default_ttl": "1m", "max_ttl": "10m",
		"creation_statements": []string{`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`,
			`GRANT SELECT ON customers, orders TO "{{name}}";`},
		"revocation_statements": []string{`DROP OWNED BY "{{name}}"; DROP ROLE IF EXISTS "{{name}}";`}})
	must(t, root.Sys().PutPolicyWithContext(ctx, "broker", `path "pg-shop/creds/shop-read" { capabilities = ["read"] }
path "sys/leases/*" { capabilities = ["update"] }`))

	block, err := s.VaultBlockWithLogin("vault-jwt", v.Addr, v.CACertPEM, jwtLogin)
	if err != nil {
		t.Fatal(err)
	}
	// One fixed path for every session: a broker without Cedar (an allow list), since Cedar would pick
	// a credential role per session among the catalog's instead.
	b, err := s.StartBroker(ctx, stack.BrokerOptions{Name: "svidbroker-vault-jwt", Binary: brokerBin, Extra: block,
		Allow:             []string{stack.PersonaAnalyst},
		BackendCredential: "    auth        = \"vault\"\n    vault_path  = \"pg-shop/creds/shop-read\"\n"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Stop()
	c, err := pgx.ConnectConfig(ctx, pgxConfig(t, b, clientFiles(t, s, stack.PersonaAnalyst)))
	if err != nil {
		t.Fatal(err)
	}
	role := currentUser(t, c)
	if !strings.HasPrefix(role, "v-shop-read-") || !roleExists(t, role) {
		t.Fatalf("session runs as %q; want a live dynamic role", role)
	}
	c.Close(ctx)
	waitRoleGone(t, role)
}

// TestStaticKVCredentialCanary: a target may take one static credential from kv-v2, an explicitly
// weaker option the broker warns about. A marker password appears nowhere outside Vault and the
// database: not in the broker's log, the audit log, the lease journal, the recordings an auditor
// exports, or anything the agent sees, errors included.
func TestStaticKVCredentialCanary(t *testing.T) {
	s, _ := shared(t)
	v, root := startVault(t)
	ctx := t.Context()
	configureVault(t, s, root, "1m", "10m")
	canary := "canary-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	user := "kv_static_" + strconv.FormatInt(time.Now().UnixNano()%1e6, 10)
	admin, err := s.Postgres.Connect(ctx, "shop")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close(context.Background()) }) // after the cleanup below, which uses it
	for _, q := range []string{
		fmt.Sprintf(`CREATE ROLE %s LOGIN PASSWORD '%s'`, user, canary),
		fmt.Sprintf(`GRANT SELECT ON customers TO %s`, user),
	} {
		if _, err := admin.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		_, _ = admin.Exec(context.Background(), fmt.Sprintf(`DROP OWNED BY %[1]s; DROP ROLE %[1]s`, user))
	})
	must(t, stack.Mount(ctx, root, "secret", "kv", map[string]string{"version": "2"}))
	if _, err := root.KVv2("secret").Put(ctx, "pg/shop", map[string]any{"user": user, "pass": canary}); err != nil {
		t.Fatal(err)
	}
	must(t, root.Sys().PutPolicyWithContext(ctx, "broker", `path "secret/data/pg/shop" { capabilities = ["read"] }
path "database/creds/shop-read" { capabilities = ["read"] }
path "sys/leases/*" { capabilities = ["update"] }`))

	block, err := s.VaultBlock("vault-kv", v.Addr, v.CACertPEM)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.StartBroker(ctx, stack.BrokerOptions{Name: "svidbroker-vault-kv", Binary: brokerBin, Extra: block,
		BackendCredential: "    auth               = \"vault-kv\"\n    vault_kv_path      = \"pg/shop\"\n" +
			"    vault_username_key = \"user\"\n    vault_password_key = \"pass\"\n"})
	if err != nil {
		t.Fatal(err)
	}
	f := clientFiles(t, s, stack.PersonaAnalyst)
	var seen strings.Builder
	for _, sql := range []string{
		"SELECT current_user",
		"SELECT count(*) FROM customers",
		"SELECT * FROM orders",               // no grant: the backend's error reaches the agent
		"SELECT 1/0",                         // an error of the statement itself
		"SELECT rolpassword FROM pg_authid",  // not even the superuser's view of it
		"SET ROLE postgres",                  // refused by policy
		"SELECT current_setting('password')", // no such setting
	} {
		out, err := psql(t, b, f, nil, sql)
		fmt.Fprintf(&seen, "%s\n%v\n", out, err)
		if sql == "SELECT current_user" && (err != nil || out != user) {
			t.Fatalf("session user %q (%v); want the kv-v2 credential's %q", out, err, user)
		}
	}
	if err := b.Stop(); err != nil {
		t.Log(err)
	}
	if strings.Contains(seen.String(), canary) {
		t.Fatalf("the agent saw the password:\n%s", seen.String())
	}
	log, err := os.ReadFile(b.LogPath())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), "static credential from a kv-v2 secret") {
		t.Error("the broker did not warn that the target's credential is static")
	}
	out, err := exec.Command(brokerBin, "audit", "export", "--config", b.ConfigPath).CombinedOutput()
	export := string(out)
	if err != nil {
		t.Fatalf("audit export: %v\n%s", err, export)
	}
	if !strings.Contains(export, "customers") {
		t.Fatalf("the export holds no statement; the canary check would prove nothing:\n%.2000s", export)
	}
	places := map[string]string{"broker log": string(log), "audit export": export}
	for _, dir := range []string{b.AuditDir, filepath.Join(s.Dir, "vault-kv-leases")} {
		_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				data, _ := os.ReadFile(p)
				places[p] = string(data)
			}
			return nil
		})
	}
	for where, text := range places {
		if strings.Contains(text, canary) {
			t.Errorf("the password appears in %s", where)
		}
	}
}

// TestVaultUnreachableRefusedWithinDeadline: with Vault not answering (a listener that accepts and
// says nothing) or gone (nothing listening), a new session is refused within vault.timeout (3s here)
// plus the client's own overhead, and never given a fallback credential.
func TestVaultUnreachableRefusedWithinDeadline(t *testing.T) {
	s, _ := shared(t)
	ctx := t.Context()
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	gone, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	goneAddr := gone.Addr().String()
	gone.Close()

	// Any CA will do: no TLS handshake ever completes.
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: mustReadCA(t, s)})
	for name, addr := range map[string]string{"silent": silent.Addr().String(), "gone": goneAddr} {
		t.Run(name, func(t *testing.T) {
			block, err := s.VaultBlock("vault-"+name, "https://"+addr, caPEM)
			if err != nil {
				t.Fatal(err)
			}
			b, err := s.StartBroker(ctx, stack.BrokerOptions{Name: "svidbroker-vault-" + name, Binary: brokerBin, VaultRoles: true, Extra: block})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Stop()
			start := time.Now()
			out, err := psql(t, b, clientFiles(t, s, stack.PersonaAnalyst), nil, "SELECT 1")
			took := time.Since(start)
			if err == nil || !strings.Contains(out, "no credential for target") {
				t.Fatalf("with Vault %s: %v\n%s", name, err, out)
			}
			// The deadline is 3s; psql's own start and TLS handshake add well under the 4s of slack.
			if took > 7*time.Second {
				t.Fatalf("refused after %v; vault.timeout is 3s", took)
			}
			t.Logf("refused after %v", took)
		})
	}
}

// mustReadCA returns the DER of the first certificate of SPIRE's bundle.
func mustReadCA(t *testing.T, s *stack.Stack) []byte {
	t.Helper()
	data, err := os.ReadFile(s.SPIRE.BundlePath)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatal("SPIRE's bundle holds no PEM")
	}
	return block.Bytes
}

// TestDevTokenWarnsAtStart: a static Vault token works only as the explicit development setting, and
// the broker says so at every start.
func TestDevTokenWarnsAtStart(t *testing.T) {
	s, _ := shared(t)
	v, root := startVault(t)
	configureVault(t, s, root, "1m", "10m")
	broker, err := s.Persona(stack.PersonaBroker)
	if err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(s.Dir, "vault-dev-token")
	if err := os.WriteFile(tokenFile, []byte(v.RootToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(tokenFile, int(broker.UID), int(broker.UID)); err != nil {
		t.Fatal(err)
	}
	block, err := s.VaultBlockWithLogin("vault-dev", v.Addr, v.CACertPEM, fmt.Sprintf("dev_token_file = %q", tokenFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"svidbroker-vault-dev", "svidbroker-vault-dev-again"} {
		b, err := s.StartBroker(t.Context(), stack.BrokerOptions{Name: name, Binary: brokerBin, VaultRoles: true, Extra: block})
		if err != nil {
			t.Fatal(err)
		}
		out, err := psql(t, b, clientFiles(t, s, stack.PersonaAnalyst), nil, "SELECT count(*) FROM customers")
		b.Stop()
		if err != nil || out != strconv.Itoa(stack.SeedCustomers) {
			t.Fatalf("%s: %v %s", name, err, out)
		}
		log, _ := os.ReadFile(b.LogPath())
		if !strings.Contains(string(log), "static token from vault.dev_token_file: for development only") {
			t.Fatalf("%s: no warning about the static token", name)
		}
		if strings.Contains(string(log), v.RootToken) {
			t.Fatalf("%s: the token is in the log", name)
		}
	}
}

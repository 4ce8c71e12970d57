package stack

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"

	vaultapi "github.com/hashicorp/vault/api"
)

// ConfigureVault sets a Vault up for the broker as a platform team would: the cert auth method
// trusting SPIRE's bundle for the broker's SPIFFE ID only, a policy that can read the shop-read
// credentials and renew and revoke leases, and the database engine in front of the stack's PostgreSQL,
// with a role "shop-read" whose credentials live ttl (at most maxTTL). root must hold a root token.
func (s *Stack) ConfigureVault(ctx context.Context, root *vaultapi.Client, ttl, maxTTL string) error {
	if err := EnableAuth(ctx, root, "cert", "cert"); err != nil {
		return err
	}
	if err := Mount(ctx, root, "database", "database", nil); err != nil {
		return err
	}
	if err := root.Sys().PutPolicyWithContext(ctx, "broker", `path "database/creds/shop-read" { capabilities = ["read"] }
path "sys/leases/*" { capabilities = ["update"] }`); err != nil {
		return fmt.Errorf("stack: vault: %w", err)
	}
	bundle, err := os.ReadFile(s.SPIRE.BundlePath)
	if err != nil {
		return fmt.Errorf("stack: %w", err)
	}
	broker, err := s.Persona(PersonaBroker)
	if err != nil {
		return err
	}
	pg := s.Postgres
	writes := []struct {
		path string
		data map[string]any
	}{
		{"auth/cert/certs/svidbroker", map[string]any{"certificate": string(bundle),
			"allowed_uri_sans": []string{broker.ID.String()}, "token_policies": []string{"broker"}, "token_ttl": "1h"}},
		{"database/config/shop", map[string]any{"plugin_name": "postgresql-database-plugin", "allowed_roles": []string{"shop-read"},
			"connection_url": fmt.Sprintf("postgresql://{{username}}:{{password}}@%s:%d/shop?sslmode=verify-full&sslrootcert=%s", pg.Host, pg.Port, pg.CAPath),
			"username":       pg.Superuser, "password": pg.SuperuserPassword()}},
		{"database/roles/shop-read", map[string]any{"db_name": "shop", "default_ttl": ttl, "max_ttl": maxTTL,
			"creation_statements": []string{`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`,
				`GRANT SELECT ON customers, orders TO "{{name}}";`},
			"revocation_statements": []string{`DROP OWNED BY "{{name}}"; DROP ROLE IF EXISTS "{{name}}";`}}},
	}
	for _, w := range writes {
		if _, err := root.Logical().WriteWithContext(ctx, w.path, w.data); err != nil {
			return fmt.Errorf("stack: vault: write %s: %w", w.path, err)
		}
	}
	return nil
}

// EnableAuth enables an auth method at path unless one of that type is there already, so that tests
// can run again against one long-lived Vault.
func EnableAuth(ctx context.Context, root *vaultapi.Client, path, typ string) error {
	auths, err := root.Sys().ListAuthWithContext(ctx)
	if err != nil {
		return fmt.Errorf("stack: vault: %w", err)
	}
	if m, ok := auths[path+"/"]; ok && m.Type == typ {
		return nil
	}
	if err := root.Sys().EnableAuthWithOptionsWithContext(ctx, path, &vaultapi.EnableAuthOptions{Type: typ}); err != nil {
		return fmt.Errorf("stack: vault: enable %s auth at %s: %w", typ, path, err)
	}
	return nil
}

// Mount enables a secrets engine at path unless one of that type (and options) is there already: a
// dev Vault has kv version 2 at secret/ from the start.
func Mount(ctx context.Context, root *vaultapi.Client, path, typ string, opts map[string]string) error {
	mounts, err := root.Sys().ListMountsWithContext(ctx)
	if err != nil {
		return fmt.Errorf("stack: vault: %w", err)
	}
	if m, ok := mounts[path+"/"]; ok && m.Type == typ && maps.Equal(m.Options, opts) {
		return nil
	}
	if err := root.Sys().MountWithContext(ctx, path, &vaultapi.MountInput{Type: typ, Options: opts}); err != nil {
		return fmt.Errorf("stack: vault: mount %s at %s: %w", typ, path, err)
	}
	return nil
}

// VaultBlock returns the broker configuration that takes credentials from the Vault at addr (its CA
// in caPEM) and logs in with the cert auth role "svidbroker", with a lease journal the broker's uid
// owns. Pair it with BrokerOptions.VaultRole or BackendCredential.
func (s *Stack) VaultBlock(name, addr string, caPEM []byte) (string, error) {
	return s.VaultBlockWithLogin(name, addr, caPEM, `cert_role   = "svidbroker"`)
}

// VaultBlockWithLogin is VaultBlock with other login settings (the lines of the vault block that
// choose the method, such as a jwt block).
func (s *Stack) VaultBlockWithLogin(name, addr string, caPEM []byte, login string) (string, error) {
	ca := filepath.Join(s.Dir, name+"-vault-ca.pem")
	if err := os.WriteFile(ca, caPEM, 0o644); err != nil {
		return "", fmt.Errorf("stack: %w", err)
	}
	journal := filepath.Join(s.Dir, name+"-leases")
	if err := os.MkdirAll(journal, 0o700); err != nil {
		return "", fmt.Errorf("stack: %w", err)
	}
	broker, err := s.Persona(PersonaBroker)
	if err != nil {
		return "", err
	}
	if err := os.Chown(journal, int(broker.UID), int(broker.UID)); err != nil {
		return "", fmt.Errorf("stack: %w", err)
	}
	return fmt.Sprintf(`
# Credentials from Vault, which the broker logs in to with its own SPIFFE identity.
vault {
  address     = %q
  ca_file     = %q
  %s
  journal_dir = %q
  timeout     = "3s"
}
`, addr, ca, login, journal), nil
}

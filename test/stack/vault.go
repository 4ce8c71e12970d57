package stack

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"

	vaultapi "github.com/hashicorp/vault/api"
)

// ConfigureVault sets a Vault up for the broker as a platform team would: the cert auth method
// trusting SPIRE's bundle for the broker's SPIFFE ID only, a policy that can read the credentials of
// the catalog's roles and renew and revoke leases, and the database engine in front of the stack's
// PostgreSQL, with the roles of policies/catalog.hcl, whose credentials live ttl (at most maxTTL):
//   - shop-read: SELECT on the shop's tables;
//   - shop-write: SELECT, INSERT, UPDATE and DELETE on them;
//   - shop-admin: a member of shop_owner, which owns the tables and may create tables in schema
//     public (DDL); what it creates is handed to shop_owner when its lease is revoked.
//
// root must hold a root token.
func (s *Stack) ConfigureVault(ctx context.Context, root *vaultapi.Client, ttl, maxTTL string) error {
	if err := EnableAuth(ctx, root, "cert", "cert"); err != nil {
		return err
	}
	if err := Mount(ctx, root, "database", "database", nil); err != nil {
		return err
	}
	var policy strings.Builder
	for _, r := range VaultRoles {
		fmt.Fprintf(&policy, "path \"database/creds/%s\" { capabilities = [\"read\"] }\n", r)
	}
	for _, r := range APIVaultRoles { // the API-token engine's, if ConfigureAPIVault mounts it
		fmt.Fprintf(&policy, "path \"%s/creds/%s\" { capabilities = [\"read\"] }\n", APIVaultMount, r)
	}
	policy.WriteString(`path "sys/leases/*" { capabilities = ["update"] }`)
	if err := root.Sys().PutPolicyWithContext(ctx, "broker", policy.String()); err != nil {
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
	role := func(grants ...string) map[string]any {
		return map[string]any{"db_name": "shop", "default_ttl": ttl, "max_ttl": maxTTL,
			"creation_statements":   append([]string{`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`}, grants...),
			"revocation_statements": []string{`REASSIGN OWNED BY "{{name}}" TO ` + ShopOwnerRole + `; DROP OWNED BY "{{name}}"; DROP ROLE IF EXISTS "{{name}}";`}}
	}
	writes := []struct {
		path string
		data map[string]any
	}{
		{"auth/cert/certs/svidbroker", map[string]any{"certificate": string(bundle),
			"allowed_uri_sans": []string{broker.ID.String()}, "token_policies": []string{"broker"}, "token_ttl": "1h"}},
		{"database/config/shop", map[string]any{"plugin_name": "postgresql-database-plugin", "allowed_roles": VaultRoles,
			"connection_url": fmt.Sprintf("postgresql://{{username}}:{{password}}@%s:%d/shop?sslmode=verify-full&sslrootcert=%s", pg.Host, pg.Port, pg.CAPath),
			"username":       pg.Superuser, "password": pg.SuperuserPassword()}},
		{"database/roles/shop-read", role(`GRANT SELECT ON customers, orders TO "{{name}}";`)},
		{"database/roles/shop-write", role(`GRANT SELECT, INSERT, UPDATE, DELETE ON customers, orders TO "{{name}}";`)},
		{"database/roles/shop-admin", role(`GRANT ` + ShopOwnerRole + ` TO "{{name}}";`)},
	}
	for _, w := range writes {
		if _, err := root.Logical().WriteWithContext(ctx, w.path, w.data); err != nil {
			return fmt.Errorf("stack: vault: write %s: %w", w.path, err)
		}
	}
	return nil
}

// VaultRoles are the database engine roles ConfigureVault sets up: the credential roles of
// policies/catalog.hcl, least privileged first.
var VaultRoles = []string{"shop-read", "shop-write", "shop-admin"}

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

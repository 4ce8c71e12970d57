package config_test

import (
	"maps"
	"strings"
	"testing"

	"github.com/svidbroker/svidbroker/broker/config"
)

// rolesConfig is a target with auth = "vault" behind Cedar, its backend lines and catalog given.
func rolesConfig(t *testing.T, backend, catalog string, policy bool) string {
	ca := write(t, "ca.pem", caPEM)
	src := `
trust_domain        = "example.org"
workload_api_socket = "unix:///run/spire/agent.sock"

vault {
  address     = "https://vault:8200"
  ca_file     = "` + ca + `"
  cert_role   = "svidbroker"
  journal_dir = "/var/lib/svidbroker/leases"
}

target "shop" {
  protocol = "postgres"
  listen   = "127.0.0.1:15432"
  backend {
    address  = "db.internal:5432"
    database = "shop"
    ca_file  = "` + ca + `"
` + backend + `
  }
}
` + catalog
	if policy {
		src += "\npolicy {\n  dir = \"" + t.TempDir() + "\"\n}\n"
	}
	return src
}

const shopRoles = `
catalog "shop" {
  credential_role "shop-read" { covers = ["sql:select"] }
  credential_role "shop-write" { covers = ["sql:insert", "sql:update", "sql:delete"] }
  credential_role "shop-admin" {
    covers     = ["sql:ddl"]
    vault_role = "shop-owner"
  }
}
`

// TestCredentialRolesMapToVaultRoles: with auth = "vault" and credential roles in the target's
// catalog, each role maps to a database engine role (its vault_role, or its own name), and a target
// without credential roles keeps its one backend vault_role.
func TestCredentialRolesMapToVaultRoles(t *testing.T) {
	cfg, err := config.Parse("broker.hcl", []byte(rolesConfig(t, `    auth = "vault"`, shopRoles, true)), plugins)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"shop-read": "shop-read", "shop-write": "shop-write", "shop-admin": "shop-owner"}
	if got := cfg.Targets[0].VaultRoles; !maps.Equal(got, want) {
		t.Fatalf("VaultRoles = %v, want %v", got, want)
	}
	// Control: the fixed role of a target without credential roles, as before.
	cfg, err = config.Parse("broker.hcl", []byte(rolesConfig(t, "    auth = \"vault\"\n    vault_role = \"shop-read\"", "", true)), plugins)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Targets[0].VaultRoles != nil || cfg.Targets[0].Backend.VaultRole != "shop-read" {
		t.Fatalf("a fixed vault_role: VaultRoles %v, backend %+v", cfg.Targets[0].VaultRoles, cfg.Targets[0].Backend)
	}
	// auth = "svid" with credential roles loads: the roles stay unused (serve says so at start).
	svid := rolesConfig(t, `    user = "svidbroker"`, strings.Replace(shopRoles, "    vault_role = \"shop-owner\"\n", "", 1), true)
	if cfg, err := config.Parse("broker.hcl", []byte(svid), plugins); err != nil || cfg.Targets[0].VaultRoles != nil {
		t.Fatalf("auth = \"svid\" with credential roles: %v", err)
	}
}

// TestCredentialRoleMistakesAreRefused: each way of getting the credential roles wrong is refused at
// load, naming the file:line and what to change.
func TestCredentialRoleMistakesAreRefused(t *testing.T) {
	for name, tc := range map[string]struct {
		backend, catalog string
		policy           bool
		says             string
	}{
		"a fixed role too": {"    auth = \"vault\"\n    vault_role = \"shop-read\"", shopRoles, true,
			`catalog "shop" lists credential roles (shop-read, shop-write, shop-admin), and Cedar picks one of them per session; backend.vault_role = "shop-read"`},
		"a fixed path too": {"    auth = \"vault\"\n    vault_path = \"pg/creds/ro\"", shopRoles, true, "Remove backend.vault_path"},
		"no policy block":  {`    auth = "vault"`, shopRoles, false, "add a policy block"},
		"no source at all": {`    auth = "vault"`, "", true, `list credential_role blocks in catalog "shop"`},
		"misspelt cover": {`    auth = "vault"`, "catalog \"shop\" {\n  credential_role \"r\" { covers = [\"sql:selct\"] }\n}", true,
			`credential_role "r" covers "sql:selct", which is not a statement action`},
		"covers nothing": {`    auth = "vault"`, "catalog \"shop\" {\n  credential_role \"r\" {}\n}", true, "has no covers"},
		"duplicate":      {`    auth = "vault"`, `catalog "shop" {` + "\n" + `credential_role "r" { covers = ["sql:select"] }` + "\n" + `credential_role "r" { covers = ["sql:ddl"] }` + "\n}", true, "twice"},
		"vault path in a role name": {`    auth = "vault"`, `catalog "shop" {` + "\n" + `credential_role "r" {` + "\n" + `covers = ["sql:select"]` + "\n" + `vault_role = "../sys/x"` + "\n}\n}", true,
			"must be one Vault path segment"},
		"two catalogs":             {`    auth = "vault"`, shopRoles + "catalog \"shop\" {\n  credential_role \"extra\" { covers = [\"sql:select\"] }\n}\n", true, "has 2 catalog blocks"},
		"vault role without vault": {`    user = "svidbroker"`, shopRoles, true, `names vault_role "shop-owner", but target "shop" has auth = "svid"`},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := config.Parse("broker.hcl", []byte(rolesConfig(t, tc.backend, tc.catalog, tc.policy)), plugins)
			if err == nil || !strings.Contains(err.Error(), "broker.hcl:") || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("error %v; want file:line and %q", err, tc.says)
			}
		})
	}
}

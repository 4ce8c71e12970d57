package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// withoutCatalog drops the `catalog "name"` block from HCL source: a configuration refuses a catalog
// for a target it does not have.
func withoutCatalog(t *testing.T, src []byte, name string) []byte {
	t.Helper()
	file, diags := hclsyntax.ParseConfig(src, "catalog.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	for _, b := range file.Body.(*hclsyntax.Body).Blocks {
		if b.Type == "catalog" && len(b.Labels) == 1 && b.Labels[0] == name {
			r := b.Range()
			return append(append([]byte{}, src[:r.Start.Byte]...), src[r.End.Byte:]...)
		}
	}
	t.Fatalf("no catalog %q", name)
	return nil
}

// writeVaultRolesConfig writes a configuration whose target "shop" leases per credential role, with
// the repository's policy packs and the shop catalog (policies/catalog.hcl), as the demo runs.
func writeVaultRolesConfig(t *testing.T) string {
	t.Helper()
	base, err := os.ReadFile(writeBrokerConfig(t, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	ca := strings.SplitN(strings.SplitN(string(base), `ca_file  = "`, 2)[1], `"`, 2)[0]
	catalog, err := os.ReadFile(filepath.Join("..", "..", "policies", "catalog.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	catalog = withoutCatalog(t, withoutCatalog(t, catalog, "api"), "tools") // this configuration has no target "api" nor "tools"
	packs, err := filepath.Abs(filepath.Join("..", "..", "policies", "packs"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := `trust_domain        = "example.org"
workload_api_socket = "unix:///run/spire/agent.sock"
vault {
  address     = "https://vault.internal:8200"
  ca_file     = "` + ca + `"
  cert_role   = "svidbroker"
  journal_dir = "` + t.TempDir() + `"
}
target "shop" {
  protocol = "postgres"
  listen   = "127.0.0.1:15432"
  backend {
    address  = "db.internal:5432"
    database = "shop"
    auth     = "vault"
    ca_file  = "` + ca + `"
  }
}
policy {
  dir = "` + packs + `"
}
` + string(catalog)
	path := filepath.Join(t.TempDir(), "broker.hcl")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestPolicyCanShowsTheCredentialRoleThatRuns: `policy can` reports each persona's credential role as
// the broker picks it at connect (authz.PickRole), and a caller no role is picked for as refused.
func TestPolicyCanShowsTheCredentialRoleThatRuns(t *testing.T) {
	cfg := writeVaultRolesConfig(t)
	for _, tc := range []struct{ persona, want string }{
		{"analyst", `shop       shop-read (Vault role shop-read), for sql:select; credential:use permitted by analyst-read-role`},
		{"support", `shop       shop-read (Vault role shop-read), for sql:select; credential:use permitted by support-read-role`},
		{"migrator", `shop       shop-admin (Vault role shop-admin), for sql:ddl, sql:lock; credential:use permitted by migrator-admin-role`},
		{"stranger", `shop       refused at connect: no credential role of target "shop": credential:use is denied for every one (shop-read: no policy permits it;`},
	} {
		t.Run(tc.persona, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := []string{"policy", "can", "--config", cfg, "--selectors", "agent:name:" + tc.persona, "spiffe://example.org/agent/" + tc.persona}
			if code := run(args, &stdout, &stderr); code != 0 {
				t.Fatalf("exit %d\n%s%s", code, stdout.String(), stderr.String())
			}
			if !strings.Contains(stdout.String(), tc.want) {
				t.Fatalf("output does not contain\n  %s\n%s", tc.want, stdout.String())
			}
		})
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"policy", "can", "--json", "--config", cfg, "--selectors", "agent:name:migrator", "spiffe://example.org/agent/migrator"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr.String())
	}
	var out struct {
		CredentialRoles []sessionRole `json:"credentialRoles"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatal(err)
	}
	if len(out.CredentialRoles) != 1 || out.CredentialRoles[0].Role != "shop-admin" || out.CredentialRoles[0].VaultRole != "shop-admin" {
		t.Fatalf("JSON credential roles %+v", out.CredentialRoles)
	}
}

// TestPolicyCanSaysWhenCredentialRolesAreUnused: a target that logs every session in with its SVID
// picks no role, and `policy can` says that credential:use decides nothing there.
func TestPolicyCanSaysWhenCredentialRolesAreUnused(t *testing.T) {
	b, err := os.ReadFile(writeVaultRolesConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	src := strings.Replace(string(b), `    auth     = "vault"`, `    user     = "svidbroker"`, 1)
	cfg := filepath.Join(t.TempDir(), "broker.hcl")
	if err := os.WriteFile(cfg, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"policy", "can", "--config", cfg, "--selectors", "agent:name:migrator", "spiffe://example.org/agent/migrator"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr.String())
	}
	want := `shop       fixed: the broker's SVID, as backend user "svidbroker" (auth = "svid"); credential:use decides nothing here`
	if !strings.Contains(stdout.String(), want) {
		t.Fatalf("output does not contain\n  %s\n%s", want, stdout.String())
	}
}

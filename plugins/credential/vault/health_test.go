package vault_test

import (
	"strings"
	"testing"

	"github.com/svidbroker/svidbroker/plugins/credential/vault"
)

// TestCheckSaysWhetherVaultCanIssue: an unsealed Vault passes; a sealed one, or none at the address,
// fails with its state, and the error names neither the address nor a token.
func TestCheckSaysWhetherVaultCanIssue(t *testing.T) {
	f := setup(t, "1h", "24h")
	for _, c := range []struct {
		name  string
		setup func()
		addr  string
		want  string // "" for healthy
	}{
		{"unsealed", f.srv.Unseal, "", ""},
		{"sealed", f.srv.Seal, "", "HTTP 503"},
		{"nothing listening", f.srv.Unseal, "https://127.0.0.1:1", "unreachable"},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.setup()
			p := f.provider(t, vault.Config{Method: vault.MethodToken, Token: f.srv.RootToken})
			if c.addr != "" {
				var err error
				if p, err = vault.New(vault.Config{Method: vault.MethodToken, Token: f.srv.RootToken, Address: c.addr, CAFile: f.caFile}); err != nil {
					t.Fatal(err)
				}
			}
			err := p.Check(t.Context())
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("Check = %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("Check = %v; want an error saying %q", err, c.want)
			case err != nil && (strings.Contains(err.Error(), "127.0.0.1") || strings.Contains(err.Error(), f.srv.RootToken)):
				t.Fatalf("Check's error names the address or the token: %v", err)
			}
		})
	}
}

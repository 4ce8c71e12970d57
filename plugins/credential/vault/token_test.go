package vault_test

import (
	"strings"
	"testing"

	"github.com/svidbroker/svidbroker/broker/credential"
	"github.com/svidbroker/svidbroker/plugins/credential/vault"
)

// TestTokenOnlySource: an http target's secret holds a token and no username (the API-token engine's
// {"token": ...}); a TokenOnly source takes it, with an empty Username. Without TokenOnly the same
// secret is refused, as a database credential must have both; and a TokenOnly source still refuses a
// secret without the token field, quoting no secret.
func TestTokenOnlySource(t *testing.T) {
	f := setup(t, "1h", "24h")
	if _, err := f.root.KVv2("secret").Put(t.Context(), "pg/api", map[string]any{"token": "tok-secret-1"}); err != nil {
		t.Fatal(err)
	}
	p := f.provider(t, vault.Config{Method: vault.MethodCert, Role: "broker"})
	src := credential.Source{Kind: credential.Static, Mount: "secret", Path: "pg/api", PasswordKey: "token", TokenOnly: true}
	l, err := p.Acquire(t.Context(), src)
	if err != nil || l.Username != "" || l.Password != "tok-secret-1" {
		t.Fatalf("token-only secret: %v %v", l, err)
	}
	src.TokenOnly = false
	if l, err := p.Acquire(t.Context(), src); err == nil {
		t.Fatalf("a secret without a username acquired for a source that needs one: %v", l)
	}
	noToken := credential.Source{Kind: credential.Static, Mount: "secret", Path: "pg/nopass", PasswordKey: "token", TokenOnly: true}
	l, err = p.Acquire(t.Context(), noToken)
	if err == nil || !strings.Contains(err.Error(), `no "token" string`) || strings.Contains(err.Error(), "pw-secret") {
		t.Fatalf("token-only secret without a token: %v %v", l, err)
	}
}

package stack

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	hcl "github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	vaultapi "github.com/hashicorp/vault/api"

	"github.com/svidbroker/svidbroker/test/vault"
)

// apiFixture is the shop API on its own PostgreSQL, with the API-token engine of a test Vault.
type apiFixture struct {
	stack *Stack
	api   *ShopAPI
	http  *http.Client
	vault *vaultapi.Client
}

func startAPI(t *testing.T) *apiFixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	s, err := StartPostgres(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	api, err := s.StartShopAPI(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c, err := api.Client()
	if err != nil {
		t.Fatal(err)
	}
	root := startAPIVault(ctx, t, s, api)
	return &apiFixture{stack: s, api: api, http: c, vault: root}
}

// startAPIVault starts a test Vault whose API-token engine issues tokens for the stack's upstreams.
func startAPIVault(ctx context.Context, t *testing.T, s *Stack, up APIUpstream) *vaultapi.Client {
	t.Helper()
	v, err := vault.Start(vault.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	cfg := vaultapi.DefaultConfig()
	cfg.Address = v.Addr
	cfg.MaxRetries = 0
	if err := cfg.ConfigureTLS(&vaultapi.TLSConfig{CACertBytes: v.CACertPEM}); err != nil {
		t.Fatal(err)
	}
	root, err := vaultapi.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	root.SetToken(v.RootToken)
	if err := s.ConfigureAPIVault(ctx, root, up, "5m", "1h"); err != nil {
		t.Fatal(err)
	}
	return root
}

// lease reads a token of role from Vault, through the Vault API client as the broker would.
func (f *apiFixture) lease(t *testing.T, role string) (token, leaseID string) {
	t.Helper()
	sec, err := f.vault.Logical().ReadWithContext(t.Context(), APIVaultMount+"/creds/"+role)
	if err != nil {
		t.Fatal(err)
	}
	token, _ = sec.Data["token"].(string)
	if token == "" || sec.LeaseID == "" {
		t.Fatalf("creds/%s: no token or no lease", role)
	}
	return token, sec.LeaseID
}

type reply struct {
	status int
	header http.Header
	body   string
}

func (f *apiFixture) do(t *testing.T, token, method, path, contentType, body string) reply {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, f.api.URL()+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := f.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{resp.StatusCode, resp.Header, string(b)}
}

func expect(t *testing.T, r reply, status int, contains string) {
	t.Helper()
	if r.status != status || !strings.Contains(r.body, contains) {
		t.Fatalf("got %d %s; want %d with %q", r.status, r.body, status, contains)
	}
}

func TestShopAPIWithVaultTokens(t *testing.T) {
	f := startAPI(t)
	read, readLease := f.lease(t, "api-read")
	write, _ := f.lease(t, "api-write")
	db, err := f.stack.Postgres.Connect(t.Context(), "shop")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())

	t.Run("no or unknown token is 401", func(t *testing.T) {
		r := f.do(t, "", "GET", "/v1/customers/1", "", "")
		expect(t, r, http.StatusUnauthorized, "no Authorization header")
		if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer ") {
			t.Errorf("WWW-Authenticate %q, want a Bearer challenge", r.header.Get("WWW-Authenticate"))
		}
		expect(t, f.do(t, "sbt_"+strings.Repeat("0", 64), "GET", "/v1/customers/1", "", ""), http.StatusUnauthorized, "unknown, expired or revoked")
		expect(t, f.do(t, read+"x", "GET", "/v1/customers/1", "", ""), http.StatusUnauthorized, "unknown, expired or revoked")
	})

	t.Run("customer from the shop database", func(t *testing.T) {
		r := f.do(t, read, "GET", "/v1/customers/1", "", "")
		expect(t, r, http.StatusOK, `"ssn"`)
		var got, want struct {
			ID               int64
			Name, Email, SSN string
		}
		if err := json.Unmarshal([]byte(r.body), &got); err != nil {
			t.Fatal(err)
		}
		if err := db.QueryRow(t.Context(), "SELECT id, name, email, ssn FROM customers WHERE id = 1").Scan(&want.ID, &want.Name, &want.Email, &want.SSN); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("GET /v1/customers/1 = %+v, want the row %+v", got, want)
		}
		expect(t, f.do(t, read, "GET", "/v1/customers/999", "", ""), http.StatusNotFound, "customer 999 not found")
		expect(t, f.do(t, read, "GET", "/v1/customers/abc", "", ""), http.StatusBadRequest, "positive integer")
		expect(t, f.do(t, read, "GET", "/v1/customers/1?x=1", "", ""), http.StatusBadRequest, "no query parameters")
	})

	t.Run("customer list with a bounded limit", func(t *testing.T) {
		r := f.do(t, read, "GET", "/v1/customers?limit=3", "", "")
		expect(t, r, http.StatusOK, `"items"`)
		var got struct{ Items []map[string]any }
		if err := json.Unmarshal([]byte(r.body), &got); err != nil {
			t.Fatal(err)
		}
		if len(got.Items) != 3 || got.Items[0]["ssn"] == nil {
			t.Errorf("limit=3 gave %d items (%v), want 3 with ssn", len(got.Items), got.Items)
		}
		expect(t, f.do(t, read, "GET", "/v1/customers?limit=1000", "", ""), http.StatusBadRequest, "from 1 to 100")
		expect(t, f.do(t, read, "GET", "/v1/customers?limit=1&offset=2", "", ""), http.StatusBadRequest, `unknown query parameter \"offset\"`)
	})

	t.Run("customer events stream", func(t *testing.T) {
		req, _ := http.NewRequestWithContext(t.Context(), "GET", f.api.URL()+"/v1/customers/2/events", nil)
		req.Header.Set("Authorization", "Bearer "+read)
		resp, err := f.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
			t.Fatalf("events: %s, %q", resp.Status, resp.Header.Get("Content-Type"))
		}
		var events int
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			data, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok {
				continue
			}
			var c map[string]any
			if err := json.Unmarshal([]byte(data), &c); err != nil || c["id"] != float64(2) || c["ssn"] == nil {
				t.Fatalf("event data %q is not customer 2's JSON (%v)", data, err)
			}
			events++
		}
		if events < 2 {
			t.Errorf("%d events, want a few", events)
		}
	})

	t.Run("api-read may not write", func(t *testing.T) {
		expect(t, f.do(t, read, "GET", "/v1/orders/10", "", ""), http.StatusOK, `"customer_id":1`)
		expect(t, f.do(t, read, "DELETE", "/v1/orders/10", "", ""), http.StatusForbidden, "role api-read may not DELETE")
		expect(t, f.do(t, read, "POST", "/v1/refunds", "application/json", `{"order_id":10,"amount":1,"reason":"x"}`), http.StatusForbidden, "may not POST")
		expect(t, f.do(t, read, "GET", "/v1/orders/10", "", ""), http.StatusOK, `"id":10`) // still there
	})

	t.Run("api-write deletes and refunds for real", func(t *testing.T) {
		r := f.do(t, write, "DELETE", "/v1/orders/11", "", "")
		if r.status != http.StatusNoContent {
			t.Fatalf("DELETE: %d %s", r.status, r.body)
		}
		var n int
		if err := db.QueryRow(t.Context(), "SELECT count(*) FROM orders WHERE id = 11").Scan(&n); err != nil || n != 0 {
			t.Fatalf("order 11 is still in the database (%d, %v)", n, err)
		}
		expect(t, f.do(t, write, "DELETE", "/v1/orders/11", "", ""), http.StatusNotFound, "order 11 not found")

		expect(t, f.do(t, write, "POST", "/v1/refunds", "application/json", `{"order_id":20,"amount":500,"reason":"late delivery"}`), http.StatusCreated, `"reason":"late delivery"`)
		var reason string
		if err := db.QueryRow(t.Context(), "SELECT reason FROM api.refunds WHERE order_id = 20 AND amount = 500").Scan(&reason); err != nil || reason != "late delivery" {
			t.Fatalf("the refund is not recorded (%q, %v)", reason, err)
		}
		expect(t, f.do(t, write, "POST", "/v1/refunds", "application/json", `{"order_id":11,"amount":5,"reason":"gone"}`), http.StatusNotFound, "order 11 not found")
		expect(t, f.do(t, write, "POST", "/v1/refunds", "application/json", `{"order_id":20,"amount":5,"reason":"x","approved":true}`), http.StatusBadRequest, `unknown field \"approved\"`)
		expect(t, f.do(t, write, "POST", "/v1/refunds", "text/plain", `{"order_id":20,"amount":5,"reason":"x"}`), http.StatusUnsupportedMediaType, "application/json")
		expect(t, f.do(t, write, "POST", "/v1/refunds", "application/json", `{"reason":"`+strings.Repeat("x", 5000)+`"}`), http.StatusRequestEntityTooLarge, "larger than")
		expect(t, f.do(t, write, "PUT", "/v1/orders/10", "", ""), http.StatusForbidden, "may not PUT")
		expect(t, f.do(t, write, "GET", "/v1/products/1", "", ""), http.StatusNotFound, "no route for GET /v1/products/1")
	})

	t.Run("renewal keeps the token working, revocation ends it", func(t *testing.T) {
		if _, err := f.vault.Sys().RenewWithContext(t.Context(), readLease, 600); err != nil {
			t.Fatal(err)
		}
		expect(t, f.do(t, read, "GET", "/v1/customers/1", "", ""), http.StatusOK, `"id":1`)
		if err := f.vault.Sys().RevokeWithContext(t.Context(), readLease); err != nil {
			t.Fatal(err)
		}
		expect(t, f.do(t, read, "GET", "/v1/customers/1", "", ""), http.StatusUnauthorized, "unknown, expired or revoked")
		expect(t, f.do(t, write, "GET", "/v1/customers/1", "", ""), http.StatusOK, `"id":1`) // other leases unaffected
	})

	t.Run("an expired token is refused even before Vault revokes it", func(t *testing.T) {
		tok, _ := f.lease(t, "api-read")
		if _, err := db.Exec(t.Context(), "UPDATE api.tokens SET expires_at = now() - interval '1 second'"); err != nil {
			t.Fatal(err)
		}
		expect(t, f.do(t, tok, "GET", "/v1/customers/1", "", ""), http.StatusUnauthorized, "unknown, expired or revoked")
	})
}

// The API's database password is readable by the API's uid only, never by an agent's; and the
// database roles agents' sessions run as (Vault's shop roles are members of shop_owner at most, or
// the broker's own) cannot read or write the API's tokens.
func TestShopAPISecretsOutOfAgentsReach(t *testing.T) {
	f := startAPI(t)
	db, err := f.stack.Postgres.Connect(t.Context(), "shop")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())
	for _, role := range []string{ShopOwnerRole, BrokerDBRole, ShopAPIDBRole} {
		for _, q := range []string{"SELECT count(*) FROM api.tokens", "INSERT INTO api.tokens VALUES (sha256('x'), 'api-write', now() + interval '1 day')"} {
			if role == ShopAPIDBRole && strings.HasPrefix(q, "SELECT") {
				continue // the API reads its tokens; it may not write them
			}
			_, err := db.Exec(t.Context(), "BEGIN; SET LOCAL ROLE "+role+"; "+q+"; COMMIT")
			if err == nil || !strings.Contains(err.Error(), "permission denied") {
				t.Errorf("as %s, %s: %v; want permission denied", role, q, err)
			}
			if _, err := db.Exec(t.Context(), "ROLLBACK"); err != nil {
				t.Fatal(err)
			}
		}
	}
	st, err := os.Stat(filepath.Join(f.stack.Dir, "shopapi", "db.conn"))
	if err != nil {
		t.Fatal(err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	if st.Mode().Perm() != 0o600 || sys.Uid != ShopAPIUID {
		t.Errorf("db.conn: mode %04o uid %d; want 0600 owned by %d", st.Mode().Perm(), sys.Uid, ShopAPIUID)
	}
	dir, err := os.Stat(filepath.Join(f.stack.Dir, "shopapi"))
	if err != nil {
		t.Fatal(err)
	}
	if dir.Mode().Perm()&0o077 != 0 {
		t.Errorf("the API's directory is open to others: %04o", dir.Mode().Perm())
	}
	for _, p := range DefaultPersonas() {
		if p.UID == ShopAPIUID {
			t.Errorf("persona %s shares the API's uid", p.Name)
		}
	}
}

// TestAPITargetHCL decodes the target and jwt blocks the e2e tests and the demo add to the broker's
// configuration, as the configuration's HCL decoding would.
func TestAPITargetHCL(t *testing.T) {
	a := &ShopAPI{Addr: "127.0.0.1:9443", CAFile: "/tmp/api-ca.pem"}
	src := a.TargetHCL("127.0.0.1:8443", "  timeouts {\n    upstream = \"5s\"\n  }\n") + JWTBlock()
	f, diags := hclsyntax.ParseConfig([]byte(src), "extra.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatalf("%s\n%s", diags.Error(), src)
	}
	var cfg struct {
		Targets []struct {
			Name     string `hcl:"name,label"`
			Protocol string `hcl:"protocol"`
			Listen   string `hcl:"listen"`
			Timeouts struct {
				Upstream string `hcl:"upstream"`
			} `hcl:"timeouts,block"`
			Backend struct {
				Address          string `hcl:"address"`
				CAFile           string `hcl:"ca_file"`
				ServerName       string `hcl:"server_name"`
				Auth             string `hcl:"auth"`
				VaultPasswordKey string `hcl:"vault_password_key"`
				VaultMount       string `hcl:"vault_mount"`
			} `hcl:"backend,block"`
		} `hcl:"target,block"`
		JWT struct {
			Audience string `hcl:"audience"`
		} `hcl:"jwt,block"`
	}
	if diags := gohcl.DecodeBody(f.Body, nil, &cfg); diags.HasErrors() {
		t.Fatalf("%s\n%s", diags.Error(), src)
	}
	if len(cfg.Targets) != 1 {
		t.Fatalf("%d targets, want 1", len(cfg.Targets))
	}
	tg := cfg.Targets[0]
	b := tg.Backend
	if tg.Name != "api" || tg.Protocol != "http" || tg.Listen != "127.0.0.1:8443" || tg.Timeouts.Upstream != "5s" ||
		b.Address != a.Addr || b.CAFile != a.CAFile || b.ServerName != "localhost" || b.Auth != "vault" || b.VaultPasswordKey != "token" || b.VaultMount != APIVaultMount {
		t.Errorf("target %+v", tg)
	}
	if cfg.JWT.Audience != JWTAudience {
		t.Errorf("jwt audience %q, want %q", cfg.JWT.Audience, JWTAudience)
	}
}

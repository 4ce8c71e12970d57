package stack

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
)

// The demo's upstream API (examples/shopapi) and what it needs in PostgreSQL and Vault.
const (
	// ShopAPIUID is the uid the API runs as: no persona's, so no agent can read its files (its
	// database password among them), and SPIRE issues it nothing.
	ShopAPIUID = 30100
	// ShopAPIDBRole is the API's own PostgreSQL login: it reads customers and orders, deletes orders,
	// records refunds in api.refunds and reads api.tokens.
	ShopAPIDBRole = "shopapi"
	// APITokenIssuerRole is the login of Vault's API-token engine: it may only write api.tokens.
	APITokenIssuerRole = "api_token_issuer"
	// APIVaultMount is where ConfigureAPIVault mounts the API-token engine.
	APIVaultMount = "api"
	// APITargetName is the broker's http target in front of the API.
	APITargetName = "api"
	// JWTAudience is the audience of the JWT-SVIDs agents present to the broker's http targets.
	JWTAudience = "svidbroker"
)

// APIVaultRoles are the API-token engine's roles: the API lets api-read GET, and api-write GET, POST
// and DELETE. They are the credential roles of catalog "api" in policies/catalog.hcl.
var APIVaultRoles = []string{"api-read", "api-write"}

// apiSchema is the API's own schema in database "shop": its token table, which Vault's engine
// writes and the API reads on every request, and the refunds it records.
const apiSchema = `
CREATE SCHEMA IF NOT EXISTS api;
CREATE TABLE IF NOT EXISTS api.tokens (
	token_sha256 bytea PRIMARY KEY CHECK (length(token_sha256) = 32),
	role         text NOT NULL,
	expires_at   timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS api.refunds (
	id         bigserial PRIMARY KEY,
	order_id   integer NOT NULL,
	amount     bigint NOT NULL CHECK (amount > 0),
	reason     text NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now()
);
DO $$ BEGIN
	IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '` + ShopAPIDBRole + `') THEN CREATE ROLE ` + ShopAPIDBRole + ` LOGIN; END IF;
	IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '` + APITokenIssuerRole + `') THEN CREATE ROLE ` + APITokenIssuerRole + ` LOGIN; END IF;
END $$;
REVOKE ALL ON SCHEMA api FROM PUBLIC;
GRANT USAGE ON SCHEMA api TO ` + ShopAPIDBRole + `, ` + APITokenIssuerRole + `;
GRANT SELECT ON api.tokens TO ` + ShopAPIDBRole + `;
GRANT SELECT, INSERT ON api.refunds TO ` + ShopAPIDBRole + `;
GRANT USAGE ON SEQUENCE api.refunds_id_seq TO ` + ShopAPIDBRole + `;
GRANT SELECT ON public.customers TO ` + ShopAPIDBRole + `;
GRANT SELECT, DELETE ON public.orders TO ` + ShopAPIDBRole + `;
GRANT SELECT, INSERT, UPDATE, DELETE ON api.tokens TO ` + APITokenIssuerRole + `;
`

// ShopAPI is a running examples/shopapi in front of the stack's database "shop".
type ShopAPI struct {
	// Addr is its HTTPS host:port (127.0.0.1).
	Addr string
	// CAFile is the PEM CA that signed its certificate, for localhost and 127.0.0.1.
	CAFile string

	proc *process
}

// StartShopAPI sets up the API's schema and logins in database "shop" and runs svidbroker-shopapi
// (built by `make build`) as ShopAPIUID. Its database password goes into a file only that uid can
// read. It returns once /healthz answers over verified TLS; Close stops it.
func (s *Stack) StartShopAPI(ctx context.Context) (*ShopAPI, error) {
	a := &ShopAPI{}
	var err error
	a.Addr, a.CAFile, a.proc, err = s.startShopServer(ctx, shopServer{name: "shopapi", uid: ShopAPIUID, dbRole: ShopAPIDBRole})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// setupAPISchema creates the API's schema, tables and logins, then runs extra (an upstream's own
// grants), and sets the password of the upstream's login role. APITokenIssuerRole's password is set
// once per stack, by the first upstream started: Vault's engine may already hold it.
func (s *Stack) setupAPISchema(ctx context.Context, extra, role, pw string) error {
	c, err := s.Postgres.Connect(ctx, "shop")
	if err != nil {
		return fmt.Errorf("stack: %s schema: %w", role, err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, apiSchema+extra); err != nil {
		return fmt.Errorf("stack: %s schema: %w", role, err)
	}
	pws := map[string]string{role: pw}
	if s.apiIssuerPW == "" {
		s.apiIssuerPW = randomPassword()
		pws[APITokenIssuerRole] = s.apiIssuerPW
	}
	// The passwords are hex: nothing in them needs quoting.
	for r, p := range pws {
		if _, err := c.Exec(ctx, "ALTER ROLE "+r+" PASSWORD '"+p+"'"); err != nil {
			return fmt.Errorf("stack: %s schema: set the password of %s: %w", role, r, err)
		}
	}
	return nil
}

// StartPostgres starts a stack of PostgreSQL alone (database "shop" seeded, no SPIRE, no personas),
// for tests of the components that need nothing else: the API-token engine, the shop API. Close
// stops it and removes its directory.
func StartPostgres(ctx context.Context) (s *Stack, err error) {
	s = &Stack{}
	if s.binDir, err = BinDir(); err != nil {
		return nil, err
	}
	if s.Dir, err = os.MkdirTemp("", "svidbroker-pg-"); err != nil {
		return nil, fmt.Errorf("stack: %w", err)
	}
	s.ownsDir, s.LogDir = true, filepath.Join(s.Dir, "logs")
	defer func() {
		if err != nil {
			err = errors.Join(err, s.Close())
			s = nil
		}
	}()
	if err := os.Chmod(s.Dir, 0o755); err != nil {
		return s, fmt.Errorf("stack: %w", err)
	}
	if err := os.MkdirAll(s.LogDir, 0o755); err != nil {
		return s, fmt.Errorf("stack: %w", err)
	}
	return s, s.startPostgres(ctx, PostgresConfig{})
}

func randomPassword() string {
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Client returns an HTTPS client that trusts the API's CA only.
func (a *ShopAPI) Client() (*http.Client, error) { return caClient(a.CAFile, 10*time.Second) }

// URL is the API's base URL.
func (a *ShopAPI) URL() string { return "https://" + a.Addr }

// Stop ends the API with SIGTERM and waits for it (the stack's Close does too).
func (a *ShopAPI) Stop() error { return a.proc.stop() }

// LogPath is the file the API's output goes to.
func (a *ShopAPI) LogPath() string { return a.proc.logPath }

// PID is the API process's ID.
func (a *ShopAPI) PID() int { return a.proc.cmd.Process.Pid }

// APIUpstream is a service that checks the API-token engine's tokens: *ShopAPI or *MCPShop.
type APIUpstream interface{ checksAPITokens() }

func (*ShopAPI) checksAPITokens() {}

// ConfigureAPIVault mounts the API-token engine at APIVaultMount with the roles APIVaultRoles, whose
// tokens live ttl (renewable up to maxTTL), for the upstreams started on this stack (one or both:
// they share api.tokens). The engine writes api.tokens as APITokenIssuerRole. ConfigureVault's
// broker policy may already read their creds.
func (s *Stack) ConfigureAPIVault(ctx context.Context, root *vaultapi.Client, _ APIUpstream, ttl, maxTTL string) error {
	if s.apiIssuerPW == "" {
		return errors.New("stack: ConfigureAPIVault: start the shop API or the MCP shop first (they create the token table)")
	}
	if err := Mount(ctx, root, APIVaultMount, "api-token", nil); err != nil {
		return err
	}
	pg := s.Postgres
	if _, err := root.Logical().WriteWithContext(ctx, APIVaultMount+"/config", map[string]any{
		"connection_url": fmt.Sprintf("postgresql://{{username}}:{{password}}@%s:%d/shop?sslmode=verify-full&sslrootcert=%s", pg.Host, pg.Port, pg.CAPath),
		"username":       APITokenIssuerRole, "password": s.apiIssuerPW, "table": "api.tokens",
	}); err != nil {
		return fmt.Errorf("stack: vault: write %s/config: %w", APIVaultMount, err)
	}
	for _, r := range APIVaultRoles {
		if _, err := root.Logical().WriteWithContext(ctx, APIVaultMount+"/roles/"+r, map[string]any{"default_ttl": ttl, "max_ttl": maxTTL}); err != nil {
			return fmt.Errorf("stack: vault: write %s/roles/%s: %w", APIVaultMount, r, err)
		}
	}
	return nil
}

// TargetHCL is the broker configuration of http target "api" (APITargetName) listening at listen,
// in front of the API, for BrokerOptions.Extra of a broker that uses Cedar (not Allow); extra is
// added inside the target block (a timeouts block, say), as BrokerOptions.TargetExtra is for "shop".
// Each session's API token is leased from Vault for the credential role Cedar picks among catalog
// "api"'s, and injected as Authorization: Bearer. The catalog "api" (routes, fields, credential
// roles) is in policies/catalog.hcl, which StartBroker puts in the configuration whole: the file is
// its one source. Add JWTBlock for agents that present JWT-SVIDs.
func (a *ShopAPI) TargetHCL(listen, extra string) string {
	return fmt.Sprintf(`
# The shop's HTTPS API (examples/shopapi). Agents never hold its token: the broker leases one from
# Vault per session, for the credential role Cedar picks (api-read or api-write), and injects it.
target %q {
  protocol = "http"
  listen   = %q
%s
  backend {
    address            = %q
    ca_file            = %q
    server_name        = "localhost"
    auth               = "vault"
    vault_password_key = "token"
    vault_mount        = "api"
  }
}
`, APITargetName, listen, extra, a.Addr, a.CAFile)
}

// JWTBlock makes the broker's http targets accept JWT-SVIDs of audience JWTAudience as bearers.
func JWTBlock() string {
	return fmt.Sprintf("\n# HTTP targets accept a JWT-SVID for this audience in Authorization: Bearer.\njwt {\n  audience = %q\n}\n", JWTAudience)
}

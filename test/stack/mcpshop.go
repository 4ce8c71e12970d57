package stack

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// The demo's upstream MCP server (examples/mcpshop) and what it needs in PostgreSQL.
const (
	// MCPShopUID is the uid the MCP server runs as: no persona's, and not the shop API's.
	MCPShopUID = 30101
	// MCPShopDBRole is the MCP server's own PostgreSQL login: it reads customers, orders and
	// api.tokens, records refunds in api.refunds and queues email in api.outbox.
	MCPShopDBRole = "mcpshop"
	// MCPShopPath is where the server speaks MCP.
	MCPShopPath = "/mcp"
	// MCPRotatePath changes the summarize tool's description (loopback peers, no token).
	MCPRotatePath = "/admin/rotate-description"
)

// mcpShopSchema is the MCP server's share of schema api: its outbox ("sent" email) and its grants.
// apiSchema (the token table, refunds, the issuer's login) runs first.
const mcpShopSchema = `
CREATE TABLE IF NOT EXISTS api.outbox (
	id         bigserial PRIMARY KEY,
	recipient  text NOT NULL,
	subject    text NOT NULL,
	body       text NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now()
);
DO $$ BEGIN
	IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '` + MCPShopDBRole + `') THEN CREATE ROLE ` + MCPShopDBRole + ` LOGIN; END IF;
END $$;
GRANT USAGE ON SCHEMA api TO ` + MCPShopDBRole + `;
GRANT SELECT ON api.tokens TO ` + MCPShopDBRole + `;
GRANT SELECT, INSERT ON api.refunds, api.outbox TO ` + MCPShopDBRole + `;
GRANT USAGE ON SEQUENCE api.refunds_id_seq, api.outbox_id_seq TO ` + MCPShopDBRole + `;
GRANT SELECT ON public.customers, public.orders TO ` + MCPShopDBRole + `;
`

// MCPShop is a running examples/mcpshop in front of the stack's database "shop".
type MCPShop struct {
	// Addr is its HTTPS host:port (127.0.0.1).
	Addr string
	// CAFile is the PEM CA that signed its certificate, for localhost and 127.0.0.1.
	CAFile string

	proc *process
}

func (*MCPShop) checksAPITokens() {}

// StartMCPShop sets up the MCP server's schema and login in database "shop" (with the shop API's
// token table: ConfigureAPIVault's tokens work for both) and runs svidbroker-mcpshop (built by `make
// build`) as MCPShopUID, with --allow-rotate. Its database password goes into a file only that uid
// can read. It returns once /healthz answers over verified TLS; Stop (or the stack's Close) ends it.
func (s *Stack) StartMCPShop(ctx context.Context) (*MCPShop, error) {
	m := &MCPShop{}
	var err error
	m.Addr, m.CAFile, m.proc, err = s.startShopServer(ctx, shopServer{name: "mcpshop", uid: MCPShopUID, dbRole: MCPShopDBRole,
		schema: mcpShopSchema, args: []string{"--allow-rotate"}})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// Client returns an HTTPS client that trusts the server's CA only. It sets no timeout of its own:
// an MCP session's GET stream lives as long as the session; bound each call with its context.
func (m *MCPShop) Client() (*http.Client, error) { return caClient(m.CAFile, 0) }

// URL is the server's MCP endpoint.
func (m *MCPShop) URL() string { return "https://" + m.Addr + MCPShopPath }

// Stop ends the server with SIGTERM and waits for it (the stack's Close does too).
func (m *MCPShop) Stop() error { return m.proc.stop() }

// LogPath is the file the server's output goes to.
func (m *MCPShop) LogPath() string { return m.proc.logPath }

// PID is the server process's ID.
func (m *MCPShop) PID() int { return m.proc.cmd.Process.Pid }

// RotateDescription changes the summarize tool's description to d, or when d is empty to the
// server's built-in poisoned description (and back to the default on the next empty rotation), and
// returns the description now listed.
func (m *MCPShop) RotateDescription(ctx context.Context, d string) (string, error) {
	c, err := m.Client()
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+m.Addr+MCPRotatePath, strings.NewReader(d))
	req.Header.Set("Content-Type", "text/plain")
	resp, err := c.Do(req)
	if err != nil {
		return "", fmt.Errorf("stack: rotate the description: %w", err)
	}
	defer resp.Body.Close()
	var out struct{ Description, Error string }
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("stack: rotate the description: %s %s (%v)", resp.Status, out.Error, err)
	}
	return out.Description, nil
}

// bearerTransport adds a bearer token to each request.
type bearerTransport struct {
	token string
	next  http.RoundTripper
}

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}

// Connect opens a go-sdk client session to the server with the API token (from the API-token
// engine, as the broker would inject it), for protocol version (""; the newest both speak).
func (m *MCPShop) Connect(ctx context.Context, token, version string, opts *mcp.ClientOptions) (*mcp.ClientSession, error) {
	hc, err := m.Client()
	if err != nil {
		return nil, err
	}
	hc.Transport = bearerTransport{token: token, next: hc.Transport}
	c := mcp.NewClient(&mcp.Implementation{Name: "svidbroker-test", Version: "1"}, opts)
	cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: m.URL(), HTTPClient: hc, MaxRetries: -1},
		&mcp.ClientSessionOptions{ProtocolVersion: version})
	if err != nil {
		return nil, fmt.Errorf("stack: connect to the MCP shop: %w", err)
	}
	return cs, nil
}

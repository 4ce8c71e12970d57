package stack

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// leaseAPIToken reads a token of role from the API-token engine, as the broker would.
func leaseAPIToken(t *testing.T, root *vaultapi.Client, role string) (token, leaseID string) {
	t.Helper()
	sec, err := root.Logical().ReadWithContext(t.Context(), APIVaultMount+"/creds/"+role)
	if err != nil {
		t.Fatal(err)
	}
	token, _ = sec.Data["token"].(string)
	if token == "" || sec.LeaseID == "" {
		t.Fatalf("creds/%s: no token or no lease", role)
	}
	return token, sec.LeaseID
}

func mcpText(res *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

// TestMCPShopWithVaultTokens runs the MCP server and the shop API on one database: a token the
// test Vault's API-token engine issues works for both, the MCP server's tools read and write the
// shop, a read token may not write, a rotated description shows in the next list, and revoking the
// lease ends the token.
func TestMCPShopWithVaultTokens(t *testing.T) {
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
	m, err := s.StartMCPShop(ctx)
	if err != nil {
		t.Fatal(err)
	}
	api, err := s.StartShopAPI(ctx) // after the MCP server: it must not change the token issuer's password
	if err != nil {
		t.Fatal(err)
	}
	root := startAPIVault(ctx, t, s, m)
	read, readLease := leaseAPIToken(t, root, "api-read")
	write, _ := leaseAPIToken(t, root, "api-write")
	db, err := s.Postgres.Connect(ctx, "shop")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())

	t.Run("one token for both upstreams", func(t *testing.T) {
		hc, err := api.Client()
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, api.URL()+"/v1/customers/1", nil)
		req.Header.Set("Authorization", "Bearer "+read)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("the shop API refused the token: %s", resp.Status)
		}
	})

	for _, version := range []string{"2026-07-28", "2025-11-25"} {
		t.Run("get_customer "+version, func(t *testing.T) {
			cs, err := m.Connect(t.Context(), read, version, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer cs.Close()
			res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "get_customer", Arguments: map[string]any{"id": 1}})
			if err != nil {
				t.Fatal(err)
			}
			var got, want struct {
				ID               int64
				Name, Email, SSN string
			}
			b, _ := json.Marshal(res.StructuredContent)
			if err := json.Unmarshal(b, &got); err != nil || res.IsError {
				t.Fatalf("get_customer: %s (%v)", mcpText(res), err)
			}
			if err := db.QueryRow(t.Context(), "SELECT id, name, email, ssn FROM customers WHERE id = 1").Scan(&want.ID, &want.Name, &want.Email, &want.SSN); err != nil {
				t.Fatal(err)
			}
			if got != want || mcpText(res) != string(b) {
				t.Errorf("get_customer 1 = %+v (text %s), want the row %+v", got, mcpText(res), want)
			}
		})
	}

	t.Run("writes need api-write and land in the database", func(t *testing.T) {
		rc, err := m.Connect(t.Context(), read, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		wc, err := m.Connect(t.Context(), write, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer wc.Close()
		refund := &mcp.CallToolParams{Name: "refund", Arguments: map[string]any{"order_id": 20, "amount": 75, "reason": "mcp stack test"}}
		res, err := rc.CallTool(t.Context(), refund)
		if err != nil || !res.IsError || !strings.Contains(mcpText(res), "role api-read may not call refund") {
			t.Fatalf("refund with api-read: %s, %v", mcpText(res), err)
		}
		var n int
		if err := db.QueryRow(t.Context(), "SELECT count(*) FROM api.refunds WHERE reason = 'mcp stack test'").Scan(&n); err != nil || n != 0 {
			t.Fatalf("refunds after a refused call: %d, %v", n, err)
		}
		if res, err = wc.CallTool(t.Context(), refund); err != nil || res.IsError {
			t.Fatalf("refund with api-write: %s, %v", mcpText(res), err)
		}
		if err := db.QueryRow(t.Context(), "SELECT count(*) FROM api.refunds WHERE order_id = 20 AND amount = 75 AND reason = 'mcp stack test'").Scan(&n); err != nil || n != 1 {
			t.Fatalf("the refund is not recorded: %d, %v", n, err)
		}
		res, err = wc.CallTool(t.Context(), &mcp.CallToolParams{Name: "send_email", Arguments: map[string]any{"to": "bob@example.com", "subject": "Refund", "body": "Your refund is on its way."}})
		if err != nil || res.IsError {
			t.Fatalf("send_email: %s, %v", mcpText(res), err)
		}
		var subject string
		if err := db.QueryRow(t.Context(), "SELECT subject FROM api.outbox WHERE recipient = 'bob@example.com'").Scan(&subject); err != nil || subject != "Refund" {
			t.Fatalf("the email is not in api.outbox: %q, %v", subject, err)
		}
	})

	t.Run("rotated description in the next list", func(t *testing.T) {
		cs, err := m.Connect(t.Context(), read, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer cs.Close()
		d, err := m.RotateDescription(t.Context(), "")
		if err != nil {
			t.Fatal(err)
		}
		tools, err := cs.ListTools(t.Context(), nil)
		if err != nil {
			t.Fatal(err)
		}
		var listed string
		for _, tl := range tools.Tools {
			if tl.Name == "summarize" {
				listed = tl.Description
			}
		}
		if !strings.Contains(d, "send_email") || listed != d {
			t.Errorf("rotated to %q, listed %q", d, listed)
		}
	})

	t.Run("a revoked token is refused", func(t *testing.T) {
		if err := root.Sys().RevokeWithContext(t.Context(), readLease); err != nil {
			t.Fatal(err)
		}
		if cs, err := m.Connect(t.Context(), read, "", nil); err == nil {
			cs.Close()
			t.Fatal("connected with a revoked token")
		}
		cs, err := m.Connect(t.Context(), write, "", nil) // other leases unaffected
		if err != nil {
			t.Fatal(err)
		}
		cs.Close()
	})
}

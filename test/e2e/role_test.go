package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/test/stack"
)

// intruderWithoutRole lets the intruder connect and select, and permits it no credential role.
const intruderWithoutRole = `
@id("intruder-connect")
permit (principal in Group::"intruders", action == Action::"connect", resource == Target::"shop");

@id("intruder-select")
permit (principal in Group::"intruders", action == Action::"sql:select", resource in Target::"shop");
`

// TestCredentialRolePickedByCedar: each session leases the Vault role Cedar picks for its caller,
// the one `svidbroker policy can` shows. Support and the analyst run as shop-read roles; the migrator
// runs as a shop-admin role, so its approved DDL succeeds in PostgreSQL; a persona permitted to
// connect but no credential role is refused at connect, told what to fix, and the refusal is recorded.
func TestCredentialRolePickedByCedar(t *testing.T) {
	s, _ := shared(t)
	v, root := startVault(t)
	configureVault(t, s, root, "1m", "10m")
	root2, err := stack.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	policies := t.TempDir()
	if err := os.CopyFS(policies, os.DirFS(filepath.Join(root2, "policies", "packs"))); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(policies, "intruder.cedar"), []byte(intruderWithoutRole), 0o644); err != nil {
		t.Fatal(err)
	}
	block, err := s.VaultBlock("vault-roles-journal", v.Addr, v.CACertPEM)
	if err != nil {
		t.Fatal(err)
	}
	group := "\ngroup \"intruders\" { selectors = [\"agent:name:intruder\"] }\n"
	b, err := s.StartBroker(t.Context(), stack.BrokerOptions{Name: "svidbroker-vault-roles", Binary: brokerBin, VaultRoles: true,
		PolicyDir: policies, Extra: block + group})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Stop()
	ctx := t.Context()

	for _, tc := range []struct{ persona, want string }{
		{stack.PersonaAnalyst, "shop-read"},
		{stack.PersonaSupport, "shop-read"},
		{stack.PersonaMigrator, "shop-admin"},
	} {
		if shown := policyCanRole(t, b, s, tc.persona); shown != tc.want {
			t.Fatalf("policy can shows %s getting %q; want %q", tc.persona, shown, tc.want)
		}
		c, err := pgx.ConnectConfig(ctx, pgxConfig(t, b, clientFiles(t, s, tc.persona)))
		if err != nil {
			t.Fatalf("%s: %v", tc.persona, err)
		}
		if u := currentUser(t, c); !strings.HasPrefix(u, "v-"+tc.want+"-") {
			t.Fatalf("%s runs as %q; want a %s role, as policy can shows", tc.persona, u, tc.want)
		}
		c.Close(ctx)
	}

	// The migrator's DDL, once approved, runs under its admin role and creates a real table.
	migrator := connect(t, s, b, stack.PersonaMigrator)
	table := fmt.Sprintf("role_migration_%d", time.Now().UnixNano())
	done := make(chan error, 1)
	go func() {
		_, err := migrator.Exec(context.Background(), "CREATE TABLE public."+table+" (id int)")
		done <- err
	}()
	req := waitPending(t, b, table)
	httpReq, _ := http.NewRequest("POST", "http://"+b.AdminAddr+"/approvals/"+req.ID+"/approve", nil)
	httpReq.Header.Set("X-Approver", "dba@example.com")
	resp, err := http.DefaultClient.Do(httpReq)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("approve: %v %v", resp, err)
	}
	resp.Body.Close()
	if err := <-done; err != nil {
		t.Fatalf("the approved DDL failed: %v", err)
	}
	var owner string
	if err := migrator.QueryRow(ctx, "SELECT tableowner FROM pg_tables WHERE schemaname = 'public' AND tablename = $1", table).Scan(&owner); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(owner, "v-shop-admin-") {
		t.Fatalf("the new table belongs to %q; want the session's shop-admin role", owner)
	}
	// Its lease revoked, the role is gone and what it created stays, handed to the schema's owner.
	migrator.Close(ctx)
	waitRoleGone(t, owner)
	super, err := s.Postgres.Connect(ctx, "shop")
	if err != nil {
		t.Fatal(err)
	}
	defer super.Close(context.Background())
	if err := super.QueryRow(ctx, "SELECT tableowner FROM pg_tables WHERE schemaname = 'public' AND tablename = $1", table).Scan(&owner); err != nil || owner != stack.ShopOwnerRole {
		t.Fatalf("after the lease: table owner %q (%v); want %s", owner, err, stack.ShopOwnerRole)
	}
	if _, err := super.Exec(ctx, "DROP TABLE public."+table); err != nil {
		t.Fatal(err)
	}

	// A persona permitted to connect, but no credential role, is refused at connect: no lease.
	out, err := psql(t, b, clientFiles(t, s, stack.PersonaIntruder), nil, "SELECT 1")
	if err == nil || !strings.Contains(out, `no credential role of target "shop": credential:use is denied for every one`) ||
		!strings.Contains(out, `permit credential:use on CredentialRole::"shop/<role>"`) {
		t.Fatalf("the intruder without a role: %v\n%s", err, out)
	}
	var pe *pgconn.PgError
	if _, err := pgx.ConnectConfig(ctx, pgxConfig(t, b, clientFiles(t, s, stack.PersonaIntruder))); !errors.As(err, &pe) || pe.Code != "28000" {
		t.Fatalf("the intruder without a role: %v; want SQLSTATE 28000", err)
	}
	if shown := policyCanRole(t, b, s, stack.PersonaIntruder); shown != "" {
		t.Fatalf("policy can shows the intruder getting %q", shown)
	}
	checkRoleRecords(t, b, mustPersonaID(t, s, stack.PersonaMigrator), mustPersonaID(t, s, stack.PersonaIntruder))
}

// policyCanRole is the credential role `svidbroker policy can --json` shows for persona on target
// shop of b's configuration; "" when it is refused one.
func policyCanRole(t *testing.T, b *stack.Broker, s *stack.Stack, persona string) string {
	t.Helper()
	out := brokerCLI(t, b, "policy", "can", "--json", "--config", b.ConfigPath, "--selectors", "agent:name:"+persona, mustPersonaID(t, s, persona))
	var can struct {
		CredentialRoles []struct {
			Target, Role, Refused string
		} `json:"credentialRoles"`
	}
	if err := json.Unmarshal([]byte(out), &can); err != nil {
		t.Fatalf("policy can --json: %v\n%s", err, out)
	}
	if len(can.CredentialRoles) != 1 || can.CredentialRoles[0].Target != "shop" || (can.CredentialRoles[0].Role == "") == (can.CredentialRoles[0].Refused == "") {
		t.Fatalf("policy can --json: credential roles %+v", can.CredentialRoles)
	}
	return can.CredentialRoles[0].Role
}

// checkRoleRecords: the audit log names the migrator's role in its session start, its credential:use
// decision and its lease, and records the role-less caller's refusal as credential:use decisions,
// with no session start and no lease.
func checkRoleRecords(t *testing.T, b *stack.Broker, migrator, refused string) {
	t.Helper()
	var start, decision, lease, refusals, refusedAccess int
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		start, decision, lease, refusals, refusedAccess = 0, 0, 0, 0, 0
		err := audit.Read(b.AuditDir, b.Chain, func(e audit.Entry) error {
			r := e.Record
			switch {
			case r.SPIFFEID == migrator && r.Kind == audit.KindSessionStart && r.Detail["credential_role"] == "shop-admin" && r.Detail["credential_role_for"] == "sql:ddl,sql:lock":
				start++
			case r.SPIFFEID == migrator && r.Kind == audit.KindDecision && r.Decision != nil && r.Decision.Action == "credential:use" &&
				r.Decision.Allow && r.Decision.Resource == `CredentialRole::"shop/shop-admin"` && len(r.Decision.Policies) == 1 && r.Decision.Policies[0] == "migrator-admin-role":
				decision++
			case r.SPIFFEID == migrator && r.Kind == audit.KindLease && r.Detail["event"] == "acquired" && r.Detail["credential_role"] == "shop-admin" &&
				strings.HasPrefix(r.LeaseID, "database/creds/shop-admin/"):
				lease++
			case r.SPIFFEID == refused && r.Kind == audit.KindDecision && r.Decision != nil && r.Decision.Action == "credential:use" && !r.Decision.Allow &&
				strings.HasPrefix(r.Detail["refused"], "no credential role: "):
				refusals++
			case r.SPIFFEID == refused && (r.Kind == audit.KindSessionStart || r.Kind == audit.KindLease):
				refusedAccess++
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		// Two sessions of the migrator; two refused connections, one decision per catalog role each.
		if start >= 2 && decision >= 2 && lease >= 2 && refusals >= 6 {
			break
		}
	}
	if start < 2 || decision < 2 || lease < 2 || refusals < 6 || refusedAccess > 0 {
		t.Fatalf("audit: %d migrator starts, %d credential:use decisions, %d leases naming shop-admin; %d refusals of the role-less caller, %d starts or leases of it",
			start, decision, lease, refusals, refusedAccess)
	}
}

// TestStackVaultRolesGrantWhatTheirCoversSay: the three roles the stack's Vault issues can do what
// their catalog covers say, and not what a more privileged role covers: shop-read reads but cannot
// write, shop-write writes but cannot create a table, shop-admin creates one. Each statement runs in a
// transaction that is rolled back, directly against PostgreSQL with the leased credential.
func TestStackVaultRolesGrantWhatTheirCoversSay(t *testing.T) {
	s, _ := shared(t)
	_, root := startVault(t)
	configureVault(t, s, root, "1m", "10m")
	ctx := t.Context()
	const insert = "INSERT INTO orders (id, customer_id, total, created_at) VALUES (999001, 1, 1, now())"
	const create = "CREATE TABLE public.grants_probe (a int)"
	for _, tc := range []struct {
		role    string
		allowed []string
		denied  []string
	}{
		{"shop-read", []string{"SELECT count(*) FROM customers"}, []string{insert, create}},
		{"shop-write", []string{"SELECT count(*) FROM customers", insert}, []string{create}},
		{"shop-admin", []string{"SELECT count(*) FROM customers", insert, create, "ALTER TABLE orders ADD COLUMN grants_probe int"}, nil},
	} {
		t.Run(tc.role, func(t *testing.T) {
			secret, err := root.Logical().ReadWithContext(ctx, "database/creds/"+tc.role)
			if err != nil {
				t.Fatal(err)
			}
			defer root.Sys().RevokeWithContext(context.Background(), secret.LeaseID)
			cfg, err := s.Postgres.ConnConfig("shop")
			if err != nil {
				t.Fatal(err)
			}
			cfg.User, _ = secret.Data["username"].(string)
			cfg.Password, _ = secret.Data["password"].(string)
			c, err := pgx.ConnectConfig(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close(context.Background())
			run := func(sql string) error {
				tx, err := c.Begin(ctx)
				if err != nil {
					t.Fatal(err)
				}
				defer tx.Rollback(context.Background())
				_, err = tx.Exec(ctx, sql)
				return err
			}
			for _, sql := range tc.allowed {
				if err := run(sql); err != nil {
					t.Errorf("%s: %v", sql, err)
				}
			}
			for _, sql := range tc.denied {
				var pe *pgconn.PgError
				if err := run(sql); !errors.As(err, &pe) || pe.Code != "42501" {
					t.Errorf("%s: %v; want permission denied (42501)", sql, err)
				}
			}
		})
	}
}

package config_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/svidbroker/svidbroker/broker/config"
)

// caPEM is a freshly made self-signed certificate; validation only checks that ca_file holds one.
var caPEM = func() string {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}()

func write(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func valid(ca string) string {
	return `
trust_domain        = "example.org"
workload_api_socket = "unix:///run/spire/agent.sock"

target "shop" {
  protocol         = "postgres"
  listen           = "127.0.0.1:15432"
  allow_spiffe_ids = ["spiffe://example.org/agent/analyst"]

  backend {
    address  = "db.internal:5432"
    database = "shop"
    user     = "svidbroker"
    ca_file  = "` + ca + `"
  }
}
`
}

func TestLoadValidFillsDefaults(t *testing.T) {
	ca := write(t, "ca.pem", caPEM)
	cfg, err := config.Load(write(t, "broker.hcl", valid(ca)), plugins)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.TD != spiffeid.RequireTrustDomainFromString("example.org") {
		t.Errorf("TD = %v", cfg.TD)
	}
	if got := cfg.Limits.HandshakeTimeoutD; got != config.DefaultHandshakeTimeout {
		t.Errorf("handshake timeout = %v, want %v", got, config.DefaultHandshakeTimeout)
	}
	if cfg.Limits.MaxConcurrentHandshakes != config.DefaultMaxConcurrentHandshakes || cfg.Limits.MaxMessageBytes != config.DefaultMaxMessageBytes {
		t.Errorf("limits not defaulted: %+v", cfg.Limits)
	}
	if *cfg.Admin.Listen != config.DefaultAdminListen || cfg.Log.Level != "info" || cfg.Log.Format != "text" {
		t.Errorf("admin/log not defaulted: %q %+v", *cfg.Admin.Listen, cfg.Log)
	}
	b := cfg.Targets[0].Backend
	if b.ServerName != "db.internal" || b.Auth != "svid" {
		t.Errorf("backend defaults: server_name %q auth %q", b.ServerName, b.Auth)
	}
	want := spiffeid.RequireFromString("spiffe://example.org/agent/analyst")
	if len(cfg.Targets[0].Allowed) != 1 || cfg.Targets[0].Allowed[0] != want {
		t.Errorf("Allowed = %v", cfg.Targets[0].Allowed)
	}
	if to := cfg.Targets[0].Timeouts; to == nil || to.MaxStatementTimeoutD != config.DefaultMaxStatementTimeout ||
		to.MaxLockTimeoutD != config.DefaultMaxLockTimeout || to.IdleInTransactionD != config.DefaultIdleInTransaction {
		t.Errorf("timeouts not defaulted: %+v", to)
	}
}

func TestTargetTimeouts(t *testing.T) {
	ca := write(t, "ca.pem", caPEM)
	hcl := strings.Replace(valid(ca), "  backend {", "  timeouts {\n    max_statement_timeout = \"30s\"\n    idle_in_transaction = \"45s\"\n  }\n  backend {", 1)
	cfg, err := config.Load(write(t, "broker.hcl", hcl), plugins)
	if err != nil {
		t.Fatal(err)
	}
	to := cfg.Targets[0].Timeouts
	if to.MaxStatementTimeoutD != 30*time.Second || to.IdleInTransactionD != 45*time.Second || to.MaxLockTimeoutD != config.DefaultMaxLockTimeout {
		t.Errorf("timeouts: %+v", to)
	}
}

func TestBadConfigNamesFileLineAndField(t *testing.T) {
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, []byte(caPEM), 0o644); err != nil {
		t.Fatal(err)
	}
	base := valid(ca)
	cases := []struct {
		name        string
		from, to    string
		line        int
		wantInError []string
	}{
		{"typo with hint", `address  =`, `adress   =`, 11, []string{`"adress"`, `Did you mean "address"`}},
		{"missing required field", `    address  = "db.internal:5432"` + "\n", "", 10, []string{`"address" is required`}},
		{"missing user with svid auth", `    user     = "svidbroker"` + "\n", "", 10, []string{"backend.user must name the role"}},
		{"wrong type", `user     = "svidbroker"`, `user     = ["svidbroker"]`, 13, []string{`field "user"`, "string required"}},
		{"unknown top-level field", `trust_domain        = "example.org"`, "trust_domain = \"example.org\"\nlisten = \"x\"", 3, []string{`"listen" is not expected`}},
		{"bad duration", `target "shop"`, "limits {\n  handshake_timeout = \"10 seconds\"\n}\ntarget \"shop\"", 6, []string{"handshake_timeout", `"10s"`}},
		{"bad SPIFFE ID", `"spiffe://example.org/agent/analyst"`, `"spiffe://example.org/agent/../x"`, 8, []string{"allow_spiffe_ids", "Invalid SPIFFE ID"}},
		{"foreign trust domain", `spiffe://example.org/agent/analyst`, `spiffe://evil.org/agent/analyst`, 8, []string{"not in trust domain"}},
		{"unsupported protocol", `"postgres"`, `"mongodb"`, 6, []string{"protocol", `"postgres"`}},
		{"bad listen address", `"127.0.0.1:15432"`, `"15432"`, 7, []string{"listen", "host:port"}},
		{"missing CA file", ca, "/nonexistent/ca.pem", 14, []string{"ca_file", "no such file"}},
		{"bad log level", `trust_domain        = "example.org"`, "trust_domain = \"example.org\"\nlog {\n  level = \"loud\"\n}", 4, []string{"level", `"loud"`, `"debug"`}},
		{"negative limit", `target "shop"`, "limits {\n  max_connections = -1\n}\ntarget \"shop\"", 6, []string{"max_connections must be positive"}},
		{"bad timeout", `backend {`, "timeouts {\n    max_statement_timeout = \"5 minutes\"\n  }\n  backend {", 11, []string{"max_statement_timeout", `"5 minutes"`, `"2m"`}},
		{"timeout below PostgreSQL's unit", `backend {`, "timeouts {\n    idle_in_transaction = \"10us\"\n  }\n  backend {", 11, []string{"timeouts.idle_in_transaction", "from 1ms"}},
		{"timeout above PostgreSQL's range", `backend {`, "timeouts {\n    max_lock_timeout = \"1000h\"\n  }\n  backend {", 11, []string{"timeouts.max_lock_timeout", "24 days"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(base, tc.from) {
				t.Fatalf("test case does not apply: %q not in base config", tc.from)
			}
			path := filepath.Join(t.TempDir(), "broker.hcl")
			if err := os.WriteFile(path, []byte(strings.Replace(base, tc.from, tc.to, 1)), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := config.Load(path, plugins)
			if err == nil {
				t.Fatal("Load accepted a bad config")
			}
			msg := err.Error()
			wantPos := path + ":" + strconv.Itoa(tc.line) + ":"
			if !strings.Contains(msg, wantPos) {
				t.Errorf("error does not name %s:\n%s", wantPos, msg)
			}
			for _, w := range tc.wantInError {
				if !strings.Contains(msg, w) {
					t.Errorf("error does not contain %q:\n%s", w, msg)
				}
			}
		})
	}
}

func TestIdentitySettings(t *testing.T) {
	ca := write(t, "ca.pem", caPEM)
	extra := `
federated_trust_domains = ["partner.example"]
spire_server {
  address = "127.0.0.1:8081"
}
jwt {
  audience = "svidbroker"
  issuer   = "https://oidc-discovery.example.org"
  oidc "other.example" {
    issuer_url = "https://oidc.other.example"
  }
}
session {
  svid_expiry_grace = "5s"
}
`
	src := strings.Replace(valid(ca), `"spiffe://example.org/agent/analyst"]`, `"spiffe://example.org/agent/analyst", "spiffe://partner.example/agent/x"]`, 1) + extra
	cfg, err := config.Parse("broker.hcl", []byte(src), plugins)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Trusted) != 2 || cfg.Trusted[1].Name() != "partner.example" {
		t.Errorf("Trusted = %v", cfg.Trusted)
	}
	if len(cfg.Targets[0].Allowed) != 2 {
		t.Errorf("a federated SPIFFE ID was not accepted in allow_spiffe_ids: %v", cfg.Targets[0].Allowed)
	}
	if cfg.SPIREServer.CacheTTLD != 30*time.Second || cfg.Session.SVIDExpiryGraceD != 5*time.Second {
		t.Errorf("durations: cache_ttl %v, svid_expiry_grace %v", cfg.SPIREServer.CacheTTLD, cfg.Session.SVIDExpiryGraceD)
	}
	bad := map[string]string{
		"oidc over http":         strings.Replace(extra, "https://oidc.other", "http://oidc.other", 1),
		"own trust domain again": strings.Replace(extra, `["partner.example"]`, `["example.org"]`, 1),
		"spire_server address":   strings.Replace(extra, `"127.0.0.1:8081"`, `"spire-server"`, 1),
		"empty audience":         strings.Replace(extra, `audience = "svidbroker"`, `audience = ""`, 1),
		"bad svid_expiry_grace":  strings.Replace(extra, `"5s"`, `"soon"`, 1),
		"bad federated TD":       strings.Replace(extra, `["partner.example"]`, `["partner example"]`, 1),
	}
	for name, e := range bad {
		t.Run(name, func(t *testing.T) {
			if _, err := config.Parse("broker.hcl", []byte(valid(ca)+e), plugins); err == nil || !strings.Contains(err.Error(), "broker.hcl:") {
				t.Fatalf("accepted, or error without file:line: %v", err)
			}
		})
	}
}

func TestAuditSettings(t *testing.T) {
	ca := write(t, "ca.pem", caPEM)
	key := write(t, "mac.key", strings.Repeat("k", 32))
	block := func(body string) string {
		return valid(ca) + "audit {\n  mac_key_file = \"" + key + "\"\n  signing_key_file = \"" + key + "\"\n" + body + "}\n"
	}
	cfg, err := config.Parse("broker.hcl", []byte(block(`  dir = "/var/lib/svidbroker/audit"`+"\n")), plugins)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Audit.Data != "summary" || cfg.Audit.Chain == "" || cfg.Audit.CheckpointIntervalD != 10*time.Second ||
		cfg.Audit.Durability != "commit" || cfg.Audit.FlushIntervalD != 10*time.Millisecond {
		t.Fatalf("defaults: %+v", cfg.Audit)
	}
	cfg, err = config.Parse("broker.hcl", []byte(block("  dir = \"/x\"\n  durability = \"statement\"\n  flush_interval = \"2ms\"\n")), plugins)
	if err != nil || cfg.Audit.Durability != "statement" || cfg.Audit.FlushIntervalD != 2*time.Millisecond {
		t.Fatalf("durability = statement, flush_interval = 2ms: %+v %v", cfg.Audit, err)
	}
	for name, body := range map[string]string{
		"no store":             "",
		"two stores":           "  dir = \"/x\"\n  postgres {\n    address = \"db:5432\"\n    database = \"a\"\n    user = \"u\"\n    ca_file = \"" + ca + "\"\n  }\n",
		"unknown data":         "  dir = \"/x\"\n  data = \"everything\"\n",
		"unknown durability":   "  dir = \"/x\"\n  durability = \"eventually\"\n",
		"flush interval":       "  dir = \"/x\"\n  flush_interval = \"0s\"\n",
		"flush interval a min": "  dir = \"/x\"\n  flush_interval = \"1m\"\n",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := config.Parse("broker.hcl", []byte(block(body)), plugins); err == nil || !strings.Contains(err.Error(), "broker.hcl:") {
				t.Fatalf("accepted, or error without file:line: %v", err)
			}
		})
	}
}

func TestWorkloadSocketFromEnvironment(t *testing.T) {
	ca := write(t, "ca.pem", caPEM)
	src := strings.Replace(valid(ca), `workload_api_socket = "unix:///run/spire/agent.sock"`, "", 1)
	t.Setenv("SPIFFE_ENDPOINT_SOCKET", "")
	if _, err := config.Parse("broker.hcl", []byte(src), plugins); err == nil || !strings.Contains(err.Error(), "SPIFFE_ENDPOINT_SOCKET") {
		t.Fatalf("want an error naming SPIFFE_ENDPOINT_SOCKET, got %v", err)
	}
	t.Setenv("SPIFFE_ENDPOINT_SOCKET", "unix:///tmp/agent.sock")
	cfg, err := config.Parse("broker.hcl", []byte(src), plugins)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.WorkloadAPISocket != "unix:///tmp/agent.sock" {
		t.Fatalf("WorkloadAPISocket = %q", cfg.WorkloadAPISocket)
	}
}

func TestOversizedFileRefused(t *testing.T) {
	p := write(t, "big.hcl", "# "+strings.Repeat("x", config.MaxFileBytes))
	if _, err := config.Load(p, plugins); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("want a size error, got %v", err)
	}
}

func TestVaultSettings(t *testing.T) {
	ca := write(t, "ca.pem", caPEM)
	token := write(t, "token", "hvs.dev")
	vault := func(login, backend string) string {
		src := strings.Replace(valid(ca), `    user     = "svidbroker"`, backend, 1)
		return src + "vault {\n  address = \"https://vault:8200\"\n  ca_file = \"" + ca + "\"\n  journal_dir = \"/var/lib/svidbroker/leases\"\n" + login + "}\n"
	}
	const role = `    auth = "vault"` + "\n" + `    vault_role = "shop-read"`
	for name, tc := range map[string]struct {
		login, backend, method string
		check                  func(*config.Config) bool
	}{
		"cert": {`  cert_role = "svidbroker"` + "\n", role, "cert", func(c *config.Config) bool {
			return c.Vault.Mount == "database" && c.Vault.TimeoutD == 10*time.Second && c.Vault.ReuseD == 0
		}},
		"jwt": {"  jwt {\n    role = \"svidbroker\"\n    audience = \"vault\"\n  }\n  auth_mount = \"spiffe-jwt\"\n", role, "jwt", func(c *config.Config) bool {
			return c.Vault.JWT.Audience == "vault" && c.Vault.AuthMount == "spiffe-jwt"
		}},
		"dev token": {`  dev_token_file = "` + token + `"` + "\n", role, "token", nil},
		"vault_path": {`  cert_role = "svidbroker"` + "\n", "    auth = \"vault\"\n    vault_path = \"pg/creds/ro\"", "cert", func(c *config.Config) bool {
			return c.Targets[0].Backend.VaultPath == "pg/creds/ro"
		}},
		"kv-v2": {`  cert_role = "svidbroker"` + "\n", "    auth = \"vault-kv\"\n    vault_kv_path = \"pg/shop\"", "cert", func(c *config.Config) bool {
			return c.Targets[0].Backend.VaultKVMount == "secret"
		}},
	} {
		t.Run(name, func(t *testing.T) {
			cfg, err := config.Parse("broker.hcl", []byte(vault(tc.login, tc.backend)), plugins)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Vault.Method != tc.method || (tc.check != nil && !tc.check(cfg)) {
				t.Fatalf("method %q; settings %+v %+v", cfg.Vault.Method, cfg.Vault, cfg.Targets[0].Backend)
			}
		})
	}
	const cert = `  cert_role = "svidbroker"` + "\n"
	for name, tc := range map[string]struct{ login, backend string }{
		"no login":              {"", role},
		"two logins":            {cert + `  dev_token_file = "` + token + `"` + "\n", role},
		"jwt without aud":       {"  jwt {\n    role = \"svidbroker\"\n    audience = \"\"\n  }\n", role},
		"missing token file":    {`  dev_token_file = "/nonexistent/token"` + "\n", role},
		"role and path":         {cert, role + "\n    vault_path = \"pg/creds/ro\""},
		"neither role nor path": {cert, `    auth = "vault"`},
		"kv without path":       {cert, `    auth = "vault-kv"`},
		"kv with a role":        {cert, "    auth = \"vault-kv\"\n    vault_kv_path = \"pg/shop\"\n    vault_role = \"shop-read\""},
		"dynamic with kv path":  {cert, role + "\n    vault_kv_path = \"pg/shop\""},
		"bad timeout":           {cert + "  timeout = \"soon\"\n", role},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := config.Parse("broker.hcl", []byte(vault(tc.login, tc.backend)), plugins); err == nil || !strings.Contains(err.Error(), "broker.hcl:") {
				t.Fatalf("accepted, or error without file:line: %v", err)
			}
		})
	}
	noBlock := strings.Replace(valid(ca), `    user     = "svidbroker"`, role, 1)
	if _, err := config.Parse("broker.hcl", []byte(noBlock), plugins); err == nil || !strings.Contains(err.Error(), "vault block") {
		t.Fatalf("auth = \"vault\" without a vault block: %v", err)
	}
}

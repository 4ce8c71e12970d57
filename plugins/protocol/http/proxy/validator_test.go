package proxy

import (
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/svidbroker/svidbroker/broker/config"
	"github.com/svidbroker/svidbroker/plugins/credential/vault"
	"github.com/svidbroker/svidbroker/plugins/protocol/postgres"
)

var plugins = config.Plugins{
	Protocols: map[string]config.Protocol{"postgres": postgres.ConfigValidator{}, "http": ConfigValidator{}},
	Vault:     vault.ConfigValidator{},
}

func loadTarget(t *testing.T, target string) (*config.Config, error) {
	t.Helper()
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	p := newPKI(t, "example.org")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.cert.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	src := `
trust_domain        = "example.org"
workload_api_socket = "unix:///run/spire/agent.sock"
jwt {
  audience = "svidbroker"
}
` + strings.ReplaceAll(target, "CA", ca)
	path := filepath.Join(dir, "broker.hcl")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return config.Load(path, plugins)
}

func TestHTTPTargetConfigDefaults(t *testing.T) {
	cfg, err := loadTarget(t, `
target "api" {
  protocol         = "http"
  listen           = "127.0.0.1:8443"
  allow_spiffe_ids = ["spiffe://example.org/agent/support"]
  backend {
    address = "api.internal:9443"
    ca_file = "CA"
  }
}`)
	if err != nil {
		t.Fatal(err)
	}
	b, tt := cfg.Targets[0].Backend, cfg.Targets[0].Timeouts
	if b.ServerName != "api.internal" || b.CredentialHeader != "Authorization" || b.CredentialPrefix == nil || *b.CredentialPrefix != "Bearer " ||
		b.VaultPasswordKey != "token" || b.Auth != "svid" {
		t.Fatalf("backend %+v", b)
	}
	if tt.UpstreamD != DefaultUpstream || tt.IdleD != DefaultIdle || tt.ReadHeaderD != DefaultReadHeader {
		t.Fatalf("timeouts %+v", tt)
	}
}

func TestHTTPTargetConfigErrors(t *testing.T) {
	cases := []struct{ name, backend, timeouts, want string }{
		{"database", `database = "shop"`, "", "backend.database belongs to postgres"},
		{"credential header is framing", `credential_header = "Content-Length"`, "", "credential header"},
		{"credential header not a token", `credential_header = "X Api"`, "", "not a header name"},
		{"postgres timeout", "", `max_statement_timeout = "1m"`, "belongs to postgres targets"},
		{"timeout out of range", "", `upstream = "48h"`, "timeouts.upstream"},
		{"timeout not a duration", "", `idle = "0s"`, "positive duration"},
		{"vault without a vault block", `auth = "vault"`, "", "vault block"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadTarget(t, `
target "api" {
  protocol         = "http"
  listen           = "127.0.0.1:8443"
  allow_spiffe_ids = ["spiffe://example.org/agent/support"]
  backend {
    address = "api.internal:9443"
    ca_file = "CA"
    `+tc.backend+`
  }
  timeouts {
    `+tc.timeouts+`
  }
}`)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
	// A postgres target without a database is refused, and an http one takes a custom header.
	_, err := loadTarget(t, `
target "db" {
  protocol         = "postgres"
  listen           = "127.0.0.1:15432"
  allow_spiffe_ids = ["spiffe://example.org/agent/support"]
  backend {
    address = "db.internal:5432"
    user    = "svidbroker"
    ca_file = "CA"
  }
}`)
	if err == nil || !strings.Contains(err.Error(), "database") {
		t.Fatalf("postgres without a database: %v", err)
	}
	cfg, err := loadTarget(t, `
target "api" {
  protocol         = "http"
  listen           = "127.0.0.1:8443"
  allow_spiffe_ids = ["spiffe://example.org/agent/support"]
  backend {
    address           = "api.internal:9443"
    ca_file           = "CA"
    auth              = "vault-kv"
    vault_kv_path     = "api/token"
    credential_header = "X-Api-Key"
  }
  timeouts {
    upstream = "5s"
  }
}
vault {
  address         = "https://vault.internal:8200"
  ca_file         = "CA"
  cert_role       = "svidbroker"
  journal_dir     = "/tmp"
}`)
	if err != nil {
		t.Fatal(err)
	}
	if b := cfg.Targets[0].Backend; b.CredentialHeader != "X-Api-Key" || *b.CredentialPrefix != "" || cfg.Targets[0].Timeouts.UpstreamD != 5*time.Second {
		t.Fatalf("backend %+v", b)
	}
}

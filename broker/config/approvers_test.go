package config_test

import (
	"strings"
	"testing"

	"github.com/svidbroker/svidbroker/broker/config"
)

// approverConfig is a valid configuration with a policy block choosing approver, and extra appended.
func approverConfig(t *testing.T, approver, extra string) string {
	ca := write(t, "ca.pem", caPEM)
	src := strings.Replace(valid(ca), `  allow_spiffe_ids = ["spiffe://example.org/agent/analyst"]`+"\n", "", 1)
	return src + "\npolicy {\n  dir = \"" + t.TempDir() + "\"\n  approver = \"" + approver + "\"\n}\n" + extra
}

func TestApprovers(t *testing.T) {
	secret := write(t, "secret", "s3cret")
	state := t.TempDir()
	oidcBlock := `approvers {
  state_dir = "` + state + `"
  oidc {
    issuer             = "https://idp.example.org"
    client_id          = "svidbroker"
    client_secret_file = "` + secret + `"
  }
}
`
	for name, tc := range map[string]struct {
		approver, extra, want string
	}{
		"dev on loopback":           {"dev", "", ""},
		"former name on loopback":   {"admin-api", "admin {\n  listen = \"[::1]:8210\"\n}\n", ""},
		"dev on the network":        {"dev", "admin {\n  listen = \"0.0.0.0:8210\"\n}\n", "not a loopback address"},
		"dev on a host name":        {"dev", "admin {\n  listen = \"broker.internal:8210\"\n}\n", "not a loopback address"},
		"dev without the listener":  {"dev", "admin {\n  listen = \"\"\n}\n", "disabled"},
		"oidc":                      {"oidc", oidcBlock, ""},
		"oidc on the network":       {"oidc", oidcBlock + "admin {\n  listen = \"0.0.0.0:8210\"\n}\n", ""},
		"oidc without its block":    {"oidc", "", "needs an approvers block"},
		"oidc over http":            {"oidc", strings.Replace(oidcBlock, "https://", "http://", 1), "https issuer"},
		"oidc without a state dir":  {"oidc", strings.Replace(oidcBlock, state, state+"/missing", 1), "approvers.state_dir"},
		"oidc secret missing":       {"oidc", strings.Replace(oidcBlock, secret, secret+".missing", 1), "client_secret_file"},
		"approvers block unused":    {"dev", oidcBlock, "read only with"},
		"unknown approver":          {"slack", "", `use "oidc", "dev"`},
		"postgres without audit db": {"oidc", strings.Replace(oidcBlock, "  oidc {", "  store = \"postgres\"\n  oidc {", 1), "audit block's postgres"},
		"unknown store":             {"oidc", strings.Replace(oidcBlock, "  oidc {", "  store = \"redis\"\n  oidc {", 1), `use "journal" or "postgres"`},
	} {
		t.Run(name, func(t *testing.T) {
			cfg, err := config.Parse("broker.hcl", []byte(approverConfig(t, tc.approver, tc.extra)), plugins)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if got := cfg.Policy.DevApprover(); got != (tc.approver != "oidc") {
					t.Fatalf("DevApprover() = %v", got)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
}

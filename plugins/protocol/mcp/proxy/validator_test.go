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
)

// TestToolsMaxAgeConfig: tools_max_age defaults to DefaultToolsMaxAge, "0s" lists before every call,
// a duration is kept, and one beyond the bound is refused with the setting named.
func TestToolsMaxAgeConfig(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: newPKI(t).cert.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	plugins := config.Plugins{Protocols: map[string]config.Protocol{"mcp": ConfigValidator{}}, Vault: vault.ConfigValidator{}}
	load := func(line string) (time.Duration, error) {
		src := `
trust_domain        = "example.org"
workload_api_socket = "unix:///run/spire/agent.sock"
target "tools" {
  protocol         = "mcp"
  listen           = "127.0.0.1:9443"
  allow_spiffe_ids = ["spiffe://example.org/agent/support"]
  backend {
    address = "mcp.internal:8443"
    ca_file = "` + ca + `"
  }
  mcp {
    pin       = "first-sight"
    state_dir = "` + filepath.Join(dir, "pins") + `"
    ` + line + `
  }
}
`
		path := filepath.Join(dir, "broker.hcl")
		if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Load(path, plugins)
		if err != nil {
			return 0, err
		}
		return cfg.Targets[0].MCP.ToolsMaxAgeD, nil
	}
	for _, c := range []struct {
		line string
		want time.Duration
	}{
		{"", DefaultToolsMaxAge},
		{`tools_max_age = "0s"`, ToolsEveryCall},
		{`tools_max_age = "30s"`, 30 * time.Second},
	} {
		got, err := load(c.line)
		if err != nil || got != c.want {
			t.Fatalf("%q: %v %v, want %v", c.line, got, err, c.want)
		}
	}
	if _, err := load(`tools_max_age = "1h"`); err == nil || !strings.Contains(err.Error(), "tools_max_age") {
		t.Fatalf("an hour: %v", err)
	}
}

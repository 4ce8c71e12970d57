package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/svidbroker/svidbroker/broker/config"
)

func TestConsoleSettings(t *testing.T) {
	ca := write(t, "ca.pem", caPEM)
	block := func(body string) string { return valid(ca) + "console {\n" + body + "}\n" }
	const oidc = "  oidc {\n    issuer = \"https://id.example.com\"\n    client_id = \"svidbroker-console\"\n  }\n"
	const tls = "  cert_file = \"/etc/svidbroker/console.pem\"\n  key_file = \"/etc/svidbroker/console.key\"\n"
	cfg, err := config.Parse("broker.hcl", []byte(block("  listen = \"127.0.0.1:8443\"\n"+tls+oidc)), plugins)
	if err != nil {
		t.Fatal(err)
	}
	if c := cfg.Console; c.PublicURL != "https://127.0.0.1:8443" || c.SessionTTLD != time.Hour {
		t.Fatalf("defaults: %+v", c)
	}
	for name, c := range map[string]struct{ body, says string }{
		"no oidc":        {"  listen = \"127.0.0.1:8443\"\n" + tls, "needs an oidc block"},
		"no tls":         {"  listen = \"127.0.0.1:8443\"\n" + oidc, `"cert_file" is required`},
		"http url":       {"  listen = \"127.0.0.1:8443\"\n  public_url = \"http://console\"\n" + tls + oidc, "console.public_url"},
		"url with path":  {"  listen = \"127.0.0.1:8443\"\n  public_url = \"https://console/approve\"\n" + tls + oidc, "console.public_url"},
		"http issuer":    {"  listen = \"127.0.0.1:8443\"\n" + tls + strings.Replace(oidc, "https://", "http://", 1), "console.oidc.issuer"},
		"bad ttl":        {"  listen = \"127.0.0.1:8443\"\n  session_ttl = \"forever\"\n" + tls + oidc, "session_ttl"},
		"no listen host": {"  listen = \":8443\"\n" + tls + oidc, "console.listen"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := config.Parse("broker.hcl", []byte(block(c.body)), plugins)
			if err == nil || !strings.Contains(err.Error(), "broker.hcl:") || !strings.Contains(err.Error(), c.says) {
				t.Fatalf("want an error at file:line saying %q, got %v", c.says, err)
			}
		})
	}
}

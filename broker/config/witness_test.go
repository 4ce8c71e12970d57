package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/svidbroker/svidbroker/broker/config"
)

func TestAuditWitnessSettings(t *testing.T) {
	ca := write(t, "ca.pem", caPEM)
	key := write(t, "signing.key", strings.Repeat("k", 32))
	if err := os.WriteFile(filepath.Join(filepath.Dir(key), "verifier.key"), []byte("v"), 0o644); err != nil {
		t.Fatal(err)
	}
	block := func(witness string) string {
		return valid(ca) + "audit {\n  dir = \"/var/lib/svidbroker/audit\"\n  mac_key_file = \"" + key + "\"\n  signing_key_file = \"" + key + "\"\n" +
			"  witness {\n" + witness + "  }\n}\n"
	}
	cfg, err := config.Parse("broker.hcl", []byte(block("    dir = \"/mnt/witness\"\n")), plugins)
	if err != nil {
		t.Fatal(err)
	}
	w := cfg.Audit.Witness
	if w.TimeoutD != 5*time.Second || w.MaxLagD != time.Minute || w.VerifierKeyFile != filepath.Join(filepath.Dir(key), "verifier.key") {
		t.Fatalf("defaults: %+v", w)
	}
	cfg, err = config.Parse("broker.hcl", []byte(block("    url = \"https://witness.internal:8443/v1/checkpoints\"\n    ca_file = \""+ca+"\"\n    max_lag = \"5m\"\n")), plugins)
	if err != nil || cfg.Audit.Witness.ServerName != "witness.internal" || cfg.Audit.Witness.MaxLagD != 5*time.Minute {
		t.Fatalf("an https witness: %+v %v", cfg.Audit.Witness, err)
	}
	pg := "    postgres {\n      address = \"witness-db:5432\"\n      database = \"w\"\n      user = \"u\"\n      ca_file = \"" + ca + "\"\n    }\n"
	if _, err := config.Parse("broker.hcl", []byte(block(pg)), plugins); err != nil {
		t.Fatalf("a postgres witness: %v", err)
	}
	for name, c := range map[string]struct{ body, says string }{
		"none":              {"", "exactly one of dir"},
		"two":               {"    dir = \"/mnt/w\"\n    url = \"https://w/\"\n    ca_file = \"" + ca + "\"\n", "exactly one of dir"},
		"the log's own dir": {"    dir = \"/var/lib/svidbroker/audit/\"\n", "the log's own directory"},
		"plain http":        {"    url = \"http://w/\"\n    ca_file = \"" + ca + "\"\n", "must be an https URL"},
		"no ca":             {"    url = \"https://w/\"\n", "audit.witness.ca_file"},
		"lag under timeout": {"    dir = \"/mnt/w\"\n    max_lag = \"1s\"\n", "max_lag 1s must be at least"},
		"missing verifier":  {"    dir = \"/mnt/w\"\n    verifier_key_file = \"/nonexistent/verifier.key\"\n", "verifier_key_file"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := config.Parse("broker.hcl", []byte(block(c.body)), plugins)
			if err == nil || !strings.Contains(err.Error(), "broker.hcl:") || !strings.Contains(err.Error(), c.says) {
				t.Fatalf("want an error at file:line saying %q, got %v", c.says, err)
			}
		})
	}
}

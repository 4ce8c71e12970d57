package config_test

import (
	"strings"
	"testing"

	"github.com/svidbroker/svidbroker/broker/config"
)

func TestMetricsSettings(t *testing.T) {
	ca := write(t, "ca.pem", caPEM)
	cfg, err := config.Parse("broker.hcl", []byte(valid(ca)+"metrics {\n  spiffe_id_labels = true\n}\n"), plugins)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Metrics.MetricsConfig(); !got.SPIFFEIDLabels || got.MaxSPIFFEIDs != 50 {
		t.Fatalf("defaults: %+v", got)
	}
	cfg, err = config.Parse("broker.hcl", []byte(valid(ca)), plugins)
	if err != nil || cfg.Metrics.MetricsConfig().SPIFFEIDLabels {
		t.Fatalf("without a metrics block SPIFFE IDs are no labels: %+v %v", cfg.Metrics, err)
	}
	if !cfg.Metrics.On() {
		t.Fatal("without a metrics block metrics are on")
	}
	cfg, err = config.Parse("broker.hcl", []byte(valid(ca)+"metrics {\n  enabled = false\n}\n"), plugins)
	if err != nil || cfg.Metrics.On() {
		t.Fatalf("enabled = false turns metrics off: %+v %v", cfg.Metrics, err)
	}
	cfg, err = config.Parse("broker.hcl", []byte(valid(ca)+"metrics {\n  enabled = true\n}\n"), plugins)
	if err != nil || !cfg.Metrics.On() {
		t.Fatalf("enabled = true keeps metrics on: %+v %v", cfg.Metrics, err)
	}
	for name, c := range map[string]struct{ body, says string }{
		"labels of metrics turned off": {"  enabled = false\n  spiffe_id_labels = true\n", "remove those, or enabled = false"},
		"a cap without labels":         {"  max_spiffe_ids = 10\n", "set spiffe_id_labels = true"},
		"a cap too high":               {"  spiffe_id_labels = true\n  max_spiffe_ids = 100000\n", "use 1 to 1000"},
		"a negative cap":               {"  spiffe_id_labels = true\n  max_spiffe_ids = -1\n", "use 1 to 1000"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := config.Parse("broker.hcl", []byte(valid(ca)+"metrics {\n"+c.body+"}\n"), plugins)
			if err == nil || !strings.Contains(err.Error(), "broker.hcl:") || !strings.Contains(err.Error(), c.says) {
				t.Fatalf("want an error at file:line saying %q, got %v", c.says, err)
			}
		})
	}
}

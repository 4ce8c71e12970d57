package config_test

import (
	"strings"
	"testing"

	"github.com/svidbroker/svidbroker/broker/config"
)

func TestTracingSettings(t *testing.T) {
	ca := write(t, "ca.pem", caPEM)
	cfg, err := config.Parse("broker.hcl", []byte(valid(ca)), plugins)
	if err != nil || cfg.Tracing != nil {
		t.Fatalf("without a tracing block there is none: %+v %v", cfg.Tracing, err)
	}
	block := "tracing {\n  otlp_endpoint = \"collector:4318\"\n  ca_file = \"" + ca + "\"\n  sample_ratio = 0.25\n}\n"
	cfg, err = config.Parse("broker.hcl", []byte(valid(ca)+block), plugins)
	if err != nil {
		t.Fatal(err)
	}
	got := cfg.Tracing.TracingConfig("v1")
	if got.Endpoint != "collector:4318" || got.CAFile != ca || got.SampleRatio == nil || *got.SampleRatio != 0.25 || got.StatementText || got.Insecure {
		t.Fatalf("settings: %+v", got)
	}
	if err := got.Validate(); err != nil {
		t.Fatalf("a block the config accepts is one tracing accepts: %v", err)
	}
	for name, c := range map[string]struct{ body, says string }{
		"no endpoint":          {"  insecure = true\n", "otlp_endpoint"},
		"an endpoint as a URL": {"  otlp_endpoint = \"https://collector:4318/v1/traces\"\n", "write the collector's OTLP/HTTP address as host:port"},
		"insecure with a CA":   {"  otlp_endpoint = \"collector:4318\"\n  insecure = true\n  ca_file = \"" + ca + "\"\n", "remove one"},
		"a missing CA file":    {"  otlp_endpoint = \"collector:4318\"\n  ca_file = \"/nonexistent/ca.pem\"\n", "tracing.ca_file"},
		"a ratio above 1":      {"  otlp_endpoint = \"collector:4318\"\n  sample_ratio = 1.5\n", "use 0 to 1"},
		"a negative ratio":     {"  otlp_endpoint = \"collector:4318\"\n  sample_ratio = -0.1\n", "use 0 to 1"},
		"a misspelt setting":   {"  otlp_endpoint = \"collector:4318\"\n  statement_txt = true\n", "statement_txt"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := config.Parse("broker.hcl", []byte(valid(ca)+"tracing {\n"+c.body+"}\n"), plugins)
			if err == nil || !strings.Contains(err.Error(), "broker.hcl:") || !strings.Contains(err.Error(), c.says) {
				t.Fatalf("want an error at file:line saying %q, got %v", c.says, err)
			}
		})
	}
}

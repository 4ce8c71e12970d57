package config

import (
	"fmt"
	"net"
	"os"

	"github.com/svidbroker/svidbroker/broker/tracing"
)

// Tracing configures OpenTelemetry traces, exported over OTLP/HTTP. Without the block there are
// none.
type Tracing struct {
	// OTLPEndpoint is the collector's OTLP/HTTP address, host:port (port 4318 by convention).
	OTLPEndpoint string `hcl:"otlp_endpoint"`
	// Insecure sends spans over plain HTTP. Default false: HTTPS, verified against CAFile or the
	// system's roots.
	Insecure bool `hcl:"insecure,optional"`
	// CAFile is a PEM bundle the collector's certificate is verified against.
	CAFile string `hcl:"ca_file,optional"`
	// SampleRatio is the share of new traces sampled, 0 to 1; a caller's sampled trace is always
	// followed. Default 1.
	SampleRatio *float64 `hcl:"sample_ratio,optional"`
	// StatementText puts statements' normalized text (constants replaced by $1, $2, ...) and HTTP
	// request paths in spans. Default false.
	StatementText bool `hcl:"statement_text,optional"`
}

// TracingConfig is the tracing block as broker/tracing takes it.
func (t *Tracing) TracingConfig(version string) tracing.Config {
	return tracing.Config{Endpoint: t.OTLPEndpoint, Insecure: t.Insecure, CAFile: t.CAFile,
		SampleRatio: t.SampleRatio, StatementText: t.StatementText, Version: version}
}

// tracing validates the tracing block.
func (v *validator) tracing() {
	t := v.c.Tracing
	if t == nil {
		return
	}
	if _, _, err := net.SplitHostPort(t.OTLPEndpoint); err != nil {
		v.fail("Invalid address", fmt.Sprintf("tracing.otlp_endpoint is %q; write the collector's OTLP/HTTP address as host:port, such as \"otel-collector:4318\" (no scheme: insecure chooses http).", t.OTLPEndpoint), "tracing", "otlp_endpoint")
	}
	switch {
	case t.Insecure && t.CAFile != "":
		v.fail("Conflicting settings", "tracing.ca_file verifies an HTTPS collector, and tracing.insecure = true sends spans over plain HTTP: remove one.", "tracing", "ca_file")
	case t.CAFile != "":
		if _, err := os.Stat(t.CAFile); err != nil {
			v.fail("Unreadable CA file", fmt.Sprintf("tracing.ca_file: %v. The collector's certificate is verified against it.", err), "tracing", "ca_file")
		}
	}
	if r := t.SampleRatio; r != nil && (*r < 0 || *r > 1) {
		v.fail("Invalid value", fmt.Sprintf("tracing.sample_ratio is %v; use 0 to 1 (1 samples every trace).", *r), "tracing", "sample_ratio")
	}
}

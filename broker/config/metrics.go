package config

import (
	"fmt"

	"github.com/svidbroker/svidbroker/broker/metrics"
)

// Metrics configures the Prometheus metrics served on the admin listener's /metrics.
type Metrics struct {
	// Enabled, when false, turns metrics off: nothing is counted or timed, and /metrics answers 404.
	// Default true.
	Enabled *bool `hcl:"enabled,optional"`
	// SPIFFEIDLabels adds callers' SPIFFE IDs as a label of sessions started and refused. Default
	// false: one series per agent grows with the fleet.
	SPIFFEIDLabels bool `hcl:"spiffe_id_labels,optional"`
	// MaxSPIFFEIDs caps the distinct SPIFFE IDs labelled; later callers are counted as "other".
	// Default 50, at most 1000. Only with spiffe_id_labels.
	MaxSPIFFEIDs int `hcl:"max_spiffe_ids,optional"`
}

// On tells whether metrics are collected: always, unless the block says enabled = false.
func (m *Metrics) On() bool {
	return m == nil || m.Enabled == nil || *m.Enabled
}

// MetricsConfig is the metrics block as broker/metrics takes it.
func (m *Metrics) MetricsConfig() metrics.Config {
	if m == nil {
		return metrics.Config{}
	}
	return metrics.Config{SPIFFEIDLabels: m.SPIFFEIDLabels, MaxSPIFFEIDs: m.MaxSPIFFEIDs}
}

// metrics validates the metrics block, filling in defaults.
func (v *validator) metrics() {
	m := v.c.Metrics
	if m == nil {
		return
	}
	if !m.On() {
		if m.SPIFFEIDLabels || m.MaxSPIFFEIDs != 0 {
			v.fail("Conflicting settings", "metrics.enabled = false turns metrics off, and spiffe_id_labels or max_spiffe_ids shape them: remove those, or enabled = false.", "metrics", "enabled")
		}
		return
	}
	switch {
	case m.MaxSPIFFEIDs != 0 && !m.SPIFFEIDLabels:
		v.fail("Metrics", "metrics.max_spiffe_ids caps SPIFFE ID labels, which are off: set spiffe_id_labels = true, or remove max_spiffe_ids.", "metrics", "max_spiffe_ids")
	case m.MaxSPIFFEIDs < 0 || m.MaxSPIFFEIDs > metrics.MaxSPIFFEIDsLimit:
		v.fail("Metrics", fmt.Sprintf("metrics.max_spiffe_ids is %d; use 1 to %d: each SPIFFE ID is a series of its own.", m.MaxSPIFFEIDs, metrics.MaxSPIFFEIDsLimit), "metrics", "max_spiffe_ids")
	case m.SPIFFEIDLabels && m.MaxSPIFFEIDs == 0:
		m.MaxSPIFFEIDs = metrics.DefaultMaxSPIFFEIDs
	}
	if m.SPIFFEIDLabels && *v.c.Admin.Listen == "" {
		v.fail("Metrics", "metrics.spiffe_id_labels is set, but the admin listener that serves /metrics is disabled (admin.listen = \"\").", "metrics", "spiffe_id_labels")
	}
}

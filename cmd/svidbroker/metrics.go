package main

import (
	"crypto/x509"

	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/svidbroker/svidbroker/broker/config"
	"github.com/svidbroker/svidbroker/broker/metrics"
)

// newMetrics makes the broker's registry (served on the admin listener's /metrics), reporting at
// each scrape how long the broker's SVID and its trusted trust domains' authorities have left. With
// metrics { enabled = false } it is nil: every hook then does nothing and /metrics answers 404.
func newMetrics(cfg *config.Config, src *workloadapi.X509Source) (*metrics.Metrics, error) {
	if !cfg.Metrics.On() {
		return nil, nil
	}
	m, err := metrics.New(cfg.Metrics.MetricsConfig())
	if err != nil {
		return nil, err
	}
	if err := m.WatchSVID(func() (*x509.Certificate, error) {
		svid, err := src.GetX509SVID()
		if err != nil {
			return nil, err
		}
		return svid.Certificates[0], nil
	}); err != nil {
		return nil, err
	}
	trusted := cfg.Trusted
	if err := m.WatchBundles(func() map[string][]*x509.Certificate {
		out := make(map[string][]*x509.Certificate, len(trusted))
		for _, td := range trusted {
			if b, err := src.GetX509BundleForTrustDomain(td); err == nil {
				out[td.Name()] = b.X509Authorities()
			}
		}
		return out
	}); err != nil {
		return nil, err
	}
	return m, nil
}

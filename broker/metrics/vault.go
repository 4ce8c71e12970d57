package metrics

import (
	"context"
	"time"

	"github.com/svidbroker/svidbroker/broker/credential"
)

// Provider wraps a credential provider (Vault) so that its calls are timed and its leases counted.
// With a nil m it returns p.
func (m *Metrics) Provider(p credential.Provider) credential.Provider {
	if m == nil {
		return p
	}
	return &provider{p: p, m: m}
}

type provider struct {
	p credential.Provider
	m *Metrics
}

var _ credential.Provider = (*provider)(nil)

func (v *provider) observe(op, event string, start time.Time, err error) {
	v.m.vaultTime.WithLabelValues(op).Observe(time.Since(start).Seconds())
	switch {
	case err != nil:
		v.m.vaultFailures.WithLabelValues(op).Inc()
	case event != "":
		v.m.vaultLeases.WithLabelValues(event).Inc()
	}
}

func (v *provider) Acquire(ctx context.Context, src credential.Source) (*credential.Lease, error) {
	start := time.Now()
	l, err := v.p.Acquire(ctx, src)
	event := "acquired"
	if err == nil && l.Static {
		event = "" // a kv-v2 secret has no lease
	}
	v.observe("acquire", event, start, err)
	return l, err
}

func (v *provider) Renew(ctx context.Context, leaseID string) (time.Duration, error) {
	start := time.Now()
	ttl, err := v.p.Renew(ctx, leaseID)
	v.observe("renew", "renewed", start, err)
	return ttl, err
}

func (v *provider) Revoke(ctx context.Context, leaseID string) error {
	start := time.Now()
	err := v.p.Revoke(ctx, leaseID)
	v.observe("revoke", "revoked", start, err)
	return err
}

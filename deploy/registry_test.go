package deploy_test

import (
	"context"
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/svidbroker/svidbroker/broker/credential"
	"github.com/svidbroker/svidbroker/broker/metrics"
)

// family is what the broker's registry exposes of one metric name: its type, its label names, and
// every label value seen.
type family struct {
	typ    dto.MetricType
	labels map[string]map[string]bool
}

// series are the metric names a query can select, each with its family: a histogram's name is
// selectable only as _bucket (with le), _sum and _count.
type series map[string]*family

// provider is a credential provider whose calls succeed or fail as told.
type provider struct{ fail error }

func (p *provider) Acquire(context.Context, credential.Source) (*credential.Lease, error) {
	if p.fail != nil {
		return nil, p.fail
	}
	return &credential.Lease{ID: "lease-1", Username: "u", Password: "p"}, nil
}
func (p *provider) Renew(context.Context, string) (time.Duration, error) { return time.Minute, p.fail }
func (p *provider) Revoke(context.Context, string) error                 { return p.fail }

// brokerSeries builds the broker's registry and sets every metric, with each value of the fixed
// label vocabularies the README documents, then gathers it.
func brokerSeries(t *testing.T) series {
	t.Helper()
	m, err := metrics.New(metrics.Config{})
	if err != nil {
		t.Fatal(err)
	}
	tm := m.Target("shop", "postgres", "sql")
	tm.SessionStarted("spiffe://example.org/agent")
	for _, r := range []string{"unidentified", "not_ready", "unattested", "denied", "no_role", "audit_unavailable", "refused", "no_credential"} {
		tm.SessionRefused("spiffe://example.org/agent", r)
	}
	for _, o := range []string{"client_ended", "aborted", "shutdown", "svid_expired", "lease_lost", "revoked", "audit_unavailable", "error"} {
		tm.SessionEnded(o)
	}
	for _, o := range []int{metrics.Allowed, metrics.Masked, metrics.Held, metrics.Refused} {
		tm.Operation("select", o, time.Millisecond)
	}
	tm.OperationRefused("unparsed")
	for _, o := range []string{"approved", "denied", "expired", "failed", "withdrawn"} {
		tm.ApprovalHeld()
		tm.ApprovalDone(o, time.Second)
	}
	m.Decision("sql:select", false, []string{"baseline-no-admin-sql"}, time.Microsecond)
	m.Decision("connect", true, nil, time.Microsecond)
	m.PolicyLoaded("0123456789abcdef")
	m.PolicyRefused()
	m.SPIRELookup(time.Millisecond, nil)
	m.SPIRELookup(time.Millisecond, errors.New("unavailable"))
	m.AuditAppend(time.Millisecond, nil)
	m.AuditFlush(time.Millisecond, nil)
	ctx := context.Background()
	for _, p := range []credential.Provider{m.Provider(&provider{}), m.Provider(&provider{fail: credential.ErrTransient})} {
		_, _ = p.Acquire(ctx, credential.Source{Path: "database/creds/shop-read"})
		_, _ = p.Renew(ctx, "lease-1")
		_ = p.Revoke(ctx, "lease-1")
	}
	leaf := &x509.Certificate{NotAfter: time.Now().Add(time.Hour)}
	if err := m.WatchSVID(func() (*x509.Certificate, error) { return leaf, nil }); err != nil {
		t.Fatal(err)
	}
	if err := m.WatchBundles(func() map[string][]*x509.Certificate {
		return map[string][]*x509.Certificate{"example.org": {leaf}}
	}); err != nil {
		t.Fatal(err)
	}
	if err := m.WatchAuditBacklog(func() uint64 { return 0 }); err != nil {
		t.Fatal(err)
	}
	if err := m.WatchTraceExport(func() (int64, int64, int64) { return 0, 0, 0 }); err != nil { // with tracing on
		t.Fatal(err)
	}
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	s := series{}
	families := 0
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "svidbroker_") {
			families++
		}
		f := &family{typ: mf.GetType(), labels: map[string]map[string]bool{}}
		for _, metric := range mf.GetMetric() {
			for _, l := range metric.GetLabel() {
				if f.labels[l.GetName()] == nil {
					f.labels[l.GetName()] = map[string]bool{}
				}
				f.labels[l.GetName()][l.GetValue()] = true
			}
		}
		name := mf.GetName()
		if f.typ == dto.MetricType_HISTOGRAM {
			bucket := &family{typ: f.typ, labels: map[string]map[string]bool{"le": {}}}
			for k, v := range f.labels {
				bucket.labels[k] = v
			}
			s[name+"_bucket"], s[name+"_sum"], s[name+"_count"] = bucket, f, f
			continue
		}
		s[name] = f
	}
	// Every svidbroker metric the README's table lists must be in the registry, or this test would
	// check the deploy files against less than the broker exposes.
	if families < 23 {
		t.Fatalf("the registry exposes %d svidbroker metrics, the README lists 23: one was left unset in brokerSeries", families)
	}
	return s
}

package metrics

import (
	"context"
	"crypto/x509"
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/svidbroker/svidbroker/broker/credential"
	"github.com/svidbroker/svidbroker/broker/metrics/metricstest"
)

// fakeProvider is a credential provider whose calls succeed or fail as told.
type fakeProvider struct {
	fail   error
	static bool
}

func (f *fakeProvider) Acquire(context.Context, credential.Source) (*credential.Lease, error) {
	if f.fail != nil {
		return nil, f.fail
	}
	return &credential.Lease{ID: "database/creds/shop/lease-1", Username: "v-shop", Password: "canary-password-7f3a", Static: f.static}, nil
}

func (f *fakeProvider) Renew(context.Context, string) (time.Duration, error) {
	return time.Minute, f.fail
}
func (f *fakeProvider) Revoke(context.Context, string) error { return f.fail }

// touchAll moves every metric of m at least once.
func touchAll(t *testing.T, m *Metrics) {
	t.Helper()
	tm := m.Target("shop", "postgres", "sql")
	tm.SessionStarted("spiffe://example.org/agent")
	tm.SessionRefused("spiffe://example.org/agent", "denied")
	tm.SessionEnded("client_ended")
	for _, o := range []int{Allowed, Masked, Held, Refused} {
		tm.Operation("", o, time.Millisecond)
		tm.Operation("select", o, time.Millisecond)
	}
	tm.OperationRefused("unparsed")
	tm.ApprovalHeld()
	tm.ApprovalDone("approved", 3*time.Second)
	m.Decision("sql:select", false, []string{"deny-ddl"}, 20*time.Microsecond)
	m.Decision("connect", true, nil, 20*time.Microsecond)
	m.PolicyLoaded("0123456789abcdef")
	m.PolicyRefused()
	m.SPIRELookup(time.Millisecond, nil)
	m.AuditAppend(time.Millisecond, nil)
	m.AuditFlush(time.Millisecond, errors.New("disk full"))
	m.AuditCheckpointFailed()
	p := m.Provider(&fakeProvider{})
	ctx := context.Background()
	if _, err := p.Acquire(ctx, credential.Source{Path: "database/creds/shop"}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Renew(ctx, "lease-1"); err != nil {
		t.Fatal(err)
	}
	if err := p.Revoke(ctx, "lease-1"); err != nil {
		t.Fatal(err)
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
	if err := m.WatchAuditBacklog(func() uint64 { return 3 }); err != nil {
		t.Fatal(err)
	}
	if err := m.WatchTraceExport(func() (int64, int64, int64) { return 1024, 7, 1 }); err != nil {
		t.Fatal(err)
	}
}

func TestRegistryPassesLint(t *testing.T) {
	for _, cfg := range []Config{{}, {SPIFFEIDLabels: true, MaxSPIFFEIDs: 2}} {
		m, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		touchAll(t, m)
		problems, err := testutil.GatherAndLint(m.Registry())
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			t.Errorf("%+v: metric %s: %s", cfg, p.Metric, p.Text)
		}
		names, err := m.Registry().Gather()
		if err != nil {
			t.Fatal(err)
		}
		ours := 0
		for _, f := range names {
			if strings.HasPrefix(f.GetName(), namespace+"_") {
				ours++
			}
		}
		if want := 26; ours != want { // every metric this package defines
			t.Errorf("%+v: gathered %d svidbroker metrics, want %d", cfg, ours, want)
		}
	}
}

func TestValuesMoveWithOperations(t *testing.T) {
	m, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	tm := m.Target("shop", "postgres", "sql")
	active := m.sessionsActive.WithLabelValues("shop", "postgres")
	tm.SessionStarted("spiffe://example.org/a")
	tm.SessionStarted("spiffe://example.org/b")
	if got := testutil.ToFloat64(active); got != 2 {
		t.Errorf("active sessions = %v after two starts, want 2", got)
	}
	tm.SessionEnded("revoked")
	if got := testutil.ToFloat64(active); got != 1 {
		t.Errorf("active sessions = %v after an end, want 1", got)
	}
	if got := testutil.ToFloat64(m.sessionsEnded.WithLabelValues("shop", "postgres", "revoked")); got != 1 {
		t.Errorf("revoked ends = %v, want 1", got)
	}
	tm.Operation("", Refused, time.Millisecond)
	tm.Operation("delete", Refused, time.Millisecond)
	tm.Operation("", Held, time.Minute)
	tm.OperationRefused("unparsed")
	ops := operationCounts(t, m)
	for _, c := range []struct {
		kind string
		want float64
	}{{"unparsed", 1}, {"sql", 1}, {"delete", 1}} {
		if got := ops["shop/postgres/"+c.kind+"/refused"]; got != c.want {
			t.Errorf("refused operations of kind %s = %v, want %v", c.kind, got, c.want)
		}
	}
	if got := ops["shop/postgres/sql/held"]; got != 1 {
		t.Errorf("held operations of the default kind = %v, want 1", got)
	}
	if h := addedHistogram(t, m, "postgres"); h.GetSampleCount() != 2 {
		t.Errorf("added-time observations = %d, want 2 (the held operation's wait is not the broker's)", h.GetSampleCount())
	}
	m.Decision("sql:delete", false, []string{"forbid-delete", "forbid-night"}, time.Microsecond)
	m.Decision("sql:delete", false, nil, time.Microsecond)
	for _, p := range []string{"forbid-delete", "forbid-night", "none"} {
		if got := testutil.ToFloat64(m.decisions.WithLabelValues("sql:delete", "deny", p)); got != 1 {
			t.Errorf("deny decisions under %s = %v, want 1", p, got)
		}
	}
	m.PolicyLoaded("aaaa")
	m.PolicyLoaded("bbbb")
	if got := testutil.CollectAndCount(m.policyInfo); got != 1 {
		t.Errorf("policy_set_info has %d series after a second set, want 1 (the set in force)", got)
	}
	if got := testutil.ToFloat64(m.policyInfo.WithLabelValues("bbbb")); got != 1 {
		t.Errorf("policy_set_info{digest=bbbb} = %v, want 1", got)
	}
	tm.ApprovalHeld()
	if got := testutil.ToFloat64(m.approvalsPending); got != 1 {
		t.Errorf("approvals pending = %v, want 1", got)
	}
	tm.ApprovalDone("expired", time.Minute)
	if got := testutil.ToFloat64(m.approvalsPending); got != 0 {
		t.Errorf("approvals pending = %v after its outcome, want 0", got)
	}
	if got := testutil.ToFloat64(m.approvals.WithLabelValues("expired")); got != 1 {
		t.Errorf("expired approvals = %v, want 1", got)
	}
}

func TestProviderCountsLeases(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name           string
		p              *fakeProvider
		event, failure string
	}{
		{name: "a dynamic lease is acquired", p: &fakeProvider{}, event: "acquired"},
		{name: "a failed call counts as a failure", p: &fakeProvider{fail: credential.ErrTransient}, failure: "acquire"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, _ := New(Config{})
			_, _ = m.Provider(tt.p).Acquire(ctx, credential.Source{})
			if tt.event != "" {
				if got := testutil.ToFloat64(m.vaultLeases.WithLabelValues(tt.event)); got != 1 {
					t.Errorf("%s = %v, want 1", tt.event, got)
				}
			}
			if tt.failure != "" {
				if got := testutil.ToFloat64(m.vaultFailures.WithLabelValues(tt.failure)); got != 1 {
					t.Errorf("%s failures = %v, want 1", tt.failure, got)
				}
				if got := testutil.ToFloat64(m.vaultLeases.WithLabelValues("acquired")); got != 0 {
					t.Errorf("a failed acquire counted as acquired")
				}
			}
		})
	}
	t.Run("a static secret is no lease", func(t *testing.T) {
		m, _ := New(Config{})
		_, _ = m.Provider(&fakeProvider{static: true}).Acquire(ctx, credential.Source{Kind: credential.Static})
		if got := testutil.ToFloat64(m.vaultLeases.WithLabelValues("acquired")); got != 0 {
			t.Errorf("a kv-v2 secret counted as a lease acquired")
		}
	})
}

func TestSPIFFEIDLabelsAreCapped(t *testing.T) {
	m, err := New(Config{SPIFFEIDLabels: true, MaxSPIFFEIDs: 2})
	if err != nil {
		t.Fatal(err)
	}
	tm := m.Target("shop", "postgres", "sql")
	tm.SessionRefused("", "unidentified") // takes no place under the cap
	for _, id := range []string{"spiffe://td/a", "spiffe://td/b", "spiffe://td/c", "spiffe://td/d", "spiffe://td/a"} {
		tm.SessionStarted(id)
	}
	if got := testutil.ToFloat64(m.sessionsRefused.WithLabelValues("shop", "postgres", "none", "unidentified")); got != 1 {
		t.Errorf("unidentified refusals = %v, want 1 under spiffe_id=\"none\"", got)
	}
	want := map[string]float64{"spiffe://td/a": 2, "spiffe://td/b": 1, Other: 2}
	for id, n := range want {
		if got := testutil.ToFloat64(m.sessionsStarted.WithLabelValues("shop", "postgres", id)); got != n {
			t.Errorf("sessions started by %s = %v, want %v", id, got, n)
		}
	}
	if got := testutil.CollectAndCount(m.sessionsStarted); got != len(want) {
		t.Errorf("sessions_started_total has %d series, want %d", got, len(want))
	}

	// Control: without the setting, no SPIFFE ID is a label at all.
	off, _ := New(Config{})
	off.Target("shop", "postgres", "sql").SessionStarted("spiffe://td/a")
	if body := scrape(t, off); strings.Contains(body, "spiffe://") {
		t.Errorf("a SPIFFE ID became a label without spiffe_id_labels:\n%s", body)
	}
}

func TestNoSecretInExposition(t *testing.T) {
	m, _ := New(Config{SPIFFEIDLabels: true})
	touchAll(t, m)
	body := scrape(t, m)
	for _, secret := range []string{"canary-password-7f3a", "lease-1", "v-shop", "disk full"} {
		if strings.Contains(body, secret) {
			t.Errorf("/metrics holds %q", secret)
		}
	}
	if !strings.Contains(body, `svidbroker_vault_leases_total{event="acquired"} 1`) {
		t.Errorf("/metrics lacks the acquired lease:\n%s", body)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		cfg     Config
		want    int
		wantErr string
	}{
		{cfg: Config{}, want: DefaultMaxSPIFFEIDs},
		{cfg: Config{SPIFFEIDLabels: true, MaxSPIFFEIDs: 10}, want: 10},
		{cfg: Config{SPIFFEIDLabels: true, MaxSPIFFEIDs: -1}, wantErr: "must be positive"},
		{cfg: Config{SPIFFEIDLabels: true, MaxSPIFFEIDs: MaxSPIFFEIDsLimit + 1}, wantErr: "at most"},
		{cfg: Config{MaxSPIFFEIDs: 5}, wantErr: "spiffe_id_labels is not"},
	}
	for _, tt := range tests {
		err := tt.cfg.Validate()
		switch {
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%+v: error %v, want one saying %q", tt.cfg, err, tt.wantErr)
		case tt.wantErr == "" && err != nil:
			t.Errorf("%+v: %v", tt.cfg, err)
		case tt.wantErr == "" && tt.cfg.MaxSPIFFEIDs != tt.want:
			t.Errorf("%+v: MaxSPIFFEIDs = %d, want %d", tt.cfg, tt.cfg.MaxSPIFFEIDs, tt.want)
		}
	}
}

func TestNilMetricsDoNothing(t *testing.T) {
	var m *Metrics
	touchNil := func() {
		m.Target("shop", "postgres", "sql").SessionStarted("x")
		m.Decision("connect", true, nil, 0)
		m.PolicyLoaded("x")
		m.AuditAppend(0, nil)
		if p := m.Provider(&fakeProvider{}); p == nil {
			t.Error("a nil Metrics dropped the provider")
		}
	}
	touchNil() // must not panic
}

func TestNilMetricsHandlerSaysOff(t *testing.T) {
	var m *Metrics
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 404 || !strings.Contains(rec.Body.String(), "enabled = false") {
		t.Fatalf("want 404 naming the setting, got %d %q", rec.Code, rec.Body.String())
	}
}

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestTraceExportIsReported: the exporter's counts are read at each scrape.
func TestTraceExportIsReported(t *testing.T) {
	m, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	var exported, dropped, failed int64 = 512, 0, 0
	if err := m.WatchTraceExport(func() (int64, int64, int64) { return exported, dropped, failed }); err != nil {
		t.Fatal(err)
	}
	read := func(name string) float64 {
		v, err := testutil.GatherAndCount(m.Registry(), name)
		if err != nil || v != 1 {
			t.Fatalf("%s: %d series (%v)", name, v, err)
		}
		return metricstest.Family(t, m.Registry(), name)[0].GetCounter().GetValue()
	}
	if got := read("svidbroker_trace_spans_exported_total"); got != 512 {
		t.Fatalf("exported %v, want 512", got)
	}
	exported, dropped, failed = 1024, 9, 2
	if read("svidbroker_trace_spans_exported_total") != 1024 || read("svidbroker_trace_spans_dropped_total") != 9 || read("svidbroker_trace_exports_failed_total") != 2 {
		t.Fatal("the exporter's counts did not move at the next scrape")
	}
}

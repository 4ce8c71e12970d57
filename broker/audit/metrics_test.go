package audit

import (
	"os"
	"testing"
	"time"

	"github.com/svidbroker/svidbroker/broker/metrics"
	"github.com/svidbroker/svidbroker/broker/metrics/metricstest"
)

func TestMetricsFollowTheStore(t *testing.T) {
	m, err := metrics.New(metrics.Config{})
	if err != nil {
		t.Fatal(err)
	}
	k := newKeys(t)
	l, err := Open(Config{Dir: t.TempDir(), Chain: "b1", MACKey: k.mac, Signer: k.signer, CheckpointInterval: time.Hour,
		FlushInterval: time.Hour, RetryInterval: time.Hour, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := m.WatchAuditBacklog(l.Unflushed); err != nil {
		t.Fatal(err)
	}
	backlog := func() float64 {
		return metricstest.Family(t, m.Registry(), "svidbroker_audit_unflushed_records")[0].GetGauge().GetValue()
	}

	l.AppendAsync(stmt(1))
	l.AppendAsync(stmt(2))
	if got := backlog(); got != 2 {
		t.Errorf("unflushed records = %v after two queued, want 2", got)
	}
	if err := l.Append(stmt(3)); err != nil {
		t.Fatal(err)
	}
	if got := backlog(); got != 0 {
		t.Errorf("unflushed records = %v once a durable append covered them, want 0", got)
	}
	if n := metricstest.Family(t, m.Registry(), "svidbroker_audit_append_duration_seconds")[0].GetHistogram().GetSampleCount(); n < 1 {
		t.Errorf("no append observed")
	}
	if n := metricstest.Family(t, m.Registry(), "svidbroker_audit_flush_duration_seconds")[0].GetHistogram().GetSampleCount(); n < 1 {
		t.Errorf("no flush observed")
	}

	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fs := l.st.(*fileStore)
	fs.f.Close()
	fs.f = full
	if err := l.Append(stmt(4)); err == nil {
		t.Fatal("an append to a full disk succeeded")
	}
	writeErrors := -1.0
	for _, s := range metricstest.Family(t, m.Registry(), "svidbroker_audit_store_errors_total") {
		if s.GetLabel()[0].GetValue() == "write" {
			writeErrors = s.GetCounter().GetValue()
		}
	}
	if writeErrors != 1 {
		t.Errorf("store write errors = %v after a failed write, want 1", writeErrors)
	}
}

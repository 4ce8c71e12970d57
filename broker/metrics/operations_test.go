package metrics

import (
	"fmt"
	"math"
	mrand "math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/svidbroker/svidbroker/broker/metrics/metricstest"
)

// operationCounts gathers m's operations_total, by "target/protocol/kind/outcome".
func operationCounts(t *testing.T, m *Metrics) map[string]float64 {
	t.Helper()
	counts := map[string]float64{}
	for _, s := range metricstest.Family(t, m.Registry(), namespace+"_operations_total") {
		l := metricstest.Labels(s)
		counts[strings.Join([]string{l["target"], l["protocol"], l["kind"], l["outcome"]}, "/")] = s.GetCounter().GetValue()
	}
	return counts
}

// addedHistogram gathers m's operation_added_seconds of protocol; nil if it has none.
func addedHistogram(t *testing.T, m *Metrics, protocol string) *dto.Histogram {
	t.Helper()
	for _, s := range metricstest.Family(t, m.Registry(), namespace+"_operation_added_seconds") {
		if metricstest.Labels(s)["protocol"] == protocol {
			return s.GetHistogram()
		}
	}
	return nil
}

// TestStripedOperationsAddUp: sessions of three targets (two of one protocol) count operations
// from many goroutines at once, each session in its stripe, while scrapes read them; the counts and
// the histograms gathered at the end are those of the client library's own counter and histogram
// vectors fed the same operations: every count, every bucket (times on the buckets' bounds, a
// nanosecond either side, and beyond the last included), and the sum.
func TestStripedOperationsAddUp(t *testing.T) {
	m, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	refOps := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ops"}, []string{"target", "protocol", "kind", "outcome"})
	refAdded := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "added", Buckets: fastBuckets[:]}, []string{"protocol"})
	targets := []struct{ name, protocol, kind string }{{"shop", "postgres", "sql"}, {"hr", "postgres", "sql"}, {"api", "http", ""}}
	kinds := []string{"", "select", "insert", "ddl"}
	var times []time.Duration
	for _, b := range addedBounds {
		times = append(times, b-1, b, b+1)
	}
	times = append(times, 0, time.Second)

	var counting, scraping sync.WaitGroup
	stop := make(chan struct{})
	scraping.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				if _, err := m.Registry().Gather(); err != nil {
					t.Error(err)
					return
				}
			}
		}
	})
	for i := range 3 * opStripes { // every stripe holds several sessions
		tg := targets[i%len(targets)]
		session := m.Target(tg.name, tg.protocol, tg.kind).ForSession()
		counting.Go(func() {
			r := mrand.New(mrand.NewPCG(uint64(i), 7))
			for range 2000 {
				kind, outcome, took := kinds[r.IntN(len(kinds))], r.IntN(len(outcomeNames)), times[r.IntN(len(times))]
				refusedEarly := r.IntN(10) == 0
				if refusedEarly {
					session.OperationRefused(kind)
					outcome = Refused
				} else {
					session.Operation(kind, outcome, took)
				}
				label := kind
				if label == "" {
					label = tg.kind
				}
				refOps.WithLabelValues(tg.name, tg.protocol, label, outcomeNames[outcome]).Inc()
				if !refusedEarly && outcome != Held {
					refAdded.WithLabelValues(tg.protocol).Observe(took.Seconds())
				}
			}
		})
	}
	counting.Wait()
	close(stop)
	scraping.Wait()

	got := operationCounts(t, m)
	want := map[string]float64{}
	for _, tg := range targets {
		for _, kind := range kinds {
			if kind == "" {
				kind = tg.kind
			}
			for _, outcome := range outcomeNames {
				want[strings.Join([]string{tg.name, tg.protocol, kind, outcome}, "/")] = 0
			}
		}
	}
	var wantTotal float64
	for k := range want {
		l := strings.Split(k, "/")
		want[k] = testutil.ToFloat64(refOps.WithLabelValues(l...))
		wantTotal += want[k]
	}
	if wantTotal != 3*opStripes*2000 {
		t.Fatalf("the reference counted %v operations, want %d", wantTotal, 3*opStripes*2000)
	}
	if len(got) != len(want) {
		t.Errorf("gathered %d operation series, want %d: %v", len(got), len(want), got)
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("operations %s = %v, want %v", k, got[k], w)
		}
	}
	for _, protocol := range []string{"postgres", "http"} {
		h := addedHistogram(t, m, protocol)
		var ref dto.Metric
		if err := refAdded.WithLabelValues(protocol).(prometheus.Metric).Write(&ref); err != nil {
			t.Fatal(err)
		}
		w := ref.GetHistogram()
		if h == nil {
			t.Fatalf("no operation_added_seconds{protocol=%q}", protocol)
		}
		if h.GetSampleCount() != w.GetSampleCount() || h.GetSampleCount() == 0 {
			t.Errorf("%s: %d observations, want %d", protocol, h.GetSampleCount(), w.GetSampleCount())
		}
		if math.Abs(h.GetSampleSum()-w.GetSampleSum()) > 1e-9*w.GetSampleSum() {
			t.Errorf("%s: sum %v, want %v", protocol, h.GetSampleSum(), w.GetSampleSum())
		}
		if fmt.Sprint(bucketCounts(h)) != fmt.Sprint(bucketCounts(w)) {
			t.Errorf("%s: buckets %v, want %v", protocol, bucketCounts(h), bucketCounts(w))
		}
	}
}

func bucketCounts(h *dto.Histogram) map[float64]uint64 {
	b := map[float64]uint64{}
	for _, x := range h.GetBucket() {
		b[x.GetUpperBound()] = x.GetCumulativeCount()
	}
	return b
}

// TestOperationKindsAreCapped: a target labels at most maxOpKinds kinds, its default one included;
// every kind beyond the first maxOpKinds-1 is counted as "other", and not remembered.
func TestOperationKindsAreCapped(t *testing.T) {
	m, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	tm := m.Target("shop", "postgres", "sql").ForSession()
	const extra = 3 * maxOpKinds
	for i := range extra {
		tm.Operation(fmt.Sprintf("kind%02d", i), Allowed, time.Microsecond)
	}
	tm.Operation("", Allowed, time.Microsecond)
	got := operationCounts(t, m)
	kinds := map[string]bool{}
	for k := range got {
		kinds[strings.Split(k, "/")[2]] = true
	}
	if len(kinds) != maxOpKinds {
		t.Errorf("%d kinds labelled, want %d: %v", len(kinds), maxOpKinds, kinds)
	}
	if n := got["shop/postgres/sql/allowed"]; n != 1 {
		t.Errorf("the default kind counted %v, want 1", n)
	}
	// The default kind took the first place: kind00 ... kind13 the others but one.
	if n, want := got["shop/postgres/other/allowed"], float64(extra-(maxOpKinds-2)); n != want {
		t.Errorf("other counted %v, want %v", n, want)
	}
	if n := got["shop/postgres/kind13/allowed"]; n != 1 {
		t.Errorf("kind13 counted %v, want 1 (the last kind with a label of its own)", n)
	}
	remembered := 0
	tm.ops.kinds.Range(func(any, any) bool { remembered++; return true })
	if remembered > maxOpKinds {
		t.Errorf("%d kinds remembered after %d were counted, want at most %d", remembered, extra+1, maxOpKinds)
	}
}

// TestOneTargetTwiceIsOneSeries: two Targets of one target and protocol (two engines' cores, say)
// count into the same series, which the registry gathers once.
func TestOneTargetTwiceIsOneSeries(t *testing.T) {
	m, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	m.Target("shop", "postgres", "sql").ForSession().Operation("", Refused, time.Millisecond)
	m.Target("shop", "postgres", "sql").ForSession().Operation("select", Refused, time.Millisecond)
	m.Target("shop", "postgres", "sql").Operation("select", Refused, time.Millisecond)
	got := operationCounts(t, m)
	if got["shop/postgres/sql/refused"] != 1 || got["shop/postgres/select/refused"] != 2 {
		t.Errorf("counts %v: want sql/refused 1 and select/refused 2", got)
	}
	if h := addedHistogram(t, m, "postgres"); h.GetSampleCount() != 3 {
		t.Errorf("%d observations, want 3", h.GetSampleCount())
	}
}

// TestSessionsTakeStripesInTurn: opStripes sessions of a target count in opStripes different
// stripes, and the next session in the first again.
func TestSessionsTakeStripesInTurn(t *testing.T) {
	m, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	tm := m.Target("shop", "postgres", "sql")
	for range opStripes + 1 {
		tm.ForSession().Operation("", Allowed, time.Microsecond)
	}
	ops := tm.ops
	for i := range ops.stripes {
		want := uint64(1)
		if i == 0 {
			want = 2
		}
		if n := ops.stripes[i].ops[tm.kind][Allowed].Load(); n != want {
			t.Errorf("stripe %d counted %d operations, want %d", i, n, want)
		}
	}
}

// BenchmarkOperation counts operations from as many goroutines as GOMAXPROCS allows (-cpu), each
// a session: "shared" with one Target for all, so one stripe, as one counter and histogram that
// every session shares would count; "sessions" with a Target per session (ForSession), as the broker
// counts.
func BenchmarkOperation(b *testing.B) {
	for _, arm := range []string{"shared", "sessions"} {
		b.Run(arm, func(b *testing.B) {
			m, err := New(Config{})
			if err != nil {
				b.Fatal(err)
			}
			tm := m.Target("shop", "postgres", "sql")
			b.RunParallel(func(pb *testing.PB) {
				session := tm
				if arm == "sessions" {
					session = tm.ForSession()
				}
				for pb.Next() {
					session.Operation("select", Allowed, 30*time.Microsecond)
				}
			})
		})
	}
}

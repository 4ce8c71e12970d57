package metrics

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// operations counts the operations of one target and protocol (operations_total) and the time the
// broker added to them (operation_added_seconds), for the registry's operationsCollector.
//
// Every statement a session relays is counted here, so the counts are striped: each session counts
// into one stripe (Target.ForSession gives sessions the stripes in turn, so that few share one), and
// a scrape adds the stripes up. With one counter and one histogram that every session shares, as the
// client library's vectors are, each statement moved four or five cache lines from the core that
// counted last to its own: brokers loaded side by side spent 0.67 and 0.87 µs more CPU per statement so,
// most of what metrics cost them (README, Metrics). A stripe's counters are still atomic: a
// session's requests can be counted from several goroutines, and a scrape reads them.
type operations struct {
	target, protocol string

	kinds sync.Map // kind → its index in names, the operations counted in stripes
	mu    sync.Mutex
	names []string // kinds by index, at most maxOpKinds; appended under mu before kinds has them

	next    atomic.Uint32 // the stripe of the next session
	stripes [opStripes]opStripe
}

// Bounds of a target's operation counts: opStripes stripes, maxOpKinds kinds of operation, of which
// the last is otherKind, which counts every kind beyond the others. The kinds are the engines' fixed
// classes (a handful), so the cap only guards the labels' bound.
const (
	opStripes  = 16
	maxOpKinds = 16
	otherKind  = "other"
)

// addedBounds are fastBuckets in nanoseconds: an operation's time goes in the first bucket whose
// bound it does not exceed, the last (+Inf) if none.
var addedBounds = func() []time.Duration {
	b := make([]time.Duration, len(fastBuckets))
	for i, s := range fastBuckets {
		b[i] = time.Duration(s*1e9 + 0.5)
	}
	return b
}()

// opStripe is one stripe of a target's counts. Its padding keeps the next stripe's first counters
// off the cache line of its last.
type opStripe struct {
	ops        [maxOpKinds][len(outcomeNames)]atomic.Uint64 // by kind index and outcome
	added      [len(fastBuckets) + 1]atomic.Uint64          // observations by bucket, not cumulative
	addedNanos atomic.Uint64                                // their sum
	_          [64]byte
}

// observe adds took to the stripe's histogram.
func (s *opStripe) observe(took time.Duration) {
	took = max(took, 0)
	i := 0
	for i < len(addedBounds) && took > addedBounds[i] {
		i++
	}
	s.added[i].Add(1)
	s.addedNanos.Add(uint64(took))
}

// index is kind's index, given it at kind's first operation: otherKind's once maxOpKinds-1 kinds
// have one. A kind beyond those is not remembered (it is looked up under o.mu each time), so that
// what o keeps stays bounded whatever kinds it is given.
func (o *operations) index(kind string) int {
	if i, ok := o.kinds.Load(kind); ok {
		return i.(int)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.names) >= maxOpKinds-1 && kind != otherKind {
		kind = otherKind
	}
	return o.indexLocked(kind)
}

// indexLocked gives kind the next index, unless it has one; o.mu is held.
func (o *operations) indexLocked(kind string) int {
	if i, ok := o.kinds.Load(kind); ok {
		return i.(int)
	}
	o.names = append(o.names, kind)
	i := len(o.names) - 1
	o.kinds.Store(kind, i)
	return i
}

// stripe returns the stripe of a new session.
func (o *operations) stripe() *opStripe {
	return &o.stripes[(o.next.Add(1)-1)%opStripes]
}

// addedTotals are one protocol's operation_added_seconds, summed over its targets' stripes.
type addedTotals struct {
	buckets [len(fastBuckets) + 1]uint64
	nanos   uint64
}

// operationsCollector exposes every target's operations (Metrics.ops): operations_total by target,
// protocol, kind and outcome, and operation_added_seconds by protocol, each the sum of the stripes.
// A scrape reads the stripes' counters one by one while sessions count: a histogram's count is the
// sum of the buckets it read, and its sum can include an operation whose bucket it read before it
// was counted.
type operationsCollector struct {
	m            *Metrics
	count, added *prometheus.Desc
}

func newOperationsCollector(m *Metrics) operationsCollector {
	return operationsCollector{m: m,
		count: prometheus.NewDesc(namespace+"_operations_total",
			"Operations (statements, requests, tool calls) decided, by kind and outcome: allowed, masked, held (approved and run) or refused.",
			[]string{"target", "protocol", "kind", "outcome"}, nil),
		added: prometheus.NewDesc(namespace+"_operation_added_seconds",
			"Time the broker adds to an operation deciding it (policy, plan, verdict), not counting a wait for approval.",
			[]string{"protocol"}, nil),
	}
}

func (c operationsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.count
	ch <- c.added
}

func (c operationsCollector) Collect(ch chan<- prometheus.Metric) {
	c.m.mu.Lock()
	targets := append([]*operations(nil), c.m.ops...)
	c.m.mu.Unlock()
	var protocols []string // in the order of their first target
	added := map[string]*addedTotals{}
	for _, o := range targets {
		o.mu.Lock()
		names := o.names[:len(o.names):len(o.names)]
		o.mu.Unlock()
		for k, kind := range names {
			for outcome, name := range outcomeNames {
				var n uint64
				for s := range o.stripes {
					n += o.stripes[s].ops[k][outcome].Load()
				}
				ch <- prometheus.MustNewConstMetric(c.count, prometheus.CounterValue, float64(n), o.target, o.protocol, kind, name)
			}
		}
		t := added[o.protocol]
		if t == nil {
			t = new(addedTotals)
			added[o.protocol] = t
			protocols = append(protocols, o.protocol)
		}
		for s := range o.stripes {
			st := &o.stripes[s]
			for b := range st.added {
				t.buckets[b] += st.added[b].Load()
			}
			t.nanos += st.addedNanos.Load()
		}
	}
	for _, p := range protocols {
		t := added[p]
		var count uint64
		buckets := make(map[float64]uint64, len(fastBuckets))
		for b, n := range t.buckets {
			count += n
			if b < len(fastBuckets) {
				buckets[fastBuckets[b]] = count
			}
		}
		ch <- prometheus.MustNewConstHistogram(c.added, count, float64(t.nanos)/1e9, buckets, p)
	}
}

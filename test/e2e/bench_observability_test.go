package e2e

import (
	"bytes"
	"cmp"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/svidbroker/svidbroker/test/stack"
)

// Shape of BenchmarkObservabilityOverhead's load: obsGenerations sets of broker processes, one
// after the other; against each set, after obsWarmUp of each workload on each broker, obsPasses
// rounds per broker and workload, each round obsClients connections running the workload's
// statement back to back for obsRound.
//
// The rounds are short and many because this machine's speed wanders: one broker's throughput
// under a steady load, in back-to-back 50-ms windows, moved by 11% (standard deviation) from window
// to window, and its means over 2 seconds still by 4%. Tenth-of-a-second rounds, alternating
// between the brokers, put each broker's rounds beside the others' in the same stretch of that
// wandering, which cancels in their ratio: in one sitting, the sets' ratios spread with a standard
// deviation of 0.021 to 0.048, against 0.042 to 0.096 with three half-second rounds per set. A
// round ends when each connection's last statement does, a millisecond or so past obsRound, at less
// than full load: that counts against the broker whose statements take longer, by under 0.001 of
// the ratio at a 2% cost, and wakes every broker from the same idle.
const (
	obsGenerations = 16
	obsPasses      = 24
	obsClients     = 8
	obsWarmUp      = 500 * time.Millisecond
	obsRound       = 100 * time.Millisecond
)

// obsWorkload is a statement the benchmark's connections run back to back.
type obsWorkload struct {
	name  string // a prefix of its metrics: "" for SELECT 1, the benchmark's first
	query func(ctx context.Context, c *pgx.Conn) error
}

// obsWorkloads: SELECT 1, the broker's lightest statement, so the strictest ratio; and pgbench's
// built-in select-only transaction as pgbench runs it by default (-S, -M simple): one account's
// balance by a random aid, its literal in the text of a simple Query (pgx's simple protocol
// interpolates it, as pgbench does), from the tables initPgbench makes.
var obsWorkloads = [...]obsWorkload{
	{name: "", query: func(ctx context.Context, c *pgx.Conn) error {
		var n int
		return c.QueryRow(ctx, "SELECT 1").Scan(&n)
	}},
	{name: "select-only-", query: func(ctx context.Context, c *pgx.Conn) error {
		var balance int
		return c.QueryRow(ctx, "SELECT abalance FROM pgbench_accounts WHERE aid = $1", pgx.QueryExecModeSimpleProtocol,
			1+mrand.IntN(obsPgbenchAccounts)).Scan(&balance)
	}},
}

// obsPgbenchScale is the scale of pgbench's tables the select-only workload reads, and
// obsPgbenchAccounts their accounts (pgbench makes 100000 per unit of scale).
const (
	obsPgbenchScale    = 1
	obsPgbenchAccounts = 100000 * obsPgbenchScale
)

// BenchmarkObservabilityOverhead measures what metrics and tracing cost on the select-only path:
// brokers on one stack, identical but for this: "on" has metrics on and tracing exporting every span
// (sample ratio 1) over OTLP/HTTP to a sink in this process; "off" has metrics { enabled = false }
// and no tracing block; "control" is configured as "off", to show in the same run how far apart two
// brokers that differ in nothing measure. The same load (obsClients pgx connections, each running a
// workload's statement back to back: obsWorkloads) runs against each in short rounds, in sets of
// obsPasses passes over the three brokers, every other pass reversed (the order rotating from set to
// set), so that noise from other work on the machine, and what one round leaves behind for the next,
// hit all alike. The sets' ratios are logged.
//
// Two processes of one binary and one configuration differ by a few percent in throughput on this
// machine, one way or the other, from start to start. So the brokers are started afresh for every
// set, obsGenerations times, in rotating order: each set's ratio draws that difference anew, beside
// the machine's noise, and the benchmark reports the median of the draws.
//
// No broker records audit: the denominator is the broker's lightest path, so the ratio is the
// strictest form of the cost. It reports, for SELECT 1 (and, prefixed "select-only-", the ratios and
// CPU for pgbench's select-only statement):
//   - "on/off": the median over all sets of each set's throughput ratio (queries per second with
//     metrics and tracing, over without). A burst of other work on this shared machine skews the sets
//     it falls in, not the median;
//   - "control/off": the same of the control broker, which differs from "off" in nothing: how far
//     from 1 the machine's noise puts a ratio in this run;
//   - "on/baseline": the median of each set's throughput with metrics and tracing over the mean of
//     the two brokers without ("off" and "control"): the same cost as "on/off", measured against two
//     draws of the baseline rather than one, so that a set whose "off" ran unusually fast or slow
//     moves it half as far;
//   - "on/off-total": all the rounds' queries per second, with over without;
//   - "on-cpu-us/q", "off-cpu-us/q" and "cpu-off/on": the brokers' own CPU time (their threads' run
//     time, from /proc) per query, and their ratio;
//   - "on-test-cpu-us/q" and "off-test-cpu-us/q": this process's CPU time per query in the rounds on
//     each: its clients', and, in the traced broker's rounds, its OTLP sink's, which receives and
//     parses every export (on this machine, a collector shares the cores with what it measures);
//   - "spans/query": the spans the tracing brokers exported, per query they ran (warm-ups included).
//
// Run it with -benchtime 1x.
func BenchmarkObservabilityOverhead(b *testing.B) {
	s, _ := shared(b)
	initPgbench(b, s, obsPgbenchScale, "SELECT")
	sink := newOTLPSink(b)
	agent := clientFiles(b, s, stack.PersonaAnalyst)
	onConfig := fmt.Sprintf(`
# Metrics on (the default), and every span exported to the benchmark's OTLP/HTTP sink.
tracing {
  otlp_endpoint = %q
  insecure      = true
  sample_ratio  = 1
}
`, sink.addr)
	const offConfig = `
# No tracing block, and metrics turned off.
metrics {
  enabled = false
}
`
	type arm struct {
		name, config string
		br           *stack.Broker
		conns        []*pgx.Conn
		run, set     [len(obsWorkloads)]obsTally // by workload
	}
	arms := []*arm{{name: "on", config: onConfig}, {name: "off", config: offConfig}, {name: "control", config: offConfig}}
	on, off, control := arms[0], arms[1], arms[2]
	var onOff, controlOff, onBaseline [len(obsWorkloads)][]float64
	var warmups int64 // the queries the tracing brokers ran to warm up
	for b.Loop() {
		for g := range obsGenerations {
			for i := range arms {
				a := arms[(g+i)%len(arms)]
				br, err := s.StartBroker(b.Context(), stack.BrokerOptions{Name: fmt.Sprintf("svidbroker-obs-%s-%d", a.name, g), Binary: brokerBin, NoAudit: true, Extra: a.config})
				if err != nil {
					b.Fatal(err)
				}
				a.br = br
			}
			for _, a := range arms {
				a.conns = obsConnect(b, a.br, agent)
				for _, w := range obsWorkloads {
					n, _ := obsRun(b, a.conns, w, obsWarmUp)
					if a == on {
						warmups += n
					}
				}
			}
			// The brokers are what they claim: the tracing broker's spans reach the sink, its
			// /metrics counts the warm-up's statements, and the others' /metrics is off.
			if g == 0 {
				obsWaitForSpans(b, sink, 30*time.Second)
			}
			if body, code := obsScrape(b, on.br); code != http.StatusOK || !strings.Contains(body, "svidbroker_operations_total{") {
				b.Fatalf("the metrics broker's /metrics answered %d without operations counted:\n%.2000s", code, body)
			}
			for _, a := range []*arm{off, control} {
				if body, code := obsScrape(b, a.br); code != http.StatusNotFound {
					b.Fatalf("the broker with metrics { enabled = false } answered /metrics with %d:\n%.2000s", code, body)
				}
			}

			// A set is obsPasses passes over the brokers, each pass a round on each, every other pass
			// in the reverse order (ABC CBA ABC): a burst of other work, or a drift, lasting a few
			// seconds falls on all the brokers of the set, not on one. The order rotates from set to
			// set, and every other set starts reversed, so that each broker follows each of the others
			// as often: whatever a round leaves behind (the tracing broker's last export, a collection
			// in this process) falls on all alike. Six sets run every order.
			for wi, w := range obsWorkloads {
				for _, a := range arms {
					a.set[wi] = obsTally{}
				}
				for pass := range obsPasses {
					for i := range arms {
						k := i
						if (g+pass)%2 == 1 {
							k = len(arms) - 1 - i
						}
						a := arms[(g+k)%len(arms)]
						a.set[wi].add(obsRound1(b, a.br, a.conns, w))
					}
				}
				for _, a := range arms {
					a.run[wi].add(a.set[wi])
				}
				onOff[wi] = append(onOff[wi], on.set[wi].qps()/off.set[wi].qps())
				controlOff[wi] = append(controlOff[wi], control.set[wi].qps()/off.set[wi].qps())
				onBaseline[wi] = append(onBaseline[wi], on.set[wi].qps()/((off.set[wi].qps()+control.set[wi].qps())/2))
			}
			for _, a := range arms {
				obsClose(a.conns)
				// Stopping the tracing broker exports the spans it still has queued.
				if err := a.br.Stop(); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	if err := sink.failure(); err != nil {
		b.Fatalf("the OTLP sink could not read an export: %v", err)
	}
	var queries int64
	for wi, w := range obsWorkloads {
		b.Logf("%s on/off by set: %.4f", cmp.Or(w.name, "SELECT-1-"), onOff[wi])
		b.Logf("%s control/off by set: %.4f", cmp.Or(w.name, "SELECT-1-"), controlOff[wi])
		on, off := on.run[wi], off.run[wi]
		queries += on.queries
		b.ReportMetric(off.qps(), w.name+"off-queries/s")
		b.ReportMetric(on.qps(), w.name+"on-queries/s")
		b.ReportMetric(median(onOff[wi]), w.name+"on/off")
		b.ReportMetric(median(controlOff[wi]), w.name+"control/off")
		b.ReportMetric(median(onBaseline[wi]), w.name+"on/baseline")
		b.ReportMetric(on.qps()/off.qps(), w.name+"on/off-total")
		b.ReportMetric(on.cpuPerQuery(), w.name+"on-cpu-us/q")
		b.ReportMetric(off.cpuPerQuery(), w.name+"off-cpu-us/q")
		b.ReportMetric(off.cpuPerQuery()/on.cpuPerQuery(), w.name+"cpu-off/on")
		b.ReportMetric(on.testCPUPerQuery(), w.name+"on-test-cpu-us/q")
		b.ReportMetric(off.testCPUPerQuery(), w.name+"off-test-cpu-us/q")
	}
	b.ReportMetric(float64(sink.spans.Load())/float64(warmups+queries), "spans/query")
}

// median is the median of v, which it sorts.
func median(v []float64) float64 {
	slices.Sort(v)
	m := v[len(v)/2]
	if len(v)%2 == 0 {
		m = (v[len(v)/2-1] + m) / 2
	}
	return m
}

// obsTally is what rounds of load on one broker did: queries completed, the time they took, and the
// CPU time meanwhile of the broker and of this process (the clients, and the OTLP sink).
type obsTally struct {
	queries int64
	took    time.Duration
	cpu     time.Duration
	test    time.Duration
}

func (t *obsTally) add(o obsTally) {
	t.queries, t.took, t.cpu, t.test = t.queries+o.queries, t.took+o.took, t.cpu+o.cpu, t.test+o.test
}

func (t obsTally) qps() float64 { return float64(t.queries) / t.took.Seconds() }

// cpuPerQuery is the broker's CPU time per query, in microseconds.
func (t obsTally) cpuPerQuery() float64 {
	return float64(t.cpu.Microseconds()) / float64(t.queries)
}

// testCPUPerQuery is this process's CPU time per query, in microseconds.
func (t obsTally) testCPUPerQuery() float64 {
	return float64(t.test.Microseconds()) / float64(t.queries)
}

// obsRound1 runs one round of w on br through conns, and tallies it with br's CPU time and this
// process's.
func obsRound1(b *testing.B, br *stack.Broker, conns []*pgx.Conn, w obsWorkload) obsTally {
	b.Helper()
	self := os.Getpid()
	cpu0, test0 := processCPU(b, br.PID()), processCPU(b, self)
	n, took := obsRun(b, conns, w, obsRound)
	return obsTally{queries: n, took: took, cpu: processCPU(b, br.PID()) - cpu0, test: processCPU(b, self) - test0}
}

// obsConnect opens obsClients connections to br as the persona whose files are f.
func obsConnect(b *testing.B, br *stack.Broker, f *stack.ClientFiles) []*pgx.Conn {
	b.Helper()
	conns := make([]*pgx.Conn, obsClients)
	for i := range conns {
		c, err := pgx.ConnectConfig(b.Context(), pgxConfig(b, br, f))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close(context.Background()) })
		conns[i] = c
	}
	return conns
}

// obsClose closes conns, so that their sessions end before their broker does.
func obsClose(conns []*pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, c := range conns {
		_ = c.Close(ctx)
	}
}

// obsRun runs w's statement back to back on every connection at once for d, and returns the queries
// completed and the time they took (from the start until the last connection finished its last).
func obsRun(b *testing.B, conns []*pgx.Conn, w obsWorkload, d time.Duration) (int64, time.Duration) {
	b.Helper()
	var done atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, len(conns))
	t0 := time.Now()
	stop := t0.Add(d)
	for _, c := range conns {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(b.Context(), d+30*time.Second)
			defer cancel()
			for time.Now().Before(stop) {
				if err := w.query(ctx, c); err != nil {
					errs <- err
					return
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	took := time.Since(t0)
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	return done.Load(), took
}

// obsScrape returns br's /metrics body (its first MiB) and status.
func obsScrape(b *testing.B, br *stack.Broker) (string, int) {
	b.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + br.AdminAddr + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		b.Fatal(err)
	}
	return string(body), resp.StatusCode
}

// obsWaitForSpans fails the benchmark unless the sink has received a span within d.
func obsWaitForSpans(b *testing.B, sink *otlpSink, d time.Duration) {
	b.Helper()
	deadline := time.Now().Add(d)
	for sink.spans.Load() == 0 {
		if err := sink.failure(); err != nil {
			b.Fatalf("the OTLP sink could not read an export: %v", err)
		}
		if time.Now().After(deadline) {
			b.Fatalf("no span reached the OTLP sink within %v: tracing is not on in the broker under test (%d requests received)", d, sink.requests.Load())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// otlpSink is an OTLP/HTTP traces receiver that counts the spans of each export and discards them.
// It walks the protobuf encoding only down to the spans (countSpans), so that receiving costs the
// benchmark's machine little beside the brokers it measures.
type otlpSink struct {
	addr     string // host:port, as tracing.otlp_endpoint takes it
	spans    atomic.Int64
	requests atomic.Int64
	mu       sync.Mutex
	err      error     // the first export it could not read
	bufs     sync.Pool // *bytes.Buffer
}

// otlpSinkMaxBody bounds one export request.
const otlpSinkMaxBody = 32 << 20

func newOTLPSink(b *testing.B) *otlpSink {
	s := &otlpSink{bufs: sync.Pool{New: func() any { return new(bytes.Buffer) }}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" {
			http.Error(w, "only POST /v1/traces", http.StatusNotFound)
			return
		}
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				s.fail(err)
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = zr
		}
		// Into a buffer kept between exports: the sink shares this process, and its cores, with the
		// load's clients, so it makes as little garbage as it can.
		buf := s.bufs.Get().(*bytes.Buffer)
		defer s.bufs.Put(buf)
		buf.Reset()
		if r.ContentLength > 0 && r.ContentLength <= otlpSinkMaxBody {
			buf.Grow(int(r.ContentLength))
		}
		_, err := buf.ReadFrom(io.LimitReader(body, otlpSinkMaxBody+1))
		if err == nil && buf.Len() > otlpSinkMaxBody {
			err = fmt.Errorf("export over %d bytes", otlpSinkMaxBody)
		}
		var n int64
		if err == nil {
			n, err = countSpans(buf.Bytes())
		}
		if err != nil {
			s.fail(err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.spans.Add(n)
		// An empty ExportTraceServiceResponse: everything accepted.
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	}))
	b.Cleanup(srv.Close)
	s.addr = srv.Listener.Addr().String()
	return s
}

func (s *otlpSink) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
	}
}

func (s *otlpSink) failure() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// countSpans counts the spans in an encoded ExportTraceServiceRequest: its resource_spans (field 1),
// their scope_spans (field 2), and their spans (field 2), without decoding the spans themselves.
func countSpans(req []byte) (int64, error) {
	var n int64
	err := eachField(req, 1, func(resourceSpans []byte) error {
		return eachField(resourceSpans, 2, func(scopeSpans []byte) error {
			return eachField(scopeSpans, 2, func([]byte) error { n++; return nil })
		})
	})
	return n, err
}

// eachField calls fn with the value of each length-delimited field numbered num in the message msg,
// skipping the other fields.
func eachField(msg []byte, num protowire.Number, fn func([]byte) error) error {
	for len(msg) > 0 {
		f, typ, l := protowire.ConsumeTag(msg)
		if l < 0 {
			return protowire.ParseError(l)
		}
		msg = msg[l:]
		if f == num && typ == protowire.BytesType {
			v, l := protowire.ConsumeBytes(msg)
			if l < 0 {
				return protowire.ParseError(l)
			}
			if err := fn(v); err != nil {
				return err
			}
			msg = msg[l:]
			continue
		}
		l = protowire.ConsumeFieldValue(f, typ, msg)
		if l < 0 {
			return protowire.ParseError(l)
		}
		msg = msg[l:]
	}
	return nil
}

// TestCountSpans checks the sink's counter on an export it builds field by field: two resources,
// with one and two scopes, of 3, 1 and 2 spans, beside the fields it skips; and that a cut export is
// an error, not a count.
func TestCountSpans(t *testing.T) {
	msg := func(fields ...[]byte) []byte { return slices.Concat(fields...) }
	bytesField := func(num protowire.Number, v []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), v)
	}
	varint := func(num protowire.Number, v uint64) []byte {
		return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), v)
	}
	span := bytesField(2, msg(bytesField(1, []byte("0123456789abcdef")), bytesField(5, []byte("decide")), varint(6, 1)))
	scope := func(spans int) []byte {
		fields := [][]byte{bytesField(1, []byte("scope")), bytesField(3, []byte("https://schema"))}
		for range spans {
			fields = append(fields, span)
		}
		return bytesField(2, msg(fields...))
	}
	resource := func(scopes ...[]byte) []byte {
		return bytesField(1, msg(append([][]byte{bytesField(1, []byte("resource"))}, scopes...)...))
	}
	req := msg(resource(scope(3)), resource(scope(1), scope(2)))
	if n, err := countSpans(req); err != nil || n != 6 {
		t.Fatalf("counted %d spans (%v), want 6", n, err)
	}
	if n, err := countSpans(nil); err != nil || n != 0 {
		t.Fatalf("an empty export: %d spans (%v), want 0", n, err)
	}
	if n, err := countSpans(req[:len(req)-3]); err == nil {
		t.Fatalf("a cut export counted %d spans without an error", n)
	}
}

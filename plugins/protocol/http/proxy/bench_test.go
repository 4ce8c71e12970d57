package proxy

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/svidbroker/svidbroker/broker/audit"
)

// jsonSink encodes each record, as a log would, and keeps nothing.
type jsonSink struct{}

func (jsonSink) Write(rec audit.Record, _ bool) error { return json.NewEncoder(io.Discard).Encode(rec) }
func (jsonSink) Flush() error                         { return nil }
func (jsonSink) AppendAsync(rec audit.Record)         { _ = json.NewEncoder(io.Discard).Encode(rec) }

const benchClients = 16

// load sends n GETs from benchClients keep-alive clients and returns the throughput and the
// latencies' median.
func load(b *testing.B, c *http.Client, base string, n int) (perSec float64, p50 time.Duration) {
	lat := make([][]time.Duration, benchClients)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range benchClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += benchClients {
				t0 := time.Now()
				resp, err := c.Get(fmt.Sprintf("%s/v1/orders/%d", base, i%100))
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Errorf("status %d", resp.StatusCode)
					return
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) == 0 {
		return 0, 0
	}
	return float64(len(all)) / elapsed.Seconds(), all[len(all)/2]
}

// BenchmarkHTTPPaths compares, in one run, 16 keep-alive clients fetching a small JSON document
// directly from the upstream (TLS), through httputil.ReverseProxy (TLS on both sides, the client's
// certificate verified) and through the engine (a permissive policy, records encoded). It reports
// each path's requests per second and median latency, the engine's throughput as a fraction of the
// reverse proxy's, and the median latency it adds to the direct path.
func BenchmarkHTTPPaths(b *testing.B) {
	r := newRig(b, rigOptions{routes: customerRoutes, noJWT: true, config: func(c *Config) { c.Session.Audit = jsonSink{} }})
	r.policy.quiet = true
	direct := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: r.pki.pool, ServerName: "localhost"}, MaxIdleConnsPerHost: benchClients}}

	target, _ := url.Parse(r.up.srv.URL)
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: r.pki.pool, ServerName: "localhost"}, MaxIdleConnsPerHost: 256}
	front := httptest.NewUnstartedServer(rp)
	front.TLS = &tls.Config{Certificates: []tls.Certificate{r.pki.server(b)}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: r.pki.pool}
	front.StartTLS()
	b.Cleanup(front.Close)
	viaRP := r.client(b, agentID)
	viaBroker := r.client(b, agentID)

	n := max(b.N, benchClients)
	load(b, direct, r.up.srv.URL, benchClients*4) // warm the connections
	load(b, viaRP, front.URL, benchClients*4)
	load(b, viaBroker, "https://"+r.addr, benchClients*4)
	b.ResetTimer()
	dRate, dP50 := load(b, direct, r.up.srv.URL, n)
	rpRate, rpP50 := load(b, viaRP, front.URL, n)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	eRate, eP50 := load(b, viaBroker, "https://"+r.addr, n)
	runtime.ReadMemStats(&after)
	// One client alone: the latency the engine adds without queueing behind 15 others.
	single := max(n/benchClients, 50)
	dOne, eOne := p50One(b, direct, r.up.srv.URL, single), p50One(b, viaBroker, "https://"+r.addr, single)
	b.StopTimer()
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64((eOne - dOne).Microseconds()), "broker-added-p50-1client-µs")
	b.ReportMetric(dRate, "direct-req/s")
	b.ReportMetric(rpRate, "revproxy-req/s")
	b.ReportMetric(eRate, "broker-req/s")
	b.ReportMetric(eRate/rpRate, "broker/revproxy")
	b.ReportMetric(eRate/dRate, "broker/direct")
	b.ReportMetric(float64(dP50.Microseconds()), "direct-p50-µs")
	b.ReportMetric(float64(rpP50.Microseconds()), "revproxy-p50-µs")
	b.ReportMetric(float64(eP50.Microseconds()), "broker-p50-µs")
	b.ReportMetric(float64((eP50 - dP50).Microseconds()), "broker-added-p50-µs")
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(n), "process-B/req")
}

// bigCustomers is a JSON list of customers of about size bytes, each with an email and an ssn.
func bigCustomers(size int) []byte {
	var buf bytes.Buffer
	buf.WriteString(`{"items":[`)
	for i := 0; buf.Len() < size; i++ {
		if i > 0 {
			buf.WriteByte(',')
		}
		fmt.Fprintf(&buf, `{"id":%d,"name":"Customer %d","email":"c%d@example.org","ssn":"%03d-%02d-%04d","note":"regular customer since 2019, prefers email"}`,
			i, i, i, i%1000, i%100, i%10000)
	}
	buf.WriteString(`],"next":null}`)
	return buf.Bytes()
}

// BenchmarkHTTPMasked10MB fetches a 10 MB JSON list whose objects each have two masked fields,
// through the engine and directly, in one run: it reports each path's time per response, their
// ratio, and the bytes the process allocated per response on each path (flat in the body size when
// the masking streams).
func BenchmarkHTTPMasked10MB(b *testing.B) {
	body := bigCustomers(10 << 20)
	r := newRig(b, rigOptions{routes: customerRoutes, noJWT: true,
		config: func(c *Config) { c.Session.Audit = jsonSink{} },
		handler: func(w http.ResponseWriter, req *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(body)
		}})
	r.policy.quiet = true
	r.policy.masks = map[string]string{"$.items[*].email": "redact", "$.items[*].ssn": "partial"}
	direct := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: r.pki.pool, ServerName: "localhost"}}}
	viaBroker := r.client(b, agentID)
	fetch := func(c *http.Client, base string) (time.Duration, uint64) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		t0 := time.Now()
		resp, err := c.Get(base + "/v1/customers?limit=100000")
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		d := time.Since(t0)
		runtime.ReadMemStats(&after)
		if resp.StatusCode != 200 || n < 8<<20 {
			b.Fatalf("status %d, %d bytes", resp.StatusCode, n)
		}
		return d, after.TotalAlloc - before.TotalAlloc
	}
	fetch(direct, r.up.srv.URL)
	fetch(viaBroker, "https://"+r.addr)
	b.ResetTimer()
	var dT, eT time.Duration
	var dB, eB uint64
	for range b.N {
		d, m := fetch(direct, r.up.srv.URL)
		dT, dB = dT+d, dB+m
		d, m = fetch(viaBroker, "https://"+r.addr)
		eT, eB = eT+d, eB+m
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(dT.Milliseconds())/n, "direct-ms/resp")
	b.ReportMetric(float64(eT.Milliseconds())/n, "broker-ms/resp")
	b.ReportMetric(float64(eT)/float64(dT), "broker/direct")
	b.ReportMetric(float64(dB)/n, "direct-B/resp")
	b.ReportMetric(float64(eB)/n, "broker-B/resp")
}

// p50One is the median latency of n GETs from one client.
func p50One(b *testing.B, c *http.Client, base string, n int) time.Duration {
	lat := make([]time.Duration, 0, n)
	for i := range n {
		t0 := time.Now()
		resp, err := c.Get(fmt.Sprintf("%s/v1/orders/%d", base, i%100))
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		lat = append(lat, time.Since(t0))
	}
	slices.Sort(lat)
	return lat[len(lat)/2]
}

package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// customerList is a JSON document {"items": [...], "next": null} of at least size bytes, whose
// objects are customers (id, name, email, ssn) with a note, and the number of objects.
func customerList(size int) ([]byte, int) {
	var buf bytes.Buffer
	buf.WriteString(`{"items":[`)
	n := 0
	for ; buf.Len() < size; n++ {
		if n > 0 {
			buf.WriteByte(',')
		}
		fmt.Fprintf(&buf, `{"id":%d,"name":"Customer %d","email":"customer%d@example.org","ssn":"%03d-%02d-%04d",`+
			`"note":"regular customer since 2019, prefers email"}`, n+1, n+1, n+1, 100+n%900, 10+n%90, 1000+n%9000)
	}
	buf.WriteString(`],"next":null}`)
	return buf.Bytes(), n
}

// brokerMem reads the broker process's runtime.MemStats TotalAlloc and HeapSys from its admin
// listener's pprof handler (the allocs profile's text form ends with them).
func brokerMem(b *testing.B, adminAddr string) (totalAlloc, heapSys uint64) {
	resp, err := http.Get("http://" + adminAddr + "/debug/pprof/allocs?debug=1")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("the broker's pprof: %s", resp.Status)
	}
	found := 0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		for _, m := range []struct {
			prefix string
			into   *uint64
		}{{"# TotalAlloc = ", &totalAlloc}, {"# HeapSys = ", &heapSys}} {
			if v, ok := strings.CutPrefix(sc.Text(), m.prefix); ok {
				if *m.into, err = strconv.ParseUint(v, 10, 64); err != nil {
					b.Fatalf("the broker's pprof: %q: %v", sc.Text(), err)
				}
				found++
			}
		}
	}
	if err := sc.Err(); err != nil || found != 2 {
		b.Fatalf("the broker's pprof: TotalAlloc and HeapSys not found (%v)", err)
	}
	return totalAlloc, heapSys
}

// processAlloc is the bytes this process has allocated so far (runtime.MemStats.TotalAlloc).
func processAlloc() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.TotalAlloc
}

// BenchmarkHTTPStackMasked fetches a JSON list of customers of 1 MB and of 10 MB (about 7,900 and
// 79,000 objects), each object with two fields masked for the analyst (email and ssn, hashed with
// the broker's key), from the static upstream on three paths, alternating in the same run:
// directly; through the broker as the analyst (target "static", route GET /v1/customers, the
// analyst pack's rules, audit on); and, to tell the hop from the masking, the same body through the
// broker on a route without fields to mask (GET /v1/orders/{id}, "unmasked"). Each iteration
// fetches each size ten times per path, every 1 MB fetch before any 10 MB fetch.
//
// Read "broker/direct-10MB" (time per response; the goal is at most 1.5), "unmasked/direct-*" (the
// hop alone) and "broker/unmasked-*" (what masking adds to it), and the broker process's memory:
// "broker-B/resp-1MB" and "-10MB" are the bytes it allocated per masked response (runtime
// TotalAlloc, read from its pprof endpoint, the reading's own cost taken off; their ratio is
// "broker-B/resp-10MB/1MB", near 1 when memory is flat in the body size, near 10 when it grows with
// it), and "broker-heapsys-MB-after-1MB" and "-after-10MB" the size of its heap (HeapSys, which
// estimates the largest the heap has been) after the first iteration's 1 MB fetches and then after
// its 10 MB fetches: a broker that held a whole body would grow by several times the body between
// the two. "broker-cpu-ms/resp-*" is the CPU time the broker process used per masked response (from
// /proc). "direct-B/resp-*" is what this process (client and upstream) allocated per
// direct response, for scale. Run it with -benchtime 1x or more.
func BenchmarkHTTPStackMasked(b *testing.B) {
	sizes := []struct {
		name  string
		bytes int
	}{{"1MB", 1 << 20}, {"10MB", 10 << 20}}
	bodies := map[string][]byte{}
	masked, unmasked := map[string]string{}, map[string]string{}
	for _, sz := range sizes {
		body, n := customerList(sz.bytes)
		masked[sz.name] = "/v1/customers?limit=" + strconv.Itoa(n)
		unmasked[sz.name] = "/v1/orders/" + strconv.Itoa(n)
		bodies[masked[sz.name]], bodies[unmasked[sz.name]] = body, body
	}
	f := setupHTTPBench(b, "svidbroker-httpbench-masked", bodies)
	paths := f.paths(b, f.static.URL, f.staticURL, "Bearer bench-client")
	direct, viaBroker := paths[0], paths[2]
	type list struct {
		Items []customer `json:"items"`
	}
	decode := func(p httpPath, uri string) list {
		var l list
		body, status := get(b, p.client, p.base+uri, p.auth)
		if err := json.Unmarshal(body, &l); status != http.StatusOK || err != nil {
			b.Fatalf("%s: GET %s: %d %v\n%s", p.name, uri, status, err, f.brokerLog())
		}
		return l
	}
	for _, sz := range sizes {
		d := decode(direct, masked[sz.name])
		checkMasked(b, sz.name, d.Items, decode(viaBroker, masked[sz.name]).Items)
		if u := decode(viaBroker, unmasked[sz.name]); !slices.Equal(u.Items, d.Items) {
			b.Fatalf("%s: the broker changed a body on a route without fields to mask", sz.name)
		}
	}
	fetch := func(p httpPath, uri string) time.Duration {
		req, err := http.NewRequest(http.MethodGet, p.base+uri, nil)
		if err != nil {
			b.Fatal(err)
		}
		if p.auth != "" {
			req.Header.Set("Authorization", p.auth)
		}
		t0 := time.Now()
		resp, err := p.client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || n < int64(len(bodies[uri]))*8/10 {
			b.Fatalf("%s: GET %s: %d, %d bytes, %v", p.name, uri, resp.StatusCode, n, err)
		}
		return time.Since(t0)
	}
	// What reading the broker's memory statistics allocates in the broker, taken off each reading.
	a0, _ := brokerMem(b, f.broker.AdminAddr)
	a1, _ := brokerMem(b, f.broker.AdminAddr)
	readCost := a1 - a0
	const perIteration = 10
	type result struct {
		direct, broker, unmasked time.Duration
		brokerCPU, unmaskedCPU   time.Duration
		brokerB, directB         uint64
		heapSys                  uint64
		n                        int
	}
	res := map[string]*result{}
	for _, sz := range sizes {
		res[sz.name] = &result{}
	}
	pid := f.broker.PID()
	first := true
	for b.Loop() {
		for _, sz := range sizes {
			r := res[sz.name]
			for i := range perIteration {
				steps := []func(){
					func() {
						before := processAlloc()
						r.direct += fetch(direct, masked[sz.name])
						r.directB += processAlloc() - before
					},
					func() {
						m0, _ := brokerMem(b, f.broker.AdminAddr)
						c0 := processCPU(b, pid)
						r.broker += fetch(viaBroker, masked[sz.name])
						r.brokerCPU += processCPU(b, pid) - c0
						m1, _ := brokerMem(b, f.broker.AdminAddr)
						r.brokerB += m1 - m0 - min(readCost, m1-m0)
					},
					func() {
						c0 := processCPU(b, pid)
						r.unmasked += fetch(viaBroker, unmasked[sz.name])
						r.unmaskedCPU += processCPU(b, pid) - c0
					},
				}
				// Each path goes first, second and third in turn.
				for j := range steps {
					steps[(i+j)%len(steps)]()
				}
				r.n++
			}
			if first {
				_, r.heapSys = brokerMem(b, f.broker.AdminAddr)
			}
		}
		first = false
	}
	b.ReportMetric(0, "ns/op")
	ms := func(d time.Duration, n int) float64 { return float64(d.Microseconds()) / 1e3 / float64(n) }
	for _, sz := range sizes {
		r := res[sz.name]
		n := float64(r.n)
		b.ReportMetric(ms(r.direct, r.n), "direct-ms/resp-"+sz.name)
		b.ReportMetric(ms(r.broker, r.n), "broker-ms/resp-"+sz.name)
		b.ReportMetric(ms(r.unmasked, r.n), "unmasked-ms/resp-"+sz.name)
		b.ReportMetric(float64(r.broker)/float64(r.direct), "broker/direct-"+sz.name)
		b.ReportMetric(float64(r.unmasked)/float64(r.direct), "unmasked/direct-"+sz.name)
		b.ReportMetric(float64(r.broker)/float64(r.unmasked), "broker/unmasked-"+sz.name)
		b.ReportMetric(ms(r.brokerCPU, r.n), "broker-cpu-ms/resp-"+sz.name)
		b.ReportMetric(ms(r.unmaskedCPU, r.n), "unmasked-cpu-ms/resp-"+sz.name)
		b.ReportMetric(float64(r.brokerB)/n, "broker-B/resp-"+sz.name)
		b.ReportMetric(float64(r.directB)/n, "direct-B/resp-"+sz.name)
		b.ReportMetric(float64(r.heapSys)/(1<<20), "broker-heapsys-MB-after-"+sz.name)
	}
	small, large := res["1MB"], res["10MB"]
	b.ReportMetric((float64(large.brokerB)/float64(large.n))/(float64(small.brokerB)/float64(small.n)), "broker-B/resp-10MB/1MB")
}

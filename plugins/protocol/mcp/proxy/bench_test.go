package proxy

import (
	"context"
	"crypto/tls"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/svidbroker/svidbroker/plugins/protocol/mcp/pin"
)

// bearer adds the upstream's token, for clients that reach the shop directly.
type bearer struct{ rt http.RoundTripper }

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+canary)
	return b.rt.RoundTrip(r)
}

// BenchmarkMCPToolCall: 16 concurrent go-sdk clients call get_customer directly against the go-sdk
// server and through the engine (decided, the definition checked against its pin, the ssn masked,
// every call recorded), in the same run: at the default ToolsMaxAge, and listing the tools before
// every call (ToolsEveryCall), in alternating rounds. It reports the engine's time per call over the direct one (ratio) and
// the latency it adds at the median and the 99th percentile.
func BenchmarkMCPToolCall(b *testing.B) {
	b.Run("default", func(b *testing.B) { benchToolCall(b, 0) })
	b.Run("every-call", func(b *testing.B) { benchToolCall(b, ToolsEveryCall) })
}

func benchToolCall(b *testing.B, maxAge time.Duration) {
	const clients = 16
	store, err := pin.NewStore("tools", pin.ModeFirstSight, nil, b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	r := newRig(b, "2025-06-18", func(c *Config) { c.ToolsMaxAge, c.Pins = maxAge, store })
	r.policy.catalog = map[string]CatalogTool{"get_customer": {Name: "get_customer", Text: "json",
		Fields: []CatalogField{{Path: "$.ssn"}, {Path: "$.email"}}}}
	r.policy.masks = map[string]string{"$.ssn": "redact"}
	hc := &http.Client{Transport: bearer{&http.Transport{TLSClientConfig: &tls.Config{RootCAs: r.pki.pool, ServerName: "localhost"},
		MaxIdleConnsPerHost: clients}}}
	direct, through := make([]*mcp.ClientSession, clients), make([]*mcp.ClientSession, clients)
	for i := range clients {
		c := mcp.NewClient(&mcp.Implementation{Name: "bench", Version: "1"}, nil)
		cs, err := c.Connect(context.Background(), &mcp.StreamableClientTransport{Endpoint: r.shop.url, HTTPClient: hc, MaxRetries: -1},
			&mcp.ClientSessionOptions{ProtocolVersion: "2025-06-18"})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { cs.Close() })
		direct[i] = cs
		through[i] = r.connect(b, agentID, "2025-06-18")
	}
	params := &mcp.CallToolParams{Name: "get_customer", Arguments: map[string]any{"id": 1}}
	run := func(sessions []*mcp.ClientSession, n int) (time.Duration, []time.Duration) {
		var mu sync.Mutex
		var lat []time.Duration
		var wg sync.WaitGroup
		start := time.Now()
		for i, cs := range sessions {
			calls := n / clients
			if i < n%clients {
				calls++
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				mine := make([]time.Duration, 0, calls)
				for range calls {
					t0 := time.Now()
					res, err := cs.CallTool(context.Background(), params)
					if err != nil || res.IsError {
						b.Error(err)
						return
					}
					mine = append(mine, time.Since(t0))
				}
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			}()
		}
		wg.Wait()
		slices.Sort(lat)
		return time.Since(start), lat
	}
	pct := func(lat []time.Duration, p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(float64(len(lat))*p))]
	}
	// Direct and through the engine alternate in rounds, so that a machine whose load changes
	// during the run weighs on both alike.
	const rounds = 10
	var dWall, tWall time.Duration
	var dLat, tLat []time.Duration
	b.ResetTimer()
	for i := range rounds {
		n := b.N / rounds
		if i < b.N%rounds {
			n++
		}
		w, l := run(direct, n)
		dWall, dLat = dWall+w, append(dLat, l...)
		w, l = run(through, n)
		tWall, tLat = tWall+w, append(tLat, l...)
	}
	b.StopTimer()
	slices.Sort(dLat)
	slices.Sort(tLat)
	if dWall > 0 {
		b.ReportMetric(float64(tWall)/float64(dWall), "ratio")
	}
	b.ReportMetric(float64(pct(tLat, 0.5)-pct(dLat, 0.5))/float64(time.Microsecond), "added-p50-µs")
	b.ReportMetric(float64(pct(tLat, 0.99)-pct(dLat, 0.99))/float64(time.Microsecond), "added-p99-µs")
}

package e2e

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/svidbroker/svidbroker/test/stack"
)

// The HTTP benchmarks run the real broker binary with the repository's policy packs and its audit
// log in front of two HTTPS upstreams, each beside two baselines in the same run:
//
//   - target "api": the shop API (examples/shopapi), which checks its token in PostgreSQL and reads
//     the customer from it on every request; most of a request's time is the API's own;
//   - target "static": an HTTPS server in this process that serves fixed JSON of the same shape (the
//     shop API's own customer documents, and large customer lists), so that the broker's cost is not
//     hidden behind the API's database work. Its catalog is catalog "api" of policies/catalog.hcl
//     under the name "static", and staticPolicy lets the analyst read it as the analyst pack lets
//     the analyst read "api".
//
// The baselines are the upstream directly (TLS), and httputil.ReverseProxy in this process with TLS
// on both sides (the client's X.509-SVID required and verified, the upstream verified).

// httpBenchClients is the number of concurrent keep-alive clients.
const httpBenchClients = 16

// staticTarget is the broker's http target in front of the static upstream.
const staticTarget = "static"

// staticPolicy lets the analyst use target "static" as the analyst pack lets it use "api": read
// every route, recorded as metadata, personal data hashed, with an api-read token.
const staticPolicy = `// The HTTP benchmarks' target "static" (test/e2e/bench_http_test.go), as analyst.cedar's "api".
@id("bench-analyst-static-connect")
permit (principal in Group::"analysts", action == Action::"connect", resource == Target::"static");

@id("bench-analyst-static-read")
@record("metadata")
permit (principal in Group::"analysts", action == Action::"http:get", resource in Target::"static");

@id("bench-analyst-static-clear-fields")
permit (principal in Group::"analysts", action == Action::"field:read-unmasked", resource in Target::"static")
when { !resource.tags.contains("pii") };

@id("bench-analyst-static-pii-hashed")
@mask("hash")
forbid (principal in Group::"analysts", action == Action::"field:read-unmasked", resource in Target::"static")
when { resource.tags.contains("pii") };

@id("bench-analyst-static-read-role")
permit (principal in Group::"analysts", action == Action::"credential:use", resource == CredentialRole::"static/api-read");
`

// httpFixture is a broker with http targets "api" and "static", their upstreams, and what the
// benchmark's clients need to reach them on each path.
type httpFixture struct {
	s      *stack.Stack
	broker *stack.Broker
	shop   *stack.ShopAPI
	static *httptest.Server
	// apiURL and staticURL are the broker's listeners of targets "api" and "static".
	apiURL, staticURL string
	// shopToken is an api-read token from Vault: what the direct and reverse-proxy paths send to the
	// shop API (through the broker, the broker leases and injects its own).
	shopToken string
	// upstreams trusts the shop API's CA and benchCA; benchCA trusts the static upstream and the
	// reverse proxies.
	upstreams, benchCA *x509.CertPool
	benchCAKey         *ecdsa.PrivateKey
	benchCACert        *x509.Certificate
	// agent is the analyst's X.509-SVID; spireRoots the trust domain's X.509 authorities.
	agent      tls.Certificate
	spireRoots *x509.CertPool
	toBroker   *tls.Config
	// bodies are the static upstream's responses by request URI.
	bodies map[string][]byte
}

// setupHTTPBench starts Vault with the API-token engine, the shop API, the static upstream serving
// bodies (and the shop API's customer documents, copied), and a broker with targets "api" and
// "static", the repository's packs plus staticPolicy, and the audit log (durability commit). All
// stop when the benchmark ends.
func setupHTTPBench(b *testing.B, name string, bodies map[string][]byte) *httpFixture {
	b.Helper()
	s, _ := shared(b)
	ctx := b.Context()
	f := &httpFixture{s: s, bodies: bodies}
	v, root := startVault(b)
	configureVault(b, s, root, "1h", "8h")
	shop, err := s.StartShopAPI(ctx)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { shop.Stop() })
	f.shop = shop
	if err := s.ConfigureAPIVault(ctx, root, shop, "1h", "8h"); err != nil {
		b.Fatal(err)
	}
	sec, err := root.Logical().ReadWithContext(ctx, stack.APIVaultMount+"/creds/api-read")
	if err != nil {
		b.Fatal(err)
	}
	if f.shopToken, _ = sec.Data["token"].(string); f.shopToken == "" {
		b.Fatal("api/creds/api-read returned no token")
	}

	// A throwaway CA for the static upstream and the reverse proxies' listeners.
	ca := mint(b, nil, nil, func(c *x509.Certificate) {
		c.IsCA, c.BasicConstraintsValid = true, true
		c.KeyUsage, c.ExtKeyUsage = x509.KeyUsageCertSign, nil
		c.Subject.CommonName = "http bench CA"
	})
	if f.benchCACert, err = x509.ParseCertificate(ca.Certificate[0]); err != nil {
		b.Fatal(err)
	}
	f.benchCAKey = ca.PrivateKey.(*ecdsa.PrivateKey)
	f.benchCA = x509.NewCertPool()
	f.benchCA.AddCert(f.benchCACert)
	shopCA, err := os.ReadFile(shop.CAFile)
	if err != nil {
		b.Fatal(err)
	}
	f.upstreams = f.benchCA.Clone()
	if !f.upstreams.AppendCertsFromPEM(shopCA) {
		b.Fatalf("no certificate in %s", shop.CAFile)
	}
	// The static upstream serves the shop API's own customer documents, byte for byte.
	shopClient := &http.Client{Timeout: 10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: f.upstreams, ServerName: "localhost"}}}
	for id := 1; id <= stack.SeedCustomers; id++ {
		path := fmt.Sprintf("/v1/customers/%d", id)
		body, status := get(b, shopClient, shop.URL()+path, "Bearer "+f.shopToken)
		if status != http.StatusOK {
			b.Fatalf("GET %s from the shop API: %d %s", path, status, body)
		}
		f.bodies[path] = body
	}
	shopClient.CloseIdleConnections()
	f.static = httptest.NewUnstartedServer(http.HandlerFunc(f.serveStatic))
	f.static.TLS = &tls.Config{Certificates: []tls.Certificate{f.serverCert(b)}}
	f.static.StartTLS()
	b.Cleanup(f.static.Close)
	// The broker runs as its own uid: the static upstream's CA goes where it can read it.
	staticCA := filepath.Join(s.Dir, name+"-static-ca.pem")
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.benchCACert.Raw})
	if err := os.WriteFile(staticCA, caPEM, 0o644); err != nil {
		b.Fatal(err)
	}

	vaultBlock, err := s.VaultBlock(name, v.Addr, v.CACertPEM)
	if err != nil {
		b.Fatal(err)
	}
	apiListen, staticListen := freeAddr(b), freeAddr(b)
	br, err := s.StartBroker(ctx, stack.BrokerOptions{Name: name, Binary: brokerBin,
		PolicyDir: packsWith(b, "bench-static.cedar", staticPolicy),
		Extra: vaultBlock + shop.TargetHCL(apiListen, "") +
			staticTargetHCL(staticListen, f.static.Listener.Addr().String(), staticCA) + staticCatalog(b)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { br.Stop() })
	f.broker, f.apiURL, f.staticURL = br, "https://"+apiListen, "https://"+staticListen

	svids, err := s.FetchSVIDs(ctx, stack.PersonaAnalyst, "")
	if err != nil {
		b.Fatal(err)
	}
	if f.agent, err = tls.X509KeyPair(svids.CertPEM, svids.KeyPEM); err != nil {
		b.Fatal(err)
	}
	svid, err := x509svid.Parse(svids.CertPEM, svids.KeyPEM)
	if err != nil {
		b.Fatal(err)
	}
	bundle, err := x509bundle.Parse(stack.TrustDomain, svids.BundlePEM)
	if err != nil {
		b.Fatal(err)
	}
	f.spireRoots = x509.NewCertPool()
	for _, c := range bundle.X509Authorities() {
		f.spireRoots.AddCert(c)
	}
	f.toBroker = tlsconfig.MTLSClientConfig(svid, bundle, tlsconfig.AuthorizeID(spiffeid.RequireFromString(brokerIDName)))
	return f
}

// brokerLog is the end of the broker's log, for a failure's message.
func (f *httpFixture) brokerLog() string {
	log, err := os.ReadFile(f.broker.LogPath())
	if err != nil {
		return err.Error()
	}
	return "the broker's log ends:\n" + string(log[max(0, len(log)-8<<10):])
}

// serveStatic answers with the body stored for the request URI, after checking that a bearer came
// (through the broker, the token it leased from Vault; on the other paths, the client's).
func (f *httpFixture) serveStatic(w http.ResponseWriter, r *http.Request) {
	if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); !ok || tok == "" {
		http.Error(w, "no bearer", http.StatusUnauthorized)
		return
	}
	body, ok := f.bodies[r.URL.RequestURI()]
	if !ok {
		http.Error(w, "no such document", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body)
}

// serverCert is a certificate for localhost and 127.0.0.1 from the bench CA.
func (f *httpFixture) serverCert(b *testing.B) tls.Certificate {
	return mint(b, f.benchCACert, f.benchCAKey, func(c *x509.Certificate) {
		c.Subject.CommonName = "localhost"
		c.DNSNames = []string{"localhost"}
		c.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	})
}

// staticTargetHCL is http target "static" in front of the static upstream, configured as
// stack.ShopAPI.TargetHCL configures "api": an api-read or api-write token leased from Vault's
// API-token engine per session, for the credential role Cedar picks, injected as a bearer.
func staticTargetHCL(listen, upstream, caFile string) string {
	return fmt.Sprintf(`
# The HTTP benchmarks' static upstream, in the benchmark's own process.
target %q {
  protocol = "http"
  listen   = %q
  backend {
    address            = %q
    ca_file            = %q
    server_name        = "localhost"
    auth               = "vault"
    vault_password_key = "token"
    vault_mount        = %q
  }
}
`, staticTarget, listen, upstream, caFile, stack.APIVaultMount)
}

// staticCatalog is catalog "api" of policies/catalog.hcl (its routes, fields and credential
// roles) under the name "static".
func staticCatalog(b *testing.B) string {
	root, err := stack.RepoRoot()
	if err != nil {
		b.Fatal(err)
	}
	src, err := os.ReadFile(filepath.Join(root, "policies", "catalog.hcl"))
	if err != nil {
		b.Fatal(err)
	}
	file, diags := hclwrite.ParseConfig(src, "catalog.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		b.Fatal(diags)
	}
	found := false
	for _, blk := range file.Body().Blocks() {
		if blk.Type() == "catalog" && slices.Equal(blk.Labels(), []string{stack.APITargetName}) {
			blk.SetLabels([]string{staticTarget})
			found = true
			continue
		}
		file.Body().RemoveBlock(blk)
	}
	if !found {
		b.Fatalf("policies/catalog.hcl has no catalog %q", stack.APITargetName)
	}
	return "\n# Catalog \"api\" of policies/catalog.hcl, for target \"static\".\n" + string(file.Bytes())
}

// freeAddr is a loopback host:port that nothing listened on a moment ago.
func freeAddr(b *testing.B) string {
	port, err := freeLoopbackPort()
	if err != nil {
		b.Fatal(err)
	}
	return "127.0.0.1:" + strconv.Itoa(port)
}

// get fetches url with auth as its Authorization (none when empty) and returns the body and status.
func get(b *testing.B, c *http.Client, url, auth string) ([]byte, int) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		b.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := c.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.Fatal(err)
	}
	return body, resp.StatusCode
}

// httpPath is one way to an upstream: a client with its own keep-alive connections, the base URL,
// and the Authorization it sends (the broker's clients send none).
type httpPath struct {
	name   string
	client *http.Client
	base   string
	auth   string
}

// paths returns, for an upstream at base (https), the direct path, a reverse proxy in front of it,
// and the broker's listener brokerURL. auth is what the client sends on the first two.
func (f *httpFixture) paths(b *testing.B, upstream, brokerURL, auth string) []httpPath {
	transport := func(cfg *tls.Config) *http.Transport {
		return &http.Transport{TLSClientConfig: cfg, MaxIdleConns: 256, MaxIdleConnsPerHost: 256, DisableCompression: true,
			IdleConnTimeout: time.Minute}
	}
	client := func(cfg *tls.Config) *http.Client {
		c := &http.Client{Timeout: time.Minute, Transport: transport(cfg)}
		b.Cleanup(c.CloseIdleConnections)
		return c
	}
	target, err := url.Parse(upstream)
	if err != nil {
		b.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = transport(&tls.Config{RootCAs: f.upstreams, ServerName: "localhost"})
	front := httptest.NewUnstartedServer(rp)
	front.TLS = &tls.Config{Certificates: []tls.Certificate{f.serverCert(b)},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: f.spireRoots}
	front.StartTLS()
	b.Cleanup(front.Close)
	toDirect := &tls.Config{RootCAs: f.upstreams, ServerName: "localhost"}
	toProxy := &tls.Config{RootCAs: f.benchCA, ServerName: "localhost", Certificates: []tls.Certificate{f.agent}}
	return []httpPath{
		{name: "direct", client: client(toDirect), base: upstream, auth: auth},
		{name: "revproxy", client: client(toProxy), base: front.URL, auth: auth},
		{name: "broker", client: client(f.toBroker.Clone()), base: brokerURL},
	}
}

// load sends GETs of paths[i%len(paths)] from clients keep-alive clients for d and returns the number
// of responses, the time they took, and each request's latency in microseconds.
func (p httpPath) load(b *testing.B, clients int, d time.Duration, uris []string) (n int, elapsed time.Duration, lat []float64) {
	lats := make([][]float64, clients)
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for w := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; time.Now().Before(deadline); i += clients {
				req, err := http.NewRequest(http.MethodGet, p.base+uris[i%len(uris)], nil)
				if err != nil {
					b.Error(err)
					return
				}
				if p.auth != "" {
					req.Header.Set("Authorization", p.auth)
				}
				t0 := time.Now()
				resp, err := p.client.Do(req)
				if err != nil {
					b.Errorf("%s: %v", p.name, err)
					return
				}
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK {
					b.Errorf("%s: GET %s: %d %v", p.name, req.URL.Path, resp.StatusCode, err)
					return
				}
				lats[w] = append(lats[w], float64(time.Since(t0).Nanoseconds())/1e3)
			}
		}()
	}
	wg.Wait()
	elapsed = time.Since(start)
	if b.Failed() {
		b.FailNow()
	}
	lat = slices.Concat(lats...)
	return len(lat), elapsed, lat
}

// processCPU is the CPU time process pid's threads have run so far, in nanoseconds: the sum of
// the first field of /proc/<pid>/task/*/schedstat (a thread that ended meanwhile is left out; the
// Go runtime seldom ends threads).
func processCPU(b *testing.B, pid int) time.Duration {
	tasks, err := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/schedstat")
	if err != nil || len(tasks) == 0 {
		b.Fatalf("no /proc/%d/task/*/schedstat (%v)", pid, err)
	}
	var sum time.Duration
	for _, t := range tasks {
		stat, err := os.ReadFile(t)
		if err != nil {
			continue // the thread ended
		}
		run, _, _ := strings.Cut(string(stat), " ")
		ns, err := strconv.ParseInt(run, 10, 64)
		if err != nil {
			b.Fatalf("%s: %q", t, stat)
		}
		sum += time.Duration(ns)
	}
	return sum
}

// dirBytes is the size of the files under dir.
func dirBytes(b *testing.B, dir string) int64 {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err == nil {
			n += info.Size()
		}
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	return n
}

// customer is a customer document of the shop API.
type customer struct {
	ID    int64  `json:"id"`
	Name  string `json:"name"`
	Email string `json:"email"`
	SSN   string `json:"ssn"`
}

// checkMasked fails the benchmark unless direct and masked are the same customers, with email and
// ssn differing and id and name equal: the broker must really mask what it is measured masking.
func checkMasked(b *testing.B, what string, direct, masked []customer) {
	if len(direct) == 0 || len(direct) != len(masked) {
		b.Fatalf("%s: %d customers directly, %d through the broker", what, len(direct), len(masked))
	}
	for i := range direct {
		d, m := direct[i], masked[i]
		if d.ID != m.ID || d.Name != m.Name || d.Email == m.Email || d.SSN == m.SSN || m.Email == "" || m.SSN == "" {
			b.Fatalf("%s: customer %d: the broker did not mask exactly email and ssn: direct %+v, broker %+v", what, i, d, m)
		}
	}
}

// BenchmarkHTTPStackPaths measures GET /v1/customers/{id} (a small JSON document, email and ssn
// hashed for the analyst through the broker) from 16 concurrent keep-alive clients on three paths
// to the same upstream, in the same run: directly (TLS), through httputil.ReverseProxy (TLS on both
// sides, the analyst's SVID required), and through the broker as the analyst (the repository's
// packs, each request decided by Cedar and recorded, durability commit), alternating in rounds of
// 3 s per path (the order reversed every other round) so that other work on the machine hits all
// alike. Sub-benchmark "shopapi" is the shop API, whose token check and query in PostgreSQL on
// every request take most of the time; "static" is a static upstream in this process serving the
// same documents, where the broker's own cost shows.
//
// Read the throughput ratios "broker/revproxy" (the goal is at least 0.8) and "broker/direct", and
// the latency the broker adds at the 50th and 99th percentile beside each baseline under 16 clients
// ("broker-added-p50-us" beside direct, "broker-added-p50-vs-revproxy-us", and p99 alike), and to
// one client alone ("...-1client-us", with no queueing behind other clients; the goal is at most
// 200 µs at p50). "audit-B/req" is what the audit log grew by per request through the broker, and
// "broker-cpu-us/req" the CPU time the broker process used per request under 16 clients (user and
// system, from /proc; less sensitive than throughput to other work on the machine).
// Absolute numbers depend on the machine. Run it with -benchtime 1x: each iteration is two rounds
// of 16 clients and two of one client.
func BenchmarkHTTPStackPaths(b *testing.B) {
	f := setupHTTPBench(b, "svidbroker-httpbench-paths", map[string][]byte{})
	uris := make([]string, stack.SeedCustomers)
	for i := range uris {
		uris[i] = fmt.Sprintf("/v1/customers/%d", i+1)
	}
	for _, up := range []struct {
		name, upstream, broker, auth string
	}{
		{"shopapi", f.shop.URL(), f.apiURL, "Bearer " + f.shopToken},
		{"static", f.static.URL, f.staticURL, "Bearer bench-client"},
	} {
		b.Run(up.name, func(b *testing.B) {
			paths := f.paths(b, up.upstream, up.broker, up.auth)
			// The broker masks: every customer's email and ssn differ from the upstream's.
			var direct, masked []customer
			for _, u := range uris {
				for _, p := range []struct {
					path *httpPath
					into *[]customer
				}{{&paths[0], &direct}, {&paths[2], &masked}} {
					body, status := get(b, p.path.client, p.path.base+u, p.path.auth)
					var c customer
					if err := json.Unmarshal(body, &c); status != http.StatusOK || err != nil {
						b.Fatalf("%s: GET %s: %d %v %s\n%s", p.path.name, u, status, err, body, f.brokerLog())
					}
					*p.into = append(*p.into, c)
				}
			}
			checkMasked(b, up.name, direct, masked)
			for _, p := range paths { // open every client's connection (and the broker's sessions)
				p.load(b, httpBenchClients, time.Second, uris)
			}
			type result struct {
				n       int
				elapsed time.Duration
				lat     []float64
				lat1    []float64
			}
			res := map[string]*result{}
			for _, p := range paths {
				res[p.name] = &result{}
			}
			var audit int64
			var cpu time.Duration
			for b.Loop() {
				for round := range 2 {
					order := slices.Clone(paths)
					if round%2 == 1 {
						slices.Reverse(order)
					}
					for _, p := range order {
						before, cpu0 := int64(0), time.Duration(0)
						if p.name == "broker" {
							before, cpu0 = dirBytes(b, f.broker.AuditDir), processCPU(b, f.broker.PID())
						}
						n, elapsed, lat := p.load(b, httpBenchClients, 3*time.Second, uris)
						if p.name == "broker" {
							audit += dirBytes(b, f.broker.AuditDir) - before
							cpu += processCPU(b, f.broker.PID()) - cpu0
						}
						r := res[p.name]
						r.n, r.elapsed, r.lat = r.n+n, r.elapsed+elapsed, append(r.lat, lat...)
					}
					for _, p := range order {
						_, _, lat := p.load(b, 1, time.Second, uris)
						res[p.name].lat1 = append(res[p.name].lat1, lat...)
					}
				}
			}
			if audit <= 0 {
				b.Fatalf("the broker's audit log in %s did not grow while it served %d requests", f.broker.AuditDir, res["broker"].n)
			}
			b.ReportMetric(0, "ns/op")
			rate := map[string]float64{}
			for _, p := range paths {
				r := res[p.name]
				slices.Sort(r.lat)
				slices.Sort(r.lat1)
				rate[p.name] = float64(r.n) / r.elapsed.Seconds()
				b.ReportMetric(rate[p.name], p.name+"-req/s")
				b.ReportMetric(percentile(r.lat, 0.50), p.name+"-p50-us")
				b.ReportMetric(percentile(r.lat, 0.99), p.name+"-p99-us")
				b.ReportMetric(percentile(r.lat1, 0.50), p.name+"-p50-1client-us")
			}
			b.ReportMetric(rate["broker"]/rate["revproxy"], "broker/revproxy")
			b.ReportMetric(rate["broker"]/rate["direct"], "broker/direct")
			b.ReportMetric(rate["revproxy"]/rate["direct"], "revproxy/direct")
			for _, base := range []string{"direct", "revproxy"} {
				suffix := "-us"
				if base != "direct" {
					suffix = "-vs-" + base + "-us"
				}
				br, bl := res["broker"], res[base]
				for _, q := range []struct {
					name string
					q    float64
				}{{"p50", 0.50}, {"p99", 0.99}} {
					b.ReportMetric(percentile(br.lat, q.q)-percentile(bl.lat, q.q), "broker-added-"+q.name+suffix)
				}
				b.ReportMetric(percentile(br.lat1, 0.50)-percentile(bl.lat1, 0.50), "broker-added-p50-1client"+suffix)
			}
			b.ReportMetric(float64(audit)/float64(res["broker"].n), "audit-B/req")
			b.ReportMetric(float64(cpu.Microseconds())/float64(res["broker"].n), "broker-cpu-us/req")
		})
	}
}

package forwarder

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func TestJWTModeSendsTheBearerInsteadOfTheClientsAuthorization(t *testing.T) {
	s := startJWT(t)
	req, _ := http.NewRequest("GET", "http://"+s.addr+"/v1/customers/1?x=1", nil)
	req.Header.Set("Authorization", "Bearer the-clients-own-token")
	req.Header.Add("Proxy-Authorization", "Basic dXNlcjpwYXNz")
	req.Header.Set("X-Request-Id", "r1")
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok" {
		t.Fatalf("got %d %q, want 200 ok", resp.StatusCode, body)
	}
	toks := s.src.tokens()
	reqs := s.broker.requests()
	if len(reqs) != 1 || len(toks) != 1 {
		t.Fatalf("the broker got %d requests with %d tokens issued, want 1 and 1", len(reqs), len(toks))
	}
	got := reqs[0]
	if len(got.auth) != 1 || got.auth[0] != "Bearer "+toks[0] {
		t.Fatalf("the broker got Authorization %q, want exactly the forwarder's bearer", got.auth)
	}
	if len(got.proxyAuth) != 0 {
		t.Fatalf("the broker got Proxy-Authorization %q, want none", got.proxyAuth)
	}
	if got.clientCerts != 0 {
		t.Fatalf("the forwarder presented %d client certificates in JWT mode, want none", got.clientCerts)
	}
	if got.path != "/v1/customers/1?x=1" || got.header.Get("X-Request-Id") != "r1" || got.host != s.addr {
		t.Fatalf("the broker got %s host %q, X-Request-Id %q; want the client's target, Host and fields", got.path, got.host, got.header.Get("X-Request-Id"))
	}
}

func TestJWTModeKeepsOneBrokerConnectionForAKeptAliveClient(t *testing.T) {
	s := startJWT(t)
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxConnsPerHost: 1}}
	defer c.CloseIdleConnections()
	for i, body := range []string{"", "first body", strings.Repeat("b", 100<<10)} {
		var resp *http.Response
		var err error
		if body == "" {
			resp, err = c.Get("http://" + s.addr + "/echo")
		} else {
			resp, err = c.Post("http://"+s.addr+"/echo", "text/plain", strings.NewReader(body))
		}
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(got) != body {
			t.Fatalf("request %d: got %d and %d bytes back, want 200 and the %d bytes sent", i, resp.StatusCode, len(got), len(body))
		}
	}
	if n := s.broker.conns.Load(); n != 1 {
		t.Fatalf("%d broker connections for one kept-alive client connection, want 1", n)
	}
	reqs := s.broker.requests()
	if len(reqs) != 3 {
		t.Fatalf("the broker got %d requests, want 3", len(reqs))
	}
	for _, r := range reqs[1:] {
		if r.conn != reqs[0].conn {
			t.Fatalf("requests arrived on %s and %s, want one connection", reqs[0].conn, r.conn)
		}
	}
	// One JWT-SVID for the three: it is kept for half its lifetime.
	if n := s.src.fetches.Load(); n != 1 {
		t.Fatalf("%d JWT-SVID fetches for three requests within the token's lifetime, want 1", n)
	}
}

func TestJWTModeStreamsChunkedBodiesBothWays(t *testing.T) {
	s := startJWT(t)
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	// Request bodies of unknown length go out chunked from the client: one within settleLimit, one
	// over it (streamed on, chunked).
	for _, size := range []int{10, settleLimit + 5000} {
		pr, pw := io.Pipe()
		go func() {
			for sent := 0; sent < size; sent += 1000 {
				pw.Write([]byte(strings.Repeat("c", min(1000, size-sent))))
			}
			pw.Close()
		}()
		resp, err := c.Post("http://"+s.addr+"/echo", "text/plain", pr)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || len(got) != size || strings.Trim(string(got), "c") != "" {
			t.Fatalf("chunked request of %d bytes: got %d and %d bytes back", size, resp.StatusCode, len(got))
		}
	}
	reqs := s.broker.requests()
	if reqs[0].header.Get("Content-Length") != "10" {
		t.Fatalf("a short chunked body reached the broker with Content-Length %q, want 10 (read whole, then sent with its length)", reqs[0].header.Get("Content-Length"))
	}
	resp, err := c.Get("http://" + s.addr + "/chunked")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(got) != "piece 0\npiece 1\npiece 2\n" || len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
		t.Fatalf("chunked response: got %q with Transfer-Encoding %v", got, resp.TransferEncoding)
	}
}

func TestJWTModeStreamsServerSentEventsOneByOne(t *testing.T) {
	s := startJWT(t)
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	resp, err := c.Get("http://" + s.addr + "/sse")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	r := bufio.NewReader(resp.Body)
	event := func() string {
		var b strings.Builder
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("reading an event: %v (after %q)", err, b.String())
			}
			if line == "\n" {
				return b.String()
			}
			b.WriteString(line)
		}
	}
	// The broker sends the second event only once the first has reached the client: a forwarder
	// that buffered the response would never deliver the first.
	if got := event(); got != "event: one\ndata: first\n" {
		t.Fatalf("first event %q", got)
	}
	s.broker.next <- struct{}{}
	if got := event(); got != "event: two\ndata: second\n" {
		t.Fatalf("second event %q", got)
	}
}

// rawExchange sends raw bytes to the forwarder and reads one final response.
func rawExchange(t *testing.T, addr, raw string) (*http.Response, string) {
	t.Helper()
	return rawExchangeHalf(t, addr, raw, false)
}

// dialClient connects to the forwarder at addr as a client, with a 30-second deadline on the
// connection.
func dialClient(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	return c
}

// rawExchangeHalf is rawExchange, closing the sending side after raw when halfClose.
func rawExchangeHalf(t *testing.T, addr, raw string, halfClose bool) (*http.Response, string) {
	t.Helper()
	c := dialClient(t, addr)
	defer c.Close()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	if halfClose {
		c.(*net.TCPConn).CloseWrite()
	}
	r := bufio.NewReader(c)
	resp, err := http.ReadResponse(r, nil)
	for err == nil && resp.StatusCode < 200 {
		resp, err = http.ReadResponse(r, nil)
	}
	if err != nil {
		t.Fatalf("reading the forwarder's answer: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

// TestJWTModeRefusesAmbiguousRequestsBeforeTheBroker: a request that two HTTP parsers could frame
// differently, or that JWT mode cannot carry, is answered by the forwarder; the broker is not even
// connected to. The controls, the same requests in their legitimate form, get through.
func TestJWTModeRefusesAmbiguousRequestsBeforeTheBroker(t *testing.T) {
	const h = "Host: 127.0.0.1\r\n"
	cases := []struct {
		name, raw string
		status    int
		says      string
		halfClose bool
	}{
		{"Transfer-Encoding and Content-Length", "POST /echo HTTP/1.1\r\n" + h + "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "both Transfer-Encoding and Content-Length", false},
		{"Content-Length and Transfer-Encoding", "POST /echo HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n", 400, "both Transfer-Encoding and Content-Length", false},
		{"duplicate Content-Length, same value", "POST /echo HTTP/1.1\r\n" + h + "Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400, "2 Content-Length fields", false},
		{"duplicate Content-Length, other value", "POST /echo HTTP/1.1\r\n" + h + "Content-Length: 3\r\nContent-Length: 30\r\n\r\nabc", 400, "2 Content-Length fields", false},
		{"Content-Length list", "POST /echo HTTP/1.1\r\n" + h + "Content-Length: 3, 3\r\n\r\nabc", 400, "not valid HTTP/1.1", false},
		{"signed Content-Length", "POST /echo HTTP/1.1\r\n" + h + "Content-Length: +3\r\n\r\nabc", 400, "not valid HTTP/1.1", false},
		{"obs-fold", "GET / HTTP/1.1\r\n" + h + "X-A: a\r\n b\r\n\r\n", 400, "obs-fold", false},
		{"obs-fold of Transfer-Encoding", "POST /echo HTTP/1.1\r\n" + h + "Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n", 400, "obs-fold", false},
		{"Transfer-Encoding gzip, chunked", "POST /echo HTTP/1.1\r\n" + h + "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501, "other than chunked", false},
		{"Transfer-Encoding twice", "POST /echo HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501, "other than chunked", false},
		{"Transfer-Encoding xchunked", "POST /echo HTTP/1.1\r\n" + h + "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 501, "other than chunked", false},
		{"Transfer-Encoding in HTTP/1.0", "POST /echo HTTP/1.0\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "HTTP/1.0", false},
		{"chunk size not hex", "POST /echo HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", 400, "chunked encoding is malformed", false},
		{"chunk longer than its size", "POST /echo HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n0\r\n\r\n", 400, "chunked encoding is malformed", false},
		{"chunk size overflow", "POST /echo HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\nabc\r\n0\r\n\r\n", 400, "chunked encoding is malformed", false},
		{"chunked body cut short", "POST /echo HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n5\r\nab", 400, "ended before its length", true},
		{"folded trailer", "POST /echo HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: a\r\n b\r\n\r\n", 400, "obs-fold", false},
		{"bare LF line ends", "GET / HTTP/1.1\n" + "Host: 127.0.0.1\n\n" + "GET / HTTP/1.1\r\n" + h + "\r\n", 400, "control character", false},
		{"bare CR in a field", "GET / HTTP/1.1\r\n" + h + "X-A: a\rb\r\n\r\n", 400, "control character", false},
		{"NUL in a field", "GET / HTTP/1.1\r\n" + h + "X-A: a\x00b\r\n\r\n", 400, "control character", false},
		{"space before the colon", "GET / HTTP/1.1\r\n" + h + "Content-Length : 3\r\n\r\nabc", 400, "no space before its colon", false},
		{"no colon", "GET / HTTP/1.1\r\n" + h + "X-A\r\n\r\n", 400, "not a field name", false},
		{"two Host fields", "GET / HTTP/1.1\r\n" + h + "Host: other\r\n\r\n", 400, "2 Host fields", false},
		{"no Host in HTTP/1.1", "GET / HTTP/1.1\r\n\r\n", 400, "without a Host", false},
		{"absolute-form naming another host", "GET http://other.example/ HTTP/1.1\r\n" + h + "\r\n", 400, "another host than the Host field", false},
		{"fragment in the target", "GET /a#b HTTP/1.1\r\n" + h + "\r\n", 400, "fragment", false},
		{"header block over the limit", "GET / HTTP/1.1\r\n" + h + "X-A: " + strings.Repeat("a", 70<<10) + "\r\n\r\n", 431, "over 65536 bytes", false},
		{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, "HTTP/2.0 is not forwarded", false},
		{"WebSocket upgrade", "GET /ws HTTP/1.1\r\n" + h + "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", 501, "upgrades (Connection: Upgrade, such as WebSocket) are not forwarded with --jwt-audience", false},
		{"h2c upgrade", "GET / HTTP/1.1\r\n" + h + "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n", 501, "upgrades", false},
		{"CONNECT", "CONNECT 127.0.0.1:443 HTTP/1.1\r\n" + h + "\r\n", 501, "CONNECT is not forwarded", false},
		{"unknown expectation", "GET / HTTP/1.1\r\n" + h + "Expect: something\r\n\r\n", 417, "100-continue", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := startJWT(t)
			resp, body := rawExchangeHalf(t, s.addr, tc.raw, tc.halfClose)
			if resp.StatusCode != tc.status || !strings.Contains(body, tc.says) || !strings.HasPrefix(body, "svidbroker connect: ") {
				t.Fatalf("got %d %q; want %d saying %q", resp.StatusCode, body, tc.status, tc.says)
			}
			if !resp.Close {
				t.Fatal("the refusal left the connection open; what follows a refused request must never be read as a request")
			}
			if n := s.broker.conns.Load(); n != 0 {
				t.Fatalf("the forwarder connected to the broker %d times for a refused request", n)
			}
			if n := s.src.fetches.Load(); n != 0 {
				t.Fatalf("a JWT-SVID was fetched %d times for a refused request", n)
			}
		})
	}

	// The controls: the legitimate forms of the same requests reach the broker, rewritten.
	controls := []struct {
		name, raw, wantBody, wantTarget string
	}{
		{"Content-Length", "POST /echo HTTP/1.1\r\n" + h + "Content-Length: 3\r\n\r\nabc", "abc", "/echo"},
		{"chunked, with an extension and a trailer", "POST /echo HTTP/1.1\r\n" + h + "Transfer-Encoding: Chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n", "abcde", "/echo"},
		{"absolute-form naming the Host", "GET http://127.0.0.1/a%2Fb?q=1 HTTP/1.1\r\n" + h + "\r\n", "ok", "/a%2Fb?q=1"},
		{"HTTP/1.0 without Host", "GET /x HTTP/1.0\r\n\r\n", "ok", "/x"},
		{"100-continue", "POST /echo HTTP/1.1\r\n" + h + "Expect: 100-continue\r\nContent-Length: 2\r\n\r\nhi", "hi", "/echo"},
	}
	for _, tc := range controls {
		t.Run("control/"+tc.name, func(t *testing.T) {
			s := startJWT(t)
			resp, body := rawExchange(t, s.addr, tc.raw)
			if resp.StatusCode == 100 {
				t.Fatalf("got an interim 100 where a final response was expected")
			}
			if resp.StatusCode != 200 || body != tc.wantBody {
				t.Fatalf("got %d %q, want 200 %q", resp.StatusCode, body, tc.wantBody)
			}
			reqs := s.broker.requests()
			if len(reqs) != 1 || reqs[0].path != tc.wantTarget || reqs[0].header.Get("X-T") != "" || len(reqs[0].header.Values("Transfer-Encoding")) > 0 {
				t.Fatalf("the broker got %+v, want one request for %s, without the client's trailer", reqs, tc.wantTarget)
			}
		})
	}
}

func TestJWTModeRefusedRequestAfterAGoodOneEndsTheConnection(t *testing.T) {
	s := startJWT(t)
	c := dialClient(t, s.addr)
	defer c.Close()
	// A good request, then one whose framing is ambiguous, pipelined; and a third that must never
	// be read as a request.
	io.WriteString(c, "GET /first HTTP/1.1\r\nHost: a\r\n\r\n"+
		"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"+
		"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n")
	r := bufio.NewReader(c)
	for i, want := range []int{200, 400} {
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != want {
			t.Fatalf("response %d: %d, want %d", i, resp.StatusCode, want)
		}
	}
	if _, err := http.ReadResponse(r, nil); err == nil {
		t.Fatal("a third response came: the request after the refused one was served")
	}
	reqs := s.broker.requests()
	if len(reqs) != 1 || reqs[0].path != "/first" {
		t.Fatalf("the broker got %+v, want only /first", reqs)
	}
}

func TestJWTModeTellsTheClientWhenThereIsNoJWTSVID(t *testing.T) {
	s := startJWT(t)
	s.src.fail.Store(true)
	resp, body := rawExchange(t, s.addr, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp.StatusCode != 503 || !strings.Contains(body, `no JWT-SVID for audience "`+jwtAudience+`" from the Workload API`) {
		t.Fatalf("got %d %q, want 503 naming the audience", resp.StatusCode, body)
	}
	if n := s.broker.conns.Load(); n != 0 {
		t.Fatalf("the forwarder connected to the broker without a token (%d connections)", n)
	}
}

// TestJWTModeNeverLogsTheToken: the forwarder logs at debug level for a served request, a refused
// one, a client Authorization dropped and a token refused for its audience; no line holds a token.
func TestJWTModeNeverLogsTheToken(t *testing.T) {
	s := startJWT(t)
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	req, _ := http.NewRequest("GET", "http://"+s.addr+"/", nil)
	req.Header.Set("Authorization", "Bearer client-secret-canary")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	rawExchange(t, s.addr, "GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer client-secret-canary\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
	// A token for another audience is refused, by what it is, without its text.
	wrong := startJWT(t)
	wrong.src.audience = "someone-else"
	resp2, body := rawExchange(t, wrong.addr, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp2.StatusCode != 503 || !strings.Contains(body, `want exactly "`+jwtAudience+`"`) {
		t.Fatalf("a token for another audience: got %d %q, want 503 naming the audience", resp2.StatusCode, body)
	}
	toks := append(s.src.tokens(), wrong.src.tokens()...)
	if len(toks) != 2 {
		t.Fatalf("%d tokens issued, want 2", len(toks))
	}
	for _, setup := range []*jwtSetup{s, wrong} {
		logs := setup.logs.String()
		if !strings.Contains(logs, "request refused") && setup == s {
			t.Fatalf("nothing was logged about the refused request:\n%s", logs)
		}
		for _, tok := range toks {
			// Each part of a JWT, so that a truncated token would be caught too.
			for part := range strings.SplitSeq(tok, ".") {
				if strings.Contains(logs, part) {
					t.Fatalf("the logs hold part of a token:\n%s", logs)
				}
			}
		}
		if strings.Contains(logs, "client-secret-canary") || strings.Contains(body, toks[1][:20]) {
			t.Fatalf("a credential reached the logs or the answer:\n%s", logs)
		}
	}
}

func TestJWTModeConfig(t *testing.T) {
	ca := newTestCA(t, "example.org")
	src := newFakeJWTSource(t, ca.td)
	base := Config{Protocol: HTTP, Broker: "127.0.0.1:1", BrokerID: spiffeid.RequireFromPath(ca.td, brokerPath), Bundles: ca.bundle(),
		JWTAudience: jwtAudience, JWT: src}
	cases := []struct {
		name  string
		tweak func(*Config)
		want  string
	}{
		{"postgres", func(c *Config) { c.Protocol = Postgres }, "a JWT audience is for protocol http only"},
		{"no source", func(c *Config) { c.JWT = nil }, "no JWT-SVID source"},
		{"no bundles", func(c *Config) { c.Bundles = nil }, "no X.509 bundle source"},
		{"tiny header limit", func(c *Config) { c.MaxHeaderBytes = 100 }, "at least 4096"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			tc.tweak(&cfg)
			if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want %q", err, tc.want)
			}
		})
	}
	// The control: without an X.509-SVID source, JWT mode is valid.
	f, err := New(base)
	if err != nil {
		t.Fatal(err)
	}
	if f.tls.GetClientCertificate != nil || len(f.tls.Certificates) != 0 {
		t.Fatal("JWT mode's TLS configuration offers a client certificate")
	}
}

// TestJWTModePassesOnAClientLeavingAHeldRequest: a client that closes its connection while the
// broker holds its request (for approval) is seen by the broker as gone, as a direct client would be.
func TestJWTModePassesOnAClientLeavingAHeldRequest(t *testing.T) {
	s := startJWT(t)
	c, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "GET /hold HTTP/1.1\r\nHost: a\r\n\r\n")
	// Once the broker has the request, the client leaves.
	select {
	case <-s.broker.held:
	case <-time.After(30 * time.Second):
		t.Fatal("the held request never reached the broker")
	}
	c.Close()
	select {
	case <-s.broker.withdrawn:
	case <-time.After(30 * time.Second):
		t.Fatal("the broker never saw the client of its held request go away")
	}
}

// TestJWTModeClosesWhenTheBrokerAnswersBeforeTheBody: a broker that refuses a request before its
// body came leaves the client connection's framing unknown; the client is told Connection: close.
func TestJWTModeClosesWhenTheBrokerAnswersBeforeTheBody(t *testing.T) {
	s := startJWT(t)
	resp, body := rawExchange(t, s.addr, "POST /refuse HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 100\r\n\r\n")
	if resp.StatusCode != 403 || body != "refused\n" || !resp.Close {
		t.Fatalf("got %d %q close=%v, want the broker's 403 and Connection: close", resp.StatusCode, body, resp.Close)
	}
	// The control: the same request with its body, to a path that reads it, keeps the connection.
	resp, body = rawExchange(t, s.addr, "POST /echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi")
	if resp.StatusCode != 200 || body != "hi" || resp.Close {
		t.Fatalf("got %d %q close=%v, want 200 hi on a kept connection", resp.StatusCode, body, resp.Close)
	}
}

// TestJWTModeClosesTheClientWhenTheBrokerClosesAnIdleConnection: the forwarder keeps one broker
// connection per client connection, so when the broker ends an idle one, the client's ends too, and
// the client's next connection gets a new broker connection.
func TestJWTModeClosesTheClientWhenTheBrokerClosesAnIdleConnection(t *testing.T) {
	s := startJWTIdle(t, 50*time.Millisecond)
	c := dialClient(t, s.addr)
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	r := bufio.NewReader(c)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != 200 || resp.Close {
		t.Fatalf("got %d close=%v, want 200 on a kept connection", resp.StatusCode, resp.Close)
	}
	// The client idles; the broker closes its end; the client's connection ends.
	if n, err := r.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("the idle client connection: read %d bytes, %v; want it closed (EOF)", n, err)
	}
	resp2, body := rawExchange(t, s.addr, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp2.StatusCode != 200 || body != "ok" || s.broker.conns.Load() != 2 {
		t.Fatalf("the next connection: %d %q over broker connection %d; want 200 ok over a second", resp2.StatusCode, body, s.broker.conns.Load())
	}
}

// longMalformedChunkedRequest is a POST whose chunked body streams past settleLimit (three 32 KiB
// chunks) before a malformed chunk.
func longMalformedChunkedRequest() string {
	var b strings.Builder
	b.WriteString("POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
	for range 3 {
		b.WriteString("8000\r\n" + strings.Repeat("x", 0x8000) + "\r\n")
	}
	b.WriteString("zz\r\nbad\r\n0\r\n\r\n")
	return b.String()
}

// TestJWTModeCutsALongChunkedBodyThatTurnsMalformed: past settleLimit a chunked body streams; a
// malformed chunk after that point ends the broker connection mid-request, so the broker never gets
// a complete request, and the client gets 400.
func TestJWTModeCutsALongChunkedBodyThatTurnsMalformed(t *testing.T) {
	s := startJWT(t)
	resp, body := rawExchange(t, s.addr, longMalformedChunkedRequest())
	if resp.StatusCode != 400 || !strings.HasPrefix(body, "svidbroker connect: ") || !strings.Contains(body, "chunked encoding is malformed") {
		t.Fatalf("got %d %q, want the forwarder's 400 naming the chunked encoding", resp.StatusCode, body)
	}
	if reqs := s.broker.requests(); len(reqs) != 0 {
		t.Fatalf("the broker completed %d requests, want none", len(reqs))
	}
	// The control: the same body, well formed, arrives whole.
	good := strings.Replace(longMalformedChunkedRequest(), "zz\r\nbad\r\n", "3\r\nend\r\n", 1)
	resp, body = rawExchange(t, s.addr, good)
	if resp.StatusCode != 200 || len(body) != 3*0x8000+3 || !strings.HasSuffix(body, "xend") {
		t.Fatalf("got %d and %d bytes, want 200 and the whole body", resp.StatusCode, len(body))
	}
}

// heldClose is a connection to the broker whose Close waits until release is closed. Closing a TLS
// connection sends close_notify before closing the socket, so while the close is held the broker
// sees the request cut, and what it answers to the cut still reaches the forwarder.
type heldClose struct {
	net.Conn
	release <-chan struct{}
}

func (h *heldClose) Close() error {
	<-h.release
	return h.Conn.Close()
}

// startJWTHeldClose is startJWT with each broker connection's close held until free is called
// (at the latest when the test ends).
func startJWTHeldClose(t *testing.T) (s *jwtSetup, free func()) {
	t.Helper()
	release := make(chan struct{})
	var once sync.Once
	free = func() { once.Do(func() { close(release) }) }
	s = startJWT(t, func(c *Config) {
		c.wrapBrokerConn = func(n net.Conn) net.Conn { return &heldClose{Conn: n, release: release} }
	})
	t.Cleanup(free) // runs before startJWT's, which waits for the connections to end
	return s, free
}

// TestJWTModeRefusesAMalformedBodyThoughTheBrokerAnswersTheCut: the forwarder cuts a streamed body
// that turns malformed, and the broker answers the cut (400, unexpected EOF); that answer, read
// while the forwarder is still closing the connection, must not reach the client in place of the
// forwarder's own refusal. The close is held so that the broker's answer is always read.
func TestJWTModeRefusesAMalformedBodyThoughTheBrokerAnswersTheCut(t *testing.T) {
	s, free := startJWTHeldClose(t)
	resp, body := rawExchange(t, s.addr, longMalformedChunkedRequest())
	free()
	if resp.StatusCode != 400 || !strings.HasPrefix(body, "svidbroker connect: ") || !strings.Contains(body, "chunked encoding is malformed") {
		t.Fatalf("got %d %q, want the forwarder's 400 naming the chunked encoding", resp.StatusCode, body)
	}
	if reqs := s.broker.requests(); len(reqs) != 0 {
		t.Fatalf("the broker completed %d requests, want none", len(reqs))
	}
}

// TestJWTModeRefusesAMalformedBodyAfterA100Continue: a body sent after the broker's 100 Continue
// (relayed to the client) that turns malformed is refused by the forwarder: an interim response
// leaves room for the forwarder's final one, and the broker's answer to the cut is not relayed.
func TestJWTModeRefusesAMalformedBodyAfterA100Continue(t *testing.T) {
	s, free := startJWTHeldClose(t)
	c := dialClient(t, s.addr)
	defer c.Close()
	io.WriteString(c, "POST /echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n")
	r := bufio.NewReader(c)
	resp, err := http.ReadResponse(r, nil)
	if err != nil || resp.StatusCode != 100 {
		t.Fatalf("got %v, %v before the body; want the broker's 100 Continue", resp, err)
	}
	// The body only now: the 100 Continue has been relayed before the body turns malformed.
	io.WriteString(c, "5\r\nhello\r\nzz\r\nbad\r\n0\r\n\r\n")
	resp, err = http.ReadResponse(r, nil)
	if err != nil {
		free()
		t.Fatalf("no final response after the 100 Continue: %v; want the forwarder's 400", err)
	}
	body, _ := io.ReadAll(resp.Body)
	free()
	if resp.StatusCode != 400 || !strings.HasPrefix(string(body), "svidbroker connect: ") || !strings.Contains(string(body), "chunked encoding is malformed") {
		t.Fatalf("got %d %q, want the forwarder's 400 naming the chunked encoding", resp.StatusCode, body)
	}
	if reqs := s.broker.requests(); len(reqs) != 0 {
		t.Fatalf("the broker completed %d requests, want none", len(reqs))
	}
}

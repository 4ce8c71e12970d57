package forwarder

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
)

// fakeJWTSource issues real signed JWT-SVIDs for the audience asked, as the Workload API does.
type fakeJWTSource struct {
	id      spiffeid.ID
	ttl     time.Duration
	key     *ecdsa.PrivateKey
	fetches atomic.Int32
	fail    atomic.Bool
	// audience, if set, is the audience put in the token whatever was asked.
	audience string

	mu     sync.Mutex
	issued []string
}

func newFakeJWTSource(t testing.TB, td spiffeid.TrustDomain) *fakeJWTSource {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &fakeJWTSource{id: spiffeid.RequireFromPath(td, forwarderPath), ttl: time.Hour, key: key}
}

func (s *fakeJWTSource) FetchJWTSVID(ctx context.Context, p jwtsvid.Params) (*jwtsvid.SVID, error) {
	s.fetches.Add(1)
	if s.fail.Load() {
		return nil, errors.New("rpc error: code = PermissionDenied desc = no identity issued")
	}
	aud := p.Audience
	if s.audience != "" {
		aud = s.audience
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: s.key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "k1"))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tok, err := jwt.Signed(sig).Claims(jwt.Claims{Subject: s.id.String(), Audience: jwt.Audience{aud},
		IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(s.ttl))}).Serialize()
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.issued = append(s.issued, tok)
	s.mu.Unlock()
	return jwtsvid.ParseInsecure(tok, []string{aud})
}

func (s *fakeJWTSource) tokens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.issued...)
}

// seen is one request as the JWT broker received it.
type seen struct {
	method, path, host string
	auth, proxyAuth    []string
	clientCerts        int
	body               string
	header             http.Header
	conn               string
}

// jwtBroker is a real HTTPS server with the broker's SVID that does not ask for a client
// certificate, as the broker's HTTP listener must allow for bearer callers. It records each request
// and serves a few paths: /echo (the body back), /chunked (a body flushed in pieces), /sse (two
// events, the second only once the test says the first arrived), /refuse (403 without reading the
// body), /hold (no answer until the client goes away), anything else "ok".
type jwtBroker struct {
	addr  string
	conns atomic.Int32
	next  chan struct{} // /sse: let the second event go
	// held gets a signal when a /hold request arrives; withdrawn its path once its client went away.
	held      chan struct{}
	withdrawn chan string

	mu   sync.Mutex
	reqs []seen
}

const jwtAudience = "svidbroker-http"

// newJWTBroker starts the broker; idle, if not zero, is how long it keeps an idle connection.
func newJWTBroker(t *testing.T, ca *testCA, idle time.Duration) *jwtBroker {
	t.Helper()
	b := &jwtBroker{next: make(chan struct{}, 1), held: make(chan struct{}, 1), withdrawn: make(chan string, 1)}
	tc := tlsconfig.TLSServerConfig(ca.svid(t, brokerPath))
	tc.NextProtos = []string{"h2", "http/1.1"}
	srv := &http.Server{
		Handler:           http.HandlerFunc(b.serve),
		TLSConfig:         tc,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       idle,
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				b.conns.Add(1)
			}
		},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(tls.NewListener(ln, tc))
	t.Cleanup(func() { srv.Close() })
	b.addr = ln.Addr().String()
	return b
}

func (b *jwtBroker) serve(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/refuse": // answers without reading the body
		http.Error(w, "refused", http.StatusForbidden)
		return
	case "/hold": // a request held until its client goes away
		b.held <- struct{}{}
		<-r.Context().Done()
		b.withdrawn <- r.URL.Path
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
	if err != nil {
		http.Error(w, "body: "+err.Error(), 400)
		return
	}
	b.mu.Lock()
	b.reqs = append(b.reqs, seen{method: r.Method, path: r.URL.RequestURI(), host: r.Host, auth: r.Header.Values("Authorization"),
		proxyAuth: r.Header.Values("Proxy-Authorization"), clientCerts: len(r.TLS.PeerCertificates), body: string(body),
		header: r.Header.Clone(), conn: r.RemoteAddr})
	b.mu.Unlock()
	fl := w.(http.Flusher)
	switch r.URL.Path {
	case "/echo":
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(body)
	case "/chunked":
		for i := range 3 {
			fmt.Fprintf(w, "piece %d\n", i)
			fl.Flush()
		}
	case "/sse":
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "event: one\ndata: first\n\n")
		fl.Flush()
		select {
		case <-b.next:
		case <-r.Context().Done():
			return
		}
		fmt.Fprint(w, "event: two\ndata: second\n\n")
	default:
		fmt.Fprint(w, "ok")
	}
}

func (b *jwtBroker) requests() []seen {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]seen(nil), b.reqs...)
}

// jwtSetup is a JWT broker and a forwarder in JWT mode in front of it.
type jwtSetup struct {
	broker *jwtBroker
	src    *fakeJWTSource
	addr   string
	logs   *syncBuffer
}

// syncBuffer is a bytes.Buffer for a logger written from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startJWT(t *testing.T, tweak ...func(*Config)) *jwtSetup {
	t.Helper()
	return startJWTIdle(t, 0, tweak...)
}

// startJWTIdle is startJWT with a broker that closes connections idle for brokerIdle.
func startJWTIdle(t *testing.T, brokerIdle time.Duration, tweak ...func(*Config)) *jwtSetup {
	t.Helper()
	ca := newTestCA(t, "example.org")
	s := &jwtSetup{broker: newJWTBroker(t, ca, brokerIdle), src: newFakeJWTSource(t, ca.td), logs: &syncBuffer{}}
	cfg := Config{Protocol: HTTP, Broker: s.broker.addr, BrokerID: spiffeid.RequireFromPath(ca.td, brokerPath),
		Bundles: ca.bundle(), JWTAudience: jwtAudience, JWT: s.src, DialTimeout: 5 * time.Second, HandshakeTimeout: 5 * time.Second,
		Logger: slog.New(slog.NewTextHandler(io.MultiWriter(s.logs, t.Output()), &slog.HandlerOptions{Level: slog.LevelDebug}))}
	for _, f := range tweak {
		f(&cfg)
	}
	fwd, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fwd.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s
}

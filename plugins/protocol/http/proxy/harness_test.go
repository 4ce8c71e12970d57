package proxy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/broker/credential"
	"github.com/svidbroker/svidbroker/broker/identity"
	"github.com/svidbroker/svidbroker/broker/session"
	"github.com/svidbroker/svidbroker/plugins/protocol/http/route"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

const (
	agentID  = "spiffe://example.org/agent/support"
	audience = "svidbroker"
	// canary is the upstream credential the lease carries: it must never reach the agent or a record.
	canary = "canary-token-6f1d2a"
)

// pki is a test CA for the broker's SVID, the agents' SVIDs and the upstream's certificate.
type pki struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newPKI(t testing.TB, trustDomain string) *pki {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, BasicConstraintsValid: true, IsCA: true,
		URIs: []*url.URL{{Scheme: "spiffe", Host: trustDomain}}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &pki{cert: cert, key: key, pool: pool}
}

func (p *pki) issue(t testing.TB, tmpl *x509.Certificate) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(12 * time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

func (p *pki) svid(t testing.TB, id string) tls.Certificate {
	u, _ := url.Parse(id)
	return p.issue(t, &x509.Certificate{URIs: []*url.URL{u}, DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}})
}

func (p *pki) server(t testing.TB) tls.Certificate {
	return p.issue(t, &x509.Certificate{DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
}

// seen is a request as the upstream received it.
type seen struct {
	Method, RequestURI string
	Header             http.Header
	Body               string
}

// upstream is a real HTTPS server that records what reaches it; handler answers.
type upstream struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []seen
}

func newUpstream(t testing.TB, p *pki, handler http.HandlerFunc) *upstream {
	u := &upstream{}
	u.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.got = append(u.got, seen{r.Method, r.RequestURI, r.Header.Clone(), string(b)})
		u.mu.Unlock()
		handler(w, r)
	}))
	u.srv.TLS = &tls.Config{Certificates: []tls.Certificate{p.server(t)}}
	u.srv.StartTLS()
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) requests() []seen {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]seen(nil), u.got...)
}

// fakePolicy decides with functions: allow by default, fields masked per masks (field path ->
// strategy).
type fakePolicy struct {
	mu      sync.Mutex
	deny    func(Request) error
	approve func(Request) bool // true: the decision requires approval
	masks   map[string]string
	record  string
	asked   []Request
	quiet   bool // benchmarks: keep no requests
	// fieldMask, if set, decides fields in place of masks; fieldAsks counts FieldMasks' calls.
	fieldMask func(r Request, field string) string
	fieldAsks atomic.Int64
}

func (f *fakePolicy) HTTP(c authz.Connect, r Request, ap authz.ApprovalState) (authz.Decision, error) {
	if !f.quiet {
		f.mu.Lock()
		f.asked = append(f.asked, r)
		f.mu.Unlock()
	}
	d := authz.Decision{ID: "d1", Allow: true, Reasons: []string{"permit-test"}, Obligations: authz.Obligations{Record: f.record}}
	if f.deny != nil {
		if err := f.deny(r); err != nil {
			return authz.Decision{ID: "d2", Reasons: []string{"forbid-test"}}, err
		}
	}
	if f.approve != nil && f.approve(r) && ap.State != "approved" {
		d.Obligations.Approval = "required"
	}
	return d, nil
}

func (f *fakePolicy) FieldMasks(c authz.Connect, r Request, fields []string, ap authz.ApprovalState, def string) []string {
	f.fieldAsks.Add(1)
	strategies := make([]string, len(fields))
	for i, field := range fields {
		strategies[i] = f.masks[field]
		if f.fieldMask != nil {
			strategies[i] = f.fieldMask(r, field)
		}
	}
	return strategies
}

func (f *fakePolicy) requests() []Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Request(nil), f.asked...)
}

// memSink keeps records.
type memSink struct {
	mu   sync.Mutex
	recs []audit.Record
	fail atomic.Bool // Write fails: the store is unavailable
}

func (s *memSink) Write(rec audit.Record, _ bool) error {
	if s.fail.Load() {
		return errors.New("disk full")
	}
	s.AppendAsync(rec)
	return nil
}
func (s *memSink) Flush() error { return nil }
func (s *memSink) AppendAsync(rec audit.Record) {
	s.mu.Lock()
	s.recs = append(s.recs, rec)
	s.mu.Unlock()
}

func (s *memSink) all() []audit.Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]audit.Record(nil), s.recs...)
}

// rig is an engine serving on loopback in front of an upstream.
type rig struct {
	pki     *pki
	addr    string
	up      *upstream
	policy  *fakePolicy
	sink    *memSink
	jwtKey  *ecdsa.PrivateKey
	engine  *Engine
	leases  int
	leaseMu sync.Mutex
}

type rigOptions struct {
	routes  []route.Block
	handler http.HandlerFunc
	noJWT   bool
	config  func(*Config)
}

func (r *rig) leased() int {
	r.leaseMu.Lock()
	defer r.leaseMu.Unlock()
	return r.leases
}

func newRig(t testing.TB, o rigOptions) *rig {
	t.Helper()
	p := newPKI(t, "example.org")
	r := &rig{pki: p, policy: &fakePolicy{}, sink: &memSink{}}
	if o.handler == nil {
		o.handler = func(w http.ResponseWriter, req *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"id":1,"name":"Ada","email":"ada@example.org","ssn":"123-45-6789"}`)
		}
	}
	r.up = newUpstream(t, p, o.handler)
	table, err := route.NewTable(o.routes)
	if err != nil {
		t.Fatal(err)
	}
	leases := credential.NewManager(tokenProvider{}, nil, slog.New(slog.DiscardHandler), time.Second, 0)
	brokerCert := p.svid(t, "spiffe://example.org/broker")
	src := &x509svid.SVID{ID: spiffeid.RequireFromString("spiffe://example.org/broker"), Certificates: []*x509.Certificate{brokerCert.Leaf},
		PrivateKey: brokerCert.PrivateKey.(*ecdsa.PrivateKey)}
	bundle := x509bundle.FromX509Authorities(td, []*x509.Certificate{p.cert})
	cfg := Config{
		Target:    "api",
		ServerTLS: ServerTLS(src, bundle, []spiffeid.TrustDomain{td}),
		Session: session.Config{
			Authorize: func(context.Context, authz.Connect) (authz.Decision, error) {
				return authz.Decision{ID: "c1", Allow: true}, nil
			},
			Audit: r.sink,
			Lease: func(ctx context.Context, c authz.Connect, role string, end func(error)) (*credential.Session, error) {
				r.leaseMu.Lock()
				r.leases++
				r.leaseMu.Unlock()
				return leases.Start(ctx, c.Peer.ID.String(), credential.Source{Path: "api/creds/api-read"}, end)
			},
		},
		Routes: table, Policy: r.policy, Logger: slog.New(slog.DiscardHandler),
		Upstream: Upstream{Address: strings.TrimPrefix(r.up.srv.URL, "https://"), TLS: &tls.Config{RootCAs: p.pool, ServerName: "localhost"},
			CredentialPrefix: "Bearer "},
	}
	if !o.noJWT {
		r.jwtKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		jb := jwtbundle.New(td)
		if err := jb.AddJWTAuthority("k1", r.jwtKey.Public()); err != nil {
			t.Fatal(err)
		}
		cfg.JWT, err = identity.NewJWTVerifier(identity.JWTConfig{Bundles: jb, Audience: audience})
		if err != nil {
			t.Fatal(err)
		}
	}
	if o.config != nil {
		o.config(&cfg)
	}
	r.engine, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); ln.Close(); wg.Wait(); r.engine.Close() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				hctx, hcancel := context.WithTimeout(ctx, 5*time.Second)
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				s, err := r.engine.Handshake(hctx, c)
				hcancel()
				if err != nil {
					return
				}
				if err := s.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
					t.Logf("session: %v", err)
				}
			}()
		}
	}()
	return r
}

// tlsConfig is an agent's: with its SVID when id is set, verifying the broker as localhost.
func (r *rig) tlsConfig(t testing.TB, id string) *tls.Config {
	c := &tls.Config{RootCAs: r.pki.pool, ServerName: "localhost", MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
	if id != "" {
		c.Certificates = []tls.Certificate{r.pki.svid(t, id)}
	}
	return c
}

func (r *rig) client(t testing.TB, id string) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: r.tlsConfig(t, id), MaxIdleConnsPerHost: 64}}
}

func (r *rig) url(path string) string { return "https://" + r.addr + path }

// token signs a JWT-SVID for sub with the rig's key (claims modified by mod).
func (r *rig) token(t testing.TB, sub string, mod func(map[string]any)) string {
	return signJWT(t, r.jwtKey, jose.ES256, sub, mod)
}

func signJWT(t testing.TB, key any, alg jose.SignatureAlgorithm, sub string, mod func(map[string]any)) string {
	t.Helper()
	c := map[string]any{"sub": sub, "aud": []string{audience}, "exp": time.Now().Add(5 * time.Minute).Unix(), "iat": time.Now().Unix()}
	if mod != nil {
		mod(c)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "k1"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(signer).Claims(c).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func get(t testing.TB, c *http.Client, req *http.Request) (int, string, http.Header) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the body: %v", err)
	}
	return resp.StatusCode, string(b), resp.Header
}

func newReq(t testing.TB, method, url, body string) *http.Request {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	return req
}

var customerRoutes = []route.Block{
	{Pattern: "GET /v1/customers/{id}", Tags: []string{"pii"}, Fields: []route.FieldBlock{
		{Path: "$.email", Tags: []string{"pii"}}, {Path: "$.ssn", Tags: []string{"pii", "sensitive"}}}},
	{Pattern: "GET /v1/customers", Query: []string{"limit"}, Fields: []route.FieldBlock{
		{Path: "$.items[*].email", Tags: []string{"pii"}}, {Path: "$.items[*].ssn", Tags: []string{"pii"}}}},
	{Pattern: "GET /v1/customers/{id}/events", Fields: []route.FieldBlock{{Path: "$.ssn", Tags: []string{"pii"}}}},
	{Pattern: "GET /v1/orders/{id}"},
	{Pattern: "DELETE /v1/orders/{id}"},
	{Pattern: "POST /v1/refunds", Body: map[string]string{"order_id": "Long", "amount": "Long", "reason": "String"}},
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// tokenProvider leases the canary token.
type tokenProvider struct{}

func (tokenProvider) Acquire(context.Context, credential.Source) (*credential.Lease, error) {
	return &credential.Lease{ID: "api/creds/api-read/l1", Password: canary, TTL: time.Hour, Renewable: true}, nil
}
func (tokenProvider) Renew(context.Context, string) (time.Duration, error) { return time.Hour, nil }
func (tokenProvider) Revoke(context.Context, string) error                 { return nil }

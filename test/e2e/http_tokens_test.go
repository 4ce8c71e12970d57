package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"

	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/test/stack"
)

// jwtSVID is a JWT-SVID for audience that the real SPIRE agent issued to the persona's process.
func (h *httpStack) jwtSVID(t testing.TB, persona, audience string) string {
	t.Helper()
	got, err := h.s.FetchSVIDs(t.Context(), persona, audience)
	if err != nil {
		t.Fatal(err)
	}
	if got.JWT == "" {
		t.Fatalf("no JWT-SVID for %s", persona)
	}
	return got.JWT
}

// noCertClient reaches the api target over TLS with no client certificate.
func (h *httpStack) noCertClient(t testing.TB) *http.Client {
	t.Helper()
	f := clientFiles(t, h.s, stack.PersonaSupport) // for the trust bundle only
	c := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsFor(t, nil, f.RootCert)}}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func b64(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

// TestHTTPJWTSVIDBearer: a JWT-SVID the real SPIRE agent issued to the analyst for the broker's
// audience is the principal of a request with no client certificate; its record names the analyst.
func TestHTTPJWTSVIDBearer(t *testing.T) {
	h := httpShared(t)
	tok := h.jwtSVID(t, stack.PersonaAnalyst, stack.JWTAudience)
	r := h.do(t, h.noCertClient(t), "GET", "/v1/orders/10", http.Header{"Authorization": {"Bearer " + tok}}, "")
	if r.status != http.StatusOK || !strings.Contains(r.body, `"id":10`) {
		t.Fatalf("GET /v1/orders/10 with the analyst's JWT-SVID: %s", r)
	}
	r = h.do(t, h.noCertClient(t), "GET", "/v1/orders/10", nil, "")
	if r.status != http.StatusUnauthorized || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
		t.Fatalf("no certificate and no bearer: %s (WWW-Authenticate %q), want 401 with a Bearer challenge", r, r.header.Get("WWW-Authenticate"))
	}
	rec := h.waitRecord(t, "the analyst's JWT request", func(r2 audit.Record) bool {
		return r2.Statement != nil && r2.Statement.Text == "GET /v1/orders/10" && r2.SPIFFEID == mustPersonaID(t, h.s, stack.PersonaAnalyst)
	})
	if rec.Decision == nil || !rec.Decision.Allow {
		t.Fatalf("record %+v", rec)
	}
}

// TestHTTPBadBearersRefused: bearers that are not a valid JWT-SVID of the trust domain for the
// broker's audience are refused 401, even on a connection with support's valid client certificate,
// and the API sees none of them (no token lookup in PostgreSQL's log); the control, support's own
// request on the same kind of connection, reaches it.
func TestHTTPBadBearersRefused(t *testing.T) {
	h := httpShared(t)
	up := h.watchUpstream(t)
	analyst := mustPersonaID(t, h.s, stack.PersonaAnalyst)
	got, err := h.s.FetchSVIDs(t.Context(), stack.PersonaAnalyst, "some-other-service")
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := jwtbundle.Parse(stack.TrustDomain, got.JWTBundle)
	if err != nil {
		t.Fatal(err)
	}
	var kid string
	var bundleKey []byte
	for k, pub := range bundle.JWTAuthorities() {
		kid = k
		bundleKey, err = x509.MarshalPKIXPublicKey(pub)
		break
	}
	if err != nil || bundleKey == nil {
		t.Fatalf("the JWT bundle's key: %v", err)
	}
	now := time.Now()
	claims := func(sub string, exp time.Time) map[string]any {
		return map[string]any{"sub": sub, "aud": []string{stack.JWTAudience}, "exp": exp.Unix(), "iat": now.Add(-time.Minute).Unix()}
	}
	hs256 := func() string {
		signing := b64(map[string]string{"alg": "HS256", "typ": "JWT", "kid": kid}) + "." + b64(claims(analyst, now.Add(5*time.Minute)))
		m := hmac.New(sha256.New, bundleKey)
		m.Write([]byte(signing))
		return signing + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
	}()
	selfSigned := func(sub, keyID string, exp time.Time) string {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", keyID))
		if err != nil {
			t.Fatal(err)
		}
		tok, err := jwt.Signed(sig).Claims(claims(sub, exp)).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	cases := []struct{ name, auth string }{
		{"alg none", "Bearer " + b64(map[string]string{"alg": "none", "typ": "JWT"}) + "." + b64(claims(analyst, now.Add(5*time.Minute))) + "."},
		{"HS256 keyed with the bundle's public key", "Bearer " + hs256},
		{"real JWT-SVID for another audience", "Bearer " + got.JWT},
		// Signed by a key of the run, under the bundle's key ID: the signature fails before the expiry
		// is looked at; TestHTTPExpiredJWTSVIDRefused expires one SPIRE signed.
		{"expired", "Bearer " + selfSigned(analyst, kid, now.Add(-time.Hour))},
		{"our trust domain, a key not in the bundle", "Bearer " + selfSigned(analyst, kid, now.Add(5*time.Minute))},
		{"another trust domain", "Bearer " + selfSigned("spiffe://other.example/agent/analyst", "other", now.Add(5*time.Minute))},
		{"garbage", "Bearer not.a.jwt"},
		{"not Bearer", "Basic YWdlbnQ6cGFzc3dvcmQ="},
		{"empty bearer", "Bearer "},
	}
	// On connections with support's client certificate: a bad bearer is not ignored in favour of it.
	c := h.httpClient(t, stack.PersonaSupport)
	row := h.customer(t, 1)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mark := up.mark(t)
			r := h.do(t, c, "GET", "/v1/customers/1", http.Header{"Authorization": {tc.auth}}, "")
			if r.status != http.StatusUnauthorized || !strings.Contains(r.body, "svidbroker:") {
				t.Fatalf("got %s, want the broker's 401", r)
			}
			if strings.Contains(r.body, row.Name) || strings.Contains(r.body, row.SSN[len(row.SSN)-4:]) {
				t.Fatalf("the refusal holds customer data: %s", r.body)
			}
			if n := up.lookupsSince(t, mark); len(n) != 0 {
				t.Fatalf("the API served %d request(s) for a refused bearer", len(n))
			}
		})
	}
	mark := up.mark(t)
	if r := h.do(t, c, "GET", "/v1/customers/1", nil, ""); r.status != http.StatusOK {
		t.Fatalf("control: support's request with its certificate: %s", r)
	}
	if n := up.lookupsSince(t, mark); len(n) != 1 {
		t.Fatalf("control: the API shows %d lookups for one request, want 1", len(n))
	}
}

// TestHTTPExpiredJWTSVIDRefused: a JWT-SVID that SPIRE signed, for the broker's audience, is refused
// 401 once expired. A persona whose entry issues 10-second JWT-SVIDs gets one; while it is valid the
// broker authenticates it (the persona has no policy, so the request is refused 403 by policy, not
// 401); once past its expiry and the verifier's one-minute clock-skew leeway, the same token is 401.
// No policy permits the persona anything, so neither reaches the API.
func TestHTTPExpiredJWTSVIDRefused(t *testing.T) {
	h := httpShared(t)
	t.Parallel() // it mostly waits; its requests never reach the API
	p := stack.Persona{Name: "shortjwt", ID: spiffeid.RequireFromSegments(stack.TrustDomain, "agent", "shortjwt"), UID: 30060,
		JWTSVIDTTL: 10 * time.Second}
	if _, err := h.s.AddPersona(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	got, err := h.s.FetchSVIDs(t.Context(), p.Name, stack.JWTAudience)
	if err != nil {
		t.Fatal(err)
	}
	svid, err := jwtsvid.ParseInsecure(got.JWT, []string{stack.JWTAudience})
	if err != nil {
		t.Fatal(err)
	}
	if svid.ID != p.ID || time.Until(svid.Expiry) > 15*time.Second {
		t.Fatalf("JWT-SVID for %s expiring %s, want a short-lived one for %s", svid.ID, svid.Expiry, p.ID)
	}
	c := h.noCertClient(t)
	auth := http.Header{"Authorization": {"Bearer " + got.JWT}}
	if r := h.do(t, c, "GET", "/v1/orders/10", auth, ""); r.status != http.StatusForbidden {
		t.Fatalf("the valid JWT-SVID: %s, want 403 from policy (authenticated, permitted nothing)", r)
	}
	// go-jose's default leeway: one minute past exp.
	time.Sleep(time.Until(svid.Expiry.Add(time.Minute + 2*time.Second)))
	r := h.do(t, c, "GET", "/v1/orders/10", auth, "")
	if r.status != http.StatusUnauthorized || !strings.Contains(r.body, "expired") {
		t.Fatalf("the expired JWT-SVID: %s, want 401 saying it expired", r)
	}
}

package identity

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

var (
	td      = spiffeid.RequireTrustDomainFromString("example.org")
	partner = spiffeid.RequireTrustDomainFromString("partner.example")
)

const (
	audience = "svidbroker"
	issuer   = "https://oidc-discovery.example.org"
)

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// sign makes a JWT with key (a private key, or an HMAC secret for HS* algorithms).
func sign(t *testing.T, key any, alg jose.SignatureAlgorithm, kid string, claims map[string]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// unsigned builds a token with "alg": "none", which no library will sign.
func unsigned(t *testing.T, claims map[string]any) string {
	t.Helper()
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	return enc(map[string]string{"alg": "none", "typ": "JWT", "kid": "k1"}) + "." + enc(claims) + "."
}

func claims(mod func(map[string]any)) map[string]any {
	c := map[string]any{
		"sub": "spiffe://example.org/agent/analyst",
		"aud": []string{audience},
		"exp": time.Now().Add(5 * time.Minute).Unix(),
		"iat": time.Now().Unix(),
		"iss": issuer,
	}
	if mod != nil {
		mod(c)
	}
	return c
}

func TestJWTVerification(t *testing.T) {
	key := newKey(t)
	bundle := jwtbundle.New(td)
	if err := bundle.AddJWTAuthority("k1", key.Public()); err != nil {
		t.Fatal(err)
	}
	v, err := NewJWTVerifier(JWTConfig{Bundles: bundle, Audience: audience, Issuer: issuer})
	if err != nil {
		t.Fatal(err)
	}
	other := newKey(t)
	cases := []struct {
		name    string
		token   string
		wantErr string
	}{
		{"valid", sign(t, key, jose.ES256, "k1", claims(nil)), ""},
		{"alg none", unsigned(t, claims(nil)), "token refused"},
		{"HS256 keyed with the public key", "", "token refused"},
		{"missing exp", sign(t, key, jose.ES256, "k1", claims(func(c map[string]any) { delete(c, "exp") })), "no exp"},
		{"expired", sign(t, key, jose.ES256, "k1", claims(func(c map[string]any) { c["exp"] = time.Now().Add(-time.Hour).Unix() })), "expired"},
		{"unknown kid", sign(t, key, jose.ES256, "k2", claims(nil)), `no JWT authority "k2"`},
		{"signed by another key", sign(t, other, jose.ES256, "k1", claims(nil)), "unable to get claims"},
		{"two audiences", sign(t, key, jose.ES256, "k1", claims(func(c map[string]any) { c["aud"] = []string{audience, "other"} })), "want exactly"},
		{"wrong audience", sign(t, key, jose.ES256, "k1", claims(func(c map[string]any) { c["aud"] = []string{"other"} })), "want exactly"},
		{"no audience", sign(t, key, jose.ES256, "k1", claims(func(c map[string]any) { delete(c, "aud") })), "want exactly"},
		{"wrong issuer", sign(t, key, jose.ES256, "k1", claims(func(c map[string]any) { c["iss"] = "https://evil" })), "issuer"},
		{"no issuer", sign(t, key, jose.ES256, "k1", claims(func(c map[string]any) { delete(c, "iss") })), "issuer"},
		{"subject not a SPIFFE ID", sign(t, key, jose.ES256, "k1", claims(func(c map[string]any) { c["sub"] = "alice" })), "not a SPIFFE ID"},
		{"trust domain without a bundle", sign(t, key, jose.ES256, "k1", claims(func(c map[string]any) { c["sub"] = "spiffe://evil.org/agent/analyst" })), "no bundle"},
		{"oversized", strings.Repeat("a", MaxJWTBytes+1), "larger than"},
		{"garbage", "not.a.jwt", "token refused"},
	}
	// An HS256 token keyed with the bundle's public key bytes: the classic algorithm-confusion attack.
	hsKey, _ := json.Marshal(key.Public())
	cases[2].token = sign(t, hsKey, jose.HS256, "k1", claims(nil))
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			peer, err := v.Verify(t.Context(), tc.token)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if peer.ID.String() != "spiffe://example.org/agent/analyst" || peer.Expires.Before(time.Now()) {
					t.Fatalf("peer %+v", peer)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted; want an error containing %q", tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %q does not contain %q", err, tc.wantErr)
			}
			if len(tc.token) > 20 && strings.Contains(err.Error(), tc.token) {
				t.Fatal("the error contains the token")
			}
		})
	}
}

func TestVerifyRequestHeaders(t *testing.T) {
	key := newKey(t)
	bundle := jwtbundle.New(td)
	_ = bundle.AddJWTAuthority("k1", key.Public())
	v, _ := NewJWTVerifier(JWTConfig{Bundles: bundle, Audience: audience})
	good := sign(t, key, jose.ES256, "k1", claims(nil))
	cases := map[string]struct {
		headers []string
		ok      bool
	}{
		"bearer":             {[]string{"Bearer " + good}, true},
		"lower-case scheme":  {[]string{"bearer " + good}, true},
		"none":               {nil, false},
		"basic":              {[]string{"Basic " + good}, false},
		"two headers":        {[]string{"Bearer " + good, "Bearer " + good}, false},
		"bearer and nothing": {[]string{"Bearer "}, false},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			for _, h := range tc.headers {
				r.Header.Add("Authorization", h)
			}
			_, err := v.VerifyRequest(r)
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

// oidcServer is a real OIDC discovery endpoint, as SPIRE's oidc-discovery-provider serves one: a
// discovery document and a JWKS, over HTTPS.
func oidcServer(t *testing.T, key *ecdsa.PrivateKey) *httptest.Server {
	t.Helper()
	var srv *httptest.Server
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{
			"issuer":                                srv.URL,
			"jwks_uri":                              srv.URL + "/keys",
			"authorization_endpoint":                "",
			"response_types_supported":              []string{"id_token"},
			"subject_types_supported":               []string{"public"},
			"id_token_signing_alg_values_supported": []string{"ES256"},
		})
	})
	mux.HandleFunc("/keys", func(w http.ResponseWriter, _ *http.Request) {
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "p1", Algorithm: "ES256", Use: "sig"}}})
	})
	srv = httptest.NewTLSServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestJWTVerificationThroughOIDCDiscovery(t *testing.T) {
	key := newKey(t)
	srv := oidcServer(t, key)
	v, err := NewJWTVerifier(JWTConfig{Audience: audience, OIDC: map[spiffeid.TrustDomain]string{partner: srv.URL}, HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	partnerClaims := func(mod func(map[string]any)) map[string]any {
		return claims(func(c map[string]any) {
			c["sub"], c["iss"] = "spiffe://partner.example/agent/x", srv.URL
			if mod != nil {
				mod(c)
			}
		})
	}
	cases := []struct {
		name    string
		token   string
		wantErr string
	}{
		{"valid", sign(t, key, jose.ES256, "p1", partnerClaims(nil)), ""},
		{"wrong issuer", sign(t, key, jose.ES256, "p1", partnerClaims(func(c map[string]any) { c["iss"] = "https://evil" })), "different provider"},
		{"wrong audience", sign(t, key, jose.ES256, "p1", partnerClaims(func(c map[string]any) { c["aud"] = []string{"x"} })), "want exactly"},
		{"expired", sign(t, key, jose.ES256, "p1", partnerClaims(func(c map[string]any) { c["exp"] = time.Now().Add(-time.Hour).Unix() })), "expired"},
		{"signed by another key", sign(t, newKey(t), jose.ES256, "p1", partnerClaims(nil)), "signature"},
		{"alg none", unsigned(t, partnerClaims(nil)), "token refused"},
		{"subject in another trust domain", sign(t, key, jose.ES256, "p1", partnerClaims(func(c map[string]any) { c["sub"] = "spiffe://example.org/agent/x" })), "no bundle"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			peer, err := v.Verify(t.Context(), tc.token)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if peer.ID.String() != "spiffe://partner.example/agent/x" {
					t.Fatalf("peer %v", peer.ID)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

package vault_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	vaultapi "github.com/hashicorp/vault/api"

	"github.com/svidbroker/svidbroker/test/vault"
)

func start(t *testing.T) (*vault.Server, *vaultapi.Client) {
	t.Helper()
	srv, err := vault.Start(vault.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	root := client(t, srv)
	root.SetToken(srv.RootToken)
	return srv, root
}

func client(t *testing.T, srv *vault.Server) *vaultapi.Client {
	t.Helper()
	cfg := vaultapi.DefaultConfig()
	cfg.Address = srv.Addr
	cfg.MaxRetries = 0
	if err := cfg.ConfigureTLS(&vaultapi.TLSConfig{CACertBytes: srv.CACertPEM}); err != nil {
		t.Fatal(err)
	}
	c, err := vaultapi.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.ClearToken()
	return c
}

func write(t *testing.T, c *vaultapi.Client, path string, data map[string]any) {
	t.Helper()
	if _, err := c.Logical().WriteWithContext(t.Context(), path, data); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
}

func status(err error) int {
	var re *vaultapi.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode
	}
	return 0
}

// signer makes JWTs with one P-256 key, named kid.
type signer struct {
	key *ecdsa.PrivateKey
	kid string
}

func newSigner(t *testing.T, kid string) *signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &signer{key: k, kid: kid}
}

func (s *signer) sign(t *testing.T, claims map[string]any) string {
	t.Helper()
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: s.key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", s.kid))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jwt.Signed(sig).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func (s *signer) pubPEM(t *testing.T) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(s.key.Public())
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func (s *signer) jwk() jose.JSONWebKey {
	return jose.JSONWebKey{Key: s.key.Public(), KeyID: s.kid, Algorithm: string(jose.ES256), Use: "sig"}
}

func svidClaims(sub, aud string, exp time.Time) map[string]any {
	return map[string]any{"sub": sub, "aud": []string{aud}, "exp": exp.Unix(), "iat": time.Now().Unix()}
}

// TestJWTLogin covers the jwt auth method with static keys: a JWT-SVID-shaped token logs in to the
// role that binds its audience and subject, and every mismatch is refused with 400, as in Vault.
func TestJWTLogin(t *testing.T) {
	srv, root := start(t)
	ctx := t.Context()
	key, other := newSigner(t, "k1"), newSigner(t, "k2")
	if err := root.Sys().EnableAuthWithOptionsWithContext(ctx, "spiffe-jwt", &vaultapi.EnableAuthOptions{Type: "jwt"}); err != nil {
		t.Fatal(err)
	}
	if _, err := root.Logical().WriteWithContext(ctx, "auth/spiffe-jwt/config", map[string]any{
		"jwt_validation_pubkeys": []string{key.pubPEM(t)}, "jwks_url": "https://127.0.0.1:1/keys"}); status(err) != http.StatusBadRequest {
		t.Fatalf("two key sources: %v", err)
	}
	write(t, root, "auth/spiffe-jwt/config", map[string]any{"jwt_validation_pubkeys": []string{key.pubPEM(t)}})
	const broker = "spiffe://example.org/svidbroker"
	write(t, root, "auth/spiffe-jwt/role/broker", map[string]any{"role_type": "jwt", "bound_audiences": []string{"vault"},
		"bound_subject": broker, "user_claim": "sub", "token_policies": []string{"broker"}, "token_ttl": "10m"})
	write(t, root, "auth/spiffe-jwt/role/oidc-only", map[string]any{"user_claim": "sub", "bound_audiences": []string{"vault"}})
	write(t, root, "auth/spiffe-jwt/role/claims", map[string]any{"role_type": "jwt", "bound_audiences": []string{"vault"},
		"user_claim": "sub", "bound_claims_type": "glob", "bound_claims": map[string]any{"sub": "spiffe://example.org/team-*"}})
	write(t, root, "auth/spiffe-jwt/role/no-aud", map[string]any{"role_type": "jwt", "user_claim": "sub"})

	c := client(t, srv)
	login := func(role, raw string) (*vaultapi.Secret, error) {
		return c.Logical().WriteWithContext(ctx, "auth/spiffe-jwt/login", map[string]any{"role": role, "jwt": raw})
	}
	secret, err := login("broker", key.sign(t, svidClaims(broker, "vault", time.Now().Add(5*time.Minute))))
	if err != nil {
		t.Fatal(err)
	}
	if secret.Auth == nil || secret.Auth.LeaseDuration != 600 || !secret.Auth.Renewable || secret.Auth.Metadata["role"] != "broker" {
		t.Fatalf("login answer %+v", secret.Auth)
	}
	c.SetToken(secret.Auth.ClientToken)
	self, err := c.Auth().Token().LookupSelfWithContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := self.TokenPolicies(); len(p) != 1 || p[0] != "broker" {
		t.Fatalf("policies %v", p)
	}
	c.ClearToken()

	for name, tc := range map[string]struct{ role, raw, want string }{
		"wrong audience":    {"broker", key.sign(t, svidClaims(broker, "db", time.Now().Add(time.Minute))), "audience"},
		"wrong subject":     {"broker", key.sign(t, svidClaims("spiffe://example.org/agent", "vault", time.Now().Add(time.Minute))), "bound subject"},
		"expired":           {"broker", key.sign(t, svidClaims(broker, "vault", time.Now().Add(-2*time.Minute))), "expired"},
		"no expiry":         {"broker", key.sign(t, map[string]any{"sub": broker, "aud": "vault"}), "expiry"},
		"other key":         {"broker", other.sign(t, svidClaims(broker, "vault", time.Now().Add(time.Minute))), "signature"},
		"not a JWT":         {"broker", "not.a.jwt", "validating"},
		"unknown role":      {"nobody", key.sign(t, svidClaims(broker, "vault", time.Now().Add(time.Minute))), "could not be found"},
		"oidc role type":    {"oidc-only", key.sign(t, svidClaims(broker, "vault", time.Now().Add(time.Minute))), "oidc"},
		"unbound claim":     {"claims", key.sign(t, svidClaims("spiffe://example.org/agent", "vault", time.Now().Add(time.Minute))), "bound claim"},
		"aud without bound": {"no-aud", key.sign(t, svidClaims(broker, "vault", time.Now().Add(time.Minute))), "no audiences bound"},
	} {
		_, err := login(tc.role, tc.raw)
		if status(err) != http.StatusBadRequest || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want 400 mentioning %q", name, err, tc.want)
		}
	}
	if _, err := login("claims", key.sign(t, svidClaims("spiffe://example.org/team-a/agent", "vault", time.Now().Add(time.Minute)))); err != nil {
		t.Errorf("glob bound claim: %v", err)
	}
}

// TestJWTKeySources covers keys fetched from a JWKS URL (with its CA, following a key rotation) and
// through OIDC discovery, whose issuer the token must name.
func TestJWTKeySources(t *testing.T) {
	srv, root := start(t)
	ctx := t.Context()
	k1, k2 := newSigner(t, "k1"), newSigner(t, "k2")
	current := []jose.JSONWebKey{k1.jwk()}
	var issuer string
	mux := http.NewServeMux()
	mux.HandleFunc("/keys", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: current})
	})
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": issuer, "jwks_uri": issuer + "/keys"})
	})
	keys := httptest.NewTLSServer(mux)
	defer keys.Close()
	issuer = keys.URL
	caPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: keys.Certificate().Raw}))

	for _, mnt := range []string{"jwks", "oidc"} {
		if err := root.Sys().EnableAuthWithOptionsWithContext(ctx, mnt, &vaultapi.EnableAuthOptions{Type: "jwt"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := root.Logical().WriteWithContext(ctx, "auth/jwks/config", map[string]any{"jwks_url": keys.URL + "/keys"}); status(err) != http.StatusBadRequest {
		t.Fatalf("a JWKS server not trusted: %v", err)
	}
	write(t, root, "auth/jwks/config", map[string]any{"jwks_url": keys.URL + "/keys", "jwks_ca_pem": caPEM})
	write(t, root, "auth/oidc/config", map[string]any{"oidc_discovery_url": keys.URL, "oidc_discovery_ca_pem": caPEM})
	for _, mnt := range []string{"jwks", "oidc"} {
		write(t, root, "auth/"+mnt+"/role/r", map[string]any{"role_type": "jwt", "bound_audiences": "vault", "user_claim": "sub"})
	}
	c := client(t, srv)
	login := func(mnt string, claims map[string]any, s *signer) error {
		_, err := c.Logical().WriteWithContext(ctx, "auth/"+mnt+"/login", map[string]any{"role": "r", "jwt": s.sign(t, claims)})
		return err
	}
	claims := svidClaims("spiffe://example.org/a", "vault", time.Now().Add(time.Minute))
	if err := login("jwks", claims, k1); err != nil {
		t.Fatal(err)
	}
	if err := login("jwks", claims, k2); status(err) != http.StatusBadRequest {
		t.Fatalf("a key not in the set: %v", err)
	}
	current = []jose.JSONWebKey{k2.jwk()} // rotation: the next login sees the new set
	if err := login("jwks", claims, k2); err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	if err := login("oidc", claims, k2); status(err) != http.StatusBadRequest {
		t.Fatalf("discovery: a token without the issuer: %v", err)
	}
	claims["iss"] = keys.URL
	if err := login("oidc", claims, k2); err != nil {
		t.Fatalf("discovery: %v", err)
	}
}

// TestKVv2 covers kv version 2 through the client's KVv2 helper, and the ACL on its data paths.
func TestKVv2(t *testing.T) {
	srv, root := start(t)
	ctx := t.Context()
	if err := root.Sys().MountWithContext(ctx, "secret", &vaultapi.MountInput{Type: "kv", Options: map[string]string{"version": "1"}}); status(err) != http.StatusBadRequest {
		t.Fatalf("kv version 1: %v", err)
	}
	if err := root.Sys().MountWithContext(ctx, "secret", &vaultapi.MountInput{Type: "kv", Options: map[string]string{"version": "2"}}); err != nil {
		t.Fatal(err)
	}
	if err := root.Sys().MountWithContext(ctx, "secret/nested", &vaultapi.MountInput{Type: "kv-v2"}); status(err) != http.StatusBadRequest {
		t.Fatalf("a mount inside a mount: %v", err)
	}
	kv := root.KVv2("secret")
	if _, err := kv.Put(ctx, "pg/app", map[string]any{"username": "app", "password": "one"}); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "pg/app", map[string]any{"username": "app", "password": "two"}, vaultapi.WithCheckAndSet(0)); status(err) != http.StatusBadRequest {
		t.Fatalf("check-and-set against the wrong version: %v", err)
	}
	v2, err := kv.Put(ctx, "pg/app", map[string]any{"username": "app", "password": "two"}, vaultapi.WithCheckAndSet(1))
	if err != nil || v2.VersionMetadata.Version != 2 {
		t.Fatalf("second version: %+v %v", v2, err)
	}
	got, err := kv.Get(ctx, "pg/app")
	if err != nil || got.Data["password"] != "two" || got.VersionMetadata.Version != 2 {
		t.Fatalf("latest: %+v %v", got, err)
	}
	if old, err := kv.GetVersion(ctx, "pg/app", 1); err != nil || old.Data["password"] != "one" {
		t.Fatalf("version 1: %+v %v", old, err)
	}
	if _, err := kv.Get(ctx, "pg/none"); !errors.Is(err, vaultapi.ErrSecretNotFound) {
		t.Fatalf("a missing secret: %v", err)
	}
	meta, err := kv.GetMetadata(ctx, "pg/app")
	if err != nil || meta.CurrentVersion != 2 || len(meta.Versions) != 2 {
		t.Fatalf("metadata: %+v %v", meta, err)
	}
	list, err := root.Logical().ListWithContext(ctx, "secret/metadata/pg")
	if err != nil || list == nil || len(list.Data["keys"].([]any)) != 1 {
		t.Fatalf("list: %+v %v", list, err)
	}

	// A token whose policy reads only secret/data/pg/* reads that and nothing else.
	if err := root.Sys().PutPolicyWithContext(ctx, "app", `path "secret/data/pg/*" { capabilities = ["read"] }`); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "other", map[string]any{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	c := jwtClient(t, srv, root, "app")
	if _, err := c.KVv2("secret").Get(ctx, "pg/app"); err != nil {
		t.Fatalf("an allowed read: %v", err)
	}
	if _, err := c.KVv2("secret").Get(ctx, "other"); status(err) != http.StatusForbidden {
		t.Fatalf("a read outside the policy: %v", err)
	}
	if _, err := c.KVv2("secret").Put(ctx, "pg/app", map[string]any{"password": "x"}); status(err) != http.StatusForbidden {
		t.Fatalf("a write the policy does not grant: %v", err)
	}

	if err := kv.Delete(ctx, "pg/app"); err != nil {
		t.Fatal(err)
	}
	if got, err := kv.Get(ctx, "pg/app"); err == nil && got.Data != nil {
		t.Fatalf("a deleted version was read: %+v", got)
	}
}

// TestThrottleSealAndRevoke covers the failure hooks tests use: 429 for the next n requests, 503
// while sealed, and revoked tokens answering 403.
func TestThrottleSealAndRevoke(t *testing.T) {
	srv, root := start(t)
	ctx := t.Context()
	if err := root.Sys().MountWithContext(ctx, "secret", &vaultapi.MountInput{Type: "kv-v2"}); err != nil {
		t.Fatal(err)
	}
	srv.Throttle(2)
	for range 2 {
		if _, err := root.KVv2("secret").Get(ctx, "x"); status(err) != http.StatusTooManyRequests {
			t.Fatalf("throttled: %v", err)
		}
	}
	if _, err := root.KVv2("secret").Get(ctx, "x"); !errors.Is(err, vaultapi.ErrSecretNotFound) {
		t.Fatalf("after the throttle: %v", err)
	}
	srv.Seal()
	if h, err := root.Sys().HealthWithContext(ctx); status(err) != http.StatusServiceUnavailable && (err != nil || !h.Sealed) {
		t.Fatalf("sealed health: %+v %v", h, err)
	}
	srv.Unseal()

	c := jwtClient(t, srv, root, "")
	srv.RevokeTokens()
	if _, err := c.Auth().Token().LookupSelfWithContext(ctx); status(err) != http.StatusForbidden {
		t.Fatalf("a revoked token: %v", err)
	}
	if _, err := root.Auth().Token().LookupSelfWithContext(ctx); err != nil {
		t.Fatalf("the root token was revoked too: %v", err)
	}
}

// jwtClient enables the jwt method with a key of its own and a role giving policy (if any), and
// returns a client logged in through it.
func jwtClient(t *testing.T, srv *vault.Server, root *vaultapi.Client, policy string) *vaultapi.Client {
	t.Helper()
	ctx := t.Context()
	key := newSigner(t, "k")
	if err := root.Sys().EnableAuthWithOptionsWithContext(ctx, "jwt", &vaultapi.EnableAuthOptions{Type: "jwt"}); err != nil {
		t.Fatal(err)
	}
	write(t, root, "auth/jwt/config", map[string]any{"jwt_validation_pubkeys": key.pubPEM(t)})
	write(t, root, "auth/jwt/role/r", map[string]any{"role_type": "jwt", "bound_audiences": "vault", "user_claim": "sub", "token_policies": policy})
	c := client(t, srv)
	secret, err := c.Logical().WriteWithContext(ctx, "auth/jwt/login", map[string]any{"role": "r",
		"jwt": key.sign(t, svidClaims("spiffe://example.org/a", "vault", time.Now().Add(time.Minute)))})
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(secret.Auth.ClientToken)
	return c
}

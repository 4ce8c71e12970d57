package vault_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	vaultapi "github.com/hashicorp/vault/api"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/svidbroker/svidbroker/broker/credential"
	"github.com/svidbroker/svidbroker/plugins/credential/vault"
	testvault "github.com/svidbroker/svidbroker/test/vault"
)

// The tests run against svidbroker's Vault-compatible test server; the end-to-end tests in test/e2e
// repeat the dynamic-credential cases against a real Vault when VAULT_ADDR is set.

const brokerID = "spiffe://example.org/svidbroker"

// svidSource is a fixed X.509-SVID under a CA made for the test (a real one comes from the Workload
// API; a test needs one without SPIRE, and x509svid.Source is an interface for exactly this).
type svidSource struct{ svid *x509svid.SVID }

func (s svidSource) GetX509SVID() (*x509svid.SVID, error) { return s.svid, nil }

// newSVID makes a CA and an SVID for id under it, and returns the source with the CA's PEM.
func newSVID(t *testing.T, id string) (x509svid.Source, string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ = x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, _ := url.Parse(id)
	leafDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(2), URIs: []*url.URL{u},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(leafDER)
	return svidSource{&x509svid.SVID{ID: spiffeid.RequireFromString(id), Certificates: []*x509.Certificate{leaf}, PrivateKey: key}},
		string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}))
}

// fixture is a test Vault with kv-v2 at "secret" holding pg/app, a policy "broker" that reads it and
// renews and revokes leases, and the cert and jwt auth methods with a role "broker" each.
type fixture struct {
	srv    *testvault.Server
	root   *vaultapi.Client
	caFile string
	svid   x509svid.Source
	key    *ecdsa.PrivateKey
}

func setup(t *testing.T, tokenTTL, tokenMaxTTL string) *fixture {
	t.Helper()
	srv, err := testvault.Start(testvault.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	f := &fixture{srv: srv, caFile: filepath.Join(t.TempDir(), "vault-ca.pem")}
	if err := os.WriteFile(f.caFile, srv.CACertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := vaultapi.DefaultConfig()
	cfg.Address = srv.Addr
	if err := cfg.ConfigureTLS(&vaultapi.TLSConfig{CACertBytes: srv.CACertPEM}); err != nil {
		t.Fatal(err)
	}
	if f.root, err = vaultapi.NewClient(cfg); err != nil {
		t.Fatal(err)
	}
	f.root.SetToken(srv.RootToken)
	var caPEM string
	f.svid, caPEM = newSVID(t, brokerID)
	f.key, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pub, _ := x509.MarshalPKIXPublicKey(f.key.Public())
	ctx := t.Context()
	must(t, f.root.Sys().MountWithContext(ctx, "secret", &vaultapi.MountInput{Type: "kv", Options: map[string]string{"version": "2"}}))
	must(t, f.root.Sys().EnableAuthWithOptionsWithContext(ctx, "cert", &vaultapi.EnableAuthOptions{Type: "cert"}))
	must(t, f.root.Sys().EnableAuthWithOptionsWithContext(ctx, "jwt", &vaultapi.EnableAuthOptions{Type: "jwt"}))
	must(t, f.root.Sys().PutPolicyWithContext(ctx, "broker", `path "secret/data/pg/*" { capabilities = ["read"] }
path "sys/leases/*" { capabilities = ["update"] }`))
	for path, data := range map[string]map[string]any{
		"auth/cert/certs/broker": {"certificate": caPEM, "allowed_uri_sans": brokerID, "token_policies": "broker",
			"token_ttl": tokenTTL, "token_max_ttl": tokenMaxTTL},
		"auth/jwt/config": {"jwt_validation_pubkeys": string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}))},
		"auth/jwt/role/broker": {"role_type": "jwt", "bound_audiences": "vault", "bound_subject": brokerID, "user_claim": "sub",
			"token_policies": "broker", "token_ttl": tokenTTL, "token_max_ttl": tokenMaxTTL},
	} {
		if _, err := f.root.Logical().WriteWithContext(ctx, path, data); err != nil {
			t.Fatalf("write %s: %v", path, err)
		}
	}
	_, err = f.root.KVv2("secret").Put(ctx, "pg/app", map[string]any{"username": "app", "password": "pw-secret-1", "login": "other", "pass": "pw-secret-2"})
	must(t, err)
	_, err = f.root.KVv2("secret").Put(ctx, "pg/nopass", map[string]any{"username": "app", "note": "pw-secret-3"})
	must(t, err)
	return f
}

// jwtSVID signs a JWT-SVID for the broker with the fixture's key, as SPIRE would.
func (f *fixture) jwtSVID(_ context.Context, audience string) (string, error) {
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: f.key}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", err
	}
	return jwt.Signed(sig).Claims(jwt.Claims{Subject: brokerID, Audience: jwt.Audience{audience},
		Expiry: jwt.NewNumericDate(time.Now().Add(5 * time.Minute)), IssuedAt: jwt.NewNumericDate(time.Now())}).Serialize()
}

func (f *fixture) provider(t *testing.T, cfg vault.Config) *vault.Provider {
	t.Helper()
	cfg.Address, cfg.CAFile = f.srv.Addr, f.caFile
	if cfg.Method == vault.MethodCert {
		cfg.SVID = f.svid
	}
	if cfg.Method == vault.MethodJWT {
		cfg.JWTSVID = f.jwtSVID
	}
	p, err := vault.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

var appSecret = credential.Source{Kind: credential.Static, Mount: "secret", Path: "pg/app"}

// TestLoginMethods: each login method reads a kv-v2 credential, which comes back marked static.
func TestLoginMethods(t *testing.T) {
	f := setup(t, "1h", "24h")
	for name, cfg := range map[string]vault.Config{
		"cert":  {Method: vault.MethodCert, Role: "broker"},
		"jwt":   {Method: vault.MethodJWT, Role: "broker", Audience: "vault"},
		"token": {Method: vault.MethodToken, Token: f.srv.RootToken},
	} {
		p := f.provider(t, cfg)
		l, err := p.Acquire(t.Context(), appSecret)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !l.Static || l.ID != "" || l.Username != "app" || l.Password != "pw-secret-1" {
			t.Errorf("%s: lease %v static=%v", name, l, l.Static)
		}
		if logins, _ := p.Counts(); logins != 1 {
			t.Errorf("%s: %d logins", name, logins)
		}
	}
	// Another SVID, another audience, a bad token: no login.
	other, _ := newSVID(t, "spiffe://example.org/agent")
	for name, cfg := range map[string]vault.Config{
		"foreign SVID":   {Method: vault.MethodCert, Role: "broker", SVID: other},
		"wrong audience": {Method: vault.MethodJWT, Role: "broker", Audience: "db", JWTSVID: f.jwtSVID},
		"bad token":      {Method: vault.MethodToken, Token: "hvs.not-a-token"},
	} {
		cfg.Address, cfg.CAFile = f.srv.Addr, f.caFile
		p, err := vault.New(cfg)
		must(t, err)
		if _, err := p.Acquire(t.Context(), appSecret); err == nil {
			t.Errorf("%s: acquired a credential", name)
		}
	}
}

// TestSourceShapes: custom keys, a secret without the password key, a dynamic source that returns no
// lease, and a path the policy does not grant. No error quotes a secret.
func TestSourceShapes(t *testing.T) {
	f := setup(t, "1h", "24h")
	p := f.provider(t, vault.Config{Method: vault.MethodCert, Role: "broker"})
	ctx := t.Context()
	l, err := p.Acquire(ctx, credential.Source{Kind: credential.Static, Mount: "secret", Path: "pg/app", UsernameKey: "login", PasswordKey: "pass"})
	if err != nil || l.Username != "other" || l.Password != "pw-secret-2" {
		t.Fatalf("custom keys: %v %v", l, err)
	}
	// A token alone (an http target's API token): no username is needed, the token still is.
	l, err = p.Acquire(ctx, credential.Source{Kind: credential.Static, Mount: "secret", Path: "pg/app", UsernameKey: "absent", PasswordKey: "pass", TokenOnly: true})
	if err != nil || l.Username != "" || l.Password != "pw-secret-2" {
		t.Fatalf("token only: %v %v", l, err)
	}
	for name, src := range map[string]credential.Source{
		"no username":          {Kind: credential.Static, Mount: "secret", Path: "pg/app", UsernameKey: "absent", PasswordKey: "pass"},
		"token only, no token": {Kind: credential.Static, Mount: "secret", Path: "pg/nopass", TokenOnly: true},
		"no password":          {Kind: credential.Static, Mount: "secret", Path: "pg/nopass"},
		"missing":              {Kind: credential.Static, Mount: "secret", Path: "pg/none"},
		"no lease":             {Kind: credential.Dynamic, Path: "secret/data/pg/app"},
		"not permitted":        {Kind: credential.Dynamic, Path: "database/creds/admin"},
	} {
		l, err := p.Acquire(ctx, src)
		if err == nil {
			t.Errorf("%s: acquired %v", name, l)
			continue
		}
		if strings.Contains(err.Error(), "pw-secret") {
			t.Errorf("%s: the error quotes a secret: %v", name, err)
		}
	}
}

// TestTokenRenewedThenRelogin: past half its TTL the token is renewed; once its max TTL stops the
// renewals, the broker logs in again; a revoked token (403) is replaced by a new login.
func TestTokenRenewedThenRelogin(t *testing.T) {
	f := setup(t, "2s", "3s")
	p := f.provider(t, vault.Config{Method: vault.MethodJWT, Role: "broker", Audience: "vault"})
	ctx := t.Context()
	acquire := func() {
		t.Helper()
		if _, err := p.Acquire(ctx, appSecret); err != nil {
			t.Fatal(err)
		}
	}
	acquire()
	time.Sleep(1200 * time.Millisecond) // past half the 2s TTL
	acquire()
	if logins, renewals := p.Counts(); logins != 1 || renewals != 1 {
		t.Fatalf("past half the TTL: %d logins, %d renewals; want 1, 1", logins, renewals)
	}
	time.Sleep(1500 * time.Millisecond) // the max TTL (3s) is near or past: a renewal cannot help
	acquire()
	if logins, _ := p.Counts(); logins != 2 {
		t.Fatalf("near the max TTL: %d logins; want 2", logins)
	}
	f.srv.RevokeTokens()
	acquire()
	if logins, _ := p.Counts(); logins != 3 {
		t.Fatalf("after the token was revoked: %d logins; want 3", logins)
	}
}

// TestFailClosedRetries: 429 and 503 are retried a bounded number of times with jitter; then the call
// fails, and within the caller's deadline.
func TestFailClosedRetries(t *testing.T) {
	f := setup(t, "1h", "24h")
	p := f.provider(t, vault.Config{Method: vault.MethodCert, Role: "broker", Attempts: 3})
	ctx := t.Context()
	f.srv.Throttle(2)
	if _, err := p.Acquire(ctx, appSecret); err != nil {
		t.Fatalf("two 429s within three attempts: %v", err)
	}
	f.srv.Throttle(3)
	_, err := p.Acquire(ctx, appSecret)
	var re *vaultapi.ResponseError
	if !errors.As(err, &re) || re.StatusCode != 429 {
		t.Fatalf("three 429s: %v", err)
	}
	f.srv.Throttle(0)

	f.srv.Seal()
	patient := f.provider(t, vault.Config{Method: vault.MethodCert, Role: "broker", Attempts: 1000})
	deadline, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = patient.Acquire(deadline, appSecret)
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("sealed: %v", err)
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Fatalf("sealed: the call ignored its deadline for %v", waited)
	}
	f.srv.Unseal()
	if _, err := patient.Acquire(ctx, appSecret); err != nil {
		t.Fatalf("unsealed: %v", err)
	}

	f.srv.Close()
	if _, err := p.Acquire(ctx, appSecret); err == nil {
		t.Fatal("acquired a credential from a stopped Vault")
	}
}

// TestTransientErrorsAreMarked: the failures the provider retries itself are marked
// credential.ErrTransient for the broker to retry as well; any other, such as renewing a lease Vault
// no longer knows (it was revoked out of band), is not, so that its sessions end at once.
func TestTransientErrorsAreMarked(t *testing.T) {
	cancelled := func(ctx context.Context) context.Context {
		ctx, cancel := context.WithCancel(ctx)
		cancel()
		return ctx
	}
	renew := func(ctx context.Context, p *vault.Provider) error {
		_, err := p.Renew(ctx, "database/creds/shop/revoked")
		return err
	}
	acquire := func(ctx context.Context, p *vault.Provider) error {
		_, err := p.Acquire(ctx, appSecret)
		return err
	}
	revoke := func(ctx context.Context, p *vault.Provider) error { return p.Revoke(ctx, "database/creds/shop/1") }
	cases := []struct {
		name      string
		breakIt   func(*fixture)
		ctx       func(context.Context) context.Context
		call      func(context.Context, *vault.Provider) error
		transient bool
	}{
		{name: "renew: lease not found", call: renew, transient: false},
		{name: "renew: rate limited", breakIt: func(f *fixture) { f.srv.Throttle(1000) }, call: renew, transient: true},
		{name: "renew: sealed", breakIt: func(f *fixture) { f.srv.Seal() }, call: renew, transient: true},
		{name: "renew: unreachable", breakIt: func(f *fixture) { f.srv.Close() }, call: renew, transient: true},
		{name: "renew: cancelled by the caller", ctx: cancelled, call: renew, transient: false},
		{name: "acquire: sealed", breakIt: func(f *fixture) { f.srv.Seal() }, call: acquire, transient: true},
		{name: "acquire: cancelled by the caller", ctx: cancelled, call: acquire, transient: false},
		{name: "revoke: rate limited", breakIt: func(f *fixture) { f.srv.Throttle(1000) }, call: revoke, transient: true},
		{name: "revoke: unreachable", breakIt: func(f *fixture) { f.srv.Close() }, call: revoke, transient: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := setup(t, "1h", "24h")
			p := f.provider(t, vault.Config{Method: vault.MethodCert, Role: "broker", Attempts: 2})
			if tc.breakIt != nil {
				tc.breakIt(f)
			}
			ctx := t.Context()
			if tc.ctx != nil {
				ctx = tc.ctx(ctx)
			}
			err := tc.call(ctx, p)
			if err == nil {
				t.Fatal("the call succeeded")
			}
			if got := errors.Is(err, credential.ErrTransient); got != tc.transient {
				t.Fatalf("transient %v, want %v: %v", got, tc.transient, err)
			}
		})
	}
}

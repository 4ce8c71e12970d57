package oidc

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	oidcprovider "github.com/svidbroker/svidbroker/test/oidc"
)

const (
	redirectURL   = "https://console.broker.test/oidc/callback"
	consoleSecret = "console-secret-7f3a"
	otherSecret   = "other-secret-91bc"
)

// providerConfig is a provider with an approver, a person outside the approving groups, an agent
// owner, a person whose email is unverified, the console's web client, another web client and the
// CLI's native client.
func providerConfig() *oidcprovider.Config {
	return &oidcprovider.Config{
		Users: []oidcprovider.User{
			{Username: "approver@example.com", Password: "approver-pw", Email: "approver@example.com", EmailVerified: true, Name: "Ada Approver", Groups: []string{"dba", "security"}},
			{Username: "alice@example.com", Password: "alice-pw", Email: "alice@example.com", EmailVerified: true, Groups: []string{"engineering"}},
			{Username: "owner@example.com", Password: "owner-pw", Email: "owner@example.com", EmailVerified: true},
			{Username: "unverified@example.com", Password: "unverified-pw", Email: "unverified@example.com", EmailVerified: false, Groups: []string{"dba"}},
		},
		Clients: []oidcprovider.Client{
			{ID: "console", Secret: consoleSecret, Type: "web", RedirectURIs: []string{redirectURL}},
			{ID: "other", Secret: otherSecret, Type: "web", RedirectURIs: []string{redirectURL}},
			{ID: "cli", Type: "native"},
		},
		IDTokenLifetime:    "2m",
		DevicePollInterval: "1s",
	}
}

// startProvider runs a real provider for the test on a loopback port and writes its CA to a file.
func startProvider(t *testing.T, cfg *oidcprovider.Config) (*oidcprovider.Local, string) {
	t.Helper()
	l, err := oidcprovider.StartLocal(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("provider close: %v", err)
		}
	})
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, l.CAPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return l, ca
}

func secretFile(t *testing.T, secret string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// verifierFor is the broker's relying party for a web client of the provider.
func verifierFor(t *testing.T, l *oidcprovider.Local, ca, clientID, secret string, tweak func(*Config)) *Verifier {
	t.Helper()
	cfg := Config{IssuerURL: l.Issuer(), ClientID: clientID, ClientSecretFile: secretFile(t, secret), RedirectURL: redirectURL, CAFile: ca}
	if tweak != nil {
		tweak(&cfg)
	}
	v, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// logIn plays the browser: it follows the login's URL to the provider's login page, signs in and
// returns the callback's state and code.
func logIn(t *testing.T, l *oidcprovider.Local, login Login, user, password string) (state, code string) {
	t.Helper()
	b := oidcprovider.NewBrowser(l.Client(), redirectURL)
	cb, page, err := b.LogIn(t.Context(), login.URL, user, password)
	if err != nil {
		t.Fatalf("log in as %s: %v (page: %v)", user, err, page)
	}
	if e := cb.Query().Get("error"); e != "" {
		t.Fatalf("the provider answered error %q: %s", e, cb.Query().Get("error_description"))
	}
	return cb.Query().Get("state"), cb.Query().Get("code")
}

func TestCodeFlowLogsInAPerson(t *testing.T) {
	l, ca := startProvider(t, providerConfig())
	v := verifierFor(t, l, ca, "console", consoleSecret, nil)
	for _, tc := range []struct {
		user, password string
		groups         []string
	}{
		{"approver@example.com", "approver-pw", []string{"dba", "security"}},
		{"alice@example.com", "alice-pw", []string{"engineering"}},
		{"owner@example.com", "owner-pw", []string{}},
	} {
		t.Run(tc.user, func(t *testing.T) {
			login, err := v.StartLogin()
			if err != nil {
				t.Fatal(err)
			}
			u, _ := url.Parse(login.URL)
			if q := u.Query(); q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || q.Get("nonce") != login.Nonce || q.Get("state") != login.State {
				t.Fatalf("the authorization URL lacks PKCE S256, nonce or state: %v", q)
			}
			before := time.Now().Truncate(time.Second)
			state, code := logIn(t, l, login, tc.user, tc.password)
			p, err := v.Exchange(t.Context(), login, state, code)
			if err != nil {
				t.Fatal(err)
			}
			after := time.Now()
			if p.Email != tc.user || p.Subject != tc.user || p.Issuer != l.Issuer() || !slices.Equal(p.Groups, tc.groups) {
				t.Fatalf("person = %+v, want %s in groups %v from %s", p, tc.user, tc.groups, l.Issuer())
			}
			// The provider's configured lifetime (2m) sets the ID token's expiry.
			if p.Expiry.Before(before.Add(2*time.Minute)) || p.Expiry.After(after.Add(2*time.Minute+time.Second)) {
				t.Fatalf("expiry %v is not 2m after the login (%v to %v)", p.Expiry, before, after)
			}
			// A code is single-use.
			if _, err := v.Exchange(t.Context(), login, state, code); !errors.Is(err, ErrProvider) {
				t.Fatalf("a second exchange of the code: err = %v, want ErrProvider", err)
			}
		})
	}
}

func TestWrongPasswordIssuesNoCode(t *testing.T) {
	l, ca := startProvider(t, providerConfig())
	v := verifierFor(t, l, ca, "console", consoleSecret, nil)
	login, err := v.StartLogin()
	if err != nil {
		t.Fatal(err)
	}
	b := oidcprovider.NewBrowser(l.Client(), redirectURL)
	cb, page, err := b.LogIn(t.Context(), login.URL, "approver@example.com", "not-the-password")
	if err == nil || cb != nil {
		t.Fatalf("a wrong password returned to the application: %v", cb)
	}
	if page.Status != http.StatusUnauthorized || !strings.Contains(page.Body, "username or password is wrong") {
		t.Fatalf("the login page answered %d: %s", page.Status, page.Body)
	}
	if strings.Contains(page.Body, "not-the-password") {
		t.Fatal("the login page echoes the password")
	}
	// The same form, with the right password, then goes through.
	page, err = b.Submit(t.Context(), page, url.Values{"password": {"approver-pw"}})
	if err != nil || page.Location == nil {
		t.Fatalf("the right password after a wrong one: %v, %+v", err, page)
	}
	if _, err := v.Exchange(t.Context(), login, page.Location.Query().Get("state"), page.Location.Query().Get("code")); err != nil {
		t.Fatal(err)
	}
}

func TestDeviceFlowLogsInAPerson(t *testing.T) {
	l, ca := startProvider(t, providerConfig())
	v, err := New(t.Context(), Config{IssuerURL: l.Issuer(), ClientID: "cli", CAFile: ca})
	if err != nil {
		t.Fatal(err)
	}
	for _, allow := range []bool{true, false} {
		d, err := v.StartDevice(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if d.UserCode == "" || !strings.HasPrefix(d.VerificationURIComplete, l.Issuer()+"/device") {
			t.Fatalf("device login = %+v", d)
		}
		type result struct {
			p   Person
			err error
		}
		done := make(chan result, 1)
		go func() {
			p, err := v.PollDevice(t.Context(), d)
			done <- result{p, err}
		}()
		b := oidcprovider.NewBrowser(l.Client(), "")
		page, err := b.ResolveDevice(t.Context(), d.VerificationURIComplete, "approver@example.com", "approver-pw", allow)
		if err != nil {
			t.Fatalf("approve the device code: %v (%+v)", err, page)
		}
		r := <-done
		if !allow {
			if r.err == nil || !strings.Contains(r.err.Error(), "access_denied") {
				t.Fatalf("a denied device code: person %+v, err %v", r.p, r.err)
			}
			continue
		}
		if r.err != nil {
			t.Fatal(r.err)
		}
		if r.p.Email != "approver@example.com" || !slices.Equal(r.p.Groups, []string{"dba", "security"}) || r.p.Issuer != l.Issuer() {
			t.Fatalf("person = %+v", r.p)
		}
		// The code was used: approving it again is refused.
		if _, err := b.ResolveDevice(t.Context(), d.VerificationURIComplete, "approver@example.com", "approver-pw", true); err == nil {
			t.Fatal("a used device code was approved again")
		}
	}
}

// rawIDToken redeems a code as the broker would and returns the ID token itself, for tests that
// present one token to another verifier.
func rawIDToken(t *testing.T, v *Verifier, login Login, code string) string {
	t.Helper()
	ctx := context.WithValue(t.Context(), oauth2.HTTPClient, v.client)
	tok, err := v.oauth.Exchange(ctx, code, oauth2.VerifierOption(login.CodeVerifier))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		t.Fatal("no id_token")
	}
	return raw
}

func loginToken(t *testing.T, l *oidcprovider.Local, v *Verifier, user, password string) (string, Login) {
	t.Helper()
	login, err := v.StartLogin()
	if err != nil {
		t.Fatal(err)
	}
	_, code := logIn(t, l, login, user, password)
	return rawIDToken(t, v, login, code), login
}

func TestTokensTheBrokerRefuses(t *testing.T) {
	l, ca := startProvider(t, providerConfig())
	console := verifierFor(t, l, ca, "console", consoleSecret, nil)

	t.Run("from another issuer", func(t *testing.T) {
		l2, ca2 := startProvider(t, providerConfig())
		other := verifierFor(t, l2, ca2, "console", consoleSecret, nil)
		raw, login := loginToken(t, l2, other, "approver@example.com", "approver-pw")
		if _, err := other.VerifyIDToken(t.Context(), raw, login.Nonce); err != nil {
			t.Fatalf("control: its own issuer's verifier refused it: %v", err)
		}
		_, err := console.VerifyIDToken(t.Context(), raw, login.Nonce)
		// Its keys are not the configured issuer's (go-oidc checks the signature before the iss claim).
		if !errors.Is(err, ErrToken) || !(strings.Contains(err.Error(), "signature") || strings.Contains(err.Error(), "different provider")) {
			t.Fatalf("err = %v, want ErrToken naming the signature or issuer", err)
		}
		noToken(t, err, raw)
	})
	t.Run("for another audience", func(t *testing.T) {
		other := verifierFor(t, l, ca, "other", otherSecret, nil)
		raw, login := loginToken(t, l, other, "approver@example.com", "approver-pw")
		if _, err := other.VerifyIDToken(t.Context(), raw, login.Nonce); err != nil {
			t.Fatalf("control: its own client's verifier refused it: %v", err)
		}
		_, err := console.VerifyIDToken(t.Context(), raw, login.Nonce)
		if !errors.Is(err, ErrToken) || !strings.Contains(err.Error(), "audience") {
			t.Fatalf("err = %v, want ErrToken naming the audience", err)
		}
		noToken(t, err, raw)
	})
	t.Run("expired", func(t *testing.T) {
		raw, login := loginToken(t, l, console, "approver@example.com", "approver-pw")
		if _, err := console.VerifyIDToken(t.Context(), raw, login.Nonce); err != nil {
			t.Fatalf("control: a fresh token was refused: %v", err)
		}
		// The same token, checked by a broker whose clock reads past its 2m lifetime.
		later := verifierFor(t, l, ca, "console", consoleSecret, func(c *Config) {
			c.Now = func() time.Time { return time.Now().Add(3 * time.Minute) }
		})
		_, err := later.VerifyIDToken(t.Context(), raw, login.Nonce)
		var expired *gooidc.TokenExpiredError
		if !errors.Is(err, ErrToken) || !errors.As(err, &expired) {
			t.Fatalf("err = %v, want ErrToken with TokenExpiredError", err)
		}
		noToken(t, err, raw)
	})
	t.Run("with another login's nonce", func(t *testing.T) {
		login, err := console.StartLogin()
		if err != nil {
			t.Fatal(err)
		}
		state, code := logIn(t, l, login, "approver@example.com", "approver-pw")
		replayed := login
		replayed.Nonce = "nonce-of-another-login"
		if _, err := console.Exchange(t.Context(), replayed, state, code); !errors.Is(err, ErrNonce) {
			t.Fatalf("err = %v, want ErrNonce", err)
		}
	})
	t.Run("with another login's state", func(t *testing.T) {
		login, err := console.StartLogin()
		if err != nil {
			t.Fatal(err)
		}
		_, code := logIn(t, l, login, "approver@example.com", "approver-pw")
		if _, err := console.Exchange(t.Context(), login, "state-of-another-login", code); !errors.Is(err, ErrState) {
			t.Fatalf("err = %v, want ErrState", err)
		}
	})
	t.Run("of an unverified email", func(t *testing.T) {
		raw, login := loginToken(t, l, console, "unverified@example.com", "unverified-pw")
		if _, err := console.VerifyIDToken(t.Context(), raw, login.Nonce); !errors.Is(err, ErrClaims) || !strings.Contains(err.Error(), "email_verified") {
			t.Fatalf("err = %v, want ErrClaims for email_verified", err)
		}
		lax := verifierFor(t, l, ca, "console", consoleSecret, func(c *Config) { c.AllowUnverifiedEmail = true })
		if p, err := lax.VerifyIDToken(t.Context(), raw, login.Nonce); err != nil || p.Email != "unverified@example.com" {
			t.Fatalf("with allow_unverified_email: %+v, %v", p, err)
		}
	})
}

func TestCodeNeedsItsPKCEVerifier(t *testing.T) {
	l, ca := startProvider(t, providerConfig())
	v := verifierFor(t, l, ca, "console", consoleSecret, nil)
	login, err := v.StartLogin()
	if err != nil {
		t.Fatal(err)
	}
	state, code := logIn(t, l, login, "approver@example.com", "approver-pw")

	// The broker will not redeem a code without the login's verifier.
	noVerifier := login
	noVerifier.CodeVerifier = ""
	if _, err := v.Exchange(t.Context(), noVerifier, state, code); err == nil || !strings.Contains(err.Error(), "PKCE") {
		t.Fatalf("err = %v, want a refusal naming PKCE", err)
	}
	// Nor does the provider, asked directly: without a verifier, or with another one.
	ctx := context.WithValue(t.Context(), oauth2.HTTPClient, v.client)
	for _, opts := range [][]oauth2.AuthCodeOption{nil, {oauth2.VerifierOption(oauth2.GenerateVerifier())}} {
		_, err := v.oauth.Exchange(ctx, code, opts...)
		var re *oauth2.RetrieveError
		if !errors.As(err, &re) || (re.ErrorCode != "invalid_request" && re.ErrorCode != "invalid_grant") || !strings.Contains(re.ErrorDescription, "code_verifier") {
			t.Fatalf("the provider redeemed a code without its verifier: %v", err)
		}
	}
	// Control: the right verifier redeems it.
	p, err := v.Exchange(t.Context(), login, state, code)
	if err != nil || p.Email != "approver@example.com" {
		t.Fatalf("%+v, %v", p, err)
	}
}

// noToken fails if an error quotes a token.
func noToken(t *testing.T, err error, raw string) {
	t.Helper()
	for _, part := range strings.Split(raw, ".") {
		if len(part) > 8 && strings.Contains(err.Error(), part) {
			t.Fatalf("the error quotes the token: %v", err)
		}
	}
}

func TestProviderRefusesALoginWithoutPKCE(t *testing.T) {
	l, ca := startProvider(t, providerConfig())
	v := verifierFor(t, l, ca, "console", consoleSecret, nil)
	// What a relying party that forgot PKCE would send: state and nonce, no code_challenge.
	u := v.oauth.AuthCodeURL("some-state", gooidc.Nonce("some-nonce"))
	p, err := oidcprovider.NewBrowser(l.Client(), redirectURL).Get(t.Context(), u)
	if err != nil {
		t.Fatal(err)
	}
	if p.Location == nil {
		t.Fatalf("the provider showed a login page (%d) instead of refusing", p.Status)
	}
	err = CallbackError(p.Location.Query())
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "invalid_request") || !strings.Contains(err.Error(), "PKCE") {
		t.Fatalf("err = %v, want the provider's invalid_request naming PKCE", err)
	}
	if p.Location.Query().Get("code") != "" {
		t.Fatal("a code was issued without PKCE")
	}
}

func TestCallbackError(t *testing.T) {
	if err := CallbackError(url.Values{"code": {"c"}, "state": {"s"}}); err != nil {
		t.Fatalf("a callback with a code: %v", err)
	}
	err := CallbackError(url.Values{"error": {"access_denied"}, "error_description": {"no\x1b[31m " + strings.Repeat("x", 500)}})
	if !errors.Is(err, ErrRefused) || strings.ContainsRune(err.Error(), 0x1b) || len(err.Error()) > 2*maxCallbackText+64 {
		t.Fatalf("err = %q", err)
	}
}

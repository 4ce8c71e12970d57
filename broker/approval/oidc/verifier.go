package oidc

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// Sentinel outcomes, matched with errors.Is.
var (
	// ErrState: the callback's state is not the one this login sent (a forged or replayed callback).
	ErrState = errors.New("oidc: the callback's state does not match the login")
	// ErrNonce: the ID token's nonce is not the one this login sent (a replayed token).
	ErrNonce = errors.New("oidc: the ID token's nonce does not match the login")
	// ErrToken: the provider's token or ID token was refused (signature, issuer, audience, expiry).
	ErrToken = errors.New("oidc: ID token refused")
	// ErrProvider: the provider could not be reached or answered an error.
	ErrProvider = errors.New("oidc: provider error")
)

// Verifier authenticates approvers at one provider.
type Verifier struct {
	cfg      Config
	client   *http.Client
	verifier *gooidc.IDTokenVerifier
	oauth    oauth2.Config
}

// New validates cfg and reads the provider's discovery document (within cfg.Timeout), checking
// that it names cfg.IssuerURL as its issuer.
func New(ctx context.Context, cfg Config) (*Verifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	client, err := cfg.httpClient()
	if err != nil {
		return nil, err
	}
	dctx, cancel := context.WithTimeout(gooidc.ClientContext(ctx, client), cfg.Timeout)
	defer cancel()
	p, err := gooidc.NewProvider(dctx, cfg.IssuerURL)
	if err != nil {
		return nil, fmt.Errorf("%w: discovery at %s/.well-known/openid-configuration: %v (check issuer_url and ca_file)", ErrProvider, cfg.IssuerURL, err)
	}
	v := &Verifier{cfg: cfg, client: client}
	// Keys are fetched with the bounded client; the background context only carries it.
	v.verifier = p.VerifierContext(gooidc.ClientContext(context.Background(), client), &gooidc.Config{
		ClientID: cfg.ClientID, Now: cfg.Now,
	})
	style := oauth2.AuthStyleInHeader
	if cfg.secret == "" {
		style = oauth2.AuthStyleInParams
	}
	ep := p.Endpoint()
	ep.AuthStyle = style
	v.oauth = oauth2.Config{ClientID: cfg.ClientID, ClientSecret: cfg.secret, Endpoint: ep,
		RedirectURL: cfg.RedirectURL, Scopes: cfg.Scopes}
	return v, nil
}

// Login is one authorization-code login in progress. Its State, Nonce and CodeVerifier are
// secrets of the browser session that started it: keep them server-side (or in an encrypted,
// HttpOnly cookie) and never log them.
type Login struct {
	// URL is where to send the browser.
	URL          string
	State        string
	Nonce        string
	CodeVerifier string
}

// StartLogin makes a fresh state, nonce and PKCE verifier and the authorization URL that carries
// them (code_challenge_method S256).
func (v *Verifier) StartLogin() (Login, error) {
	if v.cfg.RedirectURL == "" {
		return Login{}, errors.New("oidc: redirect_url is not configured, so the code flow cannot be used; set it to the console's callback URL")
	}
	l := Login{State: randomToken(), Nonce: randomToken(), CodeVerifier: oauth2.GenerateVerifier()}
	l.URL = v.oauth.AuthCodeURL(l.State, oauth2.S256ChallengeOption(l.CodeVerifier), gooidc.Nonce(l.Nonce))
	return l, nil
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// Exchange completes a login from the callback's state and code: it checks the state, redeems the
// code with the PKCE verifier, and verifies the ID token, its nonce included.
func (v *Verifier) Exchange(ctx context.Context, l Login, state, code string) (Person, error) {
	if l.State == "" || subtle.ConstantTimeCompare([]byte(l.State), []byte(state)) != 1 {
		return Person{}, ErrState
	}
	if l.CodeVerifier == "" || l.Nonce == "" {
		return Person{}, errors.New("oidc: the login has no PKCE verifier or nonce; start it with StartLogin")
	}
	if code == "" || len(code) > 4096 {
		return Person{}, fmt.Errorf("%w: the callback carries no usable code", ErrProvider)
	}
	ctx, cancel := context.WithTimeout(context.WithValue(ctx, oauth2.HTTPClient, v.client), v.cfg.Timeout)
	defer cancel()
	tok, err := v.oauth.Exchange(ctx, code, oauth2.VerifierOption(l.CodeVerifier))
	if err != nil {
		return Person{}, tokenEndpointError("redeem the code", err)
	}
	raw, ok := tok.Extra("id_token").(string)
	if !ok || raw == "" {
		return Person{}, fmt.Errorf("%w: the token response has no id_token; is \"openid\" among the scopes?", ErrToken)
	}
	return v.verify(ctx, raw, l.Nonce, true)
}

// VerifyIDToken verifies a raw ID token (signature, issuer, audience, expiry) and, when nonce is
// not empty, its nonce, and returns the person it names.
func (v *Verifier) VerifyIDToken(ctx context.Context, raw, nonce string) (Person, error) {
	ctx, cancel := context.WithTimeout(ctx, v.cfg.Timeout)
	defer cancel()
	return v.verify(ctx, raw, nonce, nonce != "")
}

func (v *Verifier) verify(ctx context.Context, raw, nonce string, checkNonce bool) (Person, error) {
	if len(raw) > int(v.cfg.MaxResponseBytes) {
		return Person{}, fmt.Errorf("%w: the ID token is larger than max_response_bytes", ErrToken)
	}
	idt, err := v.verifier.Verify(ctx, raw)
	if err != nil {
		// go-oidc's messages name the claim at fault (issuer, audience, expiry, signature) and
		// never quote the token.
		return Person{}, fmt.Errorf("%w: %w", ErrToken, err)
	}
	if checkNonce && subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(nonce)) != 1 {
		return Person{}, ErrNonce
	}
	var payload rawClaims
	if err := idt.Claims(&payload); err != nil {
		return Person{}, fmt.Errorf("%w: %v", ErrToken, err)
	}
	if err := checkAuthorizedParty(payload, idt.Audience, v.cfg.ClientID); err != nil {
		return Person{}, err
	}
	p, err := claimsPerson(payload, v.cfg.EmailClaim, v.cfg.GroupsClaim, !v.cfg.AllowUnverifiedEmail && v.cfg.EmailClaim == "email")
	if err != nil {
		return Person{}, err
	}
	p.Issuer, p.Subject, p.Expiry = idt.Issuer, idt.Subject, idt.Expiry
	return p, nil
}

// checkAuthorizedParty applies OpenID Connect Core 3.1.3.7: a token for several audiences must
// name the broker as its authorized party (azp), and an azp, when present, must be the broker.
func checkAuthorizedParty(payload []byte, aud []string, clientID string) error {
	var c struct {
		AZP *string `json:"azp"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return fmt.Errorf("%w: the azp claim is not a string", ErrToken)
	}
	switch {
	case c.AZP != nil && *c.AZP != clientID:
		return fmt.Errorf("%w: the token was issued to client %q (azp), not %q", ErrToken, *c.AZP, clientID)
	case c.AZP == nil && len(aud) > 1:
		return fmt.Errorf("%w: the token has %d audiences and no azp claim naming %q", ErrToken, len(aud), clientID)
	}
	return nil
}

// rawClaims keeps the payload's bytes for claimsPerson.
type rawClaims []byte

func (r *rawClaims) UnmarshalJSON(b []byte) error {
	*r = append((*r)[:0], b...)
	return nil
}

// tokenEndpointError reports a token endpoint's refusal by its OAuth error code and description
// only: the response body is not quoted.
func tokenEndpointError(what string, err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		msg := re.ErrorCode
		if msg == "" && re.Response != nil {
			msg = re.Response.Status
		}
		if re.ErrorDescription != "" {
			msg += ": " + re.ErrorDescription
		}
		return fmt.Errorf("%w: %s: the provider refused: %s", ErrProvider, what, msg)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %s: no answer within the timeout", ErrProvider, what)
	}
	return fmt.Errorf("%w: %s: %v", ErrProvider, what, err)
}

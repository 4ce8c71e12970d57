package oidcprovider

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// ScopeGroups asks for the groups claim in the ID token.
const ScopeGroups = "groups"

// maxPending bounds the authorization requests, codes, tokens and device codes held at once; the
// oldest expire first, and a flood beyond the bound is refused.
const maxPending = 10000

// pendingTTL is how long an authorization request may wait for its login and its code for exchange.
const pendingTTL = 10 * time.Minute

// storage is the OP library's Storage: everything in memory, users and clients from the Config.
type storage struct {
	cfg     *Config
	clients map[string]*client
	key     *rsa.PrivateKey
	keyID   string

	mu       sync.Mutex
	requests map[string]*authRequest // by ID
	codes    map[string]string       // code → request ID
	tokens   map[string]*token       // by ID
	devices  map[string]*deviceEntry // by device code
	users    map[string]string       // user code → device code
}

var (
	_ op.Storage                    = (*storage)(nil)
	_ op.CanSetUserinfoFromRequest  = (*storage)(nil)
	_ op.DeviceAuthorizationStorage = (*storage)(nil)
)

type token struct {
	id       string
	clientID string
	subject  string
	audience []string
	scopes   []string
	expiry   time.Time
}

type deviceEntry struct {
	userCode string
	state    *op.DeviceAuthorizationState
}

func newStorage(cfg *Config) (*storage, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("oidcprovider: signing key: %w", err)
	}
	s := &storage{
		cfg: cfg, clients: map[string]*client{}, key: key, keyID: randomID(),
		requests: map[string]*authRequest{}, codes: map[string]string{}, tokens: map[string]*token{},
		devices: map[string]*deviceEntry{}, users: map[string]string{},
	}
	for _, c := range cfg.Clients {
		s.clients[c.ID] = &client{cfg: c, lifetime: cfg.idTokenLifetime}
	}
	return s, nil
}

func randomID() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// equalSecret compares two secrets in constant time.
func equalSecret(a, b string) bool {
	ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:]) == 1
}

// purge drops what has expired. Callers hold mu.
func (s *storage) purge(now time.Time) {
	for id, r := range s.requests {
		if now.Sub(r.created) > pendingTTL {
			delete(s.requests, id)
		}
	}
	for code, id := range s.codes {
		if _, ok := s.requests[id]; !ok {
			delete(s.codes, code)
		}
	}
	for id, t := range s.tokens {
		if now.After(t.expiry) {
			delete(s.tokens, id)
		}
	}
	for dc, d := range s.devices {
		if now.After(d.state.Expires) {
			delete(s.devices, dc)
			delete(s.users, d.userCode)
		}
	}
}

// checkPassword returns the user whose username and password these are.
func (s *storage) checkPassword(username, password string) (User, error) {
	u, ok := s.cfg.user(username)
	// Compare even for an unknown user, so both failures take the same path.
	if !equalSecret(u.Password, password) || !ok {
		return User{}, errors.New("the username or password is wrong")
	}
	return u, nil
}

// CreateAuthRequest is called once the library has parsed and checked an authorization request.
// PKCE with S256 is required of every client, confidential ones included.
func (s *storage) CreateAuthRequest(_ context.Context, req *oidc.AuthRequest, _ string) (op.AuthRequest, error) {
	if req.CodeChallenge == "" {
		return nil, oidc.ErrInvalidRequest().WithDescription("PKCE is required: send code_challenge and code_challenge_method=S256")
	}
	if req.CodeChallengeMethod != oidc.CodeChallengeMethodS256 {
		return nil, oidc.ErrInvalidRequest().WithDescription("code_challenge_method must be S256")
	}
	if len(req.Prompt) == 1 && req.Prompt[0] == oidc.PromptNone {
		return nil, oidc.ErrLoginRequired()
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.purge(now)
	if len(s.requests) >= maxPending {
		return nil, oidc.ErrServerError().WithDescription("too many pending logins; try again later")
	}
	r := &authRequest{
		id: randomID(), created: now, clientID: req.ClientID, redirectURI: req.RedirectURI,
		scopes: req.Scopes, state: req.State, nonce: req.Nonce, responseType: req.ResponseType,
		responseMode: req.ResponseMode,
		challenge:    &oidc.CodeChallenge{Challenge: req.CodeChallenge, Method: req.CodeChallengeMethod},
	}
	s.requests[r.id] = r
	return r, nil
}

func (s *storage) AuthRequestByID(_ context.Context, id string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.requests[id]
	if !ok {
		return nil, errors.New("no such authorization request (it may have expired)")
	}
	// A copy: the library reads it without the lock while a login may be changing the original.
	c := *r
	return &c, nil
}

func (s *storage) AuthRequestByCode(ctx context.Context, code string) (op.AuthRequest, error) {
	s.mu.Lock()
	id, ok := s.codes[code]
	s.mu.Unlock()
	if !ok {
		return nil, errors.New("the code is unknown, used or expired")
	}
	return s.AuthRequestByID(ctx, id)
}

func (s *storage) SaveAuthCode(_ context.Context, id, code string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.requests[id]; !ok {
		return errors.New("no such authorization request")
	}
	s.codes[code] = id
	return nil
}

// DeleteAuthRequest is called once tokens were issued for a request: its code is single-use.
func (s *storage) DeleteAuthRequest(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.requests, id)
	for code, rid := range s.codes {
		if rid == id {
			delete(s.codes, code)
		}
	}
	return nil
}

// login marks an authorization request as authenticated by this user.
func (s *storage) login(id string, u User) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.requests[id]
	if !ok {
		return errors.New("this login request is unknown or expired; start again from the application")
	}
	r.subject, r.authTime, r.done = u.Subject, time.Now(), true
	return nil
}

func (s *storage) CreateAccessToken(_ context.Context, req op.TokenRequest) (string, time.Time, error) {
	var clientID string
	switch r := req.(type) {
	case *authRequest:
		clientID = r.clientID
	case *op.DeviceAuthorizationState:
		clientID = r.ClientID
	default:
		return "", time.Time{}, fmt.Errorf("oidcprovider: access tokens are not issued for %T", req)
	}
	t := &token{id: randomID(), clientID: clientID, subject: req.GetSubject(), audience: req.GetAudience(),
		scopes: req.GetScopes(), expiry: time.Now().Add(s.cfg.idTokenLifetime)}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.tokens) >= maxPending {
		s.purge(time.Now())
		if len(s.tokens) >= maxPending {
			return "", time.Time{}, errors.New("oidcprovider: too many live tokens")
		}
	}
	s.tokens[t.id] = t
	return t.id, t.expiry, nil
}

// CreateAccessAndRefreshTokens is never reached: no client registers the refresh_token grant.
func (s *storage) CreateAccessAndRefreshTokens(context.Context, op.TokenRequest, string) (string, string, time.Time, error) {
	return "", "", time.Time{}, errors.New("oidcprovider: refresh tokens are not issued")
}

func (s *storage) TokenRequestByRefreshToken(context.Context, string) (op.RefreshTokenRequest, error) {
	return nil, op.ErrInvalidRefreshToken
}

func (s *storage) GetRefreshTokenInfo(context.Context, string, string) (string, string, error) {
	return "", "", op.ErrInvalidRefreshToken
}

func (s *storage) TerminateSession(_ context.Context, userID, clientID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, t := range s.tokens {
		if t.subject == userID && t.clientID == clientID {
			delete(s.tokens, id)
		}
	}
	return nil
}

func (s *storage) RevokeToken(_ context.Context, tokenID, _, clientID string) *oidc.Error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.tokens[tokenID]; ok {
		if t.clientID != clientID {
			return oidc.ErrInvalidClient().WithDescription("the token was not issued to this client")
		}
		delete(s.tokens, tokenID)
	}
	return nil
}

// signingKey is the provider's one RS256 key, made at start.
type signingKey struct{ s *storage }

func (k signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k signingKey) Key() any                                    { return k.s.key }
func (k signingKey) ID() string                                  { return k.s.keyID }

type publicKey struct{ s *storage }

func (k publicKey) ID() string                         { return k.s.keyID }
func (k publicKey) Algorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k publicKey) Use() string                        { return "sig" }
func (k publicKey) Key() any                           { return &k.s.key.PublicKey }

func (s *storage) SigningKey(context.Context) (op.SigningKey, error) { return signingKey{s}, nil }
func (s *storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}
func (s *storage) KeySet(context.Context) ([]op.Key, error) { return []op.Key{publicKey{s}}, nil }

func (s *storage) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	c, ok := s.clients[id]
	if !ok {
		return nil, fmt.Errorf("no client %q is registered", id)
	}
	return c, nil
}

func (s *storage) AuthorizeClientIDSecret(_ context.Context, id, secret string) error {
	c, ok := s.clients[id]
	if !ok || c.cfg.Secret == "" || !equalSecret(c.cfg.Secret, secret) {
		return errors.New("the client ID or secret is wrong")
	}
	return nil
}

// SetUserinfoFromScopes is deprecated in the library; SetUserinfoFromRequest does the work.
func (s *storage) SetUserinfoFromScopes(context.Context, *oidc.UserInfo, string, string, []string) error {
	return nil
}

// SetUserinfoFromRequest fills the ID token's claims: sub always, email and email_verified for scope
// email, name for profile, groups for groups.
func (s *storage) SetUserinfoFromRequest(_ context.Context, info *oidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	return s.userinfo(info, req.GetSubject(), scopes)
}

func (s *storage) userinfo(info *oidc.UserInfo, subject string, scopes []string) error {
	u, ok := s.cfg.userBySubject(subject)
	if !ok {
		return fmt.Errorf("oidcprovider: no user has subject %q", subject)
	}
	info.Subject = u.Subject
	for _, sc := range scopes {
		switch sc {
		case oidc.ScopeEmail:
			info.Email, info.EmailVerified = u.Email, oidc.Bool(u.EmailVerified)
		case oidc.ScopeProfile:
			info.Name, info.PreferredUsername = u.Name, u.Username
		case ScopeGroups:
			groups := u.Groups
			if groups == nil {
				groups = []string{}
			}
			info.AppendClaims("groups", groups)
		}
	}
	return nil
}

func (s *storage) liveToken(id string) (*token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tokens[id]
	if !ok || time.Now().After(t.expiry) {
		return nil, errors.New("the token is unknown or expired")
	}
	return t, nil
}

func (s *storage) SetUserinfoFromToken(_ context.Context, info *oidc.UserInfo, tokenID, _, _ string) error {
	t, err := s.liveToken(tokenID)
	if err != nil {
		return err
	}
	return s.userinfo(info, t.subject, t.scopes)
}

func (s *storage) SetIntrospectionFromToken(_ context.Context, resp *oidc.IntrospectionResponse, tokenID, _, clientID string) error {
	t, err := s.liveToken(tokenID)
	if err != nil {
		return err
	}
	if t.clientID != clientID {
		return errors.New("the token was not issued to this client")
	}
	info := new(oidc.UserInfo)
	if err := s.userinfo(info, t.subject, t.scopes); err != nil {
		return err
	}
	resp.SetUserInfo(info)
	resp.Scope, resp.ClientID, resp.Expiration = t.scopes, t.clientID, oidc.FromTime(t.expiry)
	return nil
}

func (s *storage) GetPrivateClaimsFromScopes(context.Context, string, string, []string) (map[string]any, error) {
	return nil, nil
}

// GetKeyByIDAndClientID and ValidateJWTProfileScopes serve the JWT profile grant, which no client
// here uses.
func (s *storage) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, errors.New("oidcprovider: JWT profile client authentication is not offered")
}

func (s *storage) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, errors.New("oidcprovider: the JWT profile grant is not offered")
}

func (s *storage) Health(context.Context) error { return nil }

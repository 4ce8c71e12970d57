package oidcprovider

import (
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// client is a registered relying party, as the OP library sees it.
type client struct {
	cfg      Client
	lifetime time.Duration
}

var _ op.Client = (*client)(nil)

func (c *client) GetID() string                    { return c.cfg.ID }
func (c *client) RedirectURIs() []string           { return c.cfg.RedirectURIs }
func (c *client) PostLogoutRedirectURIs() []string { return nil }
func (c *client) ApplicationType() op.ApplicationType {
	if c.cfg.Type == "web" {
		return op.ApplicationTypeWeb
	}
	return op.ApplicationTypeNative
}

func (c *client) AuthMethod() oidc.AuthMethod {
	if c.cfg.Type == "web" {
		return oidc.AuthMethodBasic
	}
	return oidc.AuthMethodNone
}

func (c *client) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}

// GrantTypes: a web client uses the code flow; a native client the device flow, and the code flow
// too when it registered (loopback) redirect URIs.
func (c *client) GrantTypes() []oidc.GrantType {
	if c.cfg.Type == "web" {
		return []oidc.GrantType{oidc.GrantTypeCode}
	}
	g := []oidc.GrantType{oidc.GrantTypeDeviceCode}
	if len(c.cfg.RedirectURIs) > 0 {
		g = append(g, oidc.GrantTypeCode)
	}
	return g
}

// LoginURL is where the OP sends the browser to log in for an authorization request.
func (c *client) LoginURL(authRequestID string) string {
	return loginPath + "?" + authRequestParam + "=" + authRequestID
}

func (c *client) AccessTokenType() op.AccessTokenType { return op.AccessTokenTypeBearer }
func (c *client) IDTokenLifetime() time.Duration      { return c.lifetime }
func (c *client) DevMode() bool                       { return false }

func (c *client) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}

func (c *client) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}

// IsScopeAllowed admits the one scope beyond the standard ones that this provider knows.
func (c *client) IsScopeAllowed(scope string) bool { return scope == ScopeGroups }

// IDTokenUserinfoClaimsAssertion puts the user's claims (email, name, groups) into the ID token
// itself, which is what the broker verifies; it never calls the userinfo endpoint.
func (c *client) IDTokenUserinfoClaimsAssertion() bool { return true }

func (c *client) ClockSkew() time.Duration { return 0 }

// Package oidc makes the broker an OpenID Connect relying party for the people who approve held
// operations. The console logs an approver in with the authorization-code flow (PKCE S256, state,
// nonce); the `svidbroker approvals` CLI with the device flow. Either way the result is a Person
// read from a verified ID token (issuer, audience, expiry, signature and, for the code flow, nonce):
// subject, email and groups, from claims the configuration names.
//
// It is built on github.com/coreos/go-oidc/v3 and golang.org/x/oauth2. Every network call has a
// deadline and every response a size bound; no error or log line quotes a token or the client
// secret.
package oidc

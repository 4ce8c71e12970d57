// Package oidcprovider is an OpenID provider for svidbroker's tests and its local demo, built on
// zitadel/oidc's certified OP library (pkg/op). It serves discovery, JWKS, the authorization-code
// flow with PKCE (S256 only, required of every client), the device authorization flow, a login page
// (username and password, CSRF-protected) and ID tokens that carry email and groups claims.
//
// Users and clients come from a JSON file (see Config); everything else lives in memory and is lost
// when the process ends. It is a test and demo component: passwords are compared in plain text and
// nothing is persisted. A real deployment points svidbroker at the organization's own identity
// provider.
package oidcprovider

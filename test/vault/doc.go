// Package vault is a Vault-API-compatible server for svidbroker's tests and demo. No Vault or OpenBao
// server can be installed where svidbroker is built, so this stands in for one; it is a test and demo
// component, never imported by the broker, which speaks to it only through
// github.com/hashicorp/vault/api, exactly as it would to a real Vault.
//
// It follows Vault's documented request and response JSON shapes, status codes and error bodies
// ({"errors": [...]}) for the subset svidbroker uses:
//
//   - sys/health; sys/auth/<path> and sys/mounts/<path> to enable, at any path, the cert and jwt
//     auth methods, the database secrets engine and kv version 2 (type "kv" with options.version "2",
//     or "kv-v2");
//   - auth/cert: roles (certs/<name>) with a trusted CA, allowed_uri_sans globs, token policies and TTL;
//     login with the TLS client certificate;
//   - auth/jwt: config with exactly one of jwks_url (and jwks_ca_pem), jwt_validation_pubkeys or
//     oidc_discovery_url (and oidc_discovery_ca_pem), bound_issuer and jwt_supported_algs; roles
//     (role/<name>) with role_type, bound_audiences, bound_subject, bound_claims (bound_claims_type
//     string or glob), user_claim, clock_skew_leeway and token policies and TTLs; login with
//     {role, jwt}, the signature verified with go-jose. Unlike Vault, a token without exp is refused;
//   - tokens: auth/token/lookup-self, renew-self, revoke-self;
//   - ACL policies (sys/policies/acl/<name>) by path glob and capability;
//   - the database secrets engine for PostgreSQL: config/<name> with a connection_url template and
//     allowed_roles, roles/<name> with creation and revocation statements, default_ttl and max_ttl,
//     and creds/<role>, which runs the creation statements on the real PostgreSQL;
//   - kv version 2: data/<path> (read, by version too; write, with check-and-set; delete) and
//     metadata/<path> (read, list, delete); a missing secret is 404 {"errors":[]};
//   - an API-token engine (type "api-token", which Vault does not have built in: a platform team's
//     plugin would play its part) for an HTTP API that checks bearer tokens in its own PostgreSQL
//     table (examples/shopapi): config with a connection_url template, username, password and table
//     (default api.tokens); roles/<name> with default_ttl and max_ttl; creds/<name>, which stores a
//     new token's SHA-256 with the role name and expiry and returns {"token": ...} under a lease;
//   - leases: sys/leases/lookup, renew (capped by max_ttl) and revoke; expired leases are revoked on
//     time, which drops the PostgreSQL role (database engine) or deletes the token's row (API-token
//     engine: renewal moves the row's expiry), so that a revoked credential stops working at once.
package vault

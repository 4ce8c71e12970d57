// Package vault is a Vault-API-compatible server for svidbroker's tests and demo. No Vault or OpenBao
// server can be installed where svidbroker is built, so this stands in for one; it is a test and demo
// component, never imported by the broker, which speaks to it only through
// github.com/hashicorp/vault/api, exactly as it would to a real Vault.
//
// It follows Vault's documented request and response JSON shapes, status codes and error bodies
// ({"errors": [...]}) for the subset svidbroker uses:
//
//   - sys/health; sys/auth/<path> and sys/mounts/<path> to enable the cert auth method and the
//     database secrets engine;
//   - auth/cert: roles (certs/<name>) with a trusted CA, allowed_uri_sans globs, token policies and TTL;
//     login with the TLS client certificate;
//   - tokens: auth/token/lookup-self, renew-self, revoke-self;
//   - ACL policies (sys/policies/acl/<name>) by path glob and capability;
//   - the database secrets engine for PostgreSQL: config/<name> with a connection_url template and
//     allowed_roles, roles/<name> with creation and revocation statements, default_ttl and max_ttl,
//     and creds/<role>, which runs the creation statements on the real PostgreSQL;
//   - leases: sys/leases/lookup, renew (capped by max_ttl) and revoke; expired leases are revoked on
//     time, which drops the PostgreSQL role.
//
// The JWT auth method is not implemented yet.
package vault

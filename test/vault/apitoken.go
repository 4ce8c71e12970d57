package vault

import (
	"context"
	"crypto/sha256"
	"net/http"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// engineAPIToken is the type of the API-token secrets engine: it issues bearer tokens for an HTTP
// API that checks them in its own PostgreSQL table (examples/shopapi's api.tokens). Vault has no such
// engine built in; a platform team would write it as a plugin, and this is its stand-in.
const engineAPIToken = "api-token"

// apiConfig is <mount>/config: the PostgreSQL login that may write the token table, and its name.
type apiConfig struct {
	db    *dbConfig // reused for its connection pool and password scrubbing
	table string    // schema-qualified, checked at config time
}

// apiRole is <mount>/roles/<name>: tokens of role <name> (the role the API checks), with their TTLs.
type apiRole struct {
	defaultTTL, maxTTL time.Duration
}

// apiToken serves the API-token engine mounted at mnt:
//   - config (write): connection_url (with {{username}} and {{password}}), username, password and
//     table (default "api.tokens", with columns token_sha256 bytea, role text, expires_at timestamptz);
//   - roles/<name> (write): default_ttl (default 1h), max_ttl (default 24h);
//   - creds/<name> (read): a new random token, stored as its SHA-256 with the role and expiry, and
//     leased: {"token": "..."}. Renewing the lease moves the row's expiry; revoking it (or its expiry)
//     deletes the row, so that the API refuses the token from then on.
func (s *Server) apiToken(ctx context.Context, mnt, rest, method string, body map[string]any) (any, error) {
	kind, name, _ := strings.Cut(rest, "/")
	switch {
	case kind == "config" && name == "" && (method == http.MethodPost || method == http.MethodPut):
		table := str(body, "table")
		if table == "" {
			table = "api.tokens"
		}
		if schema, name, ok := strings.Cut(table, "."); !ok || schema == "" || name == "" || strings.Contains(name, ".") {
			return nil, errf(http.StatusBadRequest, "table %q: want schema.table", table)
		}
		cfg := &apiConfig{table: table, db: &dbConfig{connectionURL: str(body, "connection_url"),
			username: str(body, "username"), password: str(body, "password")}}
		if err := cfg.db.open(ctx); err != nil {
			return nil, errf(http.StatusBadRequest, "error verifying connection: %s", scrub(err, cfg.db.password))
		}
		s.mu.Lock()
		old := s.apiConfigs[mnt]
		s.apiConfigs[mnt] = cfg
		s.mu.Unlock()
		if old != nil {
			old.db.pool.Close()
		}
		return nil, nil
	case kind == "roles" && name != "" && (method == http.MethodPost || method == http.MethodPut):
		def, err := duration(body, "default_ttl", time.Hour)
		if err != nil {
			return nil, err
		}
		max, err := duration(body, "max_ttl", 24*time.Hour)
		if err != nil {
			return nil, err
		}
		if def <= 0 || max < def {
			return nil, errf(http.StatusBadRequest, "default_ttl must be positive and at most max_ttl")
		}
		s.mu.Lock()
		s.apiRoles[mnt+"/"+name] = &apiRole{defaultTTL: def, maxTTL: max}
		s.mu.Unlock()
		return nil, nil
	case kind == "creds" && name != "" && method == http.MethodGet:
		return s.apiCreds(ctx, mnt, name)
	}
	return nil, errf(http.StatusNotFound, "no handler for route \"%s/%s\". route entry not found.", mnt, rest)
}

func (s *Server) apiCreds(ctx context.Context, mnt, roleName string) (any, error) {
	s.mu.Lock()
	role, cfg := s.apiRoles[mnt+"/"+roleName], s.apiConfigs[mnt]
	s.mu.Unlock()
	if role == nil {
		return nil, errf(http.StatusBadRequest, "unknown role: %s", roleName)
	}
	if cfg == nil {
		return nil, errf(http.StatusBadRequest, "the engine at %s/ has no config", mnt)
	}
	now := s.now()
	tok := "sbt_" + randHex(32)
	sum := sha256.Sum256([]byte(tok))
	exp := now.Add(role.defaultTTL)
	conn, err := s.adminConn(ctx, cfg.db)
	if err != nil {
		return nil, errf(http.StatusInternalServerError, "failed to connect: %s", scrub(err, cfg.db.password))
	}
	defer conn.Release()
	q := "INSERT INTO " + cfg.quoted() + " (token_sha256, role, expires_at) VALUES ($1, $2, $3)"
	if _, err := conn.Exec(ctx, q, sum[:], roleName, exp); err != nil {
		return nil, errf(http.StatusInternalServerError, "failed to store the token: %s", scrub(err, tok, cfg.db.password))
	}
	l := &lease{id: mnt + "/creds/" + roleName + "/" + randHex(12), mount: mnt, role: mnt + "/" + roleName,
		engine: engineAPIToken, tokenSHA256: sum[:], issued: now, expires: exp, maxExpires: now.Add(role.maxTTL), lastRenewal: now}
	s.mu.Lock()
	s.leases[l.id] = l
	s.mu.Unlock()
	return map[string]any{"request_id": randHex(8), "lease_id": l.id, "renewable": true,
		"lease_duration": int64(role.defaultTTL.Seconds()), "data": map[string]string{"token": tok}}, nil
}

// quoted is the table name as a quoted identifier.
func (c *apiConfig) quoted() string {
	schema, table, _ := strings.Cut(c.table, ".")
	return pgx.Identifier{schema, table}.Sanitize()
}

// apiLeaseRenew moves the token's expiry in the table, then the lease's: the increment (default the
// role's default TTL), never past max_ttl. A token whose row is gone (revoked) is not renewed.
func (s *Server) apiLeaseRenew(ctx context.Context, id string, body map[string]any) (any, error) {
	s.mu.Lock()
	l, ok := s.leases[id]
	var role *apiRole
	var cfg *apiConfig
	if ok {
		role, cfg = s.apiRoles[l.role], s.apiConfigs[l.mount]
	}
	s.mu.Unlock()
	if !ok || role == nil || cfg == nil {
		return nil, errf(http.StatusBadRequest, "lease not found or lease is not renewable")
	}
	inc, err := duration(body, "increment", role.defaultTTL)
	if err != nil {
		return nil, err
	}
	if inc <= 0 {
		inc = role.defaultTTL
	}
	now := s.now()
	exp := now.Add(inc)
	if exp.After(l.maxExpires) {
		exp = l.maxExpires
	}
	conn, err := s.adminConn(ctx, cfg.db)
	if err != nil {
		return nil, errf(http.StatusInternalServerError, "failed to renew lease: %s", scrub(err, cfg.db.password))
	}
	defer conn.Release()
	tag, err := conn.Exec(ctx, "UPDATE "+cfg.quoted()+" SET expires_at = $2 WHERE token_sha256 = $1", l.tokenSHA256, exp)
	if err != nil {
		return nil, errf(http.StatusInternalServerError, "failed to renew lease: %s", scrub(err, cfg.db.password))
	}
	if tag.RowsAffected() == 0 {
		return nil, errf(http.StatusBadRequest, "lease not found or lease is not renewable")
	}
	s.mu.Lock()
	l.expires, l.lastRenewal = exp, now
	s.mu.Unlock()
	return map[string]any{"lease_id": l.id, "renewable": exp.Before(l.maxExpires), "lease_duration": int64(exp.Sub(now).Seconds())}, nil
}

// apiLeaseRevoke deletes the token's row, then forgets the lease: the API refuses the token at once.
func (s *Server) apiLeaseRevoke(ctx context.Context, l *lease) error {
	s.mu.Lock()
	cfg := s.apiConfigs[l.mount]
	s.mu.Unlock()
	if cfg == nil {
		return errf(http.StatusInternalServerError, "failed to revoke lease: the engine at %s/ has no config", l.mount)
	}
	conn, err := s.adminConn(ctx, cfg.db)
	if err != nil {
		return errf(http.StatusInternalServerError, "failed to revoke lease: %s", scrub(err, cfg.db.password))
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "DELETE FROM "+cfg.quoted()+" WHERE token_sha256 = $1", l.tokenSHA256); err != nil {
		return errf(http.StatusInternalServerError, "failed to revoke lease: %s", scrub(err, cfg.db.password))
	}
	s.mu.Lock()
	delete(s.leases, l.id)
	s.mu.Unlock()
	return nil
}

package vault

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// dbConfig is database/config/<name>: how to reach one PostgreSQL as an administrator, through a
// small pool of connections, as Vault's database plugins keep.
type dbConfig struct {
	connectionURL      string // with {{username}} and {{password}}
	username, password string
	allowedRoles       []string
	pool               *pgxpool.Pool
}

// dbRole is database/roles/<name>.
type dbRole struct {
	db                   string
	creation, revocation []string
	defaultTTL, maxTTL   time.Duration
}

// lease is a dynamic credential's lease, of a role of the engine at mount. role is the role's key,
// "<mount>/<name>".
type lease struct {
	id, mount, role, username string
	// engine is "" for the database engine, engineAPIToken for a token of that engine (tokenSHA256).
	engine          string
	tokenSHA256     []byte
	issued, expires time.Time
	maxExpires      time.Time
	lastRenewal     time.Time
}

// database serves the database secrets engine mounted at mnt; rest is the path below the mount.
func (s *Server) database(ctx context.Context, mnt, rest, method string, body map[string]any) (any, error) {
	kind, name, _ := strings.Cut(rest, "/")
	switch {
	case kind == "config" && (method == http.MethodPost || method == http.MethodPut):
		cfg := &dbConfig{connectionURL: str(body, "connection_url"), username: str(body, "username"),
			password: str(body, "password"), allowedRoles: strs(body, "allowed_roles")}
		if plugin := str(body, "plugin_name"); plugin != "postgresql-database-plugin" {
			return nil, errf(http.StatusBadRequest, "unsupported plugin_name %q: this server implements postgresql-database-plugin", plugin)
		}
		if err := cfg.open(ctx); err != nil {
			return nil, errf(http.StatusBadRequest, "error creating database object: error verifying connection: %v", scrub(err, cfg.password))
		}
		s.mu.Lock()
		old := s.dbConfig[mnt+"/"+name]
		s.dbConfig[mnt+"/"+name] = cfg
		s.mu.Unlock()
		if old != nil {
			old.pool.Close()
		}
		return nil, nil
	case kind == "roles" && (method == http.MethodPost || method == http.MethodPut):
		def, err := duration(body, "default_ttl", time.Hour)
		if err != nil {
			return nil, err
		}
		max, err := duration(body, "max_ttl", 24*time.Hour)
		if err != nil {
			return nil, err
		}
		role := &dbRole{db: str(body, "db_name"), creation: strs(body, "creation_statements"),
			revocation: strs(body, "revocation_statements"), defaultTTL: def, maxTTL: max}
		if len(role.creation) == 0 {
			return nil, errf(http.StatusBadRequest, "creation_statements are required")
		}
		s.mu.Lock()
		s.dbRoles[mnt+"/"+name] = role
		s.mu.Unlock()
		return nil, nil
	case kind == "creds" && method == http.MethodGet:
		return s.creds(ctx, mnt, name)
	}
	return nil, errf(http.StatusNotFound, "no handler for route \"%s/%s\". route entry not found.", mnt, rest)
}

// open makes the config's pool and checks that it reaches the database.
func (cfg *dbConfig) open(ctx context.Context) error {
	url := strings.NewReplacer("{{username}}", cfg.username, "{{password}}", cfg.password).Replace(cfg.connectionURL)
	pc, err := pgxpool.ParseConfig(url)
	if err != nil {
		return err
	}
	pc.MaxConns = 4
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if cfg.pool, err = pgxpool.NewWithConfig(ctx, pc); err != nil {
		return err
	}
	if err := cfg.pool.Ping(ctx); err != nil {
		cfg.pool.Close()
		return err
	}
	return nil
}

func (s *Server) adminConn(ctx context.Context, cfg *dbConfig) (*pgxpool.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return cfg.pool.Acquire(ctx)
}

// scrub removes a password from an error message (Vault has leaked connection URLs this way).
func scrub(err error, secrets ...string) string {
	msg := err.Error()
	for _, sec := range secrets {
		if sec != "" {
			msg = strings.ReplaceAll(msg, sec, "<redacted>")
		}
	}
	return msg
}

// creds creates a role in PostgreSQL with the role's creation statements and leases it.
func (s *Server) creds(ctx context.Context, mnt, roleName string) (any, error) {
	s.mu.Lock()
	role, ok := s.dbRoles[mnt+"/"+roleName]
	var cfg *dbConfig
	if ok {
		cfg = s.dbConfig[mnt+"/"+role.db]
	}
	s.mu.Unlock()
	if !ok {
		return nil, errf(http.StatusBadRequest, "unknown role: %s", roleName)
	}
	if cfg == nil || !(slices.Contains(cfg.allowedRoles, roleName) || slices.Contains(cfg.allowedRoles, "*")) {
		return nil, errf(http.StatusBadRequest, "%q is not an allowed role", roleName)
	}
	now := s.now()
	username := fmt.Sprintf("v-%s-%s", trim(roleName, 20), randHex(10))
	password := "A1a-" + randHex(12)
	exp := now.Add(role.defaultTTL)
	conn, err := s.adminConn(ctx, cfg)
	if err != nil {
		return nil, errf(http.StatusInternalServerError, "failed to connect: %s", scrub(err, cfg.password))
	}
	defer conn.Release()
	repl := strings.NewReplacer("{{name}}", username, "{{username}}", username, "{{password}}", password,
		"{{expiration}}", exp.UTC().Format("2006-01-02 15:04:05-0700"))
	for _, stmt := range role.creation {
		if _, err := conn.Exec(ctx, repl.Replace(stmt)); err != nil {
			return nil, errf(http.StatusInternalServerError, "failed to create user: %s", scrub(err, password, cfg.password))
		}
	}
	l := &lease{id: mnt + "/creds/" + roleName + "/" + randHex(12), mount: mnt, role: mnt + "/" + roleName, username: username,
		issued: now, expires: exp, maxExpires: now.Add(role.maxTTL), lastRenewal: now}
	s.mu.Lock()
	s.leases[l.id] = l
	s.mu.Unlock()
	return map[string]any{"request_id": randHex(8), "lease_id": l.id, "renewable": true,
		"lease_duration": int64(role.defaultTTL.Seconds()), "data": map[string]string{"username": username, "password": password}}, nil
}

func trim(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func (s *Server) leaseLookup(body map[string]any) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.leases[str(body, "lease_id")]
	if !ok {
		return nil, errf(http.StatusBadRequest, "invalid lease")
	}
	return map[string]any{"data": map[string]any{"id": l.id, "issue_time": l.issued.UTC().Format(time.RFC3339Nano),
		"expire_time": l.expires.UTC().Format(time.RFC3339Nano), "last_renewal": l.lastRenewal.UTC().Format(time.RFC3339Nano),
		"renewable": true, "ttl": int64(l.expires.Sub(s.now()).Seconds())}}, nil
}

// leaseRenew extends a lease by the increment (default: the role's default TTL), never past max_ttl.
func (s *Server) leaseRenew(ctx context.Context, body map[string]any) (any, error) {
	s.mu.Lock()
	l, ok := s.leases[str(body, "lease_id")]
	if ok && l.engine == engineAPIToken {
		s.mu.Unlock()
		return s.apiLeaseRenew(ctx, l.id, body)
	}
	defer s.mu.Unlock()
	if !ok {
		return nil, errf(http.StatusBadRequest, "lease not found or lease is not renewable")
	}
	role := s.dbRoles[l.role]
	inc, err := duration(body, "increment", role.defaultTTL)
	if err != nil {
		return nil, err
	}
	if inc <= 0 { // 0 asks for the default, as in Vault
		inc = role.defaultTTL
	}
	now := s.now()
	exp := now.Add(inc)
	if exp.After(l.maxExpires) {
		exp = l.maxExpires
	}
	l.expires, l.lastRenewal = exp, now
	return map[string]any{"lease_id": l.id, "renewable": exp.Before(l.maxExpires), "lease_duration": int64(exp.Sub(now).Seconds())}, nil
}

// leaseRevoke runs the role's revocation statements (default: drop the role) and forgets the lease.
// As in Vault, this does not end sessions the role already has open.
func (s *Server) leaseRevoke(ctx context.Context, id string) error {
	s.mu.Lock()
	l, ok := s.leases[id]
	var role *dbRole
	var cfg *dbConfig
	if ok && l.engine == engineAPIToken {
		s.mu.Unlock()
		return s.apiLeaseRevoke(ctx, l)
	}
	if ok {
		role = s.dbRoles[l.role]
		cfg = s.dbConfig[l.mount+"/"+role.db]
	}
	s.mu.Unlock()
	if !ok {
		return nil // revoking an unknown lease succeeds, as in Vault
	}
	stmts := role.revocation
	if len(stmts) == 0 {
		stmts = []string{`DROP ROLE IF EXISTS "{{name}}";`}
	}
	conn, err := s.adminConn(ctx, cfg)
	if err != nil {
		return errf(http.StatusInternalServerError, "failed to revoke lease: %s", scrub(err, cfg.password))
	}
	defer conn.Release()
	repl := strings.NewReplacer("{{name}}", l.username, "{{username}}", l.username)
	for _, stmt := range stmts {
		if _, err := conn.Exec(ctx, repl.Replace(stmt)); err != nil {
			return errf(http.StatusInternalServerError, "failed to revoke lease: %s", scrub(err, cfg.password))
		}
	}
	s.mu.Lock()
	delete(s.leases, id)
	s.mu.Unlock()
	return nil
}

// expireLeases revokes leases when they expire, checking every 100 ms.
func (s *Server) expireLeases() {
	defer close(s.done)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		s.mu.Lock()
		now := s.now()
		var due []string
		for id, l := range s.leases {
			if now.After(l.expires) {
				due = append(due, id)
			}
		}
		s.mu.Unlock()
		for _, id := range due {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_ = s.leaseRevoke(ctx, id) // retried on the next tick if it failed
			cancel()
		}
	}
}

package vault

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Server is a running Vault-compatible server.
type Server struct {
	// Addr is the https:// address clients use (VAULT_ADDR).
	Addr string
	// CACertPEM verifies the server's certificate (VAULT_CACERT).
	CACertPEM []byte
	// RootToken has every capability, like a real Vault's root token: for bootstrapping only.
	RootToken string

	ln   net.Listener
	srv  *http.Server
	now  func() time.Time
	stop chan struct{}
	done chan struct{}

	mu       sync.Mutex
	sealed   bool
	throttle int               // requests still to answer 429
	authMnts map[string]string // path -> type
	mounts   map[string]string
	tokens   map[string]*token
	policies map[string][]rule
	// Per-mount state is keyed by "<mount>/<name>".
	certs    map[string]*certRole
	jwtCfgs  map[string]*jwtConfig // by mount
	jwtRoles map[string]*jwtRole
	dbConfig map[string]*dbConfig
	dbRoles  map[string]*dbRole
	leases   map[string]*lease
	kv       map[string]*kvSecret
	// The API-token engine's config by mount, and roles by "<mount>/<name>".
	apiConfigs map[string]*apiConfig
	apiRoles   map[string]*apiRole
}

// Options tune a Server.
type Options struct {
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// MaxRequestBytes bounds a request body. Default 1 MiB.
	MaxRequestBytes int64
}

// Start listens on a free loopback port with TLS (a certificate made for the run) and serves until
// Close. TLS asks for, but does not require, a client certificate: cert auth logins use it.
func Start(opts Options) (*Server, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxRequestBytes <= 0 {
		opts.MaxRequestBytes = 1 << 20
	}
	cert, caPEM, err := selfSigned()
	if err != nil {
		return nil, err
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequestClientCert, // verified per role at login, against the role's CA
		MinVersion:   tls.VersionTLS12,
	})
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	s := &Server{
		Addr: "https://" + ln.Addr().String(), CACertPEM: caPEM, RootToken: "hvs." + randHex(16),
		ln: ln, now: opts.Now, stop: make(chan struct{}), done: make(chan struct{}),
		authMnts: map[string]string{"token": "token"}, mounts: map[string]string{},
		tokens: map[string]*token{}, policies: map[string][]rule{}, certs: map[string]*certRole{},
		jwtCfgs: map[string]*jwtConfig{}, jwtRoles: map[string]*jwtRole{},
		dbConfig: map[string]*dbConfig{}, dbRoles: map[string]*dbRole{}, leases: map[string]*lease{},
		kv: map[string]*kvSecret{}, apiConfigs: map[string]*apiConfig{}, apiRoles: map[string]*apiRole{},
	}
	s.tokens[s.RootToken] = &token{id: s.RootToken, accessor: randHex(12), policies: []string{"root"}}
	s.srv = &http.Server{Handler: http.MaxBytesHandler(http.HandlerFunc(s.serve), opts.MaxRequestBytes),
		ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
	go func() { _ = s.srv.Serve(ln) }()
	go s.expireLeases()
	return s, nil
}

// Close stops the server. Leases are left as they are, as when a Vault server stops. Closing again
// does nothing.
func (s *Server) Close() error {
	s.mu.Lock()
	select {
	case <-s.stop:
		s.mu.Unlock()
		return nil
	default:
	}
	close(s.stop)
	for _, cfg := range s.dbConfig {
		defer cfg.pool.Close()
	}
	for _, cfg := range s.apiConfigs {
		defer cfg.db.pool.Close()
	}
	s.mu.Unlock()
	<-s.done
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.srv.Shutdown(ctx)
}

// Seal makes the server answer 503, as a sealed Vault does; Unseal reverses it.
func (s *Server) Seal()   { s.mu.Lock(); s.sealed = true; s.mu.Unlock() }
func (s *Server) Unseal() { s.mu.Lock(); s.sealed = false; s.mu.Unlock() }

// Throttle makes the next n requests answer 429, as Vault's rate-limit quotas do.
func (s *Server) Throttle(n int) { s.mu.Lock(); s.throttle = n; s.mu.Unlock() }

// RevokeTokens revokes every token but the root token, as an operator revoking them would.
func (s *Server) RevokeTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id := range s.tokens {
		if id != s.RootToken {
			delete(s.tokens, id)
		}
	}
}

type token struct {
	id, accessor string
	policies     []string
	ttl          time.Duration // 0: no expiry (root)
	expires      time.Time
	maxExpires   time.Time
}

// apiError is Vault's error response.
type apiError struct {
	status int
	msgs   []string
}

func (e *apiError) Error() string { return strings.Join(e.msgs, "; ") }

func errf(status int, format string, args ...any) error {
	return &apiError{status: status, msgs: []string{fmt.Sprintf(format, args...)}}
}

var errPermission = &apiError{status: http.StatusForbidden, msgs: []string{"permission denied"}}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	path, ok := strings.CutPrefix(r.URL.Path, "/v1/")
	if !ok {
		writeErr(w, errf(http.StatusNotFound, "no handler for route %q", r.URL.Path))
		return
	}
	var body map[string]any
	if r.Body != nil && (r.Method == http.MethodPost || r.Method == http.MethodPut) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			writeErr(w, errf(http.StatusRequestEntityTooLarge, "request too large"))
			return
		}
		if len(b) > 0 {
			if err := json.Unmarshal(b, &body); err != nil {
				writeErr(w, errf(http.StatusBadRequest, "failed to parse JSON input: %v", err))
				return
			}
		}
	}
	if r.Method == "LIST" || (r.Method == http.MethodGet && r.URL.Query().Get("list") == "true") {
		r.Method = "LIST"
	}
	resp, err := s.route(r, path, body)
	if err != nil {
		writeErr(w, err)
		return
	}
	if resp == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}

func writeErr(w http.ResponseWriter, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		ae = &apiError{status: http.StatusInternalServerError, msgs: []string{err.Error()}}
	}
	msgs := ae.msgs
	if msgs == nil {
		msgs = []string{} // {"errors":[]}, as Vault answers a read of nothing
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(ae.status)
	_ = json.NewEncoder(w).Encode(map[string][]string{"errors": msgs})
}

func (s *Server) route(r *http.Request, path string, body map[string]any) (any, error) {
	if path == "sys/health" {
		return s.health()
	}
	s.mu.Lock()
	sealed, throttled := s.sealed, s.throttle > 0
	if throttled {
		s.throttle--
	}
	s.mu.Unlock()
	if sealed {
		return nil, errf(http.StatusServiceUnavailable, "Vault is sealed")
	}
	if throttled {
		return nil, errf(http.StatusTooManyRequests, "request path %q: rate limit quota exceeded", path)
	}
	authMnt, authType, authRest := s.mountFor(s.authMnts, path, "auth/")
	if authRest == "login" && (r.Method == http.MethodPost || r.Method == http.MethodPut) {
		switch authType {
		case "cert":
			return s.certLogin(r, authMnt, body)
		case "jwt":
			return s.jwtLogin(r.Context(), authMnt, body)
		}
	}
	tok, err := s.authenticate(r)
	if err != nil {
		return nil, err
	}
	switch path {
	case "auth/token/lookup-self":
		return s.lookupSelf(tok)
	case "auth/token/renew-self":
		return s.renewSelf(tok, body)
	case "auth/token/revoke-self":
		s.mu.Lock()
		delete(s.tokens, tok.id)
		s.mu.Unlock()
		return nil, nil
	}
	if err := s.allowed(tok, path, r.Method); err != nil {
		return nil, err
	}
	switch {
	case (path == "sys/auth" || path == "sys/mounts") && r.Method == http.MethodGet:
		table := s.mounts
		if path == "sys/auth" {
			table = s.authMnts
		}
		return s.listMounts(table), nil
	case strings.HasPrefix(path, "sys/auth/"):
		return s.enable(s.authMnts, authTypes, strings.TrimPrefix(path, "sys/auth/"), r.Method, body)
	case strings.HasPrefix(path, "sys/mounts/"):
		return s.enable(s.mounts, engineTypes, strings.TrimPrefix(path, "sys/mounts/"), r.Method, body)
	case strings.HasPrefix(path, "sys/policies/acl/"):
		return s.writePolicy(strings.TrimPrefix(path, "sys/policies/acl/"), r.Method, body)
	case path == "sys/leases/lookup":
		return s.leaseLookup(body)
	case path == "sys/leases/renew":
		return s.leaseRenew(r.Context(), body)
	case path == "sys/leases/revoke":
		return nil, s.leaseRevoke(r.Context(), str(body, "lease_id"))
	}
	switch authType {
	case "cert":
		if name, ok := strings.CutPrefix(authRest, "certs/"); ok {
			return s.writeCertRole(authMnt, name, r.Method, body)
		}
	case "jwt":
		return s.jwtAdmin(r.Context(), authMnt, authRest, r.Method, body)
	}
	switch mnt, typ, rest := s.mountFor(s.mounts, path, ""); typ {
	case "database":
		return s.database(r.Context(), mnt, rest, r.Method, body)
	case "kv-v2":
		return s.kvV2(r, mnt, rest, body)
	case engineAPIToken:
		return s.apiToken(r.Context(), mnt, rest, r.Method, body)
	}
	return nil, errf(http.StatusNotFound, "no handler for route %q. route entry not found.", path)
}

// mountFor finds the mount of table that path (after prefix) falls under (mounts never nest: enable
// refuses that, as Vault does) and returns it with its type and the rest of the path.
func (s *Server) mountFor(table map[string]string, path, prefix string) (mnt, typ, rest string) {
	p, ok := strings.CutPrefix(path, prefix)
	if !ok {
		return "", "", ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for m, t := range table {
		if r, ok := strings.CutPrefix(p, m+"/"); ok {
			return m, t, r
		}
	}
	return "", "", ""
}

func (s *Server) health() (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sealed {
		return nil, errf(http.StatusServiceUnavailable, "Vault is sealed")
	}
	return map[string]any{"initialized": true, "sealed": false, "standby": false, "performance_standby": false,
		"replication_performance_mode": "disabled", "replication_dr_mode": "disabled",
		"server_time_utc": s.now().Unix(), "version": "1.15.0+svidbroker-compat", "cluster_name": "svidbroker-test"}, nil
}

func (s *Server) authenticate(r *http.Request) (*token, error) {
	id := r.Header.Get("X-Vault-Token")
	if id == "" {
		if bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			id = bearer
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tokens[id]
	if !ok || (t.ttl > 0 && s.now().After(t.expires)) {
		if ok {
			delete(s.tokens, id)
		}
		return nil, errPermission
	}
	return t, nil
}

// authTypes and engineTypes are the auth methods and secrets engines this server implements.
var (
	authTypes   = map[string]bool{"cert": true, "jwt": true}
	engineTypes = map[string]bool{"database": true, "kv-v2": true, engineAPIToken: true}
)

// listMounts answers GET sys/auth and sys/mounts: each mount, with a trailing "/", and its type (kv
// version 2 as Vault shows it: type "kv", options.version "2").
func (s *Server) listMounts(table map[string]string) any {
	s.mu.Lock()
	defer s.mu.Unlock()
	data := map[string]any{}
	for path, typ := range table {
		var opts map[string]string
		if typ == "kv-v2" {
			typ, opts = "kv", map[string]string{"version": "2"}
		}
		data[path+"/"] = map[string]any{"type": typ, "options": opts, "description": "", "local": false, "seal_wrap": false}
	}
	return map[string]any{"data": data}
}

func (s *Server) enable(table map[string]string, types map[string]bool, path, method string, body map[string]any) (any, error) {
	if method != http.MethodPost && method != http.MethodPut {
		return nil, errf(http.StatusMethodNotAllowed, "unsupported operation")
	}
	typ := str(body, "type")
	if opts, _ := body["options"].(map[string]any); typ == "kv" {
		if v := str(opts, "version"); v != "2" {
			return nil, errf(http.StatusBadRequest, "kv version %q: this server implements kv version 2 only", v)
		}
		typ = "kv-v2"
	}
	if !types[typ] {
		return nil, errf(http.StatusBadRequest, "unsupported type %q (this server implements cert and jwt auth, the database engine, kv version 2 and api-token)", typ)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	path = strings.Trim(path, "/")
	for m := range table {
		if m == path || strings.HasPrefix(m, path+"/") || strings.HasPrefix(path, m+"/") {
			return nil, errf(http.StatusBadRequest, "path is already in use at %s/", m)
		}
	}
	table[path] = typ
	return nil, nil
}

func (s *Server) issueToken(policies []string, ttl, maxTTL time.Duration) *token {
	now := s.now()
	t := &token{id: "hvs." + randHex(16), accessor: randHex(12), policies: policies, ttl: ttl,
		expires: now.Add(ttl), maxExpires: now.Add(maxTTL)}
	s.tokens[t.id] = t
	return t
}

// tokenParams reads the token fields every auth role has: token_policies (or the older policies),
// token_ttl (default 1h) and token_max_ttl (default 24h).
func tokenParams(body map[string]any) (policies []string, ttl, maxTTL time.Duration, err error) {
	if ttl, err = duration(body, "token_ttl", time.Hour); err != nil {
		return nil, 0, 0, err
	}
	if maxTTL, err = duration(body, "token_max_ttl", 24*time.Hour); err != nil {
		return nil, 0, 0, err
	}
	policies = strs(body, "token_policies")
	if len(policies) == 0 {
		policies = strs(body, "policies")
	}
	return policies, ttl, maxTTL, nil
}

// loginResponse issues a token and answers a login with it, as Vault's auth methods do. s.mu is held.
func (s *Server) loginResponse(policies []string, ttl, maxTTL time.Duration, meta map[string]string) any {
	t := s.issueToken(policies, ttl, maxTTL)
	return map[string]any{"auth": map[string]any{"client_token": t.id, "accessor": t.accessor, "policies": t.policies,
		"token_policies": t.policies, "metadata": meta, "lease_duration": int64(ttl.Seconds()), "renewable": true,
		"token_type": "service", "orphan": true}}
}

func (s *Server) lookupSelf(t *token) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ttl := int64(0)
	if t.ttl > 0 {
		ttl = int64(t.expires.Sub(s.now()).Seconds())
	}
	return map[string]any{"data": map[string]any{"id": t.id, "accessor": t.accessor, "policies": t.policies,
		"ttl": ttl, "renewable": t.ttl > 0, "expire_time": t.expires.UTC().Format(time.RFC3339Nano)}}, nil
}

func (s *Server) renewSelf(t *token, body map[string]any) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t.ttl == 0 {
		return nil, errf(http.StatusBadRequest, "lease is not renewable")
	}
	inc, err := duration(body, "increment", t.ttl)
	if err != nil {
		return nil, err
	}
	if inc <= 0 {
		inc = t.ttl
	}
	exp := s.now().Add(inc)
	if exp.After(t.maxExpires) {
		exp = t.maxExpires
	}
	t.expires = exp
	return map[string]any{"auth": map[string]any{"client_token": t.id, "accessor": t.accessor, "policies": t.policies,
		"token_policies": t.policies, "lease_duration": int64(exp.Sub(s.now()).Seconds()), "renewable": true}}, nil
}

// str returns a string field of a JSON body.
func str(body map[string]any, key string) string {
	v, _ := body[key].(string)
	return v
}

// strs returns a list field, given as a JSON array or a comma-separated string, as Vault accepts.
func strs(body map[string]any, key string) []string {
	switch v := body[key].(type) {
	case []any:
		var out []string
		for _, e := range v {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	case string:
		if v == "" {
			return nil
		}
		return strings.Split(v, ",")
	}
	return nil
}

// duration reads a Vault duration: seconds as a number, or a string such as "1h" or "3600".
func duration(body map[string]any, key string, def time.Duration) (time.Duration, error) {
	switch v := body[key].(type) {
	case nil:
		return def, nil
	case float64:
		return time.Duration(v) * time.Second, nil
	case string:
		if v == "" {
			return def, nil
		}
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			return time.Duration(n) * time.Second, nil
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			return 0, errf(http.StatusBadRequest, "invalid duration for %s: %q", key, v)
		}
		return d, nil
	}
	return 0, errf(http.StatusBadRequest, "invalid duration for %s", key)
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func selfSigned() (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "vault-compat"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

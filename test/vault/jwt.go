package vault

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// jwtConfig is auth/<mount>/config of the jwt auth method: where the signing keys come from (exactly
// one of a JWKS URL, static public keys, or OIDC discovery) and the issuer tokens must name.
type jwtConfig struct {
	jwksURL, discoveryURL string
	caPool                *x509.CertPool // verifies the JWKS or discovery server; nil: the system's
	pubkeys               []any
	boundIssuer           string
	algs                  []jose.SignatureAlgorithm
}

// jwtRole is auth/<mount>/role/<name>.
type jwtRole struct {
	roleType       string
	boundAudiences []string
	boundSubject   string
	boundClaims    map[string][]string
	globClaims     bool
	userClaim      string
	leeway         time.Duration
	policies       []string
	ttl, maxTTL    time.Duration
}

// asymmetric are the signature algorithms a JWT role accepts by default: every asymmetric one (an HMAC
// key would have to be shared with the verifier).
var asymmetric = []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.ES256, jose.ES384, jose.ES512,
	jose.PS256, jose.PS384, jose.PS512, jose.EdDSA}

// maxJWKSBytes bounds a fetched key set or discovery document.
const maxJWKSBytes = 1 << 20

// jwtAdmin serves the jwt method's config and roles.
func (s *Server) jwtAdmin(ctx context.Context, mnt, rest, method string, body map[string]any) (any, error) {
	if method != http.MethodPost && method != http.MethodPut {
		return nil, errf(http.StatusMethodNotAllowed, "unsupported operation")
	}
	if rest == "config" {
		cfg, err := parseJWTConfig(body)
		if err != nil {
			return nil, err
		}
		if _, err := s.jwtKeys(ctx, cfg); err != nil { // as Vault does, check the source before saving it
			return nil, errf(http.StatusBadRequest, "error checking the key source: %v", err)
		}
		s.mu.Lock()
		s.jwtCfgs[mnt] = cfg
		s.mu.Unlock()
		return nil, nil
	}
	name, ok := strings.CutPrefix(rest, "role/")
	if !ok || name == "" {
		return nil, errf(http.StatusNotFound, "no handler for route \"auth/%s/%s\". route entry not found.", mnt, rest)
	}
	role := &jwtRole{roleType: str(body, "role_type"), boundAudiences: strs(body, "bound_audiences"),
		boundSubject: str(body, "bound_subject"), userClaim: str(body, "user_claim"),
		globClaims: str(body, "bound_claims_type") == "glob", boundClaims: map[string][]string{}}
	if role.roleType == "" {
		role.roleType = "oidc" // Vault's default; jwt logins need role_type "jwt"
	}
	if role.userClaim == "" {
		return nil, errf(http.StatusBadRequest, "a user claim must be defined on the role")
	}
	if bc, ok := body["bound_claims"].(map[string]any); ok {
		for k := range bc {
			if vals := strs(bc, k); len(vals) > 0 {
				role.boundClaims[k] = vals
			} else {
				return nil, errf(http.StatusBadRequest, "bound claim %q must be a string or a list of strings", k)
			}
		}
	}
	var err error
	if role.leeway, err = duration(body, "clock_skew_leeway", 60*time.Second); err != nil {
		return nil, err
	}
	if role.policies, role.ttl, role.maxTTL, err = tokenParams(body); err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.jwtRoles[mnt+"/"+name] = role
	s.mu.Unlock()
	return nil, nil
}

func parseJWTConfig(body map[string]any) (*jwtConfig, error) {
	cfg := &jwtConfig{jwksURL: str(body, "jwks_url"), discoveryURL: str(body, "oidc_discovery_url"),
		boundIssuer: str(body, "bound_issuer"), algs: asymmetric}
	sources := 0
	for _, set := range []bool{cfg.jwksURL != "", cfg.discoveryURL != "", len(strs(body, "jwt_validation_pubkeys")) > 0} {
		if set {
			sources++
		}
	}
	if sources != 1 {
		return nil, errf(http.StatusBadRequest, "exactly one of 'jwt_validation_pubkeys', 'jwks_url' or 'oidc_discovery_url' must be set")
	}
	for _, p := range strs(body, "jwt_validation_pubkeys") {
		block, _ := pem.Decode([]byte(p))
		if block == nil {
			return nil, errf(http.StatusBadRequest, "error parsing public key: no PEM block")
		}
		key, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, errf(http.StatusBadRequest, "error parsing public key: %v", err)
		}
		cfg.pubkeys = append(cfg.pubkeys, key)
	}
	ca := str(body, "jwks_ca_pem")
	if ca == "" {
		ca = str(body, "oidc_discovery_ca_pem")
	}
	if ca != "" {
		cfg.caPool = x509.NewCertPool()
		if !cfg.caPool.AppendCertsFromPEM([]byte(ca)) {
			return nil, errf(http.StatusBadRequest, "could not parse the CA PEM")
		}
	}
	if algs := strs(body, "jwt_supported_algs"); len(algs) > 0 {
		cfg.algs = nil
		for _, a := range algs {
			if !slices.Contains(asymmetric, jose.SignatureAlgorithm(a)) {
				return nil, errf(http.StatusBadRequest, "unsupported signing algorithm %q", a)
			}
			cfg.algs = append(cfg.algs, jose.SignatureAlgorithm(a))
		}
	}
	return cfg, nil
}

// jwtKeys returns the keys that may have signed a token: the static ones, or a key set fetched
// afresh (a login is rare enough that a fetch per login costs nothing, and a rotated key is seen at
// once).
func (s *Server) jwtKeys(ctx context.Context, cfg *jwtConfig) ([]jose.JSONWebKey, error) {
	if len(cfg.pubkeys) > 0 {
		keys := make([]jose.JSONWebKey, len(cfg.pubkeys))
		for i, k := range cfg.pubkeys {
			keys[i] = jose.JSONWebKey{Key: k}
		}
		return keys, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: cfg.caPool, MinVersion: tls.VersionTLS12}}}
	defer client.CloseIdleConnections()
	url := cfg.jwksURL
	if cfg.discoveryURL != "" {
		var doc struct {
			Issuer  string `json:"issuer"`
			JWKSURI string `json:"jwks_uri"`
		}
		if err := getJSON(ctx, client, strings.TrimSuffix(cfg.discoveryURL, "/")+"/.well-known/openid-configuration", &doc); err != nil {
			return nil, fmt.Errorf("OIDC discovery: %w", err)
		}
		if doc.Issuer != cfg.discoveryURL {
			return nil, fmt.Errorf("OIDC discovery: issuer %q does not match the discovery URL %q", doc.Issuer, cfg.discoveryURL)
		}
		url = doc.JWKSURI
	}
	var set jose.JSONWebKeySet
	if err := getJSON(ctx, client, url, &set); err != nil {
		return nil, fmt.Errorf("fetching keys: %w", err)
	}
	if len(set.Keys) == 0 {
		return nil, errors.New("the key set is empty")
	}
	return set.Keys, nil
}

func getJSON(ctx context.Context, client *http.Client, url string, dst any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return err
	}
	if len(b) > maxJWKSBytes {
		return fmt.Errorf("%s: larger than %d bytes", url, maxJWKSBytes)
	}
	return json.Unmarshal(b, dst)
}

// jwtLogin is auth/<mount>/login of the jwt method: it verifies the token's signature and claims
// against the mount's config and the named role, and issues a token with the role's policies.
func (s *Server) jwtLogin(ctx context.Context, mnt string, body map[string]any) (any, error) {
	name, raw := str(body, "role"), str(body, "jwt")
	if raw == "" {
		return nil, errf(http.StatusBadRequest, "missing token")
	}
	s.mu.Lock()
	cfg, role := s.jwtCfgs[mnt], s.jwtRoles[mnt+"/"+name]
	s.mu.Unlock()
	if cfg == nil {
		return nil, errf(http.StatusBadRequest, "could not load configuration")
	}
	if role == nil {
		return nil, errf(http.StatusBadRequest, "role %q could not be found", name)
	}
	if role.roleType != "jwt" {
		return nil, errf(http.StatusBadRequest, "role with oidc role_type is not allowed")
	}
	tok, err := jwt.ParseSigned(raw, cfg.algs)
	if err != nil {
		return nil, errf(http.StatusBadRequest, "error validating token: %v", err)
	}
	keys, err := s.jwtKeys(ctx, cfg)
	if err != nil {
		return nil, errf(http.StatusBadRequest, "error validating token: %v", err)
	}
	var (
		std    jwt.Claims
		all    map[string]any
		signed bool
	)
	kid := tok.Headers[0].KeyID
	for _, k := range keys {
		if kid != "" && k.KeyID != "" && k.KeyID != kid {
			continue
		}
		if tok.Claims(k.Key, &std, &all) == nil {
			signed = true
			break
		}
	}
	if !signed {
		return nil, errf(http.StatusBadRequest, "error validating token: failed to verify id token signature")
	}
	if err := checkClaims(cfg, role, std, all, s.now()); err != nil {
		return nil, errf(http.StatusBadRequest, "error validating token: %v", err)
	}
	user := fmt.Sprint(all[role.userClaim])
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.loginResponse(role.policies, role.ttl, role.maxTTL, map[string]string{"role": name, role.userClaim: user}), nil
}

// checkClaims applies a role's bindings to a verified token's claims, as Vault's jwt method does: the
// time claims within the role's leeway (and an expiry is required), the issuer, the audiences (a token
// with an audience needs a role that binds one), the subject, the bound claims, and the user claim.
func checkClaims(cfg *jwtConfig, role *jwtRole, std jwt.Claims, all map[string]any, now time.Time) error {
	if std.Expiry == nil {
		return errors.New("the token has no expiry (exp)")
	}
	issuer := cfg.boundIssuer
	if cfg.discoveryURL != "" {
		issuer = cfg.discoveryURL
	}
	if err := std.ValidateWithLeeway(jwt.Expected{Issuer: issuer, Time: now}, role.leeway); err != nil {
		return err
	}
	switch {
	case len(role.boundAudiences) > 0:
		if !slices.ContainsFunc(role.boundAudiences, std.Audience.Contains) {
			return errors.New("invalid audience (aud) claim: audience claim does not match any expected audience")
		}
	case len(std.Audience) > 0:
		return errors.New("audience claim found in JWT but no audiences bound to the role")
	}
	if role.boundSubject != "" && std.Subject != role.boundSubject {
		return errors.New("sub claim does not match bound subject")
	}
	for claim, want := range role.boundClaims {
		got, ok := all[claim].(string)
		if !ok || !slices.ContainsFunc(want, func(w string) bool { return w == got || (role.globClaims && globMatch(w, got)) }) {
			return fmt.Errorf("claim %q does not match any associated bound claim values", claim)
		}
	}
	switch all[role.userClaim].(type) {
	case string, float64:
		return nil
	}
	return fmt.Errorf("claim %q not found in token", role.userClaim)
}

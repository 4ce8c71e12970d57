package vault

import (
	"crypto/x509"
	"net/http"
	"strings"
	"time"
)

// certRole is an auth/cert role ("certs/<name>").
type certRole struct {
	name           string
	roots          *x509.CertPool
	allowedURISANs []string // globs, as path.Match understands them
	policies       []string
	ttl, maxTTL    time.Duration
}

func (s *Server) writeCertRole(name, method string, body map[string]any) (any, error) {
	if method != http.MethodPost && method != http.MethodPut {
		return nil, errf(http.StatusMethodNotAllowed, "unsupported operation")
	}
	s.mu.Lock()
	_, enabled := s.authMnts["cert"]
	s.mu.Unlock()
	if !enabled {
		return nil, errf(http.StatusNotFound, "no handler for route \"auth/cert/certs/%s\". route entry not found.", name)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(str(body, "certificate"))) {
		return nil, errf(http.StatusBadRequest, "failed to parse certificate")
	}
	ttl, err := duration(body, "token_ttl", time.Hour)
	if err != nil {
		return nil, err
	}
	maxTTL, err := duration(body, "token_max_ttl", 24*time.Hour)
	if err != nil {
		return nil, err
	}
	policies := strs(body, "token_policies")
	if len(policies) == 0 {
		policies = strs(body, "policies")
	}
	s.mu.Lock()
	s.certs[name] = &certRole{name: name, roots: roots, allowedURISANs: strs(body, "allowed_uri_sans"), policies: policies, ttl: ttl, maxTTL: maxTTL}
	s.mu.Unlock()
	return nil, nil
}

// certLogin authenticates the TLS client certificate against the roles (or the one named), as
// auth/cert/login does, and issues a token with the role's policies.
func (s *Server) certLogin(r *http.Request, body map[string]any) (any, error) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil, errf(http.StatusBadRequest, "client certificate must be supplied")
	}
	leaf := r.TLS.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range r.TLS.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.authMnts["cert"]; !ok {
		return nil, errf(http.StatusNotFound, "no handler for route \"auth/cert/login\". route entry not found.")
	}
	want := str(body, "name")
	for name, role := range s.certs {
		if want != "" && name != want {
			continue
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: role.roots, Intermediates: inter,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, CurrentTime: s.now()}); err != nil {
			continue
		}
		if !uriAllowed(leaf, role.allowedURISANs) {
			continue
		}
		t := s.issueToken(role.policies, role.ttl, role.maxTTL)
		uri := ""
		if len(leaf.URIs) > 0 {
			uri = leaf.URIs[0].String()
		}
		return map[string]any{"auth": map[string]any{"client_token": t.id, "accessor": t.accessor, "policies": t.policies,
			"token_policies": t.policies, "metadata": map[string]string{"cert_name": name, "common_name": leaf.Subject.CommonName, "uri": uri},
			"lease_duration": int64(role.ttl.Seconds()), "renewable": true}}, nil
	}
	return nil, errf(http.StatusBadRequest, "invalid certificate or no client certificate supplied")
}

func uriAllowed(leaf *x509.Certificate, globs []string) bool {
	if len(globs) == 0 {
		return true
	}
	for _, u := range leaf.URIs {
		for _, g := range globs {
			if globMatch(g, u.String()) {
				return true
			}
		}
	}
	return false
}

// globMatch matches as Vault's allowed_uri_sans does: "*" stands for any run of characters, "/"
// included.
func globMatch(pattern, s string) bool {
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		return pattern == s
	}
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(s, p)
		if i < 0 {
			return false
		}
		s = s[i+len(p):]
	}
	return strings.HasSuffix(s, parts[len(parts)-1])
}

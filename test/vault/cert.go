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

func (s *Server) writeCertRole(mnt, name, method string, body map[string]any) (any, error) {
	if method != http.MethodPost && method != http.MethodPut {
		return nil, errf(http.StatusMethodNotAllowed, "unsupported operation")
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(str(body, "certificate"))) {
		return nil, errf(http.StatusBadRequest, "failed to parse certificate")
	}
	policies, ttl, maxTTL, err := tokenParams(body)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.certs[mnt+"/"+name] = &certRole{name: name, roots: roots, allowedURISANs: strs(body, "allowed_uri_sans"), policies: policies, ttl: ttl, maxTTL: maxTTL}
	s.mu.Unlock()
	return nil, nil
}

// certLogin authenticates the TLS client certificate against the mount's roles (or the one named), as
// auth/<mount>/login does, and issues a token with the role's policies.
func (s *Server) certLogin(r *http.Request, mnt string, body map[string]any) (any, error) {
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
	want := str(body, "name")
	for key, role := range s.certs {
		name, ok := strings.CutPrefix(key, mnt+"/")
		if !ok || (want != "" && name != want) {
			continue
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: role.roots, Intermediates: inter,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, CurrentTime: s.now()}); err != nil {
			continue
		}
		if !uriAllowed(leaf, role.allowedURISANs) {
			continue
		}
		uri := ""
		if len(leaf.URIs) > 0 {
			uri = leaf.URIs[0].String()
		}
		return s.loginResponse(role.policies, role.ttl, role.maxTTL,
			map[string]string{"cert_name": name, "common_name": leaf.Subject.CommonName, "uri": uri}), nil
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

package vault

import (
	"net/http"
	"slices"
	"strings"

	hcl "github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// rule is one `path "..." { capabilities = [...] }` stanza of an ACL policy.
type rule struct {
	Path         string   `hcl:"path,label"`
	Capabilities []string `hcl:"capabilities"`
}

func (s *Server) writePolicy(name, method string, body map[string]any) (any, error) {
	switch method {
	case http.MethodPost, http.MethodPut:
	case http.MethodDelete:
		s.mu.Lock()
		delete(s.policies, name)
		s.mu.Unlock()
		return nil, nil
	default:
		return nil, errf(http.StatusMethodNotAllowed, "unsupported operation")
	}
	if name == "root" || name == "default" {
		return nil, errf(http.StatusBadRequest, "cannot update %q policy", name)
	}
	text := str(body, "policy")
	file, diags := hclsyntax.ParseConfig([]byte(text), name, hcl.InitialPos)
	if diags.HasErrors() {
		return nil, errf(http.StatusBadRequest, "failed to parse policy: %s", diags.Error())
	}
	var p struct {
		Rules []rule `hcl:"path,block"`
	}
	if diags := gohcl.DecodeBody(file.Body, nil, &p); diags.HasErrors() {
		return nil, errf(http.StatusBadRequest, "failed to parse policy: %s", diags.Error())
	}
	for _, r := range p.Rules {
		for _, c := range r.Capabilities {
			if !slices.Contains([]string{"create", "read", "update", "patch", "delete", "list", "sudo", "deny"}, c) {
				return nil, errf(http.StatusBadRequest, "invalid capability %q in path %q", c, r.Path)
			}
		}
	}
	s.mu.Lock()
	s.policies[name] = p.Rules
	s.mu.Unlock()
	return nil, nil
}

// allowed applies the token's policies to a request, as Vault does: the most specific matching path
// decides (an exact path over a glob, a longer glob over a shorter), and "deny" overrides.
func (s *Server) allowed(t *token, path, method string) error {
	if slices.Contains(t.policies, "root") {
		return nil
	}
	want := map[string][]string{
		http.MethodGet: {"read"}, "LIST": {"list"}, http.MethodDelete: {"delete"},
		http.MethodPost: {"create", "update"}, http.MethodPut: {"create", "update"},
	}[method]
	s.mu.Lock()
	defer s.mu.Unlock()
	var best *rule
	bestScore := -1
	for _, name := range t.policies {
		for i, r := range s.policies[name] {
			if score := matchScore(r.Path, path); score > bestScore {
				best, bestScore = &s.policies[name][i], score
			}
		}
	}
	if best == nil || slices.Contains(best.Capabilities, "deny") {
		return errPermission
	}
	for _, c := range want {
		if slices.Contains(best.Capabilities, c) {
			return nil
		}
	}
	return errPermission
}

// matchScore is -1 when pattern does not match path, and otherwise higher for more specific patterns.
func matchScore(pattern, path string) int {
	glob := strings.HasSuffix(pattern, "*")
	p := strings.TrimSuffix(pattern, "*")
	ps, xs := strings.Split(p, "/"), strings.Split(path, "/")
	if !glob && len(ps) != len(xs) {
		return -1
	}
	if glob && len(xs) < len(ps) {
		return -1
	}
	for i, seg := range ps {
		last := i == len(ps)-1
		switch {
		case seg == "+" && !(last && glob):
		case last && glob:
			if !strings.HasPrefix(xs[i], seg) {
				return -1
			}
		case seg != xs[i]:
			return -1
		}
	}
	score := len(p) * 2
	if !glob {
		score += 1 << 20 // an exact path beats every glob
	}
	return score
}

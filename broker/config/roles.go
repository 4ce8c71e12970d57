package config

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/policies"
)

// credentialRoles checks where a target's credential comes from against its catalog's credential
// roles. With auth = "vault" and credential roles, Cedar picks one per session (authz.PickRole), so
// the backend names no fixed vault_role or vault_path, a policy block must exist, and each role maps
// to a database engine role under vault.mount: its vault_role, or its own name. Without credential
// roles, the backend names exactly one of vault_role and vault_path, as before roles were picked.
func (v *validator) credentialRoles(t *Target, at string) {
	var roles []RoleBlock
	blocks := 0
	for _, cb := range v.c.Catalogs {
		if cb.Target == t.Name {
			roles = append(roles, cb.Roles...)
			blocks++
		}
	}
	if blocks > 1 {
		v.fail("Duplicate catalog", fmt.Sprintf("target %q has %d catalog blocks; write one, holding all its tables and credential roles.", t.Name, blocks), "catalog:"+t.Name)
	}
	v.routes(t)
	v.roleBlocks(t, roles)
	b := &t.Backend
	t.VaultRoles = nil
	if b.Auth != "vault" {
		for _, r := range roles {
			if r.VaultRole != "" {
				v.fail("Vault role without Vault", fmt.Sprintf("credential_role %q names vault_role %q, but target %q has auth = %q: its sessions take no credential from Vault. Remove vault_role, or set auth = \"vault\".",
					r.Name, r.VaultRole, t.Name, b.Auth), "catalog:"+t.Name, "credential_role:"+r.Name, "vault_role")
			}
		}
		return
	}
	if len(roles) == 0 {
		if (b.VaultRole == "") == (b.VaultPath == "") {
			v.fail("Missing vault_role", fmt.Sprintf("with auth = \"vault\", list credential_role blocks in catalog %q (Cedar then picks one per session), or set exactly one of backend.vault_role (one database engine role for every session) and backend.vault_path (any Vault path that returns a leased secret).", t.Name),
				at, "backend", "vault_role")
		}
		return
	}
	var names []string
	for _, r := range roles {
		names = append(names, r.Name)
	}
	if b.VaultRole != "" || b.VaultPath != "" {
		attr, value := "vault_role", b.VaultRole
		if b.VaultPath != "" {
			attr, value = "vault_path", b.VaultPath
		}
		mount := "<vault.mount>"
		if b.VaultMount != "" {
			mount = b.VaultMount
		}
		v.fail("Two credential sources", fmt.Sprintf("catalog %q lists credential roles (%s), and Cedar picks one of them per session; backend.%s = %q would give every session the same credential. Remove backend.%s: each credential_role leases from %s/creds/<its vault_role, default its name>.",
			t.Name, strings.Join(names, ", "), attr, value, attr, mount), at, "backend", attr)
		return
	}
	if v.c.Policy == nil {
		v.fail("Credential roles without policies", fmt.Sprintf("catalog %q lists credential roles (%s), which Cedar picks per session: add a policy block, or remove the credential_role blocks and set backend.vault_role.",
			t.Name, strings.Join(names, ", ")), at, "backend", "auth")
		return
	}
	t.VaultRoles = map[string]string{}
	for _, r := range roles {
		vr := r.VaultRole
		if vr == "" {
			vr = r.Name
		}
		t.VaultRoles[r.Name] = vr
	}
}

// roleBlocks checks a target's credential roles: unique names, covers that are actions of the schema
// a session of the target's protocol sends (statement actions, or HTTP request actions for an http
// target; a misspelt one would never be needed, so the role would never be picked), and Vault role
// names that are one path segment.
func (v *validator) roleBlocks(t *Target, roles []RoleBlock) {
	target := t.Name
	actions, kind, example := coverActions().sql, "statement action", "sql:select"
	switch t.Protocol {
	case "http":
		actions, kind, example = coverActions().http, "HTTP request action", "http:get"
	case "mcp":
		actions, kind, example = []string{authz.ActionMCPCall, authz.ActionMCPRead, authz.ActionMCPPrompt}, "MCP request action", "mcp:call"
	}
	seen := map[string]bool{}
	for _, r := range roles {
		at := []string{"catalog:" + target, "credential_role:" + r.Name}
		if seen[r.Name] {
			v.fail("Duplicate credential role", fmt.Sprintf("catalog %q lists credential_role %q twice.", target, r.Name), at...)
		}
		seen[r.Name] = true
		if !pathSegment(r.Name) {
			v.fail("Invalid credential role name", fmt.Sprintf("credential_role %q: a name is one Vault path segment (no \"/\", spaces, \"..\"), such as \"shop-read\".", r.Name), at...)
		}
		if r.VaultRole != "" && !pathSegment(r.VaultRole) {
			v.fail("Invalid vault_role", fmt.Sprintf("credential_role %q: vault_role %q must be one Vault path segment (no \"/\", spaces, \"..\"), the database engine role's name.", r.Name, r.VaultRole), append(at, "vault_role")...)
		}
		if len(r.Covers) == 0 {
			v.fail("Credential role covers nothing", fmt.Sprintf("credential_role %q has no covers, so Cedar never picks it: list the %ss it is for, such as covers = [%q].", r.Name, kind, example), at...)
		}
		for _, a := range r.Covers {
			if !slices.Contains(actions, a) {
				v.fail("Unknown action", fmt.Sprintf("credential_role %q covers %q, which is not a%s %s of target %q (protocol %q); use one of %q.",
					r.Name, a, article(kind), kind, target, t.Protocol, actions), append(at, "covers")...)
			}
		}
	}
}

// coverActions are the schema's statement actions and HTTP request actions: what a credential role
// can cover; none if the embedded schema does not parse, which policies' own tests rule out. The
// schema is embedded, so it is parsed once per process, not once per target each time a
// configuration is loaded; the actions do not depend on the catalog.
var coverActions = sync.OnceValue(func() struct{ sql, http []string } {
	s, err := authz.ParseSchema("svidbroker.cedarschema", policies.Schema)
	if err != nil {
		return struct{ sql, http []string }{}
	}
	return struct{ sql, http []string }{s.StatementActions(), s.HTTPActions()}
})

func article(word string) string {
	if strings.HasPrefix(word, "HTTP") || strings.HasPrefix(word, "MCP") {
		return "n"
	}
	return ""
}

func pathSegment(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsFunc(s, func(r rune) bool {
		return r == '/' || r == '\\' || r <= ' ' || r == 0x7f
	})
}

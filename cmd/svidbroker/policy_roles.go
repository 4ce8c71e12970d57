package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/broker/config"
	"github.com/svidbroker/svidbroker/broker/identity"
)

// sessionRole is the credential role a caller's sessions of one target run with, as `policy can`
// reports it: picked by authz.Authorizer.PickRole, the function the broker calls at every connect.
type sessionRole struct {
	Target string `json:"target"`
	// Role is the picked credential role, VaultRole the database engine role it leases from.
	Role      string   `json:"role,omitempty"`
	VaultRole string   `json:"vaultRole,omitempty"`
	For       []string `json:"for,omitempty"`
	Uncovered []string `json:"uncovered,omitempty"`
	Policies  []string `json:"policies,omitempty"`
	// Refused says why sessions are refused at connect: no role is picked.
	Refused string `json:"refused,omitempty"`
	// Fixed says which one credential every session uses, when the target picks no role.
	Fixed string `json:"fixed,omitempty"`
}

// sessionRoles picks, for every target of cfg, the credential role the caller's sessions get. The
// connection facts are those of a TLS 1.3 client from an unspecified address, as `policy can` asks
// its other questions.
func sessionRoles(cfg *config.Config, az *authz.Authorizer, id spiffeid.ID, selectors []string) []sessionRole {
	peer := identity.Peer{ID: id, Attestation: &identity.Attestation{Selectors: selectors}}
	var out []sessionRole
	for _, t := range cfg.Targets {
		r := sessionRole{Target: t.Name}
		switch {
		case t.VaultRoles == nil && len(catalogRoles(az, t.Name)) == 0:
			continue
		case t.VaultRoles == nil:
			r.Fixed = fixedCredential(t.Backend)
		default:
			pick, err := az.PickRole(authz.Connect{Peer: peer, Target: t.Name,
				TLS: tls.ConnectionState{Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256}})
			if err != nil {
				r.Refused = err.Error()
				if !errors.Is(err, authz.ErrNoRole) {
					r.Refused = "no role could be picked: " + err.Error()
				}
			} else {
				r.Role, r.VaultRole, r.For, r.Uncovered, r.Policies = pick.Role, t.VaultRoles[pick.Role], pick.For, pick.Uncovered, pick.Decision.Reasons
			}
		}
		out = append(out, r)
	}
	return out
}

// fixedCredential names the one credential a target's sessions use when no role is picked.
func fixedCredential(b config.Backend) string {
	switch {
	case b.Auth == "svid":
		return fmt.Sprintf("the broker's SVID, as backend user %q (auth = \"svid\"); credential:use decides nothing here", b.User)
	case b.Auth == "vault-kv":
		return fmt.Sprintf("the kv-v2 secret %s/%s (auth = \"vault-kv\"); credential:use decides nothing here", b.VaultKVMount, b.VaultKVPath)
	case b.VaultPath != "":
		return fmt.Sprintf("Vault path %s (backend.vault_path); credential:use decides nothing here", b.VaultPath)
	default:
		return fmt.Sprintf("Vault role %s (backend.vault_role); credential:use decides nothing here", b.VaultRole)
	}
}

func printSessionRoles(w io.Writer, roles []sessionRole) {
	if len(roles) == 0 {
		return
	}
	fmt.Fprintln(w, "\nCredential role of its sessions (what the broker picks at connect):")
	for _, r := range roles {
		switch {
		case r.Refused != "":
			fmt.Fprintf(w, "  %-10s refused at connect: %s\n", r.Target, r.Refused)
		case r.Fixed != "":
			fmt.Fprintf(w, "  %-10s fixed: %s\n", r.Target, r.Fixed)
		default:
			fmt.Fprintf(w, "  %-10s %s (Vault role %s), for %s; credential:use permitted by %s\n",
				r.Target, r.Role, r.VaultRole, strings.Join(r.For, ", "), strings.Join(r.Policies, ", "))
			if len(r.Uncovered) > 0 {
				fmt.Fprintf(w, "  %-10s note: %s permitted, but only by roles credential:use does not permit: such statements fail in the database, such requests upstream\n",
					"", strings.Join(r.Uncovered, ", "))
			}
		}
	}
}

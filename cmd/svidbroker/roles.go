package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/broker/config"
	"github.com/svidbroker/svidbroker/broker/credential"
)

// rolePicker returns how a target's sessions get their credential role: Cedar's pick
// (authz.Authorizer.PickRole, the function `policy can` shows) when the target leases per role, and
// nil when its credential is fixed. A fixed credential beside catalog credential roles is logged:
// credential:use then decides nothing for the target.
func rolePicker(t config.Target, az *authz.Authorizer, log *slog.Logger) (func(context.Context, authz.Connect) (authz.RolePick, error), error) {
	if t.VaultRoles == nil {
		if roles := catalogRoles(az, t.Name); len(roles) > 0 {
			log.Warn("the target's catalog lists credential roles, but its backend logs every session in with one credential: credential:use decides nothing for it; use auth = \"vault\" without vault_role for Cedar to pick a role per session",
				"target", t.Name, "auth", t.Backend.Auth, "credential_roles", roles)
		}
		return nil, nil
	}
	if az == nil {
		return nil, fmt.Errorf("target %q: credential roles are picked by Cedar, and there is no policy block", t.Name)
	}
	return func(ctx context.Context, c authz.Connect) (authz.RolePick, error) {
		pick, err := az.PickRole(c)
		log.DebugContext(ctx, "credential role", "target", c.Target, "spiffe_id", c.Peer.ID.String(), "role", pick.Role,
			"for", pick.For, "decision", pick.Decision.ID, "policies", pick.Decision.Reasons, "error", err)
		return pick, err
	}, nil
}

// roleSource is where a session's credential comes from: the target's fixed source, or, for a picked
// role, the secrets engine role it maps to under the backend's vault_mount.
func roleSource(t config.Target, fixed credential.Source, role string) (credential.Source, error) {
	if t.VaultRoles == nil {
		return fixed, nil
	}
	vr, ok := t.VaultRoles[role]
	if !ok {
		return credential.Source{}, fmt.Errorf("target %q: credential role %q is not in its catalog", t.Name, role)
	}
	fixed.Path = t.Backend.VaultMount + "/creds/" + vr
	return fixed, nil
}

// catalogRoles names a target's catalog credential roles.
func catalogRoles(az *authz.Authorizer, target string) []string {
	if az == nil {
		return nil
	}
	var out []string
	for _, ct := range az.Catalog.Targets {
		if ct.Name == target {
			for _, r := range ct.Roles {
				out = append(out, r.Name)
			}
		}
	}
	return out
}

// backendCredential says how a target's sessions prove themselves to its backend: with the broker's
// own SVID as the TLS client certificate (auth = "svid"; lease is nil), or with a credential leased
// per session from Vault for the session's credential role (clientCert is nil). tokenOnly: the
// secret is a token alone, with no username (an http target's).
func backendCredential(t config.Target, svid x509svid.Source, leases *credential.Manager, tokenOnly bool, log *slog.Logger) (
	clientCert x509svid.Source, lease func(context.Context, authz.Connect, string, func(error)) (*credential.Session, error)) {
	src := credentialSource(t.Backend)
	if src == nil {
		return svid, nil
	}
	src.TokenOnly = tokenOnly
	if src.Kind == credential.Static {
		log.Warn("target uses a static credential from a kv-v2 secret: shared by its sessions, living beyond them, never revoked by the broker; prefer a dynamic source",
			"target", t.Name, "secret", src.String())
	}
	return nil, func(ctx context.Context, c authz.Connect, role string, end func(error)) (*credential.Session, error) {
		s, err := roleSource(t, *src, role)
		if err != nil {
			return nil, err
		}
		return leases.Start(ctx, c.Peer.ID.String(), s, end)
	}
}

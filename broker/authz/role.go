package authz

import (
	"crypto/tls"
	"fmt"
	"slices"
)

// PickRole chooses the credential role for a session: the target's roles are tried from least to most
// privileged, and the first one that covers the action and that credential:use permits for the caller
// wins. It returns that role's decision, or a *Denied error when no role qualifies.
func (a *Authorizer) PickRole(c Connect, action string) (string, Decision, error) {
	var target *CatalogTarget
	for i := range a.Catalog.Targets {
		if a.Catalog.Targets[i].Name == c.Target {
			target = &a.Catalog.Targets[i]
		}
	}
	if target == nil || len(target.Roles) == 0 {
		return "", Decision{}, fmt.Errorf("authz: target %q has no credential roles in the catalog", c.Target)
	}
	ents := a.Entities(c.Peer)
	ctx := ConnectionContext(a.now(), c.Source, tls.VersionName(c.TLS.Version), tls.CipherSuiteName(c.TLS.CipherSuite))
	var last Decision
	for _, r := range target.Roles {
		if !slices.Contains(r.Covers, action) {
			continue
		}
		last = a.Engine.Decide(Request{Principal: WorkloadUID(c.Peer.ID), Action: Action("credential:use"),
			Resource: RoleUID(c.Target, r.Name), Context: ctx, Entities: ents})
		if last.Allow {
			return r.Name, last, nil
		}
	}
	return "", last, &Denied{Decision: last, What: fmt.Sprintf("a credential role of target %q for %s", c.Target, action)}
}

// ColumnMask asks column:read-unmasked for one column of a result. It returns "" when the caller may
// read the column in clear, and otherwise the masking strategy: the one the deciding policies name with
// @mask, or def when none does (a default deny, or a forbid without @mask).
func (a *Authorizer) ColumnMask(c Connect, table, column string, st Statement, ap ApprovalState, def string) (string, Decision) {
	d := a.Engine.Decide(Request{
		Principal: WorkloadUID(c.Peer.ID), Action: Action("column:read-unmasked"),
		Resource: ColumnUID(c.Target, table, column),
		Context:  StatementContext(a.now(), c.Source, tls.VersionName(c.TLS.Version), tls.CipherSuiteName(c.TLS.CipherSuite), st, ap),
		Entities: a.Entities(c.Peer),
	})
	return maskStrategy(d, def), d
}

// maskStrategy is the strategy a column:read-unmasked decision implies: none when allowed, else the
// deciding policies' @mask, else def.
func maskStrategy(d Decision, def string) string {
	switch {
	case d.Allow:
		return ""
	case d.Obligations.Mask != "":
		return d.Obligations.Mask
	default:
		return def
	}
}

package authz

import (
	"crypto/tls"
)

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

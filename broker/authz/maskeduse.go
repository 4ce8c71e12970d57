package authz

import (
	"crypto/tls"
	"fmt"
	"strings"

	"github.com/cedar-policy/cedar-go/types"
)

// ActionUseMasked is the action that lets a caller use a column masked for it other than as a plain
// column of a result: in WHERE, JOIN ... ON, ORDER BY, GROUP BY, HAVING, a window, a function's
// arguments, a set operation or a write. Each such use can reveal the hidden values (which rows match
// a guess, how values sort, which are equal), so it is denied unless a policy permits it.
const ActionUseMasked = "column:use-masked"

// MaskedUse says how a statement uses a masked column.
type MaskedUse struct {
	// Clause is where: "where", "join", "order", "group", "having", "window", "function", "limit",
	// "set-operation" or "write".
	Clause string
	// Equality is set when the use is an equality with another column's plain value (a = b, or a
	// join's USING column), a column of a relation that existed when the session began: the statement
	// compares hidden values with each other, not with values of the caller's choosing.
	Equality bool
	// WithColumn is that other column's entity ID ("shop/public.orders.customer_email"), when Equality.
	WithColumn string
}

// withTags returns the catalog's tags of the column u.WithColumn names (none for a column the catalog
// does not list), so that a policy can permit comparisons of hidden values with hidden values only.
func withTags(static types.EntityMap, u MaskedUse) types.Set {
	if u.WithColumn != "" {
		if e, ok := static[types.NewEntityUID(TypeColumn, types.String(u.WithColumn))]; ok {
			if v, ok := e.Attributes.Get("tags"); ok {
				if set, ok := v.(types.Set); ok {
					return set
				}
			}
		}
	}
	return types.NewSet()
}

// MaskedUseContext is the context of column:use-masked decisions: the statement's, and the use, with
// the tags the catalog (static) gives the other column.
func MaskedUseContext(base types.Record, u MaskedUse, static types.EntityMap) types.Record {
	m := types.RecordMap{}
	for k, v := range base.All() {
		m[k] = v
	}
	m["use"] = types.NewRecord(types.RecordMap{
		"clause":     types.String(u.Clause),
		"equality":   types.Boolean(u.Equality),
		"withColumn": types.String(u.WithColumn),
		"withTags":   withTags(static, u),
	})
	return types.NewRecord(m)
}

// UseMasked decides column:use-masked for one use of a masked column, through memo.
func (a *Authorizer) UseMasked(c Connect, table, column string, st Statement, ap ApprovalState, u MaskedUse, memo *Memo) Decision {
	key := fmt.Sprintf("use\x00%s.%s\x00%s\x00%t\x00%s\x00%s", table, column, u.Clause, u.Equality, u.WithColumn, statementKey(st, ap))
	return memo.decide(a.Engine, a.now(), key, func() Decision {
		base := StatementContext(a.now(), c.Source, tls.VersionName(c.TLS.Version), tls.CipherSuiteName(c.TLS.CipherSuite), st, ap)
		return a.Engine.Decide(Request{
			Principal: WorkloadUID(c.Peer.ID), Action: Action(ActionUseMasked),
			Resource: ColumnUID(c.Target, table, column),
			Context:  MaskedUseContext(base, u, a.static),
			Entities: a.Entities(c.Peer),
		})
	})
}

// ColumnID is the entity ID of column "schema.table.column" of target, "" for "".
func ColumnID(target, qualified string) string {
	if qualified == "" {
		return ""
	}
	table, column := qualified, ""
	if i := strings.LastIndexByte(qualified, '.'); i > 0 {
		table, column = qualified[:i], qualified[i+1:]
	}
	return string(ColumnUID(target, table, column).ID)
}

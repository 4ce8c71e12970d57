package authz

import (
	"crypto/tls"
	"fmt"
	"strings"
	"time"

	"github.com/cedar-policy/cedar-go/types"
)

// Access is one table a statement touches, and how ("select", "insert", "ddl", ...).
type Access struct {
	Action string
	Table  string // "schema.name"
}

// Statement decides one classified statement: sql:<access> for each table it touches, against that
// Table, and sql:<kind> against the Target when no table access carries the statement's own kind (a
// statement without tables, or an admin construct inside a query). Every decision must allow. It
// returns the deciding decision: the first denial, or the allows combined (their policies and the
// strictest of their obligations), and a *Denied error when it is not an allow.
func (a *Authorizer) Statement(c Connect, st Statement, accesses []Access, ap ApprovalState, memo *Memo) (Decision, error) {
	now := a.now()
	principal := WorkloadUID(c.Peer.ID)
	ctxKey := statementKey(st, ap)
	// The context and the entities are built only when the memo does not have the answer.
	var ctx types.Record
	var ents Entities
	built := false
	decide := func(action string, resource types.EntityUID) Decision {
		return memo.decide(a.Engine, now, action+"\x00"+string(resource.ID)+"\x00"+ctxKey, func() Decision {
			if !built {
				ctx = StatementContext(now, c.Source, tls.VersionName(c.TLS.Version), tls.CipherSuiteName(c.TLS.CipherSuite), st, ap)
				ents, built = a.Entities(c.Peer), true
			}
			return a.Engine.Decide(Request{Principal: principal, Action: Action(action), Resource: resource, Context: ctx, Entities: ents})
		})
	}
	var allows []Decision
	own := false
	for _, acc := range accesses {
		own = own || acc.Action == st.Kind
		d := decide("sql:"+acc.Action, TableUID(c.Target, acc.Table))
		if !d.Allow {
			return d, &Denied{Decision: d, What: fmt.Sprintf("%s on table %s", strings.ToUpper(acc.Action), acc.Table)}
		}
		allows = append(allows, d)
	}
	if !own {
		d := decide("sql:"+st.Kind, TargetUID(c.Target))
		if !d.Allow {
			return d, &Denied{Decision: d, What: fmt.Sprintf("%s statement on target %q", strings.ToUpper(st.Kind), c.Target)}
		}
		allows = append(allows, d)
	}
	return Combine(allows...), nil
}

// StatementColumnMask is ColumnMask through memo.
func (a *Authorizer) StatementColumnMask(c Connect, table, column string, st Statement, ap ApprovalState, def string, memo *Memo) (string, Decision) {
	d := memo.decide(a.Engine, a.now(), "column\x00"+table+"."+column+"\x00"+statementKey(st, ap), func() Decision {
		_, d := a.ColumnMask(c, table, column, st, ap, def)
		return d
	})
	return maskStrategy(d, def), d
}

func statementKey(st Statement, ap ApprovalState) string {
	var b strings.Builder
	b.WriteString(st.Kind)
	for _, t := range st.Tables {
		b.WriteString("\x01" + t)
	}
	b.WriteString("\x02")
	for _, f := range st.Functions {
		b.WriteString("\x01" + f)
	}
	fmt.Fprintf(&b, "\x02%t\x02%s\x02%s", st.MultiStatement, ap.State, ap.Approver)
	return b.String()
}

// Epoch is the span a Memo's decisions hold for: one second of the authorizer's clock (the finest grain
// of the time a policy can see) under one policy set. Within one epoch, a session's decisions for
// identical inputs are the same decisions.
type Epoch struct {
	sec    int64
	digest string
}

// Epoch returns the current epoch.
func (a *Authorizer) Epoch() Epoch { return Epoch{sec: a.now().Unix(), digest: a.Engine.Digest()} }

// Memo remembers a session's decisions for identical inputs. An entry lives only within the same
// second (the finest grain of the time a policy can see) and the same policy set, so a memoized
// decision is the one the engine would give. A nil *Memo decides every time. It is not safe for
// concurrent use.
type Memo struct {
	epoch   Epoch
	entries map[string]Decision
}

// MaxMemoEntries bounds a Memo.
const MaxMemoEntries = 1024

func (m *Memo) decide(e *Engine, now time.Time, key string, f func() Decision) Decision {
	if m == nil {
		return f()
	}
	epoch := Epoch{sec: now.Unix(), digest: e.Digest()}
	if m.entries == nil || m.epoch != epoch || len(m.entries) >= MaxMemoEntries {
		m.entries, m.epoch = map[string]Decision{}, epoch
	}
	if d, ok := m.entries[key]; ok {
		return d
	}
	d := f()
	m.entries[key] = d
	return d
}

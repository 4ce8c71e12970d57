package authz

import (
	"crypto/tls"
	"fmt"
	"slices"

	"github.com/cedar-policy/cedar-go/types"
)

// TypeFunction is a function defined in the database (outside pg_catalog and information_schema).
const TypeFunction types.EntityType = "Function"

// ActionCallFunction decides each database function a statement may call.
const ActionCallFunction = "sql:call-function"

// Function is a database function as the backend's catalog describes it, for one session: one
// overload of one name in one schema.
type Function struct {
	Schema, Name string
	// Arguments are its identity arguments, as pg_get_function_identity_arguments gives them
	// ("integer, text"): overloads of one name are separate functions.
	Arguments string
	// Volatility is "immutable", "stable" or "volatile" (provolatile).
	Volatility string
	// SecurityDefiner: it runs with its owner's privileges (prosecdef).
	SecurityDefiner bool
	// Language is its language's name ("sql", "plpgsql", "c", ...), and Owner its owner's role name.
	Language, Owner string
}

// Writes reports whether f may change data, or does what it does with privileges the caller may
// lack: it is volatile or SECURITY DEFINER. PostgreSQL refuses writes in the SQL and PL/pgSQL bodies of
// stable and immutable functions; the declared volatility is what the broker goes by.
func (f Function) Writes() bool {
	return f.Volatility != "immutable" && f.Volatility != "stable" || f.SecurityDefiner
}

// FunctionUID is the entity of an overload: Function::"shop/public.f(integer)".
func FunctionUID(target string, f Function) types.EntityUID {
	return types.NewEntityUID(TypeFunction, types.String(target+"/"+f.Schema+"."+f.Name+"("+f.Arguments+")"))
}

// FunctionEntity is f's entity, in its target.
func FunctionEntity(target string, f Function) types.Entity {
	return types.Entity{UID: FunctionUID(target, f), Parents: types.NewEntityUIDSet(TargetUID(target)),
		Attributes: types.NewRecord(types.RecordMap{
			"name": types.String(f.Name), "schema": types.String(f.Schema), "arguments": types.String(f.Arguments),
			"volatility": types.String(f.Volatility), "securityDefiner": types.Boolean(f.SecurityDefiner),
			"language": types.String(f.Language), "owner": types.String(f.Owner), "writes": types.Boolean(f.Writes()),
		})}
}

// withEntity adds one entity to a request's entities.
type withEntity struct {
	Entities
	extra types.Entity
}

func (w withEntity) Get(uid types.EntityUID) (types.Entity, bool) {
	if uid == w.extra.UID {
		return w.extra, true
	}
	return w.Entities.Get(uid)
}

// Functions decides sql:call-function on each of fns, the database functions statement st may call,
// in the context of st. Every decision must allow. It returns the first denial with a *Denied error,
// or the allows combined with prior (the statement's own decision): their policies and the strictest
// of their obligations.
func (a *Authorizer) Functions(c Connect, st Statement, fns []Function, ap ApprovalState, prior Decision, memo *Memo) (Decision, error) {
	if len(fns) == 0 {
		return prior, nil
	}
	now := a.now()
	principal := WorkloadUID(c.Peer.ID)
	ctxKey := statementKey(st, ap)
	var ctx types.Record
	var ents Entities
	built := false
	allows := []Decision{prior}
	for _, f := range fns {
		ent := FunctionEntity(c.Target, f)
		key := fmt.Sprintf("%s\x00%s\x00%v\x00%s", ActionCallFunction, ent.UID.ID, ent.Attributes, ctxKey)
		d := memo.decide(a.Engine, now, key, func() Decision {
			if !built {
				ctx = StatementContext(now, c.Source, tls.VersionName(c.TLS.Version), tls.CipherSuiteName(c.TLS.CipherSuite), st, ap)
				ents, built = a.Entities(c.Peer), true
			}
			return a.Engine.Decide(Request{Principal: principal, Action: Action(ActionCallFunction), Resource: ent.UID,
				Context: ctx, Entities: withEntity{Entities: ents, extra: ent}})
		})
		if !d.Allow {
			kind := f.Volatility
			if f.SecurityDefiner {
				kind += ", SECURITY DEFINER"
			}
			return d, &Denied{Decision: d, What: fmt.Sprintf("call of function %s.%s(%s) (%s)", f.Schema, f.Name, f.Arguments, kind)}
		}
		allows = append(allows, d)
	}
	return Combine(allows...), nil
}

// Combine is the decision of several allows together: a new decision whose policies are all of
// theirs and whose obligations are the strictest of theirs.
func Combine(ds ...Decision) Decision {
	if len(ds) == 1 {
		return ds[0]
	}
	out := Decision{ID: newDecisionID(), Allow: true, PolicySet: ds[0].PolicySet}
	for _, d := range ds {
		for _, r := range d.Reasons {
			if !slices.Contains(out.Reasons, r) {
				out.Reasons = append(out.Reasons, r)
			}
		}
		out.Obligations.Approval = stricter(out.Obligations.Approval, d.Obligations.Approval, annotationValues["approval"])
		out.Obligations.Record = stricter(out.Obligations.Record, d.Obligations.Record, annotationValues["record"])
		out.Obligations.Mask = stricter(out.Obligations.Mask, d.Obligations.Mask, annotationValues["mask"])
	}
	return out
}

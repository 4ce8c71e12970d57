package sqlclass

import (
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The analysis of expressions and column references, and of writes.

// findRelation finds the relation a qualifier names (rel, schema.rel or db.schema.rel), innermost
// scope first.
func (w *useWalker) findRelation(qual []*pg.Node, lvl *level) *relation {
	parts := make([]string, 0, len(qual))
	for _, q := range qual {
		s := q.GetString_()
		if s == nil {
			return nil
		}
		parts = append(parts, s.Sval)
	}
	if len(parts) == 0 {
		return nil
	}
	name := parts[len(parts)-1]
	for l := lvl; l != nil; l = l.parent {
		for i := len(l.rels) - 1; i >= 0; i-- {
			r := l.rels[i]
			switch {
			case len(parts) == 1 && r.name == name:
				return r
			case len(parts) >= 2 && r.table == parts[len(parts)-2]+"."+name && r.name == name:
				return r
			}
		}
	}
	return nil
}

// resolve returns the origin of a column reference. What it cannot prove comes from elsewhere, it
// includes: an unqualified name is looked for in every enclosing scope until one certainly has it.
func (w *useWalker) resolve(cr *pg.ColumnRef, lvl *level) Origin {
	if len(cr.Fields) == 0 {
		return Origin{Unknown: true}
	}
	if isStar(cr) {
		o := Origin{Computed: true}
		for _, out := range w.star(cr, lvl) {
			o.add(out.origin)
		}
		return o
	}
	last := cr.Fields[len(cr.Fields)-1].GetString_()
	if last == nil {
		return Origin{Unknown: true}
	}
	name := last.Sval
	if len(cr.Fields) > 1 {
		r := w.findRelation(cr.Fields[:len(cr.Fields)-1], lvl)
		if r == nil {
			return Origin{Unknown: true}
		}
		o, found, _ := r.column(name)
		if !found {
			// rel.name with no column name is name(rel): a function of the whole row.
			o.add(r.whole())
			o.add(Origin{Sources: []Source{{Function: strings.ToLower(name)}}})
		}
		return o
	}
	var o Origin
	found := false
	for l := lvl; l != nil; l = l.parent {
		definiteHere := false
		for _, r := range l.rels {
			if ro, ok, definite := r.column(name); ok {
				o.add(ro)
				found = true
				definiteHere = definiteHere || definite
			}
			if r.name == name {
				o.add(r.whole()) // a whole-row reference
				found = true
			}
		}
		if definiteHere {
			break
		}
	}
	if !found {
		o.Unknown = true
	}
	return o
}

// mayCall adds to o, the origin of rel.name where rel is a relation of the database, the function
// name: the server calls name(rel) when rel has no column name, and a function the database defines
// may read masked data. (For a subquery or CTE, resolve adds it when no column has the name; a result
// column of that form is seen to by the statement's PossibleFunctions.)
func (w *useWalker) mayCall(cr *pg.ColumnRef, lvl *level, o Origin) Origin {
	if len(cr.Fields) < 2 || isStar(cr) {
		return o
	}
	if r := w.findRelation(cr.Fields[:len(cr.Fields)-1], lvl); r == nil || r.table == "" {
		return o
	}
	if s := cr.Fields[len(cr.Fields)-1].GetString_(); s != nil {
		o.add(Origin{Sources: []Source{{Function: strings.ToLower(s.Sval)}}})
	}
	return o
}

// subLinkValue analyzes a subquery and returns the origin of its first column.
func (w *useWalker) subLinkValue(sl *pg.SubLink, lvl *level) Origin {
	s := sl.Subselect.GetSelectStmt()
	if s == nil {
		return Origin{Unknown: true}
	}
	outs := w.selectStmt(s, lvl)
	if sl.SubLinkType == pg.SubLinkType_EXISTS_SUBLINK {
		return Origin{Computed: true}
	}
	o := Origin{}
	for _, out := range outs {
		o.add(out.origin) // ROW comparisons use every column; others the first, which this includes
	}
	if len(outs) == 0 {
		o.Unknown = true
	}
	return o
}

// clause analyzes an expression of a clause: every value it reads is used there.
func (w *useWalker) clause(n *pg.Node, lvl *level, clause string) {
	w.expr(n, lvl, clause)
}

// expr records a use in clause of every column and subquery value n reads, and returns n's origin.
func (w *useWalker) expr(n *pg.Node, lvl *level, clause string) Origin {
	if n == nil || !w.enter() {
		return Origin{Unknown: w.unknown}
	}
	defer w.leave()
	switch v := n.GetNode().(type) {
	case *pg.Node_ColumnRef:
		o := w.mayCall(v.ColumnRef, lvl, w.resolve(v.ColumnRef, lvl))
		w.use(clause, o, nil)
		return o
	case *pg.Node_SubLink:
		sl := v.SubLink
		if sl.Testexpr != nil {
			w.expr(sl.Testexpr, lvl, clause)
		}
		o := w.subLinkValue(sl, lvl)
		w.use(clause, o, nil)
		o.Computed = true
		return o
	case *pg.Node_AExpr:
		a := v.AExpr
		if a.Kind == pg.A_Expr_Kind_AEXPR_OP && len(a.Name) == 1 && a.Name[0].GetString_().GetSval() == "=" {
			l, r := a.Lexpr.GetColumnRef(), a.Rexpr.GetColumnRef()
			if l != nil && r != nil && !isStar(l) && !isStar(r) {
				lo, ro := w.resolve(l, lvl), w.resolve(r, lvl)
				w.use(clause, w.mayCall(l, lvl, lo), &ro)
				w.use(clause, w.mayCall(r, lvl, ro), &lo)
				return Origin{Sources: union(lo, ro).Sources, Computed: true, Unknown: lo.Unknown || ro.Unknown}
			}
		}
	case *pg.Node_FuncCall:
		f := v.FuncCall
		o := Origin{Computed: true}
		for _, a := range f.Args {
			o.add(w.expr(a, lvl, clause))
		}
		for _, a := range f.AggOrder {
			o.add(w.expr(a, lvl, clause))
		}
		if f.AggFilter != nil {
			o.add(w.expr(f.AggFilter, lvl, clause))
		}
		if f.Over != nil {
			w.clause(pgNode(f.Over), lvl, UseWindow)
		}
		parts := make([]string, 0, len(f.Funcname))
		for _, p := range f.Funcname {
			parts = append(parts, p.GetString_().GetSval())
		}
		fn := Origin{Sources: []Source{{Function: strings.ToLower(strings.Join(parts, "."))}}}
		if clause != UseFunction {
			// A function's result tested in a predicate, an ordering or a grouping: the function may
			// read masked data. Called in a result or in FROM, its result is masked as derived instead.
			w.use(clause, fn, nil)
		}
		o.add(fn)
		return o
	case *pg.Node_SelectStmt:
		outs := w.selectStmt(v.SelectStmt, lvl)
		o := Origin{Computed: true}
		for _, out := range outs {
			o.add(out.origin)
		}
		w.use(clause, o, nil)
		return o
	case *pg.Node_InsertStmt, *pg.Node_UpdateStmt, *pg.Node_DeleteStmt, *pg.Node_MergeStmt:
		outs := w.write(n, lvl)
		o := Origin{Computed: true}
		for _, out := range outs {
			o.add(out.origin)
		}
		return o
	}
	o := Origin{Computed: true}
	w.children(n.ProtoReflect(), lvl, clause, &o)
	return o
}

// pgNode wraps a WindowDef as a Node.
func pgNode(wd *pg.WindowDef) *pg.Node { return &pg.Node{Node: &pg.Node_WindowDef{WindowDef: wd}} }

// children analyzes every node below m.
func (w *useWalker) children(m protoreflect.Message, lvl *level, clause string, o *Origin) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() != protoreflect.MessageKind {
			return true
		}
		each := func(child protoreflect.Message) {
			if n, ok := child.Interface().(*pg.Node); ok {
				o.add(w.expr(n, lvl, clause))
				return
			}
			if !w.enter() {
				return
			}
			w.children(child, lvl, clause, o)
			w.leave()
		}
		if fd.IsList() {
			l := v.List()
			for i := range l.Len() {
				each(l.Get(i).Message())
			}
		} else {
			each(v.Message())
		}
		return !w.unknown
	})
}

// write analyzes an INSERT, UPDATE, DELETE or MERGE and returns its RETURNING columns, none of which
// the server traces reliably.
func (w *useWalker) write(n *pg.Node, lvl *level) []output {
	if !w.enter() {
		return nil
	}
	defer w.leave()
	var with *pg.WithClause
	var returning []*pg.Node
	from := &level{}
	switch s := n.GetNode().(type) {
	case *pg.Node_InsertStmt:
		st := s.InsertStmt
		with, returning = st.WithClause, st.ReturningList
		from.parent = w.with(with, lvl)
		inserted := Origin{}
		if sel := st.SelectStmt.GetSelectStmt(); sel != nil {
			for _, out := range w.selectStmt(sel, from.parent) {
				w.use(UseWrite, out.origin, nil)
				inserted.add(out.origin)
			}
		}
		from.rels = append(from.rels, baseRelation(st.Relation))
		if oc := st.OnConflictClause; oc != nil {
			// EXCLUDED holds the row proposed for insertion, from the values just analysed (and the
			// table's defaults): any of its columns may hold any of them.
			inserted.add(Origin{Sources: []Source{{Table: from.rels[0].table, Column: "*"}}})
			from.rels = append(from.rels, &relation{name: "excluded", open: true, openOrigin: inserted})
			for _, t := range oc.TargetList {
				if rt := t.GetResTarget(); rt != nil && rt.Val != nil {
					w.expr(rt.Val, from, UseWrite)
				}
			}
			if oc.WhereClause != nil {
				w.clause(oc.WhereClause, from, UseWhere)
			}
			if oc.Infer != nil {
				w.clause(pgInfer(oc.Infer), from, UseWhere)
			}
		}
	case *pg.Node_UpdateStmt:
		st := s.UpdateStmt
		with, returning = st.WithClause, st.ReturningList
		from.parent = w.with(with, lvl)
		from.rels = append(from.rels, baseRelation(st.Relation))
		for _, f := range st.FromClause {
			w.fromItem(f, from)
		}
		for _, t := range st.TargetList {
			if rt := t.GetResTarget(); rt != nil && rt.Val != nil {
				w.expr(rt.Val, from, UseWrite)
			}
		}
		if st.WhereClause != nil {
			w.clause(st.WhereClause, from, UseWhere)
		}
	case *pg.Node_DeleteStmt:
		st := s.DeleteStmt
		with, returning = st.WithClause, st.ReturningList
		from.parent = w.with(with, lvl)
		from.rels = append(from.rels, baseRelation(st.Relation))
		for _, f := range st.UsingClause {
			w.fromItem(f, from)
		}
		if st.WhereClause != nil {
			w.clause(st.WhereClause, from, UseWhere)
		}
	case *pg.Node_MergeStmt:
		st := s.MergeStmt
		with, returning = st.WithClause, st.ReturningList
		from.parent = w.with(with, lvl)
		from.rels = append(from.rels, baseRelation(st.Relation))
		if st.SourceRelation != nil {
			w.fromItem(st.SourceRelation, from)
		}
		if st.JoinCondition != nil {
			w.clause(st.JoinCondition, from, UseJoin)
		}
		for _, c := range st.MergeWhenClauses {
			mw := c.GetMergeWhenClause()
			if mw == nil {
				continue
			}
			if mw.Condition != nil {
				w.clause(mw.Condition, from, UseWhere)
			}
			for _, t := range mw.TargetList {
				if rt := t.GetResTarget(); rt != nil && rt.Val != nil {
					w.expr(rt.Val, from, UseWrite)
				}
			}
			for _, v := range mw.Values {
				w.expr(v, from, UseWrite)
			}
		}
	default:
		w.unknown = true
		return nil
	}
	var outs []output
	for _, t := range returning {
		rt := t.GetResTarget()
		if rt == nil {
			continue
		}
		if cr := rt.Val.GetColumnRef(); cr != nil && isStar(cr) {
			for _, o := range w.star(cr, from) {
				o.origin.Computed = true
				outs = append(outs, o)
			}
			continue
		}
		o := w.targetValue(rt.Val, from)
		o.Computed = true
		name := rt.Name
		if name == "" {
			name = defaultName(rt.Val)
		}
		outs = append(outs, output{name: name, origin: o})
	}
	return outs
}

func pgInfer(ic *pg.InferClause) *pg.Node {
	return &pg.Node{Node: &pg.Node_InferClause{InferClause: ic}}
}

package sqlclass

import (
	"slices"
	"strconv"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The analysis of queries: scopes, FROM items, result columns and the clauses of a SELECT.

// with adds a WITH clause's CTEs to a new level above lvl and returns it.
func (w *useWalker) with(wc *pg.WithClause, lvl *level) *level {
	if wc == nil {
		return lvl
	}
	out := &level{parent: lvl, ctes: map[string]*relation{}}
	if wc.Recursive {
		w.recursive(wc, out)
		return out
	}
	for _, c := range wc.Ctes {
		cte := c.GetCommonTableExpr()
		if cte == nil {
			w.unknown = true
			continue
		}
		r := &relation{name: cte.Ctename, outs: w.cteQuery(cte, out)}
		renamed(r, cte.Aliascolnames)
		out.ctes[cte.Ctename] = r
	}
	return out
}

// maxRecursivePasses bounds the passes over a recursive WITH; one that has not settled by then has
// CTEs whose columns may hold anything.
const maxRecursivePasses = 8

// recursive adds the CTEs of a WITH RECURSIVE to out. Each may read any of them, itself included, so
// their columns start from nothing known and widen, pass after pass, until nothing changes: the
// sources are finite, and a pass can only add to them.
func (w *useWalker) recursive(wc *pg.WithClause, out *level) {
	var ctes []*pg.CommonTableExpr
	var rels []*relation
	for _, c := range wc.Ctes {
		cte := c.GetCommonTableExpr()
		if cte == nil {
			w.unknown = true
			continue
		}
		r := &relation{name: cte.Ctename, open: true, openOrigin: Origin{Computed: true}}
		out.ctes[cte.Ctename] = r
		ctes, rels = append(ctes, cte), append(rels, r)
	}
	for range maxRecursivePasses {
		grown := false
		for i, cte := range ctes {
			next := Origin{Computed: true}
			for _, o := range w.cteQuery(cte, out) {
				next.add(o.origin)
			}
			next.add(rels[i].openOrigin)
			if len(next.Sources) != len(rels[i].openOrigin.Sources) || next.Unknown != rels[i].openOrigin.Unknown {
				grown = true
			}
			rels[i].openOrigin = next
		}
		if !grown || w.unknown {
			return
		}
	}
	for _, r := range rels {
		r.openOrigin.Unknown = true
	}
}

func (w *useWalker) cteQuery(cte *pg.CommonTableExpr, lvl *level) []output {
	q := cte.Ctequery
	if s := q.GetSelectStmt(); s != nil {
		return w.selectStmt(s, lvl)
	}
	return w.write(q, lvl)
}

// renamed names r's columns by an alias's column list. The names go by position, and positions past a
// star's columns (whose number the broker does not know) cannot be told apart: a column renamed there
// may be any of r's columns, so r's columns become columns of unknown name that may hold any of them.
// (narrow would otherwise take the new name for the table column of that name.)
func renamed(r *relation, names []*pg.Node) {
	out := slices.Clone(r.outs)
	for i, n := range names {
		if i < len(out) && out[i].name != "" {
			out[i].name = n.GetString_().GetSval()
			continue
		}
		var all Origin
		all.add(r.openOrigin)
		for _, o := range r.outs {
			all.add(o.origin)
		}
		r.outs, r.open, r.openOrigin = nil, true, all
		return
	}
	r.outs = out
}

// selectStmt analyzes a SELECT in the scope lvl and returns its result's columns.
func (w *useWalker) selectStmt(s *pg.SelectStmt, lvl *level) []output {
	if !w.enter() {
		return nil
	}
	defer w.leave()
	lvl = w.with(s.WithClause, lvl)
	var outs []output
	switch {
	case s.Op != pg.SetOperation_SETOP_NONE:
		var l, r []output
		if s.Larg != nil {
			l = w.selectStmt(s.Larg, lvl)
		}
		if s.Rarg != nil {
			r = w.selectStmt(s.Rarg, lvl)
		}
		outs = make([]output, max(len(l), len(r)))
		starred := false
		for i := range outs {
			if i < len(l) {
				outs[i].name = l[i].name
				outs[i].origin.add(l[i].origin)
				starred = starred || l[i].name == ""
			}
			if i < len(r) {
				outs[i].origin.add(r[i].origin)
				starred = starred || r[i].name == ""
			}
			outs[i].origin.Computed = true // the server does not trace a set operation's columns
		}
		if starred {
			// A star's columns leave the positions unknown: every column may hold any of them.
			all := Origin{Computed: true}
			for _, o := range outs {
				all.add(o.origin)
			}
			for i := range outs {
				outs[i].origin = all
			}
		}
		if !(s.Op == pg.SetOperation_SETOP_UNION && s.All) {
			for _, o := range outs {
				w.use(UseSetOperation, o.origin, nil)
			}
		}
		// ORDER BY and LIMIT of a set operation name its result's columns.
		res := &relation{outs: outs}
		if starred {
			res.open = true
			for _, o := range outs {
				res.openOrigin.add(o.origin)
			}
		}
		out := &level{parent: lvl, rels: []*relation{res}}
		for _, n := range s.SortClause {
			w.sortItem(n, out, outs, UseOrder)
		}
		w.limit(s, out)
		return outs
	case len(s.ValuesLists) > 0:
		for _, row := range s.ValuesLists {
			for i, v := range row.GetList().GetItems() {
				o := w.targetValue(v, lvl)
				o.Computed = true // VALUES columns are not traced
				if i >= len(outs) {
					outs = append(outs, output{name: "column" + strconv.Itoa(i+1)})
				}
				outs[i].origin.add(o)
			}
		}
		return outs
	}
	from := &level{parent: lvl}
	for _, n := range s.FromClause {
		w.fromItem(n, from)
	}
	if s.WhereClause != nil {
		w.clause(s.WhereClause, from, UseWhere)
	}
	for _, t := range s.TargetList {
		rt := t.GetResTarget()
		if rt == nil {
			w.unknown = true
			continue
		}
		if cr := rt.Val.GetColumnRef(); cr != nil && isStar(cr) {
			outs = append(outs, w.star(cr, from)...)
			continue
		}
		o := w.targetValue(rt.Val, from)
		name := rt.Name
		if name == "" {
			name = defaultName(rt.Val)
		}
		outs = append(outs, output{name: name, origin: o})
	}
	for _, n := range s.GroupClause {
		w.sortItem(n, from, outs, UseGroup)
	}
	if s.HavingClause != nil {
		w.clause(s.HavingClause, from, UseHaving)
	}
	for _, n := range s.WindowClause {
		w.clause(n, from, UseWindow)
	}
	if len(s.DistinctClause) > 0 {
		all := true
		for _, n := range s.DistinctClause {
			if n != nil && n.GetNode() != nil {
				all = false
				w.sortItem(n, from, outs, UseGroup)
			}
		}
		if all { // SELECT DISTINCT: every column of the result is compared
			for _, o := range outs {
				w.use(UseGroup, o.origin, nil)
			}
		}
	}
	for _, n := range s.SortClause {
		w.sortItem(n, from, outs, UseOrder)
	}
	w.limit(s, from)
	return outs
}

func (w *useWalker) limit(s *pg.SelectStmt, lvl *level) {
	for _, n := range []*pg.Node{s.LimitCount, s.LimitOffset} {
		if n != nil {
			w.clause(n, lvl, UseLimit)
		}
	}
}

// defaultName is the name the server gives a result column without an alias, where the analysis needs
// it: a column reference's last name. Other expressions get names no statement can rely on; "" stands
// for unknown.
func defaultName(n *pg.Node) string {
	if cr := n.GetColumnRef(); cr != nil {
		if s := cr.Fields[len(cr.Fields)-1].GetString_(); s != nil {
			return s.Sval
		}
	}
	if fc := n.GetFuncCall(); fc != nil && len(fc.Funcname) > 0 {
		return fc.Funcname[len(fc.Funcname)-1].GetString_().GetSval()
	}
	return ""
}

func isStar(cr *pg.ColumnRef) bool {
	return len(cr.Fields) > 0 && cr.Fields[len(cr.Fields)-1].GetAStar() != nil
}

// star expands a star (or rel.*) of a target list into the columns it gives.
func (w *useWalker) star(cr *pg.ColumnRef, lvl *level) []output {
	var rels []*relation
	if len(cr.Fields) == 1 {
		rels = lvl.rels
	} else if r := w.findRelation(cr.Fields[:len(cr.Fields)-1], lvl); r != nil {
		rels = []*relation{r}
	} else {
		return []output{{origin: Origin{Unknown: true}}}
	}
	var outs []output
	for _, r := range rels {
		if r.table != "" {
			outs = append(outs, output{origin: Origin{Sources: []Source{{Table: r.table, Column: "*"}}}})
			continue
		}
		outs = append(outs, r.outs...)
		if r.open {
			outs = append(outs, output{origin: r.openOrigin})
		}
	}
	return outs
}

// targetValue analyzes one column of a target list (or VALUES row) and returns its origin. A column
// reference, or a subquery's single value, passes a value through; any other expression is a use of
// every column it reads (function).
func (w *useWalker) targetValue(n *pg.Node, lvl *level) Origin {
	switch v := n.GetNode().(type) {
	case *pg.Node_ColumnRef:
		return w.resolve(v.ColumnRef, lvl)
	case *pg.Node_SubLink:
		if v.SubLink.SubLinkType == pg.SubLinkType_EXPR_SUBLINK {
			o := w.subLinkValue(v.SubLink, lvl)
			o.Computed = true
			return o
		}
	case *pg.Node_FuncCall:
		// count(column) and count(*) count rows, and a masked column's NULLs show as NULL anyway. The
		// result is the function's: a count the database itself defines could compute anything.
		if f := v.FuncCall; isCount(f) && f.AggFilter == nil && len(f.AggOrder) == 0 && f.Over == nil && !f.AggDistinct &&
			(f.AggStar || len(f.Args) == 1 && f.Args[0].GetColumnRef() != nil && !isStar(f.Args[0].GetColumnRef())) {
			if len(f.Args) == 1 {
				w.resolve(f.Args[0].GetColumnRef(), lvl)
			}
			return Origin{Sources: []Source{{Function: "count"}}, Computed: true}
		}
	}
	o := w.expr(n, lvl, UseFunction)
	o.Computed = true
	return o
}

func isCount(f *pg.FuncCall) bool {
	switch len(f.Funcname) {
	case 1:
		return f.Funcname[0].GetString_().GetSval() == "count"
	case 2:
		return f.Funcname[0].GetString_().GetSval() == "pg_catalog" && f.Funcname[1].GetString_().GetSval() == "count"
	}
	return false
}

// sortItem analyzes an ORDER BY, GROUP BY or DISTINCT ON item: a name may be a result column's or an
// input column's, and a number is a result column's position. The cache shares one analysis between
// statements that differ in literals only, so a position stands for every result column.
func (w *useWalker) sortItem(n *pg.Node, lvl *level, outs []output, clause string) {
	if sb := n.GetSortBy(); sb != nil {
		n = sb.Node
	}
	if n == nil {
		return
	}
	// ROLLUP, CUBE and GROUPING SETS hold items of their own, positions among them.
	var items []*pg.Node
	switch {
	case n.GetGroupingSet() != nil:
		items = n.GetGroupingSet().Content
	case n.GetRowExpr() != nil && clause == UseGroup:
		items = n.GetRowExpr().Args
	case n.GetList() != nil:
		items = n.GetList().Items
	}
	if items != nil || n.GetGroupingSet() != nil {
		if !w.enter() {
			return
		}
		defer w.leave()
		for _, it := range items {
			w.sortItem(it, lvl, outs, clause)
		}
		return
	}
	if n.GetAConst() != nil {
		for _, o := range outs {
			w.use(clause, o.origin, nil)
		}
		return
	}
	if cr := n.GetColumnRef(); cr != nil && len(cr.Fields) == 1 && cr.Fields[0].GetString_() != nil {
		name := cr.Fields[0].GetString_().Sval
		// A star's columns have no name here, but the name resolves among the same relations' columns
		// below.
		for _, o := range outs {
			if o.name == name {
				w.use(clause, o.origin, nil)
			}
		}
	}
	w.clause(n, lvl, clause)
}

// fromItem adds a FROM item's relations to lvl.
func (w *useWalker) fromItem(n *pg.Node, lvl *level) {
	if !w.enter() {
		return
	}
	defer w.leave()
	switch f := n.GetNode().(type) {
	case *pg.Node_RangeVar:
		rv := f.RangeVar
		if rv.Schemaname == "" {
			if c := lvl.cte(rv.Relname); c != nil {
				r := *c
				if rv.Alias != nil {
					r.name = rv.Alias.Aliasname
					renamed(&r, rv.Alias.Colnames)
				}
				lvl.rels = append(lvl.rels, &r)
				return
			}
		}
		lvl.rels = append(lvl.rels, baseRelation(rv))
	case *pg.Node_RangeSubselect:
		sub := f.RangeSubselect
		var outs []output
		if s := sub.Subquery.GetSelectStmt(); s != nil {
			outs = w.selectStmt(s, lvl)
		} else {
			w.unknown = true
		}
		r := &relation{outs: outs}
		if sub.Alias != nil {
			r.name = sub.Alias.Aliasname
			renamed(r, sub.Alias.Colnames)
		}
		lvl.rels = append(lvl.rels, r)
	case *pg.Node_RangeFunction:
		rf := f.RangeFunction
		o := Origin{Computed: true}
		for _, item := range rf.Functions {
			for _, fn := range item.GetList().GetItems() {
				if fn.GetNode() != nil && fn.GetColumnDef() == nil {
					o.add(w.expr(fn, lvl, UseFunction))
				}
			}
		}
		r := &relation{open: true, openOrigin: o}
		if rf.Alias != nil {
			r.name = rf.Alias.Aliasname
		} else if len(rf.Functions) == 1 {
			if fc := rf.Functions[0].GetList().GetItems(); len(fc) > 0 && fc[0].GetFuncCall() != nil {
				r.name = defaultName(fc[0])
			}
		}
		lvl.rels = append(lvl.rels, r)
	case *pg.Node_RangeTableSample:
		w.fromItem(f.RangeTableSample.Relation, lvl)
		for _, a := range f.RangeTableSample.Args {
			w.clause(a, lvl, UseFunction)
		}
	case *pg.Node_JoinExpr:
		j := f.JoinExpr
		left := &level{parent: lvl.parent, ctes: lvl.ctes}
		left.rels = append(left.rels, lvl.rels...)
		start := len(left.rels)
		w.fromItem(j.Larg, left)
		mid := len(left.rels)
		w.fromItem(j.Rarg, left)
		lrels, rrels := left.rels[start:mid], left.rels[mid:]
		lvl.rels = left.rels
		if j.Quals != nil {
			w.clause(j.Quals, lvl, UseJoin)
		}
		both := &relation{open: true, openOrigin: Origin{}}
		for _, u := range j.UsingClause {
			name := u.GetString_().GetSval()
			lo := w.among(name, lrels)
			ro := w.among(name, rrels)
			w.use(UseJoin, lo, &ro)
			w.use(UseJoin, ro, &lo)
			// A merged column: the server may make it COALESCE(left, right), which it does not trace.
			merged := union(lo, ro)
			merged.Computed = true
			both.outs = append(both.outs, output{name: name, origin: merged})
		}
		if len(both.outs) > 0 {
			lvl.rels = append(lvl.rels, &relation{outs: both.outs})
		}
		if j.IsNatural {
			// The columns both sides share, which the broker does not know: any of them, merged.
			merged := Origin{Computed: true}
			for _, r := range append(slices.Clone(lrels), rrels...) {
				w.use(UseJoin, r.whole(), nil)
				merged.add(r.whole())
			}
			lvl.rels = append(lvl.rels, &relation{open: true, openOrigin: merged})
		}
		for _, r := range append(slices.Clone(lrels), rrels...) {
			both.openOrigin.add(r.whole())
		}
		both.openOrigin.Computed = false
		if j.Alias != nil {
			both.name = j.Alias.Aliasname
			lvl.rels = append(lvl.rels, both)
		}
		if j.JoinUsingAlias != nil {
			lvl.rels = append(lvl.rels, &relation{name: j.JoinUsingAlias.Aliasname, outs: both.outs})
		}
	default:
		// XMLTABLE, JSON_TABLE and what else the grammar allows: columns the broker cannot trace.
		o := w.expr(n, lvl, UseFunction)
		o.Unknown = true
		lvl.rels = append(lvl.rels, &relation{name: aliasOf(n), open: true, openOrigin: o})
	}
}

func aliasOf(n *pg.Node) string {
	var name string
	n.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() == protoreflect.MessageKind && !fd.IsList() {
			if a, ok := v.Message().Interface().(*pg.Alias); ok {
				name = a.Aliasname
				return false
			}
		}
		return true
	})
	return name
}

// among resolves an unqualified name among rels (one side of a join).
func (w *useWalker) among(name string, rels []*relation) Origin {
	var o Origin
	found := false
	for _, r := range rels {
		if ro, ok, _ := r.column(name); ok {
			o.add(ro)
			found = true
		}
	}
	if !found {
		o.Unknown = true
	}
	return o
}

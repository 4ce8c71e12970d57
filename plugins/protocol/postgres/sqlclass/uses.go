package sqlclass

import (
	"slices"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Clauses a column's value can be used in, other than as a plain column of the top-level result. Each
// lets a caller learn something about a masked value: which rows match (where, join, having), how
// values sort (order, window), which are equal (group, set-operation), or what an expression makes of
// it (function: its result, its errors, the rows a set-returning function gives).
const (
	UseWhere        = "where"
	UseJoin         = "join"
	UseOrder        = "order"
	UseGroup        = "group"
	UseHaving       = "having"
	UseWindow       = "window"
	UseFunction     = "function"
	UseSetOperation = "set-operation" // UNION (not ALL), INTERSECT, EXCEPT compare whole rows
	UseLimit        = "limit"
	UseWrite        = "write" // written into a table (INSERT, UPDATE SET, MERGE), where other columns can show it
)

// Source is one place a value may come from: a column of a relation the statement names, or the result
// of a function.
type Source struct {
	// Table is "schema.name" as the statement names it (an unqualified name taken as "public").
	Table string
	// Column is the column's name, "*" for any column of Table (a star, a whole row, or a name the
	// broker cannot tie to one column).
	Column string
	// Function, instead of Table and Column: the result of this function, as written, lower case.
	Function string
}

// Origin is everything a value may come from.
type Origin struct {
	Sources []Source
	// Computed: the value is made by an expression (or is a literal, or a row of several columns), not
	// one column's value passed through.
	Computed bool
	// Unknown: the broker cannot tell where the value comes from; it may be anything.
	Unknown bool
}

// Traced reports whether the server names the value's column in a result's description: a column's
// value passed through, from relations only (subqueries and CTEs included, functions not).
func (o Origin) Traced() bool {
	if o.Computed || o.Unknown {
		return false
	}
	for _, s := range o.Sources {
		if s.Function != "" {
			return false
		}
	}
	return true
}

func (o *Origin) add(p Origin) {
	for _, s := range p.Sources {
		if !slices.Contains(o.Sources, s) {
			if len(o.Sources) >= maxSources {
				o.Unknown = true
				break
			}
			o.Sources = append(o.Sources, s)
		}
	}
	o.Computed = o.Computed || p.Computed
	o.Unknown = o.Unknown || p.Unknown
}

func union(os ...Origin) Origin {
	var out Origin
	for _, o := range os {
		out.add(o)
	}
	return out
}

// Use is one use of a value in a clause.
type Use struct {
	Clause string
	Value  Origin
	// EqualTo is set when the use is an equality between two column references (a = b, or a join's
	// USING column): the origin of the other side.
	EqualTo *Origin
}

// Bounds on what one statement's analysis keeps; beyond them its uses are unknown.
const (
	maxSources = 256
	maxUses    = 1024
)

// relation is a relation visible in a FROM clause.
type relation struct {
	name  string // how the statement refers to it: its alias, or its name
	table string // "schema.name" for a relation of the database (table, view, ...)
	// For a derived relation (subquery, CTE, function, VALUES, join with an alias): its columns.
	outs []output
	// open: some columns of the derived relation have names the broker does not know; they may hold
	// anything in openOrigin.
	open       bool
	openOrigin Origin
}

// output is one column of a SELECT's result. name is "" when unknown (a star's columns).
type output struct {
	name   string
	origin Origin
}

// level is one SELECT's FROM scope; parent is the enclosing query's.
type level struct {
	rels   []*relation
	ctes   map[string]*relation
	parent *level
}

func (l *level) cte(name string) *relation {
	for ; l != nil; l = l.parent {
		if r, ok := l.ctes[name]; ok {
			return r
		}
	}
	return nil
}

// whole is the origin of a whole row of r.
func (r *relation) whole() Origin {
	if r.table != "" {
		return Origin{Sources: []Source{{Table: r.table, Column: "*"}}, Computed: true}
	}
	o := Origin{Computed: true}
	for _, out := range r.outs {
		o.add(out.origin)
	}
	if r.open {
		o.add(r.openOrigin)
	}
	return o
}

// column resolves name among r's columns; definite reports that r certainly has it.
func (r *relation) column(name string) (o Origin, found, definite bool) {
	if r.table != "" {
		return Origin{Sources: []Source{{Table: r.table, Column: name}}}, true, false
	}
	for _, out := range r.outs {
		switch {
		case out.name == name:
			o.add(out.origin)
			found, definite = true, true
		case out.name == "":
			// A star's columns: the one called name, if its relation has one.
			o.add(narrow(out.origin, name))
			found = true
		}
	}
	if r.open {
		o.add(r.openOrigin)
		found = true
	}
	return o, found, definite
}

// narrow is the origin of the column called name among the columns a star gave, whose origin is o:
// any column of a table becomes that table's column name. A computed origin (a whole row) stays.
func narrow(o Origin, name string) Origin {
	if o.Computed {
		return o
	}
	out := Origin{Unknown: o.Unknown}
	for _, s := range o.Sources {
		if s.Function == "" && s.Column == "*" {
			s.Column = name
		}
		out.add(Origin{Sources: []Source{s}})
	}
	return out
}

// useWalker finds the uses of one statement.
type useWalker struct {
	uses    []Use
	unknown bool
	depth   int
	// untraced and traced collect the origins of the top-level result's columns that the server does
	// not trace, and of those it does (when the columns they name exist: rel.name may be name(rel)).
	untraced, traced Origin
	// copyOut: the result goes out as COPY data, which has no description: nothing is traced.
	copyOut bool
}

func (w *useWalker) use(clause string, o Origin, eq *Origin) {
	if len(o.Sources) == 0 && !o.Unknown {
		return // a literal, or a value computed from literals only
	}
	u := Use{Clause: clause, Value: o, EqualTo: eq}
	for _, have := range w.uses {
		if have.Clause == u.Clause && sameOrigin(&have.Value, &u.Value) && sameOrigin(have.EqualTo, u.EqualTo) {
			return
		}
	}
	if len(w.uses) >= maxUses {
		w.unknown = true
		return
	}
	w.uses = append(w.uses, u)
}

func sameOrigin(a, b *Origin) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Computed == b.Computed && a.Unknown == b.Unknown && slices.Equal(a.Sources, b.Sources)
}

func (w *useWalker) enter() bool {
	w.depth++
	if w.depth > MaxDepth {
		w.unknown = true
	}
	return !w.unknown
}

func (w *useWalker) leave() { w.depth-- }

// analyzeUses finds the uses of column values in the statement n, and where its result's columns come
// from. ok is false when the broker cannot tell.
func analyzeUses(n *pg.Node) (uses []Use, untraced, traced Origin, ok bool) {
	w := &useWalker{}
	w.statement(n, nil)
	return w.uses, w.untraced, w.traced, !w.unknown
}

func (w *useWalker) statement(n *pg.Node, lvl *level) {
	switch s := n.GetNode().(type) {
	case *pg.Node_SelectStmt:
		w.topOutputs(w.selectStmt(s.SelectStmt, lvl))
	case *pg.Node_InsertStmt, *pg.Node_UpdateStmt, *pg.Node_DeleteStmt, *pg.Node_MergeStmt:
		w.topOutputs(w.write(n, lvl))
	case *pg.Node_ExplainStmt:
		w.statement(s.ExplainStmt.Query, lvl)
	case *pg.Node_PrepareStmt:
		w.statement(s.PrepareStmt.Query, lvl)
	case *pg.Node_DeclareCursorStmt:
		w.statement(s.DeclareCursorStmt.Query, lvl)
	case *pg.Node_ViewStmt:
		w.statement(s.ViewStmt.Query, lvl)
	case *pg.Node_CreateTableAsStmt:
		w.statement(s.CreateTableAsStmt.Query, lvl)
	case *pg.Node_CopyStmt:
		c := s.CopyStmt
		if c.Query != nil {
			w.copyOut = true
			w.statement(c.Query, lvl)
		}
		if c.WhereClause != nil && c.Relation != nil {
			l := &level{parent: lvl, rels: []*relation{baseRelation(c.Relation)}}
			w.clause(c.WhereClause, l, UseWhere)
		}
	}
}

// topOutputs records the top-level result columns the server does not trace.
func (w *useWalker) topOutputs(outs []output) {
	for _, o := range outs {
		if w.copyOut || !o.origin.Traced() {
			w.untraced.add(o.origin)
		} else {
			w.traced.add(o.origin)
		}
	}
}

func baseRelation(rv *pg.RangeVar) *relation {
	schema := rv.Schemaname
	if schema == "" {
		schema = "public"
		if slices.Contains(statisticsRelations, rv.Relname) {
			schema = "pg_catalog"
		}
	}
	r := &relation{name: rv.Relname, table: schema + "." + rv.Relname}
	if rv.Alias != nil {
		r.name = rv.Alias.Aliasname
		if len(rv.Alias.Colnames) > 0 {
			// Columns renamed by position: the names no longer tell which column each is.
			return &relation{name: r.name, open: true, openOrigin: Origin{Sources: []Source{{Table: r.table, Column: "*"}}}}
		}
	}
	return r
}

// with adds a WITH clause's CTEs to a new level above lvl and returns it.
func (w *useWalker) with(wc *pg.WithClause, lvl *level) *level {
	if wc == nil {
		return lvl
	}
	out := &level{parent: lvl, ctes: map[string]*relation{}}
	for _, c := range wc.Ctes {
		cte := c.GetCommonTableExpr()
		if cte == nil {
			w.unknown = true
			continue
		}
		r := &relation{name: cte.Ctename}
		if wc.Recursive {
			// Its own references see what it gives: start from nothing known, and widen until nothing
			// changes (the sources are finite, and each pass can only add).
			r.open, r.openOrigin = true, Origin{}
			out.ctes[cte.Ctename] = r
			for range 8 {
				outs := w.cteQuery(cte, out)
				next := Origin{}
				for _, o := range outs {
					next.add(o.origin)
				}
				next.Computed = true
				grown := len(next.Sources) != len(r.openOrigin.Sources) || next.Unknown != r.openOrigin.Unknown
				r.outs, r.openOrigin = nil, next
				if !grown {
					break
				}
			}
			continue
		}
		r.outs = rename(w.cteQuery(cte, out), cte.Aliascolnames)
		out.ctes[cte.Ctename] = r
	}
	return out
}

func (w *useWalker) cteQuery(cte *pg.CommonTableExpr, lvl *level) []output {
	q := cte.Ctequery
	if s := q.GetSelectStmt(); s != nil {
		return w.selectStmt(s, lvl)
	}
	return w.write(q, lvl)
}

// rename names outs by an alias's column list.
func rename(outs []output, names []*pg.Node) []output {
	out := slices.Clone(outs)
	for i, n := range names {
		if i < len(out) && out[i].name != "" {
			out[i].name = n.GetString_().GetSval()
		} else {
			// Positions after a star's columns are not known: every name may be any column.
			for j := range out {
				out[j].name = ""
			}
			return out
		}
	}
	return out
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
					outs = append(outs, output{name: "column" + itoa(i+1)})
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

func itoa(i int) string {
	const digits = "0123456789"
	if i < 10 {
		return digits[i : i+1]
	}
	return itoa(i/10) + digits[i%10:i%10+1]
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
		// count(column) and count(*) count rows, and a masked column's NULLs show as NULL anyway.
		if f := v.FuncCall; isCount(f) && f.AggFilter == nil && len(f.AggOrder) == 0 && f.Over == nil && !f.AggDistinct &&
			(f.AggStar || len(f.Args) == 1 && f.Args[0].GetColumnRef() != nil) {
			if len(f.Args) == 1 {
				w.resolve(f.Args[0].GetColumnRef(), lvl)
			}
			return Origin{Computed: true}
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
					r.outs = rename(r.outs, rv.Alias.Colnames)
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
			r.outs = rename(outs, sub.Alias.Colnames)
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
		o := w.resolve(v.ColumnRef, lvl)
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
				w.use(clause, lo, &ro)
				w.use(clause, ro, &lo)
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
		if sel := st.SelectStmt.GetSelectStmt(); sel != nil {
			for _, out := range w.selectStmt(sel, from.parent) {
				w.use(UseWrite, out.origin, nil)
			}
		}
		from.rels = append(from.rels, baseRelation(st.Relation))
		if oc := st.OnConflictClause; oc != nil {
			// EXCLUDED holds the row proposed for insertion, from the values just analysed.
			from.rels = append(from.rels, &relation{name: "excluded", open: true, openOrigin: Origin{Sources: []Source{{Table: from.rels[0].table, Column: "*"}}}})
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

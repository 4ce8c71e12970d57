package sqlclass

import (
	"slices"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// The analysis of uses tells, for each statement, where column values go other than into plain
// columns of the result, and where the result's untraced columns come from. It walks the parse tree
// scope by scope, as the server resolves names: FROM items make a level's relations (tables by name;
// subqueries, CTEs, functions, VALUES and aliased joins by the origins of their columns), and each
// column reference resolves among them, innermost level first. It knows no catalog, so it keeps every
// reading the server might take: an unqualified name may be a column of any table in scope (the
// broker's catalog rules out those that are not), rel.name may be name(rel), a star's columns may have
// any name, and a position in ORDER BY or GROUP BY may be any result column (the cache shares one
// analysis among statements that differ in literals only). What it cannot follow is Unknown, and a
// statement it cannot finish has unknown uses: the broker treats both as masked.

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
		outs := w.selectStmt(s.SelectStmt, lvl)
		if s.SelectStmt.IntoClause != nil {
			w.written(outs) // SELECT ... INTO a new table
			return
		}
		w.topOutputs(outs)
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
		// A table made from a query holds copies the broker cannot mask in later sessions: it has no
		// dependency on the tables they came from. (A materialized view has one, and is masked as a view.)
		if sel := s.CreateTableAsStmt.Query.GetSelectStmt(); sel != nil && s.CreateTableAsStmt.Objtype != pg.ObjectType_OBJECT_MATVIEW {
			w.written(w.selectStmt(sel, lvl))
			return
		}
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

// written records the result columns of a query whose rows are written into a new table as writes.
func (w *useWalker) written(outs []output) {
	for _, o := range outs {
		w.use(UseWrite, o.origin, nil)
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

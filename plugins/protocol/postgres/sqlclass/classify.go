// Package sqlclass classifies SQL with PostgreSQL's own parser (libpg_query through pg_query_go): what
// kind of statement each one is, which tables it reads, writes or locks, which functions it calls,
// whether it escapes inspection, what it can do to the database's lasting state (Effect, for the
// audit log's commit points) and which timeout settings it sets. The broker decides statements on
// this classification, never on the text. Whatever does not parse is an error, and the broker denies
// it. Cache keeps classifications of statements that differ only in their literals.
package sqlclass

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
	"github.com/pganalyze/pg_query_go/v6/parser"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Statement kinds. Each is the suffix of a Cedar action ("sql:" + kind).
const (
	KindSelect      = "select"
	KindInsert      = "insert"
	KindUpdate      = "update"
	KindDelete      = "delete"
	KindDDL         = "ddl"
	KindAdmin       = "admin"
	KindTransaction = "transaction"
	KindUtility     = "utility"
	// KindLock takes locks that outlast a read or hold back other sessions: a locking clause (FOR
	// UPDATE, FOR SHARE, ...), LOCK TABLE, an advisory lock, or two-phase commit (PREPARE TRANSACTION
	// keeps the transaction's locks after the session; COMMIT and ROLLBACK PREPARED end one). See locks.go.
	KindLock = "lock"
)

// MaxDepth bounds the parse tree's nesting the classifier walks; deeper trees are refused.
const MaxDepth = 512

// Statement is one classified statement.
type Statement struct {
	// Kind is the statement class (see the Kind constants). A statement that escapes inspection is
	// KindAdmin, whatever its outer form.
	Kind string
	// Accesses are the tables the statement touches and how: a SELECT reads ("select"), an INSERT's
	// target is written ("insert"), a DDL statement's table is changed ("ddl"). Tables are
	// "schema.name"; an unqualified name is taken as schema "public".
	Accesses []Access
	// Functions are the functions called, as written (schema-qualified when the statement qualifies
	// them), lower case.
	Functions []string
	// AdminReasons say why the statement is KindAdmin, for errors and the audit log.
	AdminReasons []string
	// NestedWrite is set when a write sits inside another statement (a data-modifying CTE, COPY of a
	// DELETE ... RETURNING).
	NestedWrite bool
	// Refs are the column names the statement mentions anywhere except as a plain column of its
	// top-level result, lower case; "*" stands for a star or a whole-row reference. A result column
	// the backend cannot trace to a table column (an expression, an aggregate, a set operation) may
	// derive from any of them.
	Refs []string
	// Columns are the plain columns of the top-level result ("*" for a star), lower case; with Refs
	// they say everything a result may show. For COPY of a table they are its column list, or "*".
	Columns []string
	// CopyOut and CopyIn mark COPY ... TO STDOUT and COPY ... FROM STDIN.
	CopyOut, CopyIn bool
	// Possible are the qualified column references rel.name of the statement, which the server reads as
	// name(rel), a function of rel's whole row, when rel has no column called name.
	Possible []QualifiedRef
	// PossibleFunctions are names that may be functions called in attribute notation (rel.name,
	// (expr).name); admin functions among them already make the statement admin.
	PossibleFunctions []string
	// Fetch marks FETCH: rows of a cursor whose query was decided when it was declared.
	Fetch bool
	// ChangesObjects marks statements that can create or change views, functions or rules, after
	// which the broker refreshes what it knows about the database.
	ChangesObjects bool
	// Effect says whether the statement may change what lasts, or commit (see Effect).
	Effect Effect
	// TxControl marks statements that may open or close a transaction block: BEGIN, START
	// TRANSACTION, COMMIT, END, ROLLBACK, ABORT, PREPARE TRANSACTION, COMMIT and ROLLBACK PREPARED.
	TxControl bool
	// Settings are the session timeouts the statement sets or resets (see TimeoutSettings), lower
	// case; their values are literals, which the cache does not key on, so SettingValues reads them.
	Settings []string
	// Operators are the operators the statement names or applies, as written ("op", "schema.op"), or
	// AnyOperator (see operators.go).
	Operators []string
	// Types are the types the statement names, as written ("name", "schema.name"), or AnyType (see
	// types.go).
	Types []string
	// Uses are the uses of column values other than as plain columns of the top-level result (see
	// uses.go); UsesUnknown marks a statement whose uses the broker cannot tell.
	Uses        []Use
	UsesUnknown bool
	// Untraced is where the top-level result's columns that the server does not trace to a table
	// column (expressions, set operations, whole rows of subqueries) may take their values from.
	Untraced Origin
	// Traced is where the others take their values from: the columns they name, if those exist (the
	// server reads rel.name as name(rel) when rel has no column name).
	Traced Origin
}

// QualifiedRef is rel.name: a column of rel, or a call of name with rel's whole row.
type QualifiedRef struct {
	Table string // "schema.table" when rel is a table (or view), "" for a subquery, CTE, function or join
	Name  string
}

// Access is one table touched by a statement.
type Access struct {
	Table  string // "schema.name"
	Action string // a statement kind
}

// Tables returns the distinct tables of s's accesses.
func (s Statement) Tables() []string {
	var out []string
	for _, a := range s.Accesses {
		if !slices.Contains(out, a.Table) {
			out = append(out, a.Table)
		}
	}
	return out
}

// ErrParse wraps every parse failure.
var ErrParse = errors.New("sqlclass: the statement does not parse")

// SyntaxError is what the parser found wrong with a statement, as PostgreSQL reports it. It is
// ErrParse.
type SyntaxError struct {
	// Message is the parser's, such as `syntax error at or near "SELEC"`.
	Message string
	// Position is where in the statement, in characters from 1; 0 when the parser gives none.
	Position int
}

func (e *SyntaxError) Error() string { return "sqlclass: " + e.Message }

// Is makes a SyntaxError ErrParse.
func (e *SyntaxError) Is(target error) bool { return target == ErrParse }

// Classify parses sql, which may hold several statements, and classifies each. An empty string
// (only whitespace or comments) has no statements. A statement the parser refuses gives a
// *SyntaxError.
func Classify(sql string) ([]Statement, error) {
	tree, err := pg.Parse(sql)
	if err != nil {
		if pe, ok := errors.AsType[*parser.Error](err); ok {
			return nil, &SyntaxError{Message: pe.Message, Position: pe.Cursorpos}
		}
		return nil, fmt.Errorf("%w: %v", ErrParse, err)
	}
	out := make([]Statement, 0, len(tree.Stmts))
	for _, raw := range tree.Stmts {
		text := sql[min(int(raw.StmtLocation), len(sql)):]
		if raw.StmtLen > 0 && int(raw.StmtLen) <= len(text) {
			text = text[:raw.StmtLen]
		}
		st, err := classify(raw.Stmt, text)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// classify classifies one parsed statement.
func classify(n *pg.Node, text string) (Statement, error) {
	w := &walker{text: text}
	kind := w.top(n)
	if w.err != nil {
		return Statement{}, w.err
	}
	if len(w.admin) > 0 {
		kind = KindAdmin
	} else if w.sequenceWrite && kind == KindSelect {
		kind = KindUpdate // nextval and setval change a sequence: a write, decided against the target
	} else if (w.locking || w.advisoryLock) && kind == KindSelect {
		kind = KindLock
	}
	st := Statement{
		Kind: kind, Functions: w.funcs, AdminReasons: w.admin, NestedWrite: w.nestedWrite,
		Columns: w.columns, CopyOut: w.copyOut, CopyIn: w.copyIn, Fetch: w.fetch, ChangesObjects: w.changesObjects,
		Effect: w.effect(n, kind), Settings: w.settings, Operators: operatorNames(n), Types: typeNames(n),
	}
	if tx := n.GetTransactionStmt(); tx != nil {
		_, st.TxControl = txEffect(tx)
	}
	var known bool
	st.Uses, st.Untraced, st.Traced, known = analyzeUses(n)
	st.UsesUnknown = !known
	for _, r := range w.tables {
		if r.cte {
			continue
		}
		a := Access{Table: r.name, Action: r.action}
		if kind == KindAdmin {
			a.Action = KindAdmin
		}
		if !slices.Contains(st.Accesses, a) {
			st.Accesses = append(st.Accesses, a)
		}
		if lock := (Access{Table: r.name, Action: KindLock}); w.locking && a.Action == KindSelect && !slices.Contains(st.Accesses, lock) {
			st.Accesses = append(st.Accesses, lock) // every table a locking query reads: it may lock any of them
		}
	}
	for _, name := range w.topNames {
		if slices.Contains(w.aliases, name) {
			w.refs = append(w.refs, name)
		}
	}
	for _, c := range w.wholeRowCandidates {
		rel, name := c[0], c[1]
		switch table, ok := w.relations[rel]; {
		case ok:
			st.Possible = append(st.Possible, QualifiedRef{Table: table, Name: name})
		case slices.Contains(w.aliases, rel):
			st.Possible = append(st.Possible, QualifiedRef{Name: name}) // a subquery's, CTE's, function's or join's
		}
	}
	for _, f := range w.possible {
		if !slices.Contains(st.PossibleFunctions, f) {
			st.PossibleFunctions = append(st.PossibleFunctions, f)
		}
	}
	for _, ref := range w.refs {
		if slices.Contains(w.aliases, ref) {
			ref = "*" // a whole-row reference to a relation
		}
		if !slices.Contains(st.Refs, ref) {
			st.Refs = append(st.Refs, ref)
		}
	}
	return st, nil
}

type tableRef struct {
	name   string
	action string
	cte    bool
}

// walker collects facts from one statement's parse tree.
type walker struct {
	tables   []tableRef
	funcs    []string
	admin    []string
	refs     []string
	topNames []string // single-name columns of the top-level result
	// wholeRowCandidates are qualifiers of qualified column references (rel in rel.name): when rel is a
	// relation, rel.name may be name(rel), a function of the whole row.
	wholeRowCandidates [][2]string       // {rel, name}
	possible           []string          // names that may be functions called in attribute notation
	relations          map[string]string // relation names and aliases -> "schema.table"
	columns            []string          // plain columns of the top-level result
	aliases            []string          // relation names and aliases, to recognize whole-row references
	nestedWrite        bool
	copyOut            bool
	copyIn             bool
	fetch              bool
	changesObjects     bool
	locking            bool // a locking clause (FOR UPDATE, FOR SHARE) or LOCK TABLE: a lock is not a read
	advisoryLock       bool // a call of an advisory lock function
	settings           []string
	depth              int
	err                error
	text               string // the statement's own text
	sequenceWrite      bool
}

// scope is the chain of CTE names visible at a point of the tree.
type scope struct {
	names  []string
	parent *scope
}

func (s *scope) has(name string) bool {
	for ; s != nil; s = s.parent {
		if slices.Contains(s.names, name) {
			return true
		}
	}
	return false
}

func (w *walker) adminBecause(reason string) {
	if !slices.Contains(w.admin, reason) {
		w.admin = append(w.admin, reason)
	}
}

// top classifies the statement node itself and walks it; it returns the kind.
func (w *walker) top(n *pg.Node) string {
	switch s := n.GetNode().(type) {
	case *pg.Node_SelectStmt:
		if s.SelectStmt.IntoClause != nil {
			w.ddlTarget(s.SelectStmt.IntoClause.Rel)
			w.walkSelect(s.SelectStmt, nil, true)
			return KindDDL
		}
		w.walkSelect(s.SelectStmt, nil, true)
		return KindSelect
	case *pg.Node_InsertStmt, *pg.Node_UpdateStmt, *pg.Node_DeleteStmt, *pg.Node_MergeStmt:
		return w.walkWrite(n.ProtoReflect(), nil)
	case *pg.Node_CopyStmt:
		c := s.CopyStmt
		switch {
		case c.IsProgram:
			w.adminBecause("COPY with a PROGRAM")
		case c.Filename != "" || !hasToken(w.text, pg.Token_STDIN, pg.Token_STDOUT):
			// The tree gives an empty file name for STDOUT and for TO '' alike: the keyword tells.
			w.adminBecause("COPY with a server-side file")
		case c.IsFrom:
			w.copyIn = true
		default:
			w.copyOut = true
		}
		if c.Relation != nil {
			if len(c.Attlist) == 0 {
				w.columns = append(w.columns, "*")
			}
			for _, a := range c.Attlist {
				w.columns = append(w.columns, a.GetString_().GetSval())
			}
			action := KindSelect
			if c.IsFrom {
				action = KindInsert
			}
			w.table(c.Relation, action, nil)
		}
		if c.Query != nil {
			w.nested(c.Query, nil)
		}
		if c.WhereClause != nil {
			w.walk(c.WhereClause.ProtoReflect(), nil, KindSelect)
		}
		if c.IsFrom {
			return KindInsert
		}
		return KindSelect
	case *pg.Node_ExplainStmt:
		// EXPLAIN ANALYZE runs the statement, and plain EXPLAIN reveals its plan: both need what the
		// statement itself needs.
		return w.top(s.ExplainStmt.Query)
	case *pg.Node_PrepareStmt:
		w.reserved(s.PrepareStmt.Name)
		return w.top(s.PrepareStmt.Query)
	case *pg.Node_DeclareCursorStmt:
		w.reserved(s.DeclareCursorStmt.Portalname)
		return w.top(s.DeclareCursorStmt.Query)
	case *pg.Node_FetchStmt:
		w.reserved(s.FetchStmt.Portalname)
		w.fetch = true
		return KindSelect // rows of a cursor whose query was decided when it was declared
	case *pg.Node_ExecuteStmt:
		w.adminBecause("EXECUTE of an SQL prepared statement")
		return KindAdmin
	case *pg.Node_DoStmt:
		w.adminBecause("DO block")
		return KindAdmin
	case *pg.Node_CallStmt:
		w.walk(n.ProtoReflect(), nil, KindAdmin)
		w.adminBecause("CALL of a procedure")
		return KindAdmin
	case *pg.Node_VariableSetStmt:
		return w.set(s.VariableSetStmt)
	case *pg.Node_DeallocateStmt:
		w.reserved(s.DeallocateStmt.Name)
		return KindUtility
	case *pg.Node_ClosePortalStmt:
		w.reserved(s.ClosePortalStmt.Portalname)
		return KindUtility
	case *pg.Node_VariableShowStmt, *pg.Node_ListenStmt, *pg.Node_UnlistenStmt,
		*pg.Node_NotifyStmt, *pg.Node_DiscardStmt, *pg.Node_ConstraintsSetStmt:
		return KindUtility
	case *pg.Node_TransactionStmt:
		if twoPhase(s.TransactionStmt) {
			return KindLock
		}
		return KindTransaction
	case *pg.Node_LockStmt:
		w.locking = true
		w.walk(n.ProtoReflect(), nil, KindLock)
		return KindLock
	case *pg.Node_CreateStmt, *pg.Node_AlterTableStmt, *pg.Node_IndexStmt, *pg.Node_CreateSeqStmt,
		*pg.Node_AlterSeqStmt, *pg.Node_RenameStmt, *pg.Node_CommentStmt, *pg.Node_TruncateStmt,
		*pg.Node_CompositeTypeStmt, *pg.Node_CreateEnumStmt, *pg.Node_AlterEnumStmt, *pg.Node_CreateDomainStmt,
		*pg.Node_AlterDomainStmt, *pg.Node_AlterObjectSchemaStmt, *pg.Node_CreateStatsStmt,
		*pg.Node_AlterStatsStmt, *pg.Node_CreatePolicyStmt, *pg.Node_AlterPolicyStmt,
		*pg.Node_AlterOwnerStmt, *pg.Node_CreateRangeStmt, *pg.Node_DefineStmt, *pg.Node_RefreshMatViewStmt:
		w.walk(n.ProtoReflect(), nil, KindDDL)
		return KindDDL
	case *pg.Node_DropStmt:
		w.drop(s.DropStmt)
		return KindDDL
	case *pg.Node_ViewStmt:
		w.changesObjects = true
		w.ddlTarget(s.ViewStmt.View)
		w.walk(s.ViewStmt.Query.ProtoReflect(), nil, KindSelect)
		return KindDDL
	case *pg.Node_CreateTableAsStmt:
		w.changesObjects = true
		if s.CreateTableAsStmt.Into != nil {
			w.ddlTarget(s.CreateTableAsStmt.Into.Rel)
		}
		if q := s.CreateTableAsStmt.Query; q.GetSelectStmt() == nil {
			w.top(q) // CREATE TABLE ... AS EXECUTE, and whatever else the grammar allows there
		} else {
			w.walk(q.ProtoReflect(), nil, KindSelect)
		}
		return KindDDL
	case *pg.Node_CreateSchemaStmt:
		// Its elements (tables, views, grants, triggers) are statements of their own.
		kind := KindDDL
		for _, el := range s.CreateSchemaStmt.SchemaElts {
			if k := w.top(el); k == KindAdmin {
				kind = KindAdmin
			}
		}
		return kind
	case *pg.Node_CreateFunctionStmt, *pg.Node_AlterFunctionStmt:
		w.adminBecause("function or procedure definition (its body escapes inspection)")
		return KindAdmin
	case *pg.Node_CreateTrigStmt, *pg.Node_RuleStmt, *pg.Node_CreateEventTrigStmt, *pg.Node_AlterEventTrigStmt:
		w.adminBecause("trigger or rule (runs code the broker does not see)")
		return KindAdmin
	case *pg.Node_GrantStmt, *pg.Node_GrantRoleStmt, *pg.Node_CreateRoleStmt, *pg.Node_AlterRoleStmt,
		*pg.Node_AlterRoleSetStmt, *pg.Node_DropRoleStmt, *pg.Node_ReassignOwnedStmt, *pg.Node_DropOwnedStmt,
		*pg.Node_AlterDefaultPrivilegesStmt:
		w.adminBecause("role or privilege change")
		return KindAdmin
	default:
		// Maintenance, extensions, foreign data, databases, tablespaces, ALTER SYSTEM, LOAD, CHECKPOINT,
		// and anything this list does not name: admin, which the baseline pack forbids.
		w.walk(n.ProtoReflect(), nil, KindAdmin)
		w.adminBecause(strings.TrimPrefix(fmt.Sprintf("%T", n.GetNode()), "*pg_query.Node_"))
		return KindAdmin
	}
}

// ReservedPrefix starts the names the broker gives prepared statements and portals at the backend.
// SQL that names a prepared statement or cursor with it is an admin action: it could take or drop a
// name the broker relies on.
const ReservedPrefix = "svidbroker_"

func (w *walker) reserved(name string) {
	if strings.HasPrefix(strings.ToLower(name), ReservedPrefix) {
		w.adminBecause("a prepared statement or cursor name reserved for the broker")
	}
}

// sequenceWriters change a sequence.
var sequenceWriters = []string{"nextval", "setval"}

// hasToken reports whether text scans to a token of one of the kinds.
func hasToken(text string, kinds ...pg.Token) bool {
	res, err := pg.Scan(text)
	if err != nil {
		return false
	}
	for _, t := range res.Tokens {
		if slices.Contains(kinds, t.Token) {
			return true
		}
	}
	return false
}

// statisticsRelations hold values sampled from every column the role may read (most common values,
// histogram bounds), outside any masking by column.
// pg_stat_activity shows the statements of other sessions of the same role: other agents' statements,
// literals included, when they share the broker's role.
var statisticsRelations = []string{"pg_stats", "pg_stats_ext", "pg_stats_ext_exprs", "pg_statistic", "pg_statistic_ext_data", "pg_stat_activity"}

// settings that a session may change without escaping inspection. Everything else is admin:
// search_path (names resolve elsewhere), client_encoding and standard_conforming_strings (the text the
// broker parses would not be the text the server runs), role and session_authorization (privileges).
var harmlessSettings = []string{
	"application_name", "datestyle", "intervalstyle", "timezone", "extra_float_digits", "bytea_output",
	"statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout", "idle_session_timeout",
	"transaction_isolation", "transaction_read_only", "transaction_deferrable", "default_transaction_isolation",
	"default_transaction_read_only", "default_transaction_deferrable", "client_min_messages", "work_mem",
	"maintenance_work_mem", "jit", "lc_messages", "lc_monetary", "lc_numeric", "lc_time", "geqo",
	"enable_seqscan", "enable_indexscan", "enable_bitmapscan", "enable_hashjoin", "enable_mergejoin",
	"enable_nestloop", "random_page_cost", "seq_page_cost", "effective_cache_size", "xmloption", "synchronous_commit",
}

func (w *walker) set(s *pg.VariableSetStmt) string {
	switch s.Kind {
	case pg.VariableSetKind_VAR_SET_MULTI:
		// SET TRANSACTION ..., SET SESSION CHARACTERISTICS AS TRANSACTION ..., SET TRANSACTION SNAPSHOT.
		return KindUtility
	case pg.VariableSetKind_VAR_RESET_ALL:
		return KindUtility // back to the role's defaults
	}
	if !slices.Contains(harmlessSettings, strings.ToLower(s.Name)) {
		w.adminBecause("SET " + strings.ToLower(s.Name))
		return KindAdmin
	}
	if name := strings.ToLower(s.Name); slices.Contains(TimeoutSettings, name) && !slices.Contains(w.settings, name) {
		w.settings = append(w.settings, name)
	}
	return KindUtility
}

// drop records the tables, views and sequences a DROP names.
func (w *walker) drop(s *pg.DropStmt) {
	switch s.RemoveType {
	case pg.ObjectType_OBJECT_TABLE, pg.ObjectType_OBJECT_VIEW, pg.ObjectType_OBJECT_MATVIEW,
		pg.ObjectType_OBJECT_FOREIGN_TABLE, pg.ObjectType_OBJECT_SEQUENCE:
	default:
		if s.RemoveType == pg.ObjectType_OBJECT_FUNCTION || s.RemoveType == pg.ObjectType_OBJECT_RULE {
			w.changesObjects = true
		}
		return
	}
	w.changesObjects = true
	for _, obj := range s.Objects {
		var parts []string
		for _, item := range obj.GetList().GetItems() {
			parts = append(parts, item.GetString_().GetSval())
		}
		switch len(parts) {
		case 1:
			w.tables = append(w.tables, tableRef{name: "public." + parts[0], action: KindDDL})
		case 2:
			w.tables = append(w.tables, tableRef{name: parts[0] + "." + parts[1], action: KindDDL})
		case 3:
			w.tables = append(w.tables, tableRef{name: parts[1] + "." + parts[2], action: KindDDL})
		}
	}
}

func (w *walker) ddlTarget(rv *pg.RangeVar) {
	if rv != nil {
		w.table(rv, KindDDL, nil)
	}
}

// table records a RangeVar: a CTE reference when it names a CTE in scope, else a table.
func (w *walker) table(rv *pg.RangeVar, action string, sc *scope) {
	if rv.Alias != nil {
		w.aliases = append(w.aliases, rv.Alias.Aliasname)
		if len(rv.Alias.Colnames) > 0 {
			w.refs = append(w.refs, "*") // columns renamed by the alias: names no longer tell them
		}
	}
	if (rv.Schemaname == "" || rv.Schemaname == "pg_catalog") && slices.Contains(statisticsRelations, rv.Relname) {
		w.adminBecause("statistics views (" + rv.Relname + ") show sampled column values or other sessions' statements")
	}
	w.aliases = append(w.aliases, rv.Relname)
	if rv.Schemaname == "" && sc.has(rv.Relname) {
		w.tables = append(w.tables, tableRef{name: rv.Relname, cte: true})
		return
	}
	schema := rv.Schemaname
	switch {
	case schema == "" && slices.Contains(statisticsRelations, rv.Relname):
		schema = "pg_catalog" // searched before any other schema
	case schema == "":
		schema = "public"
	}
	name := schema + "." + rv.Relname
	if w.relations == nil {
		w.relations = map[string]string{}
	}
	w.relations[rv.Relname] = name
	if rv.Alias != nil {
		w.relations[rv.Alias.Aliasname] = name
	}
	w.tables = append(w.tables, tableRef{name: name, action: action})
}

// withScope walks a WITH clause and returns the scope its statement's body sees. A CTE of a
// non-recursive WITH sees only the CTEs before it; a recursive WITH's CTEs see all of them.
func (w *walker) withScope(with *pg.WithClause, sc *scope) *scope {
	if with == nil {
		return sc
	}
	inner := &scope{parent: sc}
	var names []string
	for _, c := range with.Ctes {
		names = append(names, c.GetCommonTableExpr().GetCtename())
	}
	if with.Recursive {
		inner.names = names
	}
	for i, c := range with.Ctes {
		cte := c.GetCommonTableExpr()
		w.aliases = append(w.aliases, cte.GetCtename())
		if !with.Recursive {
			inner = &scope{names: names[:i], parent: sc}
		}
		if cte.GetCtequery() != nil {
			w.nested(cte.GetCtequery(), inner)
		}
	}
	return &scope{names: names, parent: sc}
}

// nested walks a statement inside another (a CTE's query).
func (w *walker) nested(n *pg.Node, sc *scope) {
	switch s := n.GetNode().(type) {
	case *pg.Node_SelectStmt:
		w.walkSelect(s.SelectStmt, sc, false)
	case *pg.Node_InsertStmt, *pg.Node_UpdateStmt, *pg.Node_DeleteStmt, *pg.Node_MergeStmt:
		w.nestedWrite = true
		w.walkWrite(n.ProtoReflect(), sc)
	default:
		w.walk(n.ProtoReflect(), sc, KindSelect)
	}
}

// walkSelect walks a SELECT. Only at the top level, and outside set operations, is a plain column
// reference in the target list traceable by the backend to its table column; every other column
// mention is collected in refs.
func (w *walker) walkSelect(s *pg.SelectStmt, sc *scope, top bool) {
	if !w.enter() {
		return
	}
	defer w.leave()
	sc = w.withScope(s.WithClause, sc)
	if s.Op != pg.SetOperation_SETOP_NONE {
		if s.Larg != nil {
			w.walkSelect(s.Larg, sc, false)
		}
		if s.Rarg != nil {
			w.walkSelect(s.Rarg, sc, false)
		}
	}
	for _, t := range s.TargetList {
		rt := t.GetResTarget()
		if top && s.Op == pg.SetOperation_SETOP_NONE && rt != nil && rt.Val.GetColumnRef() != nil {
			// Traced by the backend (RowDescription's table OID and column number), unless it names a
			// whole row, which classify tells once every alias is known.
			f := rt.Val.GetColumnRef().Fields
			w.qualified(rt.Val.GetColumnRef())
			if len(f) == 1 && f[0].GetString_() != nil {
				w.topNames = append(w.topNames, f[0].GetString_().GetSval())
			}
			if last := f[len(f)-1]; last.GetAStar() != nil {
				w.columns = append(w.columns, "*")
			} else {
				w.columns = append(w.columns, last.GetString_().GetSval())
			}
			continue
		}
		w.walk(t.ProtoReflect(), sc, KindSelect)
	}
	// A locking clause's OF list names items of the FROM clause, not tables: it is not walked.
	w.locking = w.locking || len(s.LockingClause) > 0
	for _, list := range [][]*pg.Node{s.DistinctClause, s.FromClause, s.GroupClause, s.WindowClause, s.SortClause} {
		for _, n := range list {
			w.walk(n.ProtoReflect(), sc, KindSelect)
		}
	}
	for _, vl := range s.ValuesLists {
		w.walk(vl.ProtoReflect(), sc, KindSelect)
	}
	for _, n := range []*pg.Node{s.WhereClause, s.HavingClause, s.LimitOffset, s.LimitCount} {
		if n != nil {
			w.walk(n.ProtoReflect(), sc, KindSelect)
		}
	}
}

// walkWrite walks an INSERT, UPDATE, DELETE or MERGE and returns its kind.
func (w *walker) walkWrite(m protoreflect.Message, sc *scope) string {
	if !w.enter() {
		return KindAdmin
	}
	defer w.leave()
	var with *pg.WithClause
	var rel *pg.RangeVar
	var kinds []string
	switch s := m.Interface().(*pg.Node).GetNode().(type) {
	case *pg.Node_InsertStmt:
		with, rel, kinds = s.InsertStmt.WithClause, s.InsertStmt.Relation, []string{KindInsert}
		if s.InsertStmt.OnConflictClause != nil && s.InsertStmt.OnConflictClause.Action == pg.OnConflictAction_ONCONFLICT_UPDATE {
			kinds = append(kinds, KindUpdate)
		}
	case *pg.Node_UpdateStmt:
		with, rel, kinds = s.UpdateStmt.WithClause, s.UpdateStmt.Relation, []string{KindUpdate}
	case *pg.Node_DeleteStmt:
		with, rel, kinds = s.DeleteStmt.WithClause, s.DeleteStmt.Relation, []string{KindDelete}
	case *pg.Node_MergeStmt:
		with, rel = s.MergeStmt.WithClause, s.MergeStmt.Relation
		for _, wc := range s.MergeStmt.MergeWhenClauses {
			switch wc.GetMergeWhenClause().GetCommandType() {
			case pg.CmdType_CMD_INSERT:
				kinds = append(kinds, KindInsert)
			case pg.CmdType_CMD_UPDATE:
				kinds = append(kinds, KindUpdate)
			case pg.CmdType_CMD_DELETE:
				kinds = append(kinds, KindDelete)
			}
		}
		if len(kinds) == 0 {
			kinds = []string{KindUpdate}
		}
	}
	sc = w.withScope(with, sc)
	for _, k := range kinds {
		w.table(rel, k, nil) // the server looks a write's target up among tables, never among CTEs
	}
	// The rest: VALUES or a SELECT, SET and WHERE expressions, FROM/USING tables (read), RETURNING
	// (always collected: the backend does not trace RETURNING columns reliably).
	inner := m.Interface().(*pg.Node).GetNode()
	var body protoreflect.Message
	switch s := inner.(type) {
	case *pg.Node_InsertStmt:
		body = s.InsertStmt.ProtoReflect()
	case *pg.Node_UpdateStmt:
		body = s.UpdateStmt.ProtoReflect()
	case *pg.Node_DeleteStmt:
		body = s.DeleteStmt.ProtoReflect()
	case *pg.Node_MergeStmt:
		body = s.MergeStmt.ProtoReflect()
	}
	body.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch fd.Name() {
		case "relation", "with_clause":
			return true
		}
		w.walkValue(fd, v, sc, KindSelect)
		return true
	})
	return kinds[0]
}

func (w *walker) enter() bool {
	w.depth++
	if w.depth > MaxDepth && w.err == nil {
		w.err = fmt.Errorf("%w: nested more than %d levels deep", ErrParse, MaxDepth)
	}
	return w.err == nil
}

func (w *walker) leave() { w.depth-- }

// walk visits every node below m. RangeVars found are recorded with action (the statement's kind for
// DDL, "select" inside queries).
func (w *walker) walk(m protoreflect.Message, sc *scope, action string) {
	if !w.enter() {
		return
	}
	defer w.leave()
	switch n := m.Interface().(type) {
	case *pg.Node:
		switch s := n.GetNode().(type) {
		case *pg.Node_SelectStmt:
			w.walkSelect(s.SelectStmt, sc, false)
			return
		case *pg.Node_InsertStmt, *pg.Node_UpdateStmt, *pg.Node_DeleteStmt, *pg.Node_MergeStmt:
			w.nestedWrite = true
			w.walkWrite(m, sc)
			return
		}
	case *pg.SelectStmt:
		w.walkSelect(n, sc, false)
		return
	case *pg.RangeVar:
		w.table(n, action, sc)
		return
	case *pg.RangeSubselect:
		if n.Alias != nil {
			w.aliases = append(w.aliases, n.Alias.Aliasname)
		}
	case *pg.RangeFunction:
		if n.Alias != nil {
			w.aliases = append(w.aliases, n.Alias.Aliasname)
		}
	case *pg.FuncCall:
		w.function(n)
	case *pg.ColumnRef:
		w.columnRef(n)
		return
	case *pg.A_Indirection:
		// (expr).name is a call of name(expr) when name is not a field of expr.
		for _, ind := range n.Indirection {
			if name := ind.GetString_(); name != nil {
				w.possibleCall(name.Sval)
			}
		}
	case *pg.JoinExpr:
		if n.Alias != nil {
			w.aliases = append(w.aliases, n.Alias.Aliasname)
		}
		if n.JoinUsingAlias != nil {
			w.aliases = append(w.aliases, n.JoinUsingAlias.Aliasname)
		}
		if n.IsNatural {
			w.refs = append(w.refs, "*") // merged columns, not named in the statement
		}
		for _, u := range n.UsingClause {
			w.refs = append(w.refs, u.GetString_().GetSval()) // a FULL JOIN merges them with COALESCE
		}
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		w.walkValue(fd, v, sc, action)
		return w.err == nil
	})
}

func (w *walker) walkValue(fd protoreflect.FieldDescriptor, v protoreflect.Value, sc *scope, action string) {
	if fd.Kind() != protoreflect.MessageKind {
		return
	}
	if fd.IsList() {
		l := v.List()
		for i := range l.Len() {
			w.walk(l.Get(i).Message(), sc, action)
		}
		return
	}
	w.walk(v.Message(), sc, action)
}

func (w *walker) columnRef(c *pg.ColumnRef) {
	if len(c.Fields) == 0 {
		return
	}
	w.qualified(c)
	last := c.Fields[len(c.Fields)-1]
	if last.GetAStar() != nil {
		w.refs = append(w.refs, "*")
		return
	}
	w.refs = append(w.refs, last.GetString_().GetSval())
}

// qualified handles rel.name, which is a call of name(rel) when rel has no column name: the whole
// row goes to a function. The qualifier is recorded as a possible whole-row reference.
func (w *walker) qualified(c *pg.ColumnRef) {
	if len(c.Fields) < 2 {
		return
	}
	name := c.Fields[len(c.Fields)-1].GetString_()
	qual := c.Fields[len(c.Fields)-2].GetString_()
	if name == nil || qual == nil {
		return
	}
	w.possibleCall(name.Sval)
	w.wholeRowCandidates = append(w.wholeRowCandidates, [2]string{qual.Sval, name.Sval})
}

// possibleCall treats name as a function that may be called: an admin function makes the statement
// admin, and it is listed among the functions.
func (w *walker) possibleCall(name string) {
	if slices.Contains(adminFunctions, strings.ToLower(name)) {
		w.adminBecause("function " + name)
	}
	w.special(name, name)
	if !slices.Contains(w.possible, name) {
		w.possible = append(w.possible, name)
	}
}

// adminFunctions reach outside the statement the broker inspected: files on the server, large objects,
// other databases, settings, dynamic SQL held in strings, other sessions.
var adminFunctions = []string{
	"pg_read_file", "pg_read_binary_file", "pg_ls_dir", "pg_stat_file", "pg_ls_logdir", "pg_ls_waldir",
	"pg_ls_tmpdir", "pg_ls_archive_statusdir", "pg_ls_logicalmapdir", "pg_ls_logicalsnapdir", "pg_ls_replslotdir",
	"pg_file_write", "pg_file_rename", "pg_file_unlink", "pg_file_sync", "pg_logdir_ls",
	"lo_import", "lo_export", "lo_open", "lo_close", "lo_creat", "lo_create", "lo_unlink", "lo_get", "lo_put",
	"lo_from_bytea", "lo_truncate", "lo_truncate64", "lo_lseek", "lo_lseek64", "lo_tell", "lo_tell64", "loread", "lowrite",
	"dblink", "dblink_exec", "dblink_connect", "dblink_connect_u", "dblink_send_query", "dblink_open", "dblink_fetch",
	"dblink_get_result", "dblink_build_sql_insert", "dblink_build_sql_update", "dblink_build_sql_delete",
	"set_config", "query_to_xml", "query_to_xmlschema", "query_to_xml_and_xmlschema", "table_to_xml",
	"table_to_xmlschema", "table_to_xml_and_xmlschema", "cursor_to_xml", "cursor_to_xmlschema",
	"schema_to_xml", "schema_to_xmlschema", "schema_to_xml_and_xmlschema", "database_to_xml",
	"database_to_xmlschema", "database_to_xml_and_xmlschema", "ts_stat", "ts_rewrite",
	"pg_terminate_backend", "pg_cancel_backend", "pg_reload_conf", "pg_rotate_logfile", "pg_promote",
	"pg_switch_wal", "pg_create_restore_point", "pg_backup_start", "pg_backup_stop",
	"pg_create_logical_replication_slot", "pg_create_physical_replication_slot", "pg_drop_replication_slot",
	"pg_logical_slot_get_changes", "pg_logical_slot_peek_changes", "pg_logical_emit_message",
	"pg_notify", "pg_import_system_collations", "pg_stat_reset", "pg_stat_reset_shared", "pg_stat_reset_single_table_counters",
}

func (w *walker) function(f *pg.FuncCall) {
	parts := make([]string, 0, len(f.Funcname))
	for _, p := range f.Funcname {
		parts = append(parts, p.GetString_().GetSval())
	}
	name := strings.Join(parts, ".") // as the parser gives it: unquoted names folded, quoted ones kept
	if !slices.Contains(w.funcs, name) {
		w.funcs = append(w.funcs, name)
	}
	if len(parts) > 0 && slices.Contains(adminFunctions, strings.ToLower(parts[len(parts)-1])) {
		w.adminBecause("function " + name)
	}
	if len(parts) > 0 && slices.Contains(sequenceWriters, strings.ToLower(parts[len(parts)-1])) {
		w.sequenceWrite = true
	}
	if len(parts) > 0 {
		w.special(parts[len(parts)-1], name)
	}
}

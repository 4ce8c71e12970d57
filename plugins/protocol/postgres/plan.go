package postgres

import (
	"encoding/binary"
	"math"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/svidbroker/svidbroker/broker/inspect"
	sess "github.com/svidbroker/svidbroker/broker/session"
	"github.com/svidbroker/svidbroker/plugins/protocol/postgres/sqlclass"
)

// plan says how to mask the results of one statement (or of the statements of one simple Query).
// A nil plan masks nothing.
type plan struct {
	meta *dbMeta
	// cols are the masked columns, by table OID and column number.
	cols map[colKey]inspect.Strategy
	// tables holds, per catalog table with a masked column and per view over one, the strictest of
	// those strategies: for whole-row values of the table and every column of the view.
	tables map[uint32]inspect.Strategy
	// strictest is the strictest strategy in the plan; columns of relations created after the
	// session began (unknown to meta) get it.
	strictest inspect.Strategy
	// derived masks result columns the backend cannot trace to a table column (OID 0), when the
	// statement mentions a masked column (or a star or a whole row) outside its plain result columns.
	derived inspect.Strategy
	// derivedAt is derived for each statement of a simple Query, in order.
	derivedAt []inspect.Strategy
	// scrub withholds the text of notices, and of errors that can quote data (quotesData): they can
	// quote values of masked columns.
	scrub bool
	// maskedNames are the masked columns' names.
	maskedNames []string
	// listed are the masked columns a result of the statements the plan is for can carry (maskedIn),
	// as their records list them: set once the plan is made (session.planVerdict).
	listed []string
}

var _ sess.MaskingPlan = (*plan)(nil)

// Masked lists the masked columns a result of the plan's statements can carry
// ("public.customers.email=hash"); none for a nil plan. Their statement records list them
// (auditStatement), and the session's Decider makes a verdict whose plan lists some a Mask verdict,
// as metrics count it.
func (p *plan) Masked() []string {
	if p == nil {
		return nil
	}
	return p.listed
}

type colKey struct {
	table uint32
	attr  int16
}

// strategyOrder lists strategies weakest first.
var strategyOrder = []inspect.Strategy{inspect.Partial, inspect.Hash, inspect.Redact, inspect.Null}

func stricter(a, b inspect.Strategy) inspect.Strategy {
	if slices.Index(strategyOrder, b) > slices.Index(strategyOrder, a) {
		return b
	}
	return a
}

// active reports whether any column may be masked.
func (p *plan) active() bool { return p != nil && p.strictest != "" }

// addColumn records that the column attr of table is masked with s.
func (p *plan) addColumn(table uint32, attr int16, name string, s inspect.Strategy) {
	k := colKey{table, attr}
	p.cols[k] = stricter(p.cols[k], s)
	p.tables[table] = stricter(p.tables[table], s)
	p.strictest = stricter(p.strictest, s)
	if !slices.Contains(p.maskedNames, name) {
		p.maskedNames = append(p.maskedNames, name)
	}
}

// finish derives the views' strategies and the derived-column and scrubbing rules from the
// statements' classifications.
func (p *plan) finish(sts []sqlclass.Statement) {
	if !p.active() {
		return
	}
	for view, bases := range p.meta.views {
		for _, b := range bases {
			if s, ok := p.tables[b]; ok {
				p.tables[view] = stricter(p.tables[view], s)
			}
		}
	}
	maskedTables := map[string]bool{}
	catalogTables := p.meta.catalog
	for oid, t := range p.meta.tables {
		if _, ok := p.tables[oid]; ok {
			maskedTables[t.name] = true
		}
	}
	p.derivedAt = make([]inspect.Strategy, len(sts))
	for i, st := range sts {
		derived := false
		if st.UsesUnknown {
			derived = p.derivedByName(st, catalogTables)
		} else {
			// The result columns the server does not trace take their values from st.Untraced; a traced
			// one may be a function of a whole row (rel.name, no column name) or a view's.
			derived = len(p.masked(st.Untraced)) > 0 || p.untracedAmong(st.Traced)
		}
		for _, f := range append(append([]string(nil), st.Functions...), st.PossibleFunctions...) {
			// A function of the database's own: its body may read masked columns.
			derived = derived || p.meta.functions[f[strings.LastIndexByte(f, '.')+1:]]
		}
		for _, a := range st.Accesses {
			if maskedTables[a.Table] || !catalogTables[a.Table] && (p.meta.viewNames[a.Table] || !p.meta.existing[a.Table]) {
				p.scrub = true
			}
		}
		// FETCH: the cursor's query is not in view here.
		derived = derived || st.Fetch
		if derived {
			// Computed from masked data: never partially shown or hashed, whatever the columns' own
			// strategies. A partial mask's rules can be steered by an expression (wrap a value so that it
			// looks like an email address, and its "domain" shows), and a hash of an expression hashes
			// values of the caller's choosing with the same key.
			p.derivedAt[i] = stricter(p.strictest, inspect.Redact)
		}
		p.derived = stricter(p.derived, p.derivedAt[i])
	}
	if p.derived != "" {
		p.scrub = true
	}
}

// derivedByName is the rule for a statement whose uses the broker could not analyse (it is refused
// when any column is masked, see checkMaskedUses, so this only matters for plans without one): any
// mention of a masked column's name, a star, a whole row, a view over masked data or a relation made
// after the session began makes every untraced result column derived.
func (p *plan) derivedByName(st sqlclass.Statement, catalogTables map[string]bool) bool {
	derived := false
	for _, r := range st.Refs {
		derived = derived || r == "*" || slices.Contains(p.maskedNames, r)
	}
	for _, q := range st.Possible {
		t, masked := p.meta.byName[q.Table]
		derived = derived || q.Table == "" || masked && !t.all[q.Name]
	}
	for _, a := range st.Accesses {
		derived = derived || !catalogTables[a.Table] && (p.meta.viewNames[a.Table] || !p.meta.existing[a.Table])
	}
	return derived
}

// maskedIn lists the masked columns a result of sts can carry ("public.customers.email=hash"), sorted:
// those of the tables the statements name, or all of them when a statement that reads (a query, a
// function, a cursor) has its result masked as derived from masked data. A statement that names no
// masked table and reads nothing, such as BEGIN or CREATE TABLE, lists none.
func (p *plan) maskedIn(sts []sqlclass.Statement) []string {
	if !p.active() {
		return nil
	}
	all := false
	read := map[string]bool{}
	for i, st := range sts {
		reads := st.Fetch || len(st.Functions) > 0 || len(st.PossibleFunctions) > 0
		unknown := false // a relation that may hold copies of masked values under other names
		for _, a := range st.Accesses {
			read[a.Table] = true
			reads = reads || a.Action == sqlclass.KindSelect
			unknown = unknown || !p.meta.catalog[a.Table] && (p.meta.viewNames[a.Table] || !p.meta.existing[a.Table])
		}
		all = all || reads && (unknown || i < len(p.derivedAt) && p.derivedAt[i] != "")
	}
	var out []string
	for k, strategy := range p.cols {
		t := p.meta.tables[k.table]
		if all || read[t.name] {
			out = append(out, t.name+"."+t.columns[k.attr]+"="+string(strategy))
		}
	}
	slices.Sort(out)
	return out
}

// strategy returns how to mask a column of the result of statement i (-1: any of them), "" for not
// at all.
//
// The server names a table column in a result's description only for a plain column reference,
// passed up unchanged through subqueries, CTEs and inner joins' columns; expressions, casts, set
// operations, VALUES, functions and a FULL JOIN's merged columns give OID 0. A column that names a
// masked column therefore carries that column's stored value, and only such a column gets the
// column's own strategy (hash or partial among them). A view's column names the view, and may be
// computed: it is redacted. Everything else that may carry masked data (derivedAt) is redacted too.
func (p *plan) strategy(f pgproto3.FieldDescription, i int) inspect.Strategy {
	if !p.active() {
		return ""
	}
	oid, attr := f.TableOID, int16(f.TableAttributeNumber)
	if oid == 0 {
		if i >= 0 && i < len(p.derivedAt) {
			return p.derivedAt[i]
		}
		return p.derived
	}
	if s, ok := p.cols[colKey{oid, attr}]; ok {
		return s
	}
	if _, ok := p.meta.tables[oid]; ok {
		if attr <= 0 { // a whole row, or a system column
			return stricter(p.tables[oid], inspect.Redact)
		}
		return ""
	}
	// A view's column, or a column of a relation made after the session began, may be computed from
	// masked data: redacted at least, never partially shown or hashed.
	if _, ok := p.meta.views[oid]; ok {
		if s := p.tables[oid]; s != "" {
			return stricter(s, inspect.Redact)
		}
		return ""
	}
	if oid > p.meta.maxOID {
		return stricter(p.strictest, inspect.Redact)
	}
	return ""
}

// fieldMask is how one result column is masked.
type fieldMask struct {
	strategy inspect.Strategy
	text     bool // the value is text-like in its wire format: mask it as text, else NULL it
}

// textTypes are the types whose text and binary forms are both the string itself.
var textTypes = []uint32{25 /* text */, 1043 /* varchar */, 1042 /* bpchar */, 19 /* name */, 705 /* unknown */}

// masksFor returns the masks of the columns of statement i's result (-1: of any statement of the
// plan), or nil when none is masked.
func (p *plan) masksFor(fields []pgproto3.FieldDescription, stmt int) []fieldMask {
	if !p.active() {
		return nil
	}
	var out []fieldMask
	for i, f := range fields {
		s := p.strategy(f, stmt)
		if s == "" {
			continue
		}
		if out == nil {
			out = make([]fieldMask, len(fields))
		}
		out[i] = fieldMask{strategy: s, text: slices.Contains(textTypes, f.DataTypeOID)}
	}
	return out
}

// maskValue returns v masked as fm requires, into sc; nil is SQL NULL.
func maskValue(sc *inspect.Scratch, fm fieldMask, v []byte) []byte {
	if fm.strategy == "" || v == nil {
		return v
	}
	if !fm.text {
		return nil
	}
	out, null, err := sc.Mask(fm.strategy, v)
	if err != nil || null {
		return nil
	}
	return out
}

// appendRow appends the DataRow whose body the backend sent to dst, as the client gets it: masked
// as masks require (each value by maskValue, into sc), and otherwise the same bytes.
// It reads the body as pgproto3's Decode does, without decoding it into a message and encoding that
// again, and refuses a body Decode would refuse or that has bytes after its last value. n is the
// bytes of the values the client gets.
func appendRow(dst, body []byte, masks []fieldMask, sc *inspect.Scratch) (out []byte, n int64, err error) {
	if masks == nil {
		if n, err = dataRowBytes(body); err != nil {
			return dst, 0, err
		}
		return appendFrame(dst, 'D', body), n, nil
	}
	start := len(dst)
	dst = append(dst, 'D', 0, 0, 0, 0)
	if len(body) >= 2 {
		dst = append(dst, body[:2]...) // the number of values
	}
	sc.Reset()
	err = dataRowValues(body, func(i int, v []byte) {
		if i < len(masks) {
			v = maskValue(sc, masks[i], v)
		}
		if v == nil {
			dst = binary.BigEndian.AppendUint32(dst, math.MaxUint32) // -1: NULL
			return
		}
		dst = append(binary.BigEndian.AppendUint32(dst, uint32(len(v))), v...)
		n += int64(len(v))
	})
	if err != nil {
		return dst[:start], 0, err
	}
	binary.BigEndian.PutUint32(dst[start+1:], uint32(len(dst)-start-1))
	return dst, n, nil
}

// quotesData reports whether error e can quote the data a statement read, and so is withheld from a
// statement that reads masked columns (scrub). Its SQLSTATE class decides, never its message's text,
// and only classes known to quote no value pass: what is not known is withheld.
//
// Errors that name an object (42 syntax and access rules, 3D, 3F, 26, 34, 0P, 28, 0L, 3B, 2B) name
// what the statement names when the server raised them analysing the client's text: it points into
// that text (Position) and gives no context. Raised while the statement runs, they can name a value
// taken for a name (a text cast to regclass: schema "<value>" does not exist), so they are withheld.
// A permission error (42501) names objects only and passes.
//
// Errors about the connection, the transaction, resources and the server's state (08, 0A, 21, 24, 25,
// 40, 53, 54, 55, 57, 58) quote no value and pass. Everything else is withheld: data exceptions (22:
// "invalid input syntax for type integer: <value>"), integrity constraint violations (23, and 44:
// "Failing row contains (<row>)"), raised exceptions (P0), errors of functions, triggers and foreign
// data (09, 27, 2F, 38, 39, HV), internal errors (XX), classes this list does not name, and an error
// without a valid SQLSTATE.
func quotesData(e *pgproto3.ErrorResponse) bool {
	code := e.Code
	if len(code) != 5 {
		return true
	}
	switch code[:2] {
	case "08", "0A", "21", "24", "25", "40", "53", "54", "55", "57", "58":
		return false
	case "42", "3D", "3F", "26", "34", "0P", "28", "0L", "3B", "2B":
		if code == "42501" {
			return false
		}
		inText := e.Position > 0 && e.Where == "" && e.InternalQuery == "" && e.InternalPosition == 0
		return !inText
	}
	return true
}

// scrub returns the error or notice with everything that could quote a value removed: only the
// severity, the SQLSTATE and a fixed message remain.
func scrub(e *pgproto3.ErrorResponse) *pgproto3.ErrorResponse {
	return &pgproto3.ErrorResponse{Severity: e.Severity, SeverityUnlocalized: e.SeverityUnlocalized, Code: e.Code,
		Message: "svidbroker: details withheld because the statement touches masked columns (SQLSTATE " + sqlstate(e.Code) + ")"}
}

package postgres

import (
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/svidbroker/svidbroker/broker/audit"
	"github.com/svidbroker/svidbroker/broker/authz"
	"github.com/svidbroker/svidbroker/broker/inspect"
	"github.com/svidbroker/svidbroker/plugins/protocol/postgres/sqlclass"
)

// refusedMaskedUse is why a statement that uses a masked column other than as a plain result column
// was refused, when no policy could permit it (the value's source is not one catalog column).
const refusedMaskedUse = "it uses masked data in a way that could reveal it"

// refusedUse says, in a refused statement's record, which use of which masked column was refused.
type refusedUse struct {
	clause, column string // column: its Column entity UID, when a policy was asked
}

func (u *refusedUse) record(rec *audit.Record) {
	if u == nil {
		return
	}
	rec.Detail["use"] = u.clause
	if rec.Decision != nil && u.column != "" {
		rec.Decision.Action = authz.ActionUseMasked
		rec.Decision.Resource = u.column
	}
}

// maskedSource is one masked value a use reads: a tagged column masked for the caller (table and
// column set), or a source no policy can be asked about (what says what it is).
type maskedSource struct {
	table, column string
	what          string
}

// maskedColumns returns the names of table's columns masked in p.
func (p *plan) maskedColumns(table string) []string {
	var out []string
	for k := range p.cols {
		if t, ok := p.meta.tables[k.table]; ok && t.name == table {
			if c := t.columns[k.attr]; !slices.Contains(out, c) {
				out = append(out, c)
			}
		}
	}
	slices.Sort(out)
	return out
}

// tableNamed finds a catalog table with tagged columns by name.
func (p *plan) tableNamed(name string) (metaTable, bool) {
	if oid, ok := p.meta.descendants[name]; ok {
		// A partition or inheritance child: the table's rows and tagged columns, and columns of its own.
		return p.meta.tables[oid], true
	}
	if t, ok := p.meta.byName[name]; ok {
		return t, true
	}
	for _, t := range p.meta.tables {
		if t.name == name {
			return t, true
		}
	}
	return metaTable{}, false
}

// masked lists what of o may be masked data for this caller. What the broker cannot prove unmasked is
// listed: a view over masked data, a relation made after the session began, a function the database
// defines, a value it cannot trace.
func (p *plan) masked(o sqlclass.Origin) []maskedSource {
	var out []maskedSource
	if o.Unknown {
		out = append(out, maskedSource{what: "a value whose source the broker cannot trace"})
	}
	for _, s := range o.Sources {
		if s.Function != "" {
			if p.meta.functions[s.Function[strings.LastIndexByte(s.Function, '.')+1:]] {
				out = append(out, maskedSource{what: "the result of function " + s.Function + ", which the database defines and whose body may read masked columns"})
			}
			continue
		}
		if t, ok := p.tableNamed(s.Table); ok {
			cols := p.maskedColumns(t.name)
			if s.Column != "*" && t.all[s.Column] {
				if slices.Contains(cols, s.Column) {
					out = append(out, maskedSource{table: t.name, column: s.Column})
				}
				continue
			}
			// A star, a whole row, or rel.name where rel has no column name: name(rel) reads the row.
			for _, c := range cols {
				out = append(out, maskedSource{table: t.name, column: c})
			}
			continue
		}
		switch {
		case p.meta.viewNames[s.Table]:
			out = append(out, maskedSource{what: "a column of view " + s.Table + ", which reads masked columns"})
		case !p.meta.existing[s.Table] && !p.meta.catalog[s.Table]:
			out = append(out, maskedSource{what: "a column of " + s.Table + ", which did not exist when the session began and may hold copies of masked values"})
		}
	}
	return out
}

// untracedAmong reports whether a top-level result column that names a column (rel.name) may instead be
// a function of a masked table's whole row: the table has no column of that name.
func (p *plan) untracedAmong(o sqlclass.Origin) bool {
	for _, s := range o.Sources {
		if t, ok := p.tableNamed(s.Table); ok && s.Column != "*" && !t.all[s.Column] && len(p.maskedColumns(t.name)) > 0 {
			return true
		}
	}
	return false
}

// equalityWith returns the Column entity ID of the other side of an equality use, when it is one
// column's plain value of a relation that existed when the session began (not a view over masked data):
// the hidden values are then compared with stored values, not with values of the caller's choosing.
func (p *plan) equalityWith(target string, eq *sqlclass.Origin) (string, bool) {
	if eq == nil || !eq.Traced() || len(eq.Sources) != 1 {
		return "", false
	}
	s := eq.Sources[0]
	if s.Column == "*" || s.Table == "" || p.meta.viewNames[s.Table] {
		return "", false
	}
	t, tagged := p.tableNamed(s.Table)
	if tagged && !t.all[s.Column] || !tagged && !p.meta.existing[s.Table] {
		return "", false
	}
	return string(authz.ColumnUID(target, s.Table, s.Column).ID), true
}

// useReasons says, per clause, what a use of a masked column would reveal.
var useReasons = map[string]string{
	sqlclass.UseWhere:        "which rows match would test its hidden values",
	sqlclass.UseJoin:         "which rows join would test its hidden values",
	sqlclass.UseHaving:       "which groups match would test its hidden values",
	sqlclass.UseOrder:        "the order of the rows would show how its hidden values sort (a position, such as ORDER BY 1, counts as every result column: name the column instead)",
	sqlclass.UseWindow:       "a window's partitions and order would show how its hidden values compare",
	sqlclass.UseGroup:        "grouping would show which hidden values are equal (a position, such as GROUP BY 1, counts as every result column: name the column instead)",
	sqlclass.UseSetOperation: "a set operation compares its hidden values",
	sqlclass.UseFunction:     "an expression's result, errors or row count would reveal its hidden values",
	sqlclass.UseLimit:        "the number of rows would reveal its hidden values",
	sqlclass.UseWrite:        "it would copy its hidden values where they are not masked",
}

const useAdvice = "select it only as a plain result column (it comes back masked), and filter, join, group and sort on unmasked columns"

// checkMaskedUses refuses statements that use a column masked for this caller other than as a plain
// column of the result, unless a policy permits the use (column:use-masked). A statement whose uses
// the broker cannot tell is refused when any column is masked for the caller.
func (s *session) checkMaskedUses(sts []sqlclass.Statement, p *plan, ap authz.ApprovalState) *refusal {
	if !p.active() {
		return nil
	}
	multi := len(sts) > 1
	for _, st := range sts {
		if st.UsesUnknown {
			return refused(errStatementDenied("svidbroker: statement denied: columns are masked for you, and the broker cannot tell how this statement uses them (it is too large or nested too deeply); simplify it"), refusedMaskedUse)
		}
		ast := authz.Statement{Kind: st.Kind, Tables: st.Tables(), Functions: st.Functions, MultiStatement: multi}
		for _, u := range st.Uses {
			for _, m := range p.masked(u.Value) {
				clause := strings.ToUpper(u.Clause)
				if m.table == "" {
					r := refused(errStatementDenied(fmt.Sprintf("svidbroker: statement denied: its %s uses %s, and %s; %s",
						clause, m.what, useReasons[u.Clause], "use the catalog's tables and columns directly")), refusedMaskedUse)
					r.use = &refusedUse{clause: u.Clause}
					return r
				}
				use := authz.MaskedUse{Clause: u.Clause}
				use.WithColumn, use.Equality = p.equalityWith(s.insp.connect.Target, u.EqualTo)
				d := s.insp.authz.UseMasked(s.insp.connect, m.table, m.column, ast, ap, use, &s.memo)
				if d.Allow {
					continue
				}
				msg := fmt.Sprintf("svidbroker: statement denied: column %s.%s is masked for you, and using it in %s would reveal it: %s. No policy permits %s for this use; %s",
					m.table, m.column, clause, useReasons[u.Clause], authz.ActionUseMasked, useAdvice)
				r := policyRefusal(errStatementDenied(msg), d)
				r.use = &refusedUse{clause: u.Clause, column: authz.ColumnUID(s.insp.connect.Target, m.table, m.column).String()}
				return r
			}
		}
	}
	return nil
}

// redactedNotice tells the client which of the statements' result columns are redacted because they
// are computed from (or pass untraced) masked data, or "" when none is: the agent learns why it gets
// "***" or NULL, instead of taking it for the data.
func (p *plan) redactedNotice(sts []sqlclass.Statement) string {
	if !p.active() {
		return ""
	}
	var what []string
	for i, st := range sts {
		if i >= len(p.derivedAt) || p.derivedAt[i] == "" {
			continue
		}
		for _, m := range p.masked(st.Untraced) {
			w := m.what
			if m.table != "" {
				w = m.table + "." + m.column
			}
			if !slices.Contains(what, w) {
				what = append(what, w)
			}
		}
		if st.Fetch && !slices.Contains(what, "a cursor's rows") {
			what = append(what, "a cursor's rows")
		}
	}
	if len(what) == 0 {
		return ""
	}
	slices.Sort(what)
	return "svidbroker: result columns computed from masked data, or passed through a set operation, subquery, view or function, are " +
		string(p.derivedAt[slices.IndexFunc(p.derivedAt, func(s inspect.Strategy) bool { return s != "" })]) +
		"ed, never partially shown or hashed: they may carry " + strings.Join(what, "; ") +
		". Select the masked column itself as a plain result column to get it masked by its own strategy"
}

// noticeRedacted sends the client redactedNotice's notice, if any.
func (s *session) noticeRedacted(p *plan, sts []sqlclass.Statement) error {
	msg := p.redactedNotice(sts)
	if msg == "" {
		return nil
	}
	s.clientMu.Lock()
	defer s.clientMu.Unlock()
	s.client.Send(&pgproto3.NoticeResponse{Severity: "NOTICE", SeverityUnlocalized: "NOTICE", Code: "01000", Message: msg})
	return s.flushClient()
}

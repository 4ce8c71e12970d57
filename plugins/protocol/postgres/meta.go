package postgres

import (
	"context"
	"crypto/sha256"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/svidbroker/svidbroker/broker/authz"
)

// dbMeta is what the broker knows about the backend database, resolved once per backend session
// before any client statement runs: which table OIDs and column numbers are the catalog's tagged
// columns, which views (and materialized views) depend on those tables, and the highest relation OID
// at that moment. Result columns are masked by OID and column number from RowDescription, never by
// name. A relation created later (OID above maxOID) is unknown, and its columns are masked with the
// strictest strategy in force for the caller.
type dbMeta struct {
	tables map[uint32]metaTable // catalog tables with tagged columns, by OID
	byName map[string]metaTable // the same, by "schema.name"
	views  map[uint32][]uint32  // views over those tables: view OID -> base table OIDs
	maxOID uint32
	// catalog holds the names ("schema.name") of every table the target's catalog lists.
	catalog map[string]bool
	// functions are the names of functions defined outside the system schemas: their bodies read
	// what the broker does not see, so their results are treated as derived from masked data.
	functions map[string]bool
	// existing are the relations ("schema.name") there were when the session began; viewNames are those
	// among them that are views over masked data.
	existing, viewNames map[string]bool
	// descendants maps the own names of the tagged tables' partitions and inheritance children to their
	// OIDs in tables: they hold the rows and tagged columns of the tables they descend from.
	descendants map[string]uint32
	// funcs are the database's functions and search_path, to decide calls (funcs.go).
	funcs *funcCatalog
	// sum is the SHA-256 of everything it was derived from: the catalog's tagged columns and tables,
	// and every query and answer of the session's catalog read (catalogread.go). Zero when unknown.
	sum [sha256.Size]byte
}

// metaShare keeps the last dbMeta a session of one target loaded. A session that loads one from the
// same inputs (the catalog did not change in between: its sum is the same) uses that instead, so that
// idle sessions do not each hold a copy of the same catalog; every session still reads the catalog as
// it is when it begins, and a dbMeta is derived from nothing but what sum covers, so the shared one is
// what the session's own read gives. A dbMeta is never modified once loaded. Comparing sums, not the
// derived maps, keeps the check's cost from growing with the database's catalog.
type metaShare struct {
	mu   sync.Mutex
	last *dbMeta
}

func (s *metaShare) intern(m *dbMeta) *dbMeta {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m.sum == ([sha256.Size]byte{}) {
		return m // nothing says what it was derived from
	}
	if s.last != nil && s.last.sum == m.sum {
		return s.last
	}
	s.last = m
	return m
}

const metaFunctionsSQL = `SELECT DISTINCT p.proname FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')`

type metaTable struct {
	name    string           // "schema.name" as in the catalog
	columns map[int16]string // tagged columns by attnum
	all     map[string]bool  // every column's name
}

// taggedColumns returns, for target, "schema.table" -> its tagged column names, and the names of all
// the tables the catalog lists.
func taggedColumns(c *authz.Catalog, target string) (map[string][]string, map[string]bool) {
	out, all := map[string][]string{}, map[string]bool{}
	if c == nil {
		return out, all
	}
	for _, t := range c.Targets {
		if t.Name != target {
			continue
		}
		for _, tb := range t.Tables {
			name := tb.Name
			if !strings.Contains(name, ".") {
				name = "public." + name
			}
			all[name] = true
			for _, col := range tb.Columns {
				if len(col.Tags) > 0 {
					out[name] = append(out[name], col.Name)
				}
			}
		}
	}
	return out, all
}

// metaColumnsSQL lists the columns of the given tables and of their partitions and inheritance
// children (recursively), each under the name of the table it descends from: a child's rows are the
// table's rows, whatever its own name and column numbers.
const metaColumnsSQL = `WITH RECURSIVE t(oid, root) AS (
  SELECT c.oid, n.nspname || '.' || c.relname FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname || '.' || c.relname = ANY($1::text[])
  UNION
  SELECT i.inhrelid, t.root FROM pg_catalog.pg_inherits i JOIN t ON i.inhparent = t.oid)
SELECT t.oid, t.root, a.attnum, a.attname FROM t
JOIN pg_catalog.pg_attribute a ON a.attrelid = t.oid
WHERE a.attnum > 0 AND NOT a.attisdropped`

// metaViewsSQL finds every view and materialized view that depends, directly or through other views,
// on the given tables.
const metaViewsSQL = `WITH RECURSIVE v(view, base) AS (
  SELECT r.ev_class, d.refobjid FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid
  WHERE d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.refclassid = 'pg_catalog.pg_class'::regclass
    AND d.refobjid = ANY($1::oid[]) AND r.ev_class <> d.refobjid
  UNION
  SELECT r.ev_class, v.base FROM v JOIN pg_catalog.pg_depend d ON d.refobjid = v.view JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid
  WHERE d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.refclassid = 'pg_catalog.pg_class'::regclass AND r.ev_class <> d.refobjid)
SELECT view, base FROM v`

// metaMaxOIDSQL reads the highest relation OID.
const metaMaxOIDSQL = "SELECT max(oid)::text FROM pg_catalog.pg_class"

// loadMeta resolves the tagged columns of tagged on the backend connection pc, before it is handed
// over. A failure refuses the session: masking cannot work without it. Its queries go as one
// pipelined batch (catalogread.go), plus one for the views over the tagged tables.
func loadMeta(ctx context.Context, pc *pgconn.PgConn, tagged map[string][]string, catalog map[string]bool, classify classifier) (*dbMeta, error) {
	m := &dbMeta{tables: map[uint32]metaTable{}, views: map[uint32][]uint32{}, catalog: catalog}
	sum := sha256.New()
	sumInputs(sum, tagged, catalog)
	qs := append([]catalogQuery{{sql: metaMaxOIDSQL, what: "reading relation OIDs"}}, funcCatalogQueries()...)
	nf := len(qs)
	if len(tagged) > 0 {
		names := make([]string, 0, len(tagged))
		for n := range tagged {
			names = append(names, n)
		}
		slices.Sort(names)
		arr, err := encodeText(pgtype.TextArrayOID, names)
		if err != nil {
			return nil, err
		}
		qs = append(qs,
			catalogQuery{sql: metaFunctionsSQL, what: "listing the database's functions"},
			catalogQuery{sql: metaColumnsSQL, params: [][]byte{arr}, oids: []uint32{pgtype.TextArrayOID}, what: "resolving the catalog's tables"},
			catalogQuery{sql: metaFunctionViewsSQL, what: "finding views that call functions"},
			catalogQuery{sql: metaRelationsSQL, what: "listing relations"})
	}
	all, err := readCatalog(ctx, pc, sum, qs)
	if err != nil {
		return nil, err
	}
	maxRes := all[0]
	if len(maxRes.Rows) != 1 {
		return nil, fmt.Errorf("postgres: reading relation OIDs: %d rows", len(maxRes.Rows))
	}
	var max uint64
	if _, err := fmt.Sscan(string(maxRes.Rows[0][0]), &max); err != nil {
		return nil, fmt.Errorf("postgres: reading relation OIDs: %w", err)
	}
	m.maxOID = uint32(max)
	if m.funcs, err = newFuncCatalog(all[1:nf], classify); err != nil {
		return nil, err
	}
	if len(tagged) == 0 {
		m.sum = [sha256.Size]byte(sum.Sum(nil))
		return m, nil
	}
	fres, res, viewRes, nres := all[nf], all[nf+1], all[nf+2], all[nf+3]
	m.functions = map[string]bool{}
	for _, row := range fres.Rows {
		m.functions[string(row[0])] = true
	}
	var oids []uint32
	found := map[string]map[string]bool{}
	for _, row := range res.Rows {
		var oid uint32
		var attnum int16
		if _, err := fmt.Sscan(string(row[0]), &oid); err != nil {
			return nil, fmt.Errorf("postgres: resolving the catalog's tables: %w", err)
		}
		if _, err := fmt.Sscan(string(row[2]), &attnum); err != nil {
			return nil, fmt.Errorf("postgres: resolving the catalog's tables: %w", err)
		}
		table, column := string(row[1]), string(row[3])
		t, ok := m.tables[oid]
		if !ok {
			t = metaTable{name: table, columns: map[int16]string{}, all: map[string]bool{}}
			m.tables[oid] = t
			oids = append(oids, oid)
		}
		t.all[column] = true
		if found[table] == nil {
			found[table] = map[string]bool{}
		}
		found[table][column] = true
		for _, c := range tagged[table] {
			if c == column {
				t.columns[attnum] = column
			}
		}
	}
	if err := missingTagged(tagged, found); err != nil {
		return nil, err
	}
	m.byName = map[string]metaTable{}
	for _, t := range m.tables {
		m.byName[t.name] = t // a table's partitions and children share its name and tagged columns
	}
	if len(oids) == 0 {
		m.sum = [sha256.Size]byte(sum.Sum(nil))
		return m, nil
	}
	// Views that call the database's own functions may read anything: they count as views over every
	// tagged table, and so do the views over them.
	funcViews := map[uint32]bool{}
	seeds := append([]uint32(nil), oids...)
	for _, row := range viewRes.Rows {
		var view uint32
		if _, err := fmt.Sscan(string(row[0]), &view); err != nil {
			return nil, err
		}
		funcViews[view] = true
		seeds = append(seeds, view)
		m.views[view] = append(m.views[view], oids...)
	}
	arr, err := encodeText(pgtype.OIDArrayOID, seeds)
	if err != nil {
		return nil, err
	}
	vres, err := readCatalog(ctx, pc, sum, []catalogQuery{{sql: metaViewsSQL, params: [][]byte{arr},
		oids: []uint32{pgtype.OIDArrayOID}, what: "finding views over the catalog's tables"}})
	if err != nil {
		return nil, err
	}
	for _, row := range vres[0].Rows {
		var view, base uint32
		if _, err := fmt.Sscan(string(row[0]), &view); err != nil {
			return nil, err
		}
		if _, err := fmt.Sscan(string(row[1]), &base); err != nil {
			return nil, err
		}
		if funcViews[base] {
			m.views[view] = append(m.views[view], oids...)
		} else {
			m.views[view] = append(m.views[view], base)
		}
	}
	// Names: of the views above, and of the tables that exist now, so that a statement can tell a
	// relation made later (which may hold copies of masked values) from one that was there.
	m.existing, m.viewNames = map[string]bool{}, map[string]bool{}
	for _, row := range nres.Rows {
		var oid uint32
		if _, err := fmt.Sscan(string(row[0]), &oid); err != nil {
			return nil, err
		}
		name := string(row[1])
		m.existing[name] = true
		if rel, ok := strings.CutPrefix(name, "pg_catalog."); ok {
			// An unqualified name is looked up in pg_catalog first; the classifier writes it "public.".
			m.existing["public."+rel] = true
		}
		if _, ok := m.views[oid]; ok {
			m.viewNames[name] = true
		}
		if t, ok := m.tables[oid]; ok && t.name != name {
			if m.descendants == nil {
				m.descendants = map[string]uint32{}
			}
			m.descendants[name] = oid
		}
	}
	m.sum = [sha256.Size]byte(sum.Sum(nil))
	return m, nil
}

const metaFunctionViewsSQL = `SELECT DISTINCT r.ev_class FROM pg_catalog.pg_depend d
JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid
JOIN pg_catalog.pg_proc p ON p.oid = d.refobjid
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.refclassid = 'pg_catalog.pg_proc'::regclass
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')`

const metaRelationsSQL = `SELECT c.oid, n.nspname || '.' || c.relname FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'f', 'v', 'm')
  AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'`

func encodeText(oid uint32, v any) ([]byte, error) {
	b, err := pgtype.NewMap().Encode(oid, pgtype.TextFormatCode, v, nil)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return b, nil
}

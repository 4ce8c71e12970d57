package sqlclass

import (
	"reflect"
	"slices"
	"testing"
)

// FuzzMaskedUses: the analysis of uses never fails on what parses; every use names a known clause;
// every table a source names is one the statement touches; and statements that differ in integer
// literals only (which the cache classifies once) get the same uses.
func FuzzMaskedUses(f *testing.F) {
	for _, s := range []string{
		"SELECT id FROM customers WHERE email = 'x'",
		"SELECT c.id FROM customers c JOIN customers d ON c.email = d.email",
		"SELECT id, email FROM customers ORDER BY 2",
		"WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n+1 FROM t WHERE n < 5) SELECT n FROM t",
		"SELECT 1 FROM customers NATURAL JOIN orders",
		"SELECT e FROM customers c, LATERAL (SELECT c.email AS e) x WHERE x.e > 'm'",
		"UPDATE customers SET name = email WHERE ssn = '1' RETURNING *",
		"MERGE INTO orders o USING customers c ON o.customer_id = c.id WHEN MATCHED THEN UPDATE SET total = 1",
		"INSERT INTO t SELECT * FROM customers ON CONFLICT (id) DO UPDATE SET x = excluded.email",
		"SELECT rank() OVER w FROM customers WINDOW w AS (ORDER BY ssn)",
		"SELECT email FROM customers GROUP BY ROLLUP (email, 1)",
		"SELECT * FROM (customers c JOIN orders o USING (id)) AS j WHERE j.id = 1",
	} {
		f.Add(s)
	}
	clauses := []string{UseWhere, UseJoin, UseOrder, UseGroup, UseHaving, UseWindow, UseFunction, UseSetOperation, UseLimit, UseWrite}
	f.Fuzz(func(t *testing.T, sql string) {
		sts, err := Classify(sql)
		if err != nil {
			return
		}
		for _, st := range sts {
			tables := st.Tables()
			for _, u := range st.Uses {
				if !slices.Contains(clauses, u.Clause) {
					t.Fatalf("unknown clause %q", u.Clause)
				}
				for _, o := range []*Origin{&u.Value, u.EqualTo} {
					if o == nil {
						continue
					}
					for _, s := range o.Sources {
						if s.Function == "" && !slices.Contains(tables, s.Table) {
							t.Fatalf("source %s.%s is not among the statement's tables %q", s.Table, s.Column, tables)
						}
					}
				}
			}
		}
		key, plain := plainKey(nil, sql)
		if !plain {
			return
		}
		variant := []byte(sql)
		for i, c := range variant {
			if '0' <= c && c <= '9' {
				variant[i] = '1'
			}
		}
		if k2, _ := plainKey(nil, string(variant)); string(k2) != string(key) {
			return // a digit inside an identifier: not a literal variant
		}
		other, err := Classify(string(variant))
		if err != nil || len(other) != len(sts) {
			return
		}
		for i := range sts {
			if !reflect.DeepEqual(sts[i].Uses, other[i].Uses) || sts[i].UsesUnknown != other[i].UsesUnknown {
				t.Fatalf("literal variant %q has other uses:\n%+v\n%+v", variant, sts[i].Uses, other[i].Uses)
			}
		}
	})
}

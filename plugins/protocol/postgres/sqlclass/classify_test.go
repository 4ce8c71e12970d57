package sqlclass

import (
	"errors"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestClassify(t *testing.T) {
	type want struct {
		kind     string
		accesses []string // "action table"
		funcs    []string
		refs     []string // nil: not checked
		nested   bool
		copyOut  bool
	}
	cases := []struct {
		sql string
		want
	}{
		{"SELECT 1", want{kind: "select"}},
		{"select id, name from customers", want{kind: "select", accesses: []string{"select public.customers"}, refs: []string{}}},
		{"SELECT c.email FROM public.customers c WHERE c.id = 1", want{kind: "select", accesses: []string{"select public.customers"}, refs: []string{"id"}}},
		{"SELECT upper(email) FROM customers", want{kind: "select", accesses: []string{"select public.customers"}, funcs: []string{"upper"}, refs: []string{"email"}}},
		{"SELECT email::text FROM customers", want{kind: "select", refs: []string{"email"}, accesses: []string{"select public.customers"}}},
		{"SELECT row_to_json(c) FROM customers c", want{kind: "select", refs: []string{"*"}, funcs: []string{"row_to_json"}, accesses: []string{"select public.customers"}}},
		{"SELECT c FROM customers c", want{kind: "select", refs: []string{"*"}, accesses: []string{"select public.customers"}}},
		{"SELECT (SELECT email FROM customers LIMIT 1)", want{kind: "select", refs: []string{"email"}, accesses: []string{"select public.customers"}}},
		{"SELECT email FROM customers UNION SELECT name FROM customers", want{kind: "select", refs: []string{"email", "name"}, accesses: []string{"select public.customers"}}},
		{"SELECT x FROM (SELECT email AS x FROM customers) s", want{kind: "select", refs: []string{"email"}, accesses: []string{"select public.customers"}}},
		{"WITH c AS (SELECT * FROM customers) SELECT * FROM c", want{kind: "select", refs: []string{"*"}, accesses: []string{"select public.customers"}}},
		{"SELECT count(*) FROM orders", want{kind: "select", funcs: []string{"count"}, refs: []string{}, accesses: []string{"select public.orders"}}},
		// A CTE of a non-recursive WITH does not see later CTEs: "b" in a's body is the table b.
		{"WITH a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a", want{kind: "select", accesses: []string{"select public.b"}}},
		{"WITH RECURSIVE r AS (SELECT 1 UNION SELECT * FROM r) SELECT * FROM r", want{kind: "select"}},
		// A CTE's name does not shadow a schema-qualified table.
		{"WITH customers AS (SELECT 1) SELECT * FROM public.customers", want{kind: "select", accesses: []string{"select public.customers"}}},
		{"(WITH x AS (SELECT 1) SELECT * FROM x) UNION SELECT * FROM x", want{kind: "select", accesses: []string{"select public.x"}}},
		{"INSERT INTO orders (customer_id, total) VALUES (1, 2)", want{kind: "insert", accesses: []string{"insert public.orders"}}},
		{"INSERT INTO orders SELECT * FROM customers", want{kind: "insert", accesses: []string{"insert public.orders", "select public.customers"}}},
		{"INSERT INTO orders (id) VALUES (1) ON CONFLICT (id) DO UPDATE SET total = 0", want{kind: "insert", accesses: []string{"insert public.orders", "update public.orders"}}},
		{"UPDATE orders SET total = 0 FROM customers WHERE customers.id = orders.customer_id", want{kind: "update", accesses: []string{"update public.orders", "select public.customers"}}},
		{"DELETE FROM orders WHERE id = 1 RETURNING *", want{kind: "delete", accesses: []string{"delete public.orders"}, refs: []string{"id", "*"}}},
		{"WITH d AS (DELETE FROM orders RETURNING *) SELECT * FROM d", want{kind: "select", accesses: []string{"delete public.orders"}, nested: true}},
		{"MERGE INTO orders o USING customers c ON o.customer_id = c.id WHEN MATCHED THEN DELETE", want{kind: "delete", accesses: []string{"delete public.orders", "select public.customers"}}},
		{"COPY customers TO STDOUT", want{kind: "select", accesses: []string{"select public.customers"}, copyOut: true}},
		{"COPY (SELECT email FROM customers) TO STDOUT", want{kind: "select", accesses: []string{"select public.customers"}, copyOut: true}},
		{"COPY (DELETE FROM orders RETURNING id) TO STDOUT", want{kind: "select", accesses: []string{"delete public.orders"}, nested: true, copyOut: true}},
		{"COPY orders FROM STDIN", want{kind: "insert", accesses: []string{"insert public.orders"}}},
		{"COPY orders TO '/tmp/x'", want{kind: "admin", accesses: []string{"admin public.orders"}}},
		{"COPY orders FROM PROGRAM 'id'", want{kind: "admin", accesses: []string{"admin public.orders"}}},
		{"DO $$ BEGIN EXECUTE 'select 1'; END $$", want{kind: "admin"}},
		{"SET ROLE postgres", want{kind: "admin"}},
		{"SET SESSION AUTHORIZATION postgres", want{kind: "admin"}},
		{"SET search_path = evil, public", want{kind: "admin"}},
		{"SET LOCAL search_path TO evil", want{kind: "admin"}},
		{"RESET search_path", want{kind: "admin"}},
		{"SET client_encoding = 'SJIS'", want{kind: "admin"}},
		{"SET standard_conforming_strings = off", want{kind: "admin"}},
		{"SET application_name = 'x'", want{kind: "utility"}},
		{"SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", want{kind: "utility"}},
		{"SHOW search_path", want{kind: "utility"}},
		{"SELECT set_config('search_path', 'evil', false)", want{kind: "admin", funcs: []string{"set_config"}}},
		{"SELECT pg_read_file('/etc/passwd')", want{kind: "admin", funcs: []string{"pg_read_file"}}},
		{"SELECT pg_catalog.pg_ls_dir('.')", want{kind: "admin", funcs: []string{"pg_catalog.pg_ls_dir"}}},
		{"SELECT lo_import('/etc/passwd')", want{kind: "admin", funcs: []string{"lo_import"}}},
		{"SELECT * FROM dblink('host=x', 'select 1') AS t(a int)", want{kind: "admin", funcs: []string{"dblink"}}},
		{"SELECT query_to_xml('select * from customers', true, true, '')", want{kind: "admin", funcs: []string{"query_to_xml"}}},
		{"SELECT id FROM orders WHERE pg_sleep(0) IS NOT NULL AND total > (SELECT set_config('role','x',true))::int", want{kind: "admin", accesses: []string{"admin public.orders"}}},
		{"BEGIN", want{kind: "transaction"}},
		{"COMMIT", want{kind: "transaction"}},
		{"CREATE TABLE t (a int)", want{kind: "ddl", accesses: []string{"ddl public.t"}}},
		{"ALTER TABLE orders ADD COLUMN note text", want{kind: "ddl", accesses: []string{"ddl public.orders"}}},
		{"DROP TABLE orders, s.x", want{kind: "ddl", accesses: []string{"ddl public.orders", "ddl s.x"}}},
		{"CREATE VIEW v AS SELECT email FROM customers", want{kind: "ddl", accesses: []string{"ddl public.v", "select public.customers"}}},
		{"CREATE TABLE t2 AS SELECT * FROM customers", want{kind: "ddl", accesses: []string{"ddl public.t2", "select public.customers"}}},
		{"SELECT * INTO t3 FROM customers", want{kind: "ddl", accesses: []string{"ddl public.t3", "select public.customers"}}},
		{"TRUNCATE orders", want{kind: "ddl", accesses: []string{"ddl public.orders"}}},
		{"CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'select 1'", want{kind: "admin"}},
		{"GRANT SELECT ON customers TO public", want{kind: "admin"}},
		{"CREATE EXTENSION dblink", want{kind: "admin"}},
		{"ALTER SYSTEM SET work_mem = '1GB'", want{kind: "admin"}},
		{"LOAD 'plpgsql'", want{kind: "admin"}},
		{"VACUUM orders", want{kind: "admin", accesses: []string{"admin public.orders"}}},
		{"CALL p()", want{kind: "admin"}},
		{"PREPARE p AS SELECT email FROM customers", want{kind: "select", accesses: []string{"select public.customers"}}},
		{"EXECUTE p", want{kind: "admin"}},
		{"EXPLAIN ANALYZE DELETE FROM orders", want{kind: "delete", accesses: []string{"delete public.orders"}}},
		{"DECLARE c CURSOR FOR SELECT * FROM customers", want{kind: "select", accesses: []string{"select public.customers"}}},
		{"FETCH 10 FROM c", want{kind: "select"}},
		{"LISTEN x", want{kind: "utility"}},
		{"PREPARE svidbroker_s1 AS SELECT 1", want{kind: "admin"}},
		{"DECLARE SVIDBROKER_p2 CURSOR FOR SELECT 1", want{kind: "admin"}},
		{`DEALLOCATE "svidbroker_s1"`, want{kind: "admin"}},
		{"CLOSE svidbroker_p1", want{kind: "admin"}},
		{"FETCH 1 FROM svidbroker_p1", want{kind: "admin"}},
		{"MOVE 1 IN svidbroker_p1", want{kind: "admin"}},
		{"DEALLOCATE ALL", want{kind: "utility"}},
		{"SELECT * FROM pgbench_accounts WHERE aid = $1", want{kind: "select", accesses: []string{"select public.pgbench_accounts"}}},
	}
	for _, c := range cases {
		sts, err := Classify(c.sql)
		if err != nil {
			t.Errorf("%s: %v", c.sql, err)
			continue
		}
		if len(sts) != 1 {
			t.Errorf("%s: %d statements", c.sql, len(sts))
			continue
		}
		st := sts[0]
		var acc []string
		for _, a := range st.Accesses {
			acc = append(acc, a.Action+" "+a.Table)
		}
		if st.Kind != c.kind {
			t.Errorf("%s: kind %q, want %q", c.sql, st.Kind, c.kind)
		}
		if c.accesses != nil || len(acc) > 0 {
			if !sameSet(acc, c.accesses) {
				t.Errorf("%s: accesses %q, want %q", c.sql, acc, c.accesses)
			}
		}
		if c.funcs != nil && !sameSet(st.Functions, c.funcs) {
			t.Errorf("%s: functions %q, want %q", c.sql, st.Functions, c.funcs)
		}
		if c.refs != nil && !sameSet(st.Refs, c.refs) {
			t.Errorf("%s: refs %q, want %q", c.sql, st.Refs, c.refs)
		}
		if st.NestedWrite != c.nested {
			t.Errorf("%s: nested write %v, want %v", c.sql, st.NestedWrite, c.nested)
		}
		if st.CopyOut != c.copyOut {
			t.Errorf("%s: copy out %v, want %v", c.sql, st.CopyOut, c.copyOut)
		}
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

func TestMultiStatementAndErrors(t *testing.T) {
	sts, err := Classify("select 1; delete from orders; -- done")
	if err != nil || len(sts) != 2 || sts[0].Kind != "select" || sts[1].Kind != "delete" {
		t.Fatalf("got %+v, %v", sts, err)
	}
	if sts, err := Classify("  -- nothing\n"); err != nil || len(sts) != 0 {
		t.Fatalf("empty: %+v %v", sts, err)
	}
	for _, bad := range []string{"selec 1", "select 'unterminated", "select (((1", strings.Repeat("(", 5000) + "1" + strings.Repeat(")", 5000)} {
		if _, err := Classify(bad); !errors.Is(err, ErrParse) {
			t.Errorf("%.40q: %v, want ErrParse", bad, err)
		}
	}
}

func TestCacheSharesOnlyLiteralVariants(t *testing.T) {
	c := NewCache(100)
	a, _ := c.Classify("SELECT abalance FROM pgbench_accounts WHERE aid = 1")
	b, _ := c.Classify("SELECT abalance FROM pgbench_accounts WHERE aid = 987654")
	if len(c.entries) != 1 || &a[0] != &b[0] {
		t.Fatalf("literal variants were parsed twice (%d entries)", len(c.entries))
	}
	// Identifiers and keywords are part of the key.
	for _, q := range []string{
		"SELECT abalance FROM pgbench_branches WHERE aid = 1",
		"COPY orders TO STDOUT", "COPY orders TO '/tmp/x'",
		"SET application_name = 'x'", "SET search_path = 'x'",
	} {
		if _, err := c.Classify(q); err != nil {
			t.Fatal(err)
		}
	}
	if got := c.entries; len(got) != 6 {
		t.Fatalf("%d entries, want 6", len(got))
	}
	st, _ := c.Classify("COPY orders TO '/tmp/y'")
	if st[0].Kind != KindAdmin {
		t.Fatalf("COPY TO file from the cache: %q", st[0].Kind)
	}
	st, _ = c.Classify("SET search_path = 'y'")
	if st[0].Kind != KindAdmin {
		t.Fatalf("SET search_path from the cache: %q", st[0].Kind)
	}
	if _, err := c.Classify("select 'x"); !errors.Is(err, ErrParse) {
		t.Fatalf("unscannable: %v", err)
	}
}

// TestCacheFindsRepeatedTextsWithoutScanning: a text seen before is found by the text alone (no scan,
// which allocates), and gets what a fresh classification gives; a literal variant of it still scans;
// a text longer than maxExactText is never kept by its text.
func TestCacheFindsRepeatedTextsWithoutScanning(t *testing.T) {
	c := NewCache(100)
	const q = "SELECT email FROM customers WHERE id = $1"
	first, err := c.Classify(q)
	if err != nil {
		t.Fatal(err)
	}
	if allocs := testing.AllocsPerRun(50, func() { c.Classify(q) }); allocs != 0 {
		t.Fatalf("a repeated text allocated %v times per lookup: it was scanned", allocs)
	}
	fresh, _ := Classify(q)
	again, _ := c.Classify(q)
	if &again[0] != &first[0] || again[0].Kind != fresh[0].Kind || len(again[0].Accesses) != len(fresh[0].Accesses) {
		t.Fatalf("cached %+v, fresh %+v", again, fresh)
	}
	// A literal variant with a string constant is not plain: it scans.
	variants := make([]string, 60)
	for i := range variants {
		variants[i] = "SELECT email FROM customers WHERE id = " + strconv.Itoa(i) + " AND name <> 'x'"
	}
	n := 0
	if allocs := testing.AllocsPerRun(50, func() { n++; c.Classify(variants[n]) }); allocs == 0 {
		t.Fatal("literal variants with a string constant were found without a scan")
	}
	long := "SELECT 1" + strings.Repeat(" ", maxExactText)
	if _, err := c.Classify(long); err != nil {
		t.Fatal(err)
	}
	if _, kept := c.exact[long]; kept {
		t.Fatal("a text longer than maxExactText was kept by its text")
	}
	// Full: the exact and plain maps start over rather than grow past their bound.
	small := NewCache(2)
	for _, s := range []string{"SELECT 'a'", "SELECT 'b'", "SELECT 'c'", "SELECT a", "SELECT b", "SELECT c"} {
		small.Classify(s)
	}
	if len(small.exact) != 1 || len(small.plain) != 1 {
		t.Fatalf("%d texts and %d plain keys kept, bound 2", len(small.exact), len(small.plain))
	}
}

// TestCacheFindsPlainVariantsWithoutScanning: literal variants of a text of plain tokens (pgbench's
// statements) are found by their plain key, without a scan, share the first one's classification, and
// are not kept by their text.
func TestCacheFindsPlainVariantsWithoutScanning(t *testing.T) {
	c := NewCache(100)
	first, err := c.Classify("UPDATE pgbench_accounts SET abalance = abalance + -4711 WHERE aid = 1;")
	if err != nil {
		t.Fatal(err)
	}
	variants := make([]string, 60)
	for i := range variants {
		variants[i] = "UPDATE pgbench_accounts SET abalance = abalance + -" + strconv.Itoa(i*7919) + " WHERE aid = " + strconv.Itoa(i*104729) + ";"
	}
	n := 0
	if allocs := testing.AllocsPerRun(50, func() { n++; c.Classify(variants[n]) }); allocs != 0 {
		t.Fatalf("a plain literal variant allocated %v times per lookup: it was scanned", allocs)
	}
	again, _ := c.Classify(variants[7])
	fresh, _ := Classify(variants[7])
	if &again[0] != &first[0] || !reflect.DeepEqual(again, fresh) {
		t.Fatalf("cached %+v, fresh %+v", again, fresh)
	}
	if len(c.exact) != 0 || len(c.plain) != 1 || len(c.entries) != 1 {
		t.Fatalf("%d texts, %d plain keys, %d literal-free keys kept; want 0, 1, 1", len(c.exact), len(c.plain), len(c.entries))
	}
}

// TestPlainKey: which texts are plain, and their keys.
func TestPlainKey(t *testing.T) {
	for _, tc := range []struct {
		sql, key string // key "" for a text that is not plain
	}{
		{"SELECT abalance FROM pgbench_accounts WHERE aid = 42;", "SELECT abalance FROM pgbench_accounts WHERE aid = \x00;"},
		{"select a1, t.b_2 from t where x=-17 and y in (1,2)", "select a1, t.b_2 from t where x=-\x00 and y in (\x00,\x00)"},
		{"SELECT arr[1:2]::int4[]\n\tFROM t LIMIT 10", "SELECT arr[\x00:\x00]::int4[]\n\tFROM t LIMIT \x00"},
		{"END;", "END;"},
		{"", ""}, // empty: plain, and its key is empty
		{"SELECT 1.5", ""}, {"SELECT .5", ""}, {"SELECT 1.", ""}, {"SELECT 1e5", ""}, {"SELECT 0x1F", ""},
		{"SELECT 1_000", ""}, {"SELECT 1abc", ""}, {"SELECT 'x'", ""}, {"SELECT \"x\"", ""}, {"SELECT $1", ""},
		{"SELECT $$1$$", ""}, {"SELECT 1 -- 2", ""}, {"SELECT /* 2 */ 1", ""}, {"SELECT E'\\n'", ""},
		{"SELECT ü", ""}, {"SELECT a$b", ""}, {"SELECT 1 \f", ""}, {"SELECT \x00", ""}, {"SELECT a @> b", ""},
		{"SELECT 1" + strings.Repeat(" ", maxExactText), ""},
	} {
		key, plain := plainKey(nil, tc.sql)
		wantPlain := tc.key != "" || tc.sql == ""
		if plain != wantPlain || string(key) != tc.key {
			t.Errorf("plainKey(%q) = %q, %v; want %q, %v", tc.sql, key, plain, tc.key, wantPlain)
		}
	}
}

// TestSyntaxErrorsGiveTheParsersMessageAndPosition: a statement that does not parse gives what
// PostgreSQL itself reports for it: the message and the position in characters, from 1.
func TestSyntaxErrorsGiveTheParsersMessageAndPosition(t *testing.T) {
	for _, c := range []struct {
		sql      string
		message  string
		position int
	}{
		{"SELEC 1", `syntax error at or near "SELEC"`, 1},
		{"SELECT * FROM orders WHERE", "syntax error at end of input", 27},
		{"SELECT 'é', * FROM", "syntax error at end of input", 19},
		{"SELECT 1; DELET FROM orders", `syntax error at or near "DELET"`, 11},
		{"SELECT 'unterminated", "unterminated quoted string at or near \"'unterminated\"", 8},
	} {
		t.Run(c.sql, func(t *testing.T) {
			_, err := Classify(c.sql)
			se, ok := errors.AsType[*SyntaxError](err)
			if !ok || !errors.Is(err, ErrParse) {
				t.Fatalf("Classify = %v, want a SyntaxError that is ErrParse", err)
			}
			if se.Message != c.message || se.Position != c.position {
				t.Errorf("%q at %d, want %q at %d", se.Message, se.Position, c.message, c.position)
			}
		})
	}
}

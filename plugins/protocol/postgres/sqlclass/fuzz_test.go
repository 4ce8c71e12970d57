package sqlclass

import (
	"bytes"
	"errors"
	"reflect"
	"slices"
	"testing"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// FuzzClassify: any input either parses into statements with a known kind, or is ErrParse; and the
// cache gives the same kinds as a fresh parse.
func FuzzClassify(f *testing.F) {
	for _, s := range []string{
		"SELECT 1", "select email from customers", "WITH d AS (DELETE FROM orders RETURNING *) SELECT * FROM d",
		"COPY (SELECT 1) TO STDOUT", "DO $$ begin end $$", "SET search_path = x", "SELECT row_to_json(c) FROM customers c",
		"BEGIN; UPDATE orders SET total = 1; COMMIT", "select $1::int", "SELECT 'x' || U&'\\0041'",
		"SELECT nextval('s')", "SELECT * FROM t FOR UPDATE", "CREATE INDEX CONCURRENTLY i ON t (x)", "PREPARE TRANSACTION 'x'",
		"LOCK TABLE t IN EXCLUSIVE MODE", "SELECT pg_try_advisory_xact_lock(1)", "SELECT * FROM pg_stat_get_activity(NULL)",
		"SELECT t.f FROM t FOR KEY SHARE OF t", "SET LOCAL statement_timeout = '1s'", "COMMIT PREPARED 'x'",
	} {
		f.Add(s)
	}
	kinds := []string{KindSelect, KindInsert, KindUpdate, KindDelete, KindDDL, KindAdmin, KindTransaction, KindUtility, KindLock}
	c := NewCache(64)
	f.Fuzz(func(t *testing.T, sql string) {
		sts, err := Classify(sql)
		if err != nil {
			if !errors.Is(err, ErrParse) {
				t.Fatalf("error not ErrParse: %v", err)
			}
			return
		}
		cached, err := c.Classify(sql)
		if err != nil || len(cached) != len(sts) {
			t.Fatalf("cache: %d statements, %v; fresh: %d", len(cached), err, len(sts))
		}
		for i, st := range sts {
			found := false
			for _, k := range kinds {
				found = found || st.Kind == k
			}
			if !found {
				t.Fatalf("unknown kind %q", st.Kind)
			}
			if cached[i].Kind != st.Kind || len(cached[i].Accesses) != len(st.Accesses) || cached[i].Effect != st.Effect {
				t.Fatalf("cache disagrees: %+v vs %+v", cached[i], st)
			}
			// The audit log's commit points rest on Effect: nothing that writes, changes the schema or
			// escapes inspection may pass for read-only, and an admin statement may always commit.
			switch {
			case st.Effect == EffectNone && st.Kind != KindSelect && st.Kind != KindUtility && st.Kind != KindTransaction,
				st.Kind == KindLock && st.Effect == EffectNone:
				t.Fatalf("a %s statement classified as changing nothing: %q", st.Kind, sql)
			case st.Effect == EffectNone && st.NestedWrite:
				t.Fatalf("a statement with a nested write classified as changing nothing: %q", sql)
			case st.Kind == KindAdmin && st.Effect != EffectCommit:
				t.Fatalf("an admin statement not held as a commit: %q", sql)
			}
		}
	})
}

// scanOracle is scanTokens through pg_query_go's own Scan, which unmarshals the same answer into
// messages.
func scanOracle(sql string) (toks [][3]int32, ok bool) {
	res, err := pg.Scan(sql)
	if err != nil {
		return nil, false
	}
	for _, t := range res.Tokens {
		toks = append(toks, [3]int32{t.Start, t.End, int32(t.Token)})
	}
	return toks, true
}

// FuzzScanTokens: scanTokens reads libpg_query's answer as pg_query_go's Scan does, token for token,
// for any input (the cache's key is only as sound as the tokens it is built from).
func FuzzScanTokens(f *testing.F) {
	for _, s := range []string{
		"SELECT 1", "select email from customers where id = 42 -- x", "SELECT 'a''b', E'\\n', $$d$$, B'01', X'ff', 1.5e3",
		"SELECT U&'d\\0061t\\+000061' UESCAPE '!'", "/* c */ SELECT \"Quoted\"\"id\" FROM t", "SELECT 'unterminated", "\x00\xff",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		want, wantOK := scanOracle(sql)
		var got [][3]int32
		ok := scanTokens(sql, func(start, end int32, tok pg.Token) bool {
			got = append(got, [3]int32{start, end, int32(tok)})
			return true
		})
		if ok != wantOK || !slices.Equal(got, want) {
			t.Fatalf("scanTokens %v %v; Scan %v %v", ok, got, wantOK, want)
		}
	})
}

// FuzzPlainKey: a text the cache answers by another's plain key classifies as that other text, which is
// what lets the cache answer it so. For any plain text that parses, variants with the digits of every
// integer literal changed (within the literal's kind: integer or larger number) have the same plain key
// and the same literal-free key from PostgreSQL's own scanner, and they classify alike, or do not parse
// at all where the grammar checks a value itself (float(60)); the server then refuses them too.
func FuzzPlainKey(f *testing.F) {
	for _, s := range []string{
		"SELECT abalance FROM pgbench_accounts WHERE aid = 42;",
		"UPDATE pgbench_tellers SET tbalance = tbalance + -5 WHERE tid = 3;",
		"INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 2, 3, -4, CURRENT_TIMESTAMP);",
		"select a[1:2]::varchar(10) from t order by 1 limit 5 offset 2", "SELECT 1;SELECT 2", "SELECT x.y FROM x.y",
		"SELECT 1 FROM t GROUP BY 1 HAVING count(*)>1", "FETCH 5 FROM c", "SET statement_timeout = 5",
		"SELECT 1 - -2 */ 3", "SELECT 1e", "SELECT 2 %3^4", "SELECT 1::float(20)", "FETCH 99999999999 FROM c",
	} {
		f.Add(s)
	}
	variants := [][2]string{{"7", "2147483648"}, {"0", "123456789012345678901234567890"}, {"2147483647", "0002147483648"}}
	f.Fuzz(func(t *testing.T, sql string) {
		key, plain := plainKey(nil, sql)
		if !plain {
			return
		}
		want, err := Classify(sql)
		if err != nil {
			return // the cache keeps only what classifies
		}
		wantKey, ok := literalFreeKey(sql)
		if !ok {
			t.Fatalf("%q classifies but does not scan", sql)
		}
		for _, digits := range variants {
			v := string(bytes.ReplaceAll(bytes.ReplaceAll(key, []byte{0}, []byte(digits[0])), []byte{1}, []byte(digits[1])))
			if vkey, vplain := plainKey(nil, v); !vplain || !bytes.Equal(vkey, key) {
				t.Fatalf("variant %q: plain key %q, %v; want %q", v, vkey, vplain, key)
			}
			if got, ok := literalFreeKey(v); !ok || got != wantKey {
				t.Fatalf("%q and its variant %q scan apart: %q and %q, %v", sql, v, wantKey, got, ok)
			}
			if got, err := Classify(v); err == nil && !reflect.DeepEqual(got, want) {
				t.Fatalf("%q and its variant %q classify apart: %+v and %+v", sql, v, want, got)
			}
		}
	})
}

package sqlclass

import (
	"errors"
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
	} {
		f.Add(s)
	}
	kinds := []string{KindSelect, KindInsert, KindUpdate, KindDelete, KindDDL, KindAdmin, KindTransaction, KindUtility}
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
			if cached[i].Kind != st.Kind || len(cached[i].Accesses) != len(st.Accesses) {
				t.Fatalf("cache disagrees: %+v vs %+v", cached[i], st)
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

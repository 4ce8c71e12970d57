package sqlclass

import (
	"errors"
	"testing"
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

package postgres

import (
	"crypto/sha256"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// The shared catalog is picked by the sum of what a session read: two different reads must never sum
// alike, however their bytes are split into rows and fields.
func TestCatalogSumTellsReadsApart(t *testing.T) {
	q := catalogQuery{sql: "SELECT 1"}
	sum := func(tagged map[string][]string, catalog map[string]bool, results ...[][][]byte) [sha256.Size]byte {
		h := sha256.New()
		sumInputs(h, tagged, catalog)
		for _, rows := range results {
			sumQuery(h, q, &pgconn.Result{Rows: rows})
		}
		return [sha256.Size]byte(h.Sum(nil))
	}
	row := func(fields ...[]byte) [][]byte { return fields }
	b := func(s string) []byte { return []byte(s) }
	tagged := map[string][]string{"public.customers": {"email", "ssn"}}
	catalog := map[string]bool{"public.customers": true, "public.orders": true}
	base := sum(tagged, catalog, [][][]byte{row(b("ab"), b("c"))})
	if again := sum(map[string][]string{"public.customers": {"email", "ssn"}}, map[string]bool{"public.orders": true, "public.customers": true},
		[][][]byte{row(b("ab"), b("c"))}); again != base {
		t.Fatal("the same read summed differently")
	}
	for name, other := range map[string][sha256.Size]byte{
		"fields split elsewhere":   sum(tagged, catalog, [][][]byte{row(b("a"), b("bc"))}),
		"one field":                sum(tagged, catalog, [][][]byte{row(b("abc"))}),
		"two rows":                 sum(tagged, catalog, [][][]byte{row(b("ab")), row(b("c"))}),
		"NULL for empty":           sum(tagged, catalog, [][][]byte{row(b("ab"), nil)}, nil),
		"rows of another query":    sum(tagged, catalog, nil, [][][]byte{row(b("ab"), b("c"))}),
		"another tagged column":    sum(map[string][]string{"public.customers": {"email"}}, catalog, [][][]byte{row(b("ab"), b("c"))}),
		"column of another table":  sum(map[string][]string{"public.customers": {"email"}, "public.orders": {"ssn"}}, catalog, [][][]byte{row(b("ab"), b("c"))}),
		"another catalog table":    sum(tagged, map[string]bool{"public.customers": true}, [][][]byte{row(b("ab"), b("c"))}),
		"empty field for no field": sum(tagged, catalog, [][][]byte{row(b("ab"), b("c"), b(""))}),
	} {
		if other == base {
			t.Errorf("%s: summed like the original read", name)
		}
	}
	if sum(tagged, catalog, [][][]byte{row(b("ab"), nil)}) == sum(tagged, catalog, [][][]byte{row(b("ab"), b(""))}) {
		t.Error("NULL and an empty field summed alike")
	}
}

package postgres

import (
	"crypto/sha256"
	"testing"
)

func TestMetaShareKeepsOneCopyOfAnUnchangedCatalog(t *testing.T) {
	load := func(maxOID uint32, column string) *dbMeta {
		return &dbMeta{maxOID: maxOID, catalog: map[string]bool{"public.customers": true},
			tables: map[uint32]metaTable{16384: {name: "public.customers", columns: map[int16]string{3: column}, all: map[string]bool{column: true}}},
			views:  map[uint32][]uint32{}, existing: map[string]bool{"public.customers": true},
			sum: sha256.Sum256([]byte{byte(maxOID), byte(maxOID >> 8), column[0]})}
	}
	var s metaShare
	first := s.intern(load(16400, "ssn"))
	if again := s.intern(load(16400, "ssn")); again != first {
		t.Fatal("an identical catalog was not shared")
	}
	for name, changed := range map[string]*dbMeta{"a new relation": load(16401, "ssn"), "a renamed column": load(16401, "tax_id")} {
		if got := s.intern(changed); got != changed {
			t.Fatalf("%s: the session got the earlier catalog", name)
		}
	}
	unsummed := load(16401, "tax_id")
	unsummed.sum = [sha256.Size]byte{}
	if got := s.intern(unsummed); got != unsummed {
		t.Fatal("a catalog without a sum was taken for the shared one")
	}
	if got := s.intern(load(16401, "tax_id")); got == unsummed {
		t.Fatal("a catalog without a sum was kept for sharing")
	}
}

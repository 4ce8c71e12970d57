package sqlclass

import (
	"strconv"
	"testing"
)

// BenchmarkClassify compares a full parse with the cache: for statements of plain tokens that differ
// only in a literal, as pgbench -S sends them ("cached", found by plain key), for such statements with a
// string constant ("cached-scanned", found by a scan's literal-free key), and for one text sent again
// and again, as a driver prepares a parameterized statement ("repeated"). Report the ratios to "parse".
func BenchmarkClassify(b *testing.B) {
	q := func(i int) string { return "SELECT abalance FROM pgbench_accounts WHERE aid = " + strconv.Itoa(i) }
	b.Run("parse", func(b *testing.B) {
		i := 0
		for b.Loop() {
			i++
			if _, err := Classify(q(i)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cached", func(b *testing.B) {
		c := NewCache(1024)
		i := 0
		for b.Loop() {
			i++
			if _, err := c.Classify(q(i)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cached-scanned", func(b *testing.B) {
		c := NewCache(1024)
		i := 0
		for b.Loop() {
			i++
			if _, err := c.Classify(q(i) + " AND 'x' <> ''"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("repeated", func(b *testing.B) {
		c := NewCache(1024)
		text := "SELECT abalance FROM pgbench_accounts WHERE aid = $1"
		for b.Loop() {
			if _, err := c.Classify(text); err != nil {
				b.Fatal(err)
			}
		}
	})
}

package postgres

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzNormalizedText: whatever a string constant holds, its statement's normalized text (what spans
// carry with statement_text) holds none of it, and stays bounded and valid UTF-8.
func FuzzNormalizedText(f *testing.F) {
	for _, seed := range []string{"078-05-1120", "secret-literal-42", "it''s", "$1 and $2", "ünïcødé value", strings.Repeat("x", 3000)} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, value string) {
		if !utf8.ValidString(value) || strings.ContainsRune(value, 0) {
			return // PostgreSQL takes neither
		}
		quoted := strings.ReplaceAll(value, "'", "''")
		for _, sql := range []string{
			"SELECT '" + quoted + "'",
			"SELECT name FROM customers WHERE ssn = '" + quoted + "' AND id IN (1, 2)",
			"UPDATE orders SET note = E'" + strings.ReplaceAll(quoted, `\`, `\\`) + "' WHERE id = 7",
		} {
			n, ok := normalizedText(sql)
			if !ok {
				t.Fatalf("%q did not normalize", sql)
			}
			if !utf8.ValidString(n) || len(n) > maxSpanQueryText+3 {
				t.Fatalf("normalized text of %d bytes, valid UTF-8 %v", len(n), utf8.ValidString(n))
			}
			// A value short enough to match by chance ("1", "id") proves nothing either way.
			if len(value) >= 6 && strings.Contains(n, value) && !strings.Contains(sql[:strings.Index(sql, "'")], value) {
				t.Fatalf("normalized %q to %q, which holds the constant", sql, n)
			}
		}
	})
}

package sqlclass

import (
	"strings"
	"sync"

	pg "github.com/pganalyze/pg_query_go/v6"
	"github.com/pganalyze/pg_query_go/v6/parser"
	"google.golang.org/protobuf/encoding/protowire"
)

// Cache classifies through a bounded cache keyed by the statement's token stream with its literals
// blanked: statements that differ only in constants share one parse. That is sound because no part of a
// classification depends on a literal's value (settings, COPY targets and functions are told apart by
// keywords and identifiers, which stay in the key). Scanning costs a fraction of parsing. In front of
// it, statements seen before with the very same text (a prepared statement's, every time a driver
// prepares it again) are found by their text alone, and statements of plain tokens only by their text
// with the digits of their integer literals blanked (see plainKey): neither needs a scan.
type Cache struct {
	mu      sync.Mutex
	entries map[string][]Statement // by literal-free key
	exact   map[string][]Statement // by text, for texts of at most maxExactText bytes
	plain   map[string][]Statement // by plainKey
	max     int
}

// maxExactText is the longest statement text the cache keeps as a key of its own.
const maxExactText = 4 << 10

// NewCache returns a cache of at most max entries of each kind. When one is full it starts over, which
// keeps the cost of a hostile stream of distinct statements at one parse each.
func NewCache(max int) *Cache {
	return &Cache{entries: map[string][]Statement{}, exact: map[string][]Statement{}, plain: map[string][]Statement{}, max: max}
}

// Classify is Classify, cached. The result is shared: callers must not modify it.
func (c *Cache) Classify(sql string) ([]Statement, error) {
	if len(sql) <= maxExactText {
		c.mu.Lock()
		st, hit := c.exact[sql]
		c.mu.Unlock()
		if hit {
			return st, nil
		}
	}
	var buf [256]byte
	pk, plain := plainKey(buf[:0], sql)
	if plain {
		c.mu.Lock()
		st, hit := c.plain[string(pk)]
		c.mu.Unlock()
		if hit {
			return st, nil
		}
	}
	key, ok := literalFreeKey(sql)
	if ok {
		c.mu.Lock()
		st, hit := c.entries[key]
		if hit {
			c.keepText(sql, pk, plain, st)
		}
		c.mu.Unlock()
		if hit {
			return st, nil
		}
	}
	st, err := Classify(sql)
	if err != nil || !ok {
		return st, err
	}
	c.mu.Lock()
	c.keep(c.entries, key, st)
	c.keepText(sql, pk, plain, st)
	c.mu.Unlock()
	return st, nil
}

// keepText keeps st under its plain key, or else under its text if that is short enough: a text of
// plain tokens is found by its plain key, and keeping each literal variant's text as well would only
// crowd out the texts that need the exact map. c.mu must be held.
func (c *Cache) keepText(sql string, pk []byte, plain bool, st []Statement) {
	switch {
	case plain:
		c.keep(c.plain, string(pk), st)
	case len(sql) <= maxExactText:
		c.keep(c.exact, sql, st)
	}
}

// plainKey appends to dst, and returns, sql with the digits of each integer literal replaced by a
// marker byte (see integerMarker), provided sql consists of plain tokens only; plain is false otherwise. Plain tokens are ASCII
// identifiers and keywords ([A-Za-z_][A-Za-z0-9_]*), integer literals (a run of digits that neither
// '.' nor an identifier character adjoins: not part of "1.5", "1e5", "0x1F", "1_000" or "1abc"),
// whitespace, and the punctuation in plainPunct, with no "--" or "/*" (no comments).
//
// Such a text has no string constant, quoted identifier, parameter, comment or escape, so nothing in it
// can change how the rest is read: each run of digits so bounded is one numeric constant to
// PostgreSQL's scanner, and everything else is the same characters in every text with the same plain
// key. Two texts with one plain key therefore have the same tokens but for the values of numeric
// constants of the same kind, which is the literal-free key's condition: they classify alike, or the
// variant fails to parse where the grammar itself checks a value (float(60)). FuzzPlainKey checks this
// against the scanner and the parser. Texts longer than maxExactText are not plain, to bound the keys kept.
func plainKey(dst []byte, sql string) (key []byte, plain bool) {
	if len(sql) > maxExactText {
		return nil, false
	}
	for i := 0; i < len(sql); {
		c := sql[i]
		switch {
		case identStart(c):
			dst = append(dst, c)
			for i++; i < len(sql) && identChar(sql[i]); i++ {
				dst = append(dst, sql[i])
			}
		case '0' <= c && c <= '9':
			if i > 0 && sql[i-1] == '.' {
				return nil, false
			}
			start := i
			for i++; i < len(sql) && '0' <= sql[i] && sql[i] <= '9'; i++ {
			}
			if i < len(sql) && (identChar(sql[i]) || sql[i] == '.') {
				return nil, false
			}
			dst = append(dst, integerMarker(sql[start:i]))
		case strings.IndexByte(plainPunct, c) >= 0:
			if i+1 < len(sql) && (c == '-' && sql[i+1] == '-' || c == '/' && sql[i+1] == '*') {
				return nil, false // a comment
			}
			dst = append(dst, c)
			i++
		default:
			return nil, false
		}
	}
	return dst, true
}

// integerMarker is what plainKey puts for the digits of an integer literal: 0 for a value that fits in
// 32 bits, which PostgreSQL's scanner makes an integer constant (ICONST), 1 for a larger one, which it
// makes a numeric constant (FCONST) that the grammar takes in fewer places.
func integerMarker(digits string) byte {
	digits = strings.TrimLeft(digits, "0")
	if len(digits) < 10 || len(digits) == 10 && digits <= "2147483647" {
		return 0
	}
	return 1
}

// plainPunct is the whitespace and punctuation a plain text may hold: none of it starts a string,
// quoted identifier, parameter or escape.
const plainPunct = " \t\n\r(),;.*=<>+-/%:[]^"

func identStart(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_' }

func identChar(c byte) bool { return identStart(c) || '0' <= c && c <= '9' }

// keep adds st to m under key, starting m over if it is full; c.mu must be held.
func (c *Cache) keep(m map[string][]Statement, key string, st []Statement) {
	if len(m) >= c.max {
		clear(m)
	}
	m[key] = st
}

// literalFreeKey returns the tokens of sql, with every literal replaced by a marker, joined by a
// separator no token contains. ok is false when sql does not scan (it will not parse either).
func literalFreeKey(sql string) (string, bool) {
	var b strings.Builder
	b.Grow(len(sql) + len(sql)/2)
	ok := scanTokens(sql, func(start, end int32, tok pg.Token) bool {
		switch tok {
		case pg.Token_UESCAPE:
			// UESCAPE's string literal decides what a U& identifier or string spells: not cacheable.
			return false
		case pg.Token_ICONST, pg.Token_FCONST, pg.Token_SCONST, pg.Token_USCONST, pg.Token_BCONST, pg.Token_XCONST:
			// The marker keeps the literal's kind: the grammar takes an integer in places where it
			// refuses a larger number or a string (FETCH 5, varchar(10)).
			b.WriteByte(0)
			b.WriteByte(byte('a' + tok - pg.Token_FCONST)) // the literal tokens are numbered 260 to 264, and 266
		case pg.Token_SQL_COMMENT, pg.Token_C_COMMENT:
			return true
		default:
			if start < 0 || end > int32(len(sql)) || start > end {
				return false
			}
			b.WriteString(sql[start:end])
		}
		b.WriteByte(0)
		return true
	})
	if !ok {
		return "", false
	}
	return b.String(), true
}

// scanTokens scans sql with libpg_query's scanner, as pg_query_go's Scan does, and calls f with each
// token in order until f returns false. It reads the scanner's protobuf answer (ScanResult, field 2:
// the repeated ScanToken, with start 1, end 2 and token 4) field by field rather than unmarshal it
// into messages: that unmarshal, a message per token, cost more than the scan. ok is false when sql
// does not scan, the answer cannot be read, or f stopped.
func scanTokens(sql string, f func(start, end int32, tok pg.Token) bool) (ok bool) {
	buf, err := parser.ScanToProtobuf(sql)
	if err != nil {
		return false
	}
	return eachField(buf, func(num protowire.Number, _ uint64, tok []byte) bool {
		if num != 2 || tok == nil {
			return true // not a token
		}
		var start, end int32
		var kind pg.Token
		return eachField(tok, func(num protowire.Number, v uint64, _ []byte) bool {
			switch num {
			case 1:
				start = int32(v)
			case 2:
				end = int32(v)
			case 4:
				kind = pg.Token(int32(v))
			}
			return true
		}) && f(start, end, kind)
	})
}

// eachField calls f with each field of the protobuf message buf in order: a varint's value in v, a
// length-delimited field's bytes in b (non-nil); other fields are skipped. It stops, and returns false,
// where buf cannot be read or f returns false.
func eachField(buf []byte, f func(num protowire.Number, v uint64, b []byte) bool) bool {
	for len(buf) > 0 {
		num, typ, n := protowire.ConsumeTag(buf)
		if n < 0 {
			return false
		}
		buf = buf[n:]
		var v uint64
		var b []byte
		switch typ {
		case protowire.VarintType:
			v, n = protowire.ConsumeVarint(buf)
		case protowire.BytesType:
			b, n = protowire.ConsumeBytes(buf)
			if b == nil {
				b = []byte{}
			}
		default:
			n = protowire.ConsumeFieldValue(num, typ, buf)
		}
		if n < 0 {
			return false
		}
		buf = buf[n:]
		if (typ == protowire.VarintType || typ == protowire.BytesType) && !f(num, v, b) {
			return false
		}
	}
	return true
}

package sqlclass

import (
	"strings"
	"sync"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// Cache classifies through a bounded cache keyed by the statement's token stream with its literals
// blanked: statements that differ only in constants share one parse. That is sound because no part of a
// classification depends on a literal's value (settings, COPY targets and functions are told apart by
// keywords and identifiers, which stay in the key). Scanning costs a fraction of parsing.
type Cache struct {
	mu      sync.Mutex
	entries map[string][]Statement
	max     int
}

// NewCache returns a cache of at most max entries. When it is full it starts over, which keeps the
// cost of a hostile stream of distinct statements at one parse each.
func NewCache(max int) *Cache {
	return &Cache{entries: map[string][]Statement{}, max: max}
}

// Classify is Classify, cached. The result is shared: callers must not modify it.
func (c *Cache) Classify(sql string) ([]Statement, error) {
	key, ok := literalFreeKey(sql)
	if ok {
		c.mu.Lock()
		st, hit := c.entries[key]
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
	if len(c.entries) >= c.max {
		clear(c.entries)
	}
	c.entries[key] = st
	c.mu.Unlock()
	return st, nil
}

// literalFreeKey returns the tokens of sql, with every literal replaced by a marker, joined by a
// separator no token contains. ok is false when sql does not scan (it will not parse either).
func literalFreeKey(sql string) (string, bool) {
	res, err := pg.Scan(sql)
	if err != nil {
		return "", false
	}
	var b strings.Builder
	b.Grow(len(sql) + len(res.Tokens))
	for _, t := range res.Tokens {
		switch t.Token {
		case pg.Token_UESCAPE:
			// UESCAPE's string literal decides what a U& identifier or string spells: not cacheable.
			return "", false
		case pg.Token_ICONST, pg.Token_FCONST, pg.Token_SCONST, pg.Token_USCONST, pg.Token_BCONST, pg.Token_XCONST:
			b.WriteString("\x00L")
		case pg.Token_SQL_COMMENT, pg.Token_C_COMMENT:
			continue
		default:
			if t.Start < 0 || t.End > int32(len(sql)) || t.Start > t.End {
				return "", false
			}
			b.WriteString(sql[t.Start:t.End])
		}
		b.WriteByte(0)
	}
	return b.String(), true
}

package postgres

import (
	"fmt"
	"slices"
)

// missingTagged returns an error naming the first tagged column (table "schema.name" -> its tagged
// columns) that the database does not have (found: table -> every column it has), or nil. Masking goes
// by the columns' numbers, found by name as the session begins: a tagged column renamed (ALTER TABLE
// ... RENAME COLUMN email TO contact), or its table renamed or moved, would otherwise be read in clear
// under its new name by every later session. Until the catalog names it again, no session opens.
func missingTagged(tagged map[string][]string, found map[string]map[string]bool) error {
	tables := make([]string, 0, len(tagged))
	for t := range tagged {
		tables = append(tables, t)
	}
	slices.Sort(tables)
	for _, t := range tables {
		cols, ok := found[t]
		if !ok {
			return fmt.Errorf("postgres: the catalog tags columns of table %s, which the database does not have (renamed, moved or dropped?): its columns could not be masked; update the catalog", t)
		}
		for _, c := range tagged[t] {
			if !cols[c] {
				return fmt.Errorf("postgres: the catalog tags column %s.%s, which the database does not have (renamed or dropped?): it could not be masked; update the catalog", t, c)
			}
		}
	}
	return nil
}

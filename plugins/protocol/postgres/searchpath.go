package postgres

import (
	"fmt"
	"strings"
)

// checkSearchPath refuses a backend session whose search path (current_schemas(true), as the session
// begins) holds a schema other than pg_catalog, public and the session's temporary schema. The
// classifier takes an unqualified table name as public's, for Cedar's table decisions and for the
// masked columns' uses; with another schema on the path (one the role or database sets, or "$user"
// when a schema has the backend user's name) the server could read that schema's table of the name
// instead: a table no policy was asked about, or a masked column tested under an unmasked table's name.
func checkSearchPath(path []string) error {
	for _, s := range path {
		if s == "pg_catalog" || s == "public" || strings.HasPrefix(s, "pg_temp_") {
			continue
		}
		return fmt.Errorf("postgres: the backend session's search_path includes schema %q, but the broker decides an unqualified table name as schema public's, so it could decide one table while the server reads another; set the backend role's search_path to public (ALTER ROLE ... SET search_path = public), or have no schema named after the backend user", s)
	}
	return nil
}

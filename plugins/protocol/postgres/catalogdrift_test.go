package postgres

import (
	"strings"
	"testing"
)

// TestRenamedTaggedColumnRefusesSessions: a tagged column the database no longer has under its name
// (renamed or dropped), or a tagged table it no longer has, refuses the session, naming it, rather than
// leave the renamed column unmasked; a database with every tagged column, partitions' columns listed
// under their table, opens.
func TestRenamedTaggedColumnRefusesSessions(t *testing.T) {
	tagged := map[string][]string{"public.customers": {"email", "ssn"}}
	for _, c := range []struct {
		name  string
		found map[string]map[string]bool
		says  string
	}{
		{"column renamed", map[string]map[string]bool{"public.customers": {"id": true, "contact": true, "ssn": true}}, "public.customers.email"},
		{"table renamed", map[string]map[string]bool{"public.clients": {"id": true, "email": true, "ssn": true}}, "table public.customers"},
		{"nothing found", map[string]map[string]bool{}, "table public.customers"},
		{"control", map[string]map[string]bool{"public.customers": {"id": true, "email": true, "ssn": true, "note": true}}, ""},
	} {
		err := missingTagged(tagged, c.found)
		switch {
		case c.says == "" && err != nil:
			t.Errorf("%s: refused: %v", c.name, err)
		case c.says != "" && (err == nil || !strings.Contains(err.Error(), c.says)):
			t.Errorf("%s: got %v, want an error naming %s", c.name, err, c.says)
		}
	}
}

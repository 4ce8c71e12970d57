package postgres

import (
	"strings"
	"testing"
)

// TestSearchPathBeyondPublicIsRefused: a backend session whose search path puts another schema where
// an unqualified name can resolve (before or after public, "$user" included) is refused, naming the
// schema, since the broker decides unqualified names as public's; the default path, with or without
// the session's temporary schema, is accepted.
func TestSearchPathBeyondPublicIsRefused(t *testing.T) {
	for _, c := range []struct {
		path []string
		bad  string
	}{
		{[]string{"pg_catalog", "hr", "public"}, "hr"},
		{[]string{"pg_catalog", "public", "hr"}, "hr"},
		{[]string{"pg_catalog", "svidbroker", "public"}, "svidbroker"},
		{[]string{"pg_temp_3", "pg_catalog", "public", "pg_temp"}, "pg_temp"},
		// Controls.
		{[]string{"pg_catalog", "public"}, ""},
		{[]string{"pg_temp_3", "pg_catalog", "public"}, ""},
		{[]string{"pg_catalog"}, ""},
	} {
		err := checkSearchPath(c.path)
		switch {
		case c.bad == "" && err != nil:
			t.Errorf("%q: refused: %v", c.path, err)
		case c.bad != "" && (err == nil || !strings.Contains(err.Error(), `"`+c.bad+`"`)):
			t.Errorf("%q: got %v, want it refused naming %q", c.path, err, c.bad)
		}
	}
}

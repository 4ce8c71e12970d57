package postgres

import (
	"testing"

	"github.com/svidbroker/svidbroker/plugins/protocol/postgres/sqlclass"
)

func TestOperationKindNamesTheStatementsClass(t *testing.T) {
	st := func(kind string) sqlclass.Statement { return sqlclass.Statement{Kind: kind} }
	for _, c := range []struct {
		sts  []sqlclass.Statement
		want string
	}{
		{nil, "empty"},
		{[]sqlclass.Statement{st(sqlclass.KindSelect)}, "select"},
		{[]sqlclass.Statement{st(sqlclass.KindDelete), st(sqlclass.KindDelete)}, "delete"},
		{[]sqlclass.Statement{st(sqlclass.KindSelect), st(sqlclass.KindAdmin)}, "multiple"},
	} {
		if got := operationKind(c.sts); got != c.want {
			t.Errorf("operationKind(%v) = %q, want %q", c.sts, got, c.want)
		}
	}
}

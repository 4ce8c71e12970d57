package sqlclass

import (
	"slices"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// A lock is not a read. A read-only caller that may take locks can hold back every other session
// (SELECT ... FOR UPDATE in a transaction it leaves open, LOCK TABLE, an advisory lock that lasts as
// long as its session), or keep locks after it has gone (PREPARE TRANSACTION). Such statements are
// KindLock, which policy decides as sql:lock: on each table a locking query reads or LOCK TABLE names
// (a locking clause may lock any table the query reads), and on the target for advisory locks and
// two-phase commit.

// advisoryLockFunctions take advisory locks (pg_advisory_unlock* release only the caller's own).
var advisoryLockFunctions = []string{
	"pg_advisory_lock", "pg_advisory_lock_shared", "pg_advisory_xact_lock", "pg_advisory_xact_lock_shared",
	"pg_try_advisory_lock", "pg_try_advisory_lock_shared", "pg_try_advisory_xact_lock", "pg_try_advisory_xact_lock_shared",
}

// twoPhase reports whether s is PREPARE TRANSACTION, COMMIT PREPARED or ROLLBACK PREPARED.
func twoPhase(s *pg.TransactionStmt) bool {
	switch s.Kind {
	case pg.TransactionStmtKind_TRANS_STMT_PREPARE, pg.TransactionStmtKind_TRANS_STMT_COMMIT_PREPARED,
		pg.TransactionStmtKind_TRANS_STMT_ROLLBACK_PREPARED:
		return true
	}
	return false
}

// special notes a call of fn (the last part of the name as written, called is the whole name) that
// takes a lock or returns what a refused statistics view shows. Like the admin functions, they are
// recognized in any schema: a database function of the same name is refused with them.
func (w *walker) special(fn, called string) {
	fn = strings.ToLower(fn)
	if slices.Contains(advisoryLockFunctions, fn) {
		w.advisoryLock = true
	}
	if view, ok := blockedViewFunctions[fn]; ok {
		w.adminBecause("function " + called + ", which returns what " + view + " shows")
	}
}

package sqlclass

import (
	"slices"
	"testing"
)

// TestLocksAreNotReads: every way to take a lock beyond a read's is KindLock, decided on the tables it
// may lock, and never passes for changing nothing; the plain reads beside them stay reads.
func TestLocksAreNotReads(t *testing.T) {
	for _, c := range []struct {
		sql      string
		kind     string
		accesses []string
	}{
		{"SELECT * FROM orders FOR UPDATE", KindLock, []string{"select public.orders", "lock public.orders"}},
		{"SELECT * FROM orders FOR SHARE", KindLock, []string{"select public.orders", "lock public.orders"}},
		{"SELECT * FROM orders FOR NO KEY UPDATE SKIP LOCKED", KindLock, []string{"select public.orders", "lock public.orders"}},
		{"SELECT * FROM orders FOR KEY SHARE NOWAIT", KindLock, []string{"select public.orders", "lock public.orders"}},
		{"SELECT o.id FROM orders o JOIN customers c ON c.id = o.customer_id FOR UPDATE OF o", KindLock,
			[]string{"select public.orders", "lock public.orders", "select public.customers", "lock public.customers"}},
		{"SELECT * FROM (SELECT * FROM orders FOR UPDATE) s", KindLock, []string{"select public.orders", "lock public.orders"}},
		{"WITH l AS (SELECT id FROM orders FOR UPDATE) SELECT count(*) FROM l", KindLock, []string{"select public.orders", "lock public.orders"}},
		{"DECLARE c CURSOR FOR SELECT * FROM orders FOR UPDATE", KindLock, []string{"select public.orders", "lock public.orders"}},
		{"EXPLAIN ANALYZE SELECT * FROM orders FOR UPDATE", KindLock, []string{"select public.orders", "lock public.orders"}},
		{"LOCK TABLE orders", KindLock, []string{"lock public.orders"}},
		{"LOCK TABLE public.orders, customers IN ACCESS SHARE MODE NOWAIT", KindLock, []string{"lock public.orders", "lock public.customers"}},
		{"SELECT pg_advisory_lock(1)", KindLock, nil},
		{"SELECT pg_catalog.pg_advisory_xact_lock_shared(1, 2)", KindLock, nil},
		{"SELECT pg_try_advisory_lock(id) FROM orders", KindLock, []string{"select public.orders"}},
		{"SELECT x FROM pg_try_advisory_xact_lock(7) AS x", KindLock, nil},
		{"PREPARE TRANSACTION 'keep'", KindLock, nil},
		{"COMMIT PREPARED 'keep'", KindLock, nil},
		{"ROLLBACK PREPARED 'keep'", KindLock, nil},
		// Controls: reads and ordinary transaction control stay what they were.
		{"SELECT * FROM orders", KindSelect, []string{"select public.orders"}},
		{"SELECT pg_advisory_unlock_all()", KindSelect, nil},
		{"BEGIN", KindTransaction, nil},
		{"COMMIT", KindTransaction, nil},
	} {
		t.Run(c.sql, func(t *testing.T) {
			sts, err := Classify(c.sql)
			if err != nil || len(sts) != 1 {
				t.Fatalf("%d statements, %v", len(sts), err)
			}
			st := sts[0]
			if st.Kind != c.kind {
				t.Errorf("kind %q, want %q", st.Kind, c.kind)
			}
			var got []string
			for _, a := range st.Accesses {
				got = append(got, a.Action+" "+a.Table)
			}
			if !slices.Equal(got, c.accesses) {
				t.Errorf("accesses %q, want %q", got, c.accesses)
			}
			if c.kind == KindLock && st.Effect == EffectNone {
				t.Error("a lock classified as changing nothing")
			}
		})
	}
}

// TestTwoPhaseCommitStillCommits: PREPARE TRANSACTION is a lock for policy, and a commit point for the
// audit log, as before.
func TestTwoPhaseCommitStillCommits(t *testing.T) {
	for _, sql := range []string{"PREPARE TRANSACTION 'x'", "COMMIT PREPARED 'x'", "ROLLBACK PREPARED 'x'"} {
		sts, err := Classify(sql)
		if err != nil {
			t.Fatal(err)
		}
		if sts[0].Effect != EffectCommit || !sts[0].TxControl {
			t.Errorf("%s: effect %s, tx control %t", sql, sts[0].Effect, sts[0].TxControl)
		}
	}
}

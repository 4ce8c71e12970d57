package sqlclass

import "testing"

func TestEffect(t *testing.T) {
	cases := []struct {
		sql       string
		effect    Effect
		txControl bool
	}{
		// Provably changes nothing.
		{"SELECT 1", EffectNone, false},
		{"SELECT abalance FROM pgbench_accounts WHERE aid = 7", EffectNone, false},
		{"SELECT count(*), lower(name), pg_catalog.upper(name) FROM customers GROUP BY 2, 3", EffectNone, false},
		{"SELECT extract(year FROM now())", EffectNone, false},
		{"SHOW statement_timeout", EffectNone, false},
		{"SET statement_timeout = '5s'", EffectNone, false},
		{"EXPLAIN SELECT * FROM orders", EffectNone, false},
		{"COPY (SELECT id FROM orders) TO STDOUT", EffectNone, false},
		{"FETCH 10 FROM c", EffectNone, false},
		{"BEGIN", EffectNone, true},
		{"START TRANSACTION ISOLATION LEVEL SERIALIZABLE", EffectNone, true},
		{"ROLLBACK", EffectNone, true},
		{"ABORT", EffectNone, true},
		{"SAVEPOINT a", EffectNone, false},
		{"RELEASE SAVEPOINT a", EffectNone, false},
		{"ROLLBACK TO SAVEPOINT a", EffectNone, false},
		// May change; lasting once its transaction commits.
		{"UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = 7", EffectChange, false},
		{"INSERT INTO orders (id) VALUES (1)", EffectChange, false},
		{"DELETE FROM orders", EffectChange, false},
		{"CREATE TABLE t (x int)", EffectChange, false},
		{"COPY orders FROM STDIN", EffectChange, false},
		{"SELECT nextval('orders_id_seq')", EffectChange, false},
		{"SELECT f()", EffectChange, false},
		{"SELECT public.lower('x')", EffectChange, false},
		{`SELECT "LOWER"('x')`, EffectChange, false},
		{"SELECT * FROM orders FOR UPDATE", EffectChange, false},
		{"SELECT id FROM orders FOR SHARE", EffectChange, false},
		{"WITH d AS (DELETE FROM orders RETURNING id) SELECT * FROM d", EffectChange, false},
		{"SELECT (SELECT f() FROM orders LIMIT 1)", EffectChange, false},
		{"NOTIFY chan", EffectChange, false},
		{"EXPLAIN ANALYZE UPDATE orders SET total = 0", EffectChange, false},
		// Commits, or may commit by itself.
		{"COMMIT", EffectCommit, true},
		{"END", EffectCommit, true},
		{"COMMIT AND CHAIN", EffectCommit, true},
		{"PREPARE TRANSACTION 'x'", EffectCommit, true},
		{"COMMIT PREPARED 'x'", EffectCommit, true},
		{"ROLLBACK PREPARED 'x'", EffectCommit, true},
		{"VACUUM orders", EffectCommit, false},
		{"CREATE INDEX CONCURRENTLY i ON orders (id)", EffectCommit, false},
		{"DROP INDEX CONCURRENTLY i", EffectCommit, false},
		{"ALTER TABLE orders DETACH PARTITION orders_2020 CONCURRENTLY", EffectCommit, false},
		{"CALL p()", EffectCommit, false},
		{"DO $$ BEGIN COMMIT; END $$", EffectCommit, false},
		{"CREATE DATABASE x", EffectCommit, false},
		{"REINDEX TABLE CONCURRENTLY orders", EffectCommit, false},
	}
	for _, c := range cases {
		t.Run(c.sql, func(t *testing.T) {
			sts, err := Classify(c.sql)
			if err != nil || len(sts) != 1 {
				t.Fatalf("Classify: %v %v", sts, err)
			}
			if sts[0].Effect != c.effect || sts[0].TxControl != c.txControl {
				t.Fatalf("effect %s, tx control %v; want %s, %v", sts[0].Effect, sts[0].TxControl, c.effect, c.txControl)
			}
		})
	}
}

func TestReadOnlyFunction(t *testing.T) {
	for name, want := range map[string]bool{
		"count": true, "pg_catalog.count": true, "public.count": false, "pg_catalog.x.count": false,
		"nextval": false, "setval": false, "pg_advisory_lock": false, "f": false, "COUNT": false,
	} {
		if got := ReadOnlyFunction(name); got != want {
			t.Errorf("ReadOnlyFunction(%q) = %v, want %v", name, got, want)
		}
	}
}

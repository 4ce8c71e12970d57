package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/mod/sumdb/note"
)

// The PostgreSQL sink lets a fleet of brokers write to one database: each broker has its own chain,
// and a chain never forks, because its writer holds an advisory lock on it (one writer per chain) and
// (chain, seq) is the primary key (a second writer's entries could not take the same places anyway).
const pgSchema = `
CREATE TABLE IF NOT EXISTS svidbroker_audit (
	chain text   NOT NULL,
	seq   bigint NOT NULL,
	prev  text   NOT NULL,
	rec   text   NOT NULL, -- the exact JSON bytes the MAC covers
	mac   text   NOT NULL,
	PRIMARY KEY (chain, seq)
);
CREATE TABLE IF NOT EXISTS svidbroker_audit_checkpoints (
	chain text   NOT NULL,
	id    bigserial,
	note  text   NOT NULL,
	PRIMARY KEY (chain, id)
);
CREATE TABLE IF NOT EXISTS svidbroker_audit_flushes (
	chain text   PRIMARY KEY,
	seq   bigint NOT NULL -- every entry up to it is durable
);`

// pgStore keeps a chain in PostgreSQL. Entries are committed with synchronous_commit off: once the
// commit returns, the database holds them (the broker dying loses nothing), and its WAL writer makes
// them durable within 3 × wal_writer_delay. sync is a synchronous commit, which flushes the WAL up to
// itself and so every entry before it. One connection serves both, one call at a time.
type pgStore struct {
	mu    sync.Mutex
	conn  *pgx.Conn
	chain string
}

// OpenPostgres opens the chain cfg.Chain in the database conn points at (creating the tables if
// needed), takes the chain's writer lock, verifies the chain, and starts the writer. A flush is a
// synchronous commit, durable when the database's fsync is on. The Log owns conn.
func OpenPostgres(ctx context.Context, cfg Config, conn *pgx.Conn) (*Log, error) {
	if err := checkConfig(&cfg); err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, pgSchema); err != nil {
		return nil, fmt.Errorf("audit: create tables: %w", err)
	}
	var locked bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", chainLockKey(cfg.Chain)).Scan(&locked); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	if !locked {
		return nil, fmt.Errorf("audit: chain %q is being written by another broker (one writer per chain)", cfg.Chain)
	}
	var rows int64
	if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM svidbroker_audit WHERE chain = $1) + (SELECT count(*) FROM svidbroker_audit_checkpoints WHERE chain = $1)`, cfg.Chain).Scan(&rows); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	rep, err := resume(cfg, rows == 0, pgCheckpoints(ctx, conn, cfg.Chain), pgEntries(ctx, conn, cfg.Chain))
	if err != nil {
		return nil, err
	}
	return begin(cfg, &pgStore{conn: conn, chain: cfg.Chain}, rep)
}

func chainLockKey(chain string) int64 {
	h := fnv.New64a()
	h.Write([]byte("svidbroker audit chain\x00" + chain))
	return int64(h.Sum64())
}

// pgTimeout bounds each call to the audit database.
const pgTimeout = 30 * time.Second

// sync records seq as flushed, in a synchronous commit.
func (s *pgStore) sync(seq uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), pgTimeout)
	defer cancel()
	tx, err := s.conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SET LOCAL synchronous_commit = on"); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO svidbroker_audit_flushes (chain, seq) VALUES ($1, $2)
ON CONFLICT (chain) DO UPDATE SET seq = excluded.seq`, s.chain, int64(seq)); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// append commits entries in one transaction, without waiting for its WAL to reach the disk.
func (s *pgStore) append(entries []entry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), pgTimeout)
	defer cancel()
	rows := make([][]any, len(entries))
	for i, e := range entries {
		rows[i] = []any{s.chain, int64(e.Seq), e.Prev, string(e.Rec), e.MAC}
	}
	tx, err := s.conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SET LOCAL synchronous_commit = off"); err != nil {
		return err
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"svidbroker_audit"}, []string{"chain", "seq", "prev", "rec", "mac"}, pgx.CopyFromRows(rows)); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// checkpoint commits a signed note synchronously (the session default).
func (s *pgStore) checkpoint(n []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), pgTimeout)
	defer cancel()
	_, err := s.conn.Exec(ctx, "INSERT INTO svidbroker_audit_checkpoints (chain, note) VALUES ($1, $2)", s.chain, string(n))
	return err
}

// macAt returns the MAC of record seq.
func (s *pgStore) macAt(seq uint64) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), pgTimeout)
	defer cancel()
	var mac string
	err := s.conn.QueryRow(ctx, "SELECT mac FROM svidbroker_audit WHERE chain = $1 AND seq = $2", s.chain, int64(seq)).Scan(&mac)
	return mac, err
}

// repair checks that the database answers again: a failed append or checkpoint rolled back, and
// leaves nothing to cut.
func (s *pgStore) repair() (map[string]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), pgTimeout)
	defer cancel()
	return nil, s.conn.Ping(ctx)
}

func (s *pgStore) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn.Close(context.Background())
}

// VerifyPostgres verifies a chain kept in PostgreSQL, as Verify does for files. Line numbers in the
// problems are positions in seq order.
func VerifyPostgres(ctx context.Context, conn *pgx.Conn, chain string, key []byte, v note.Verifier) (*Report, error) {
	rep, err := verify(chain, key, v, nil, pgCheckpoints(ctx, conn, chain), pgEntries(ctx, conn, chain))
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	return rep, nil
}

// VerifyPostgresWitnessed verifies a chain kept in PostgreSQL, as VerifyWitnessed does for files.
func VerifyPostgresWitnessed(ctx context.Context, conn *pgx.Conn, chain string, key []byte, v note.Verifier, w Witness) (*Report, error) {
	latest, err := witnessLatest(ctx, w, chain)
	if err != nil {
		return nil, err
	}
	rep, err := verify(chain, key, v, latest, pgCheckpoints(ctx, conn, chain), pgEntries(ctx, conn, chain))
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	return rep, nil
}

// pgCheckpoints yields a chain's checkpoints as the lines a checkpoints file would hold.
func pgCheckpoints(ctx context.Context, conn *pgx.Conn, chain string) lineSource {
	return func(f func(int, []byte) error) error {
		rows, err := conn.Query(ctx, "SELECT note FROM svidbroker_audit_checkpoints WHERE chain = $1 ORDER BY id", chain)
		if err != nil {
			return err
		}
		defer rows.Close()
		for n := 1; rows.Next(); n++ {
			var text string
			if err := rows.Scan(&text); err != nil {
				return err
			}
			line, _ := json.Marshal(map[string]string{"note": text})
			if err := f(n, append(line, '\n')); err != nil {
				return err
			}
		}
		return rows.Err()
	}
}

// Postgres reads a chain kept in PostgreSQL.
func Postgres(ctx context.Context, conn *pgx.Conn, chain string) Reader {
	return func(f func(Entry) error) error { return readEntries(pgEntries(ctx, conn, chain), f) }
}

// pgEntries yields a chain's rows as the lines a file chain would hold.
func pgEntries(ctx context.Context, conn *pgx.Conn, chain string) lineSource {
	return func(f func(int, []byte) error) error {
		rows, err := conn.Query(ctx, "SELECT seq, prev, rec, mac FROM svidbroker_audit WHERE chain = $1 ORDER BY seq", chain)
		if err != nil {
			return err
		}
		defer rows.Close()
		for n := 1; rows.Next(); n++ {
			var seq int64
			var prev, rec, mac string
			if err := rows.Scan(&seq, &prev, &rec, &mac); err != nil {
				return err
			}
			line := []byte("{}\n") // reported as "not a chain entry"
			if seq >= 0 && json.Valid([]byte(rec)) {
				line = appendLine(nil, entry{Seq: uint64(seq), Prev: prev, Rec: json.RawMessage(rec), MAC: mac})
			}
			if err := f(n, line); err != nil {
				return err
			}
		}
		return rows.Err()
	}
}

package approval

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/jackc/pgx/v5"
)

// pgApprovalsSchema is the table a fleet of brokers shares its approval requests in: one row per
// request, its JSON, and its state for the live ones' index.
const pgApprovalsSchema = `
CREATE TABLE IF NOT EXISTS svidbroker_approvals (
	id      text        PRIMARY KEY,
	state   text        NOT NULL,
	req     jsonb       NOT NULL,
	updated timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS svidbroker_approvals_live ON svidbroker_approvals (state) WHERE state IN ('pending', 'approved');`

// Postgres is a Desk's Backend in a PostgreSQL database that several brokers share (the audit
// fleet's): a request raised on one broker is decided through another, and the held client goes on.
// Every Update is a transaction that locks the request's row, committed synchronously (durable when
// the database's fsync is on). A broker's waits see another broker's decisions by polling (Desk.Wait).
// One connection serves the desk, one call at a time; a broken connection is replaced at the next
// call, and until then every call fails (so holds are refused and decisions are not recorded).
type Postgres struct {
	mu      sync.Mutex
	connect func(context.Context) (*pgx.Conn, error)
	conn    *pgx.Conn
	changed chan struct{}
}

// OpenPostgres connects, creates the table if needed, and returns the backend. connect opens a new
// connection (the broker's SVID login to the audit database).
func OpenPostgres(ctx context.Context, connect func(context.Context) (*pgx.Conn, error)) (*Postgres, error) {
	p := &Postgres{connect: connect, changed: make(chan struct{})}
	conn, err := p.connection(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, pgApprovalsSchema); err != nil {
		return nil, fmt.Errorf("approval: create table svidbroker_approvals: %w", err)
	}
	return p, nil
}

// connection returns the open connection, connecting anew if it broke. p.mu is held, or p is new.
func (p *Postgres) connection(ctx context.Context) (*pgx.Conn, error) {
	if p.conn != nil && !p.conn.IsClosed() {
		return p.conn, nil
	}
	conn, err := p.connect(ctx)
	if err != nil {
		return nil, fmt.Errorf("approval: the approvals database is unavailable: %w", err)
	}
	p.conn = conn
	return conn, nil
}

// Close closes the connection.
func (p *Postgres) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn == nil {
		return nil
	}
	return p.conn.Close(context.Background())
}

// Update implements Backend.
func (p *Postgres) Update(ctx context.Context, id string, fn func(r *Request, exists bool) error) (Request, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	conn, err := p.connection(ctx)
	if err != nil {
		return Request{}, err
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return Request{}, fmt.Errorf("approval: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // after Commit, a no-op
	var raw []byte
	var cur Request
	exists := true
	switch err := tx.QueryRow(ctx, "SELECT req FROM svidbroker_approvals WHERE id = $1 FOR UPDATE", id).Scan(&raw); {
	case errors.Is(err, pgx.ErrNoRows):
		exists = false
	case err != nil:
		return Request{}, fmt.Errorf("approval: %w", err)
	default:
		if err := json.Unmarshal(raw, &cur); err != nil {
			return Request{}, fmt.Errorf("approval: request %s in the database does not decode: %w", id, err)
		}
	}
	r := cur
	r.Approvals = slices.Clone(cur.Approvals)
	r.Attestation = slices.Clone(cur.Attestation)
	r.Policies = slices.Clone(cur.Policies)
	if err := fn(&r, exists); err != nil {
		return cur, err
	}
	r.ID = id
	line, err := json.Marshal(r)
	if err != nil {
		return cur, err
	}
	if len(line) >= maxJournalLine {
		return cur, fmt.Errorf("approval: request %s is too large to keep (%d bytes)", id, len(line))
	}
	// A new row races nothing: IDs are random. ON CONFLICT keeps a second raise of one ID from
	// overwriting the first (fn saw exists = false, so it was a raise).
	q := "UPDATE svidbroker_approvals SET state = $2, req = $3, updated = now() WHERE id = $1"
	if !exists {
		q = "INSERT INTO svidbroker_approvals (id, state, req) VALUES ($1, $2, $3)"
	}
	if _, err := tx.Exec(ctx, q, id, r.State, line); err != nil {
		return cur, fmt.Errorf("approval: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return cur, fmt.Errorf("approval: %w", err)
	}
	close(p.changed)
	p.changed = make(chan struct{})
	return r, nil
}

// Get implements Backend.
func (p *Postgres) Get(ctx context.Context, id string) (Request, bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	conn, err := p.connection(ctx)
	if err != nil {
		return Request{}, false, err
	}
	var raw []byte
	switch err := conn.QueryRow(ctx, "SELECT req FROM svidbroker_approvals WHERE id = $1", id).Scan(&raw); {
	case errors.Is(err, pgx.ErrNoRows):
		return Request{}, false, nil
	case err != nil:
		return Request{}, false, fmt.Errorf("approval: %w", err)
	}
	var r Request
	if err := json.Unmarshal(raw, &r); err != nil {
		return Request{}, false, fmt.Errorf("approval: request %s in the database does not decode: %w", id, err)
	}
	return r, true, nil
}

// maxLive bounds the live requests read at once.
const maxLive = 2 * MaxPending

// Live implements Backend.
func (p *Postgres) Live(ctx context.Context) ([]Request, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	conn, err := p.connection(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := conn.Query(ctx, "SELECT req FROM svidbroker_approvals WHERE state IN ('pending', 'approved') ORDER BY updated LIMIT $1", maxLive)
	if err != nil {
		return nil, fmt.Errorf("approval: %w", err)
	}
	defer rows.Close()
	var out []Request
	for rows.Next() {
		var raw []byte
		if err := rows.Scan(&raw); err != nil {
			return nil, fmt.Errorf("approval: %w", err)
		}
		var r Request
		if err := json.Unmarshal(raw, &r); err != nil {
			return nil, fmt.Errorf("approval: a request in the database does not decode: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("approval: %w", err)
	}
	return out, nil
}

// Changed implements Backend: it signals this broker's changes; another broker's are seen by polling.
func (p *Postgres) Changed() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.changed
}

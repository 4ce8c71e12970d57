package audit

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// WitnessSchema is the table a PostgreSQL witness keeps checkpoints in. Create it as the database's
// owner, and grant the broker's role only INSERT and SELECT on it: the broker can then add
// checkpoints and never remove or change one.
//
//	GRANT SELECT, INSERT ON svidbroker_audit_witness TO <broker role>;
const WitnessSchema = `
CREATE TABLE IF NOT EXISTS svidbroker_audit_witness (
	chain text   NOT NULL,
	seq   bigint NOT NULL,
	note  text   NOT NULL,
	PRIMARY KEY (chain, seq)
);`

// PostgresWitness keeps checkpoints in the table svidbroker_audit_witness (WitnessSchema) of a
// database other than the log's. It connects for each call, so that a database that was away is used
// again as soon as it answers.
type PostgresWitness struct {
	// Connect opens a connection to the witness database.
	Connect func(ctx context.Context) (*pgx.Conn, error)
}

var _ Witness = (*PostgresWitness)(nil)

// Publish inserts the checkpoint, unless the table holds a later one of the chain.
func (w *PostgresWitness) Publish(ctx context.Context, chain string, seq uint64, signed []byte) error {
	conn, err := w.Connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	var last int64
	if err := conn.QueryRow(ctx, "SELECT coalesce(max(seq), -1) FROM svidbroker_audit_witness WHERE chain = $1", chain).Scan(&last); err != nil {
		return err
	}
	switch {
	case last > int64(seq):
		return fmt.Errorf("%w (record %d, not %d)", ErrWitnessConflict, last, seq)
	case last == int64(seq):
		return nil
	}
	_, err = conn.Exec(ctx, "INSERT INTO svidbroker_audit_witness (chain, seq, note) VALUES ($1, $2, $3)", chain, int64(seq), string(signed))
	return err
}

// Latest returns the chain's checkpoint of the highest seq.
func (w *PostgresWitness) Latest(ctx context.Context, chain string) ([]byte, error) {
	conn, err := w.Connect(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	var n string
	err = conn.QueryRow(ctx, "SELECT note FROM svidbroker_audit_witness WHERE chain = $1 ORDER BY seq DESC LIMIT 1", chain).Scan(&n)
	switch {
	case err == pgx.ErrNoRows:
		return nil, nil
	case err != nil:
		return nil, err
	case len(n) > MaxNoteBytes:
		return nil, fmt.Errorf("the witness's checkpoint is longer than %d bytes", MaxNoteBytes)
	}
	return []byte(n), nil
}

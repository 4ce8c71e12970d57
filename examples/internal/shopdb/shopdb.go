// Package shopdb opens the demo database "shop" for the demo's upstream services (examples/shopapi
// and examples/mcpshop) with their own PostgreSQL login, read from a file only the service may read.
package shopdb

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Open reads the connection string (which holds the service's own password) from path, a file that
// only its owner may read, and checks that the database answers within 10 seconds.
func Open(ctx context.Context, path string, maxConns int32) (*pgxpool.Pool, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("--db-file %s is readable by others (mode %04o): it holds a password; chmod 600 it", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, errors.New("--db-file: not a valid PostgreSQL connection string") // the parse error may quote the password
	}
	cfg.MaxConns = maxConns
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(cctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := pool.Ping(cctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	return pool, nil
}

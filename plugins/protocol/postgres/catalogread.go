package postgres

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash"
	"slices"

	"github.com/jackc/pgx/v5/pgconn"
)

// A session's catalog read (loadMeta) is a dozen queries. Sent one by one, each waits a round trip to
// the backend before the next is sent, and the round trips, not the queries, were most of what a
// brokered connection took to open. They are sent as one pipelined batch instead: one round trip (two
// when the catalog tags columns, since the views over the tagged tables are found from their OIDs).
// The batch runs under one Sync, so the first query that fails stops the rest and refuses the session.

// catalogQuery is one query of a session's catalog read.
type catalogQuery struct {
	sql    string
	params [][]byte
	oids   []uint32
	what   string // what it reads, for the error: "reading the database's functions"
}

// readCatalog runs qs on pc as one batch and returns their results, in order. Every query's text,
// parameters and result rows are written to h, so that h sums exactly what the session read.
func readCatalog(ctx context.Context, pc *pgconn.PgConn, h hash.Hash, qs []catalogQuery) ([]*pgconn.Result, error) {
	b := &pgconn.Batch{}
	for _, q := range qs {
		b.ExecParams(q.sql, q.params, q.oids, nil, nil)
	}
	results, err := pc.ExecBatch(ctx, b).ReadAll()
	for i, q := range qs {
		switch {
		case i < len(results) && results[i].Err != nil:
			return nil, fmt.Errorf("postgres: %s: %w", q.what, results[i].Err)
		case i >= len(results) && err != nil:
			return nil, fmt.Errorf("postgres: %s: %w", q.what, err)
		case i >= len(results):
			return nil, fmt.Errorf("postgres: %s: the backend returned no result", q.what)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: reading the catalog: %w", err)
	}
	if len(results) != len(qs) {
		return nil, fmt.Errorf("postgres: reading the catalog: %d results to %d queries", len(results), len(qs))
	}
	for i, q := range qs {
		sumQuery(h, q, results[i])
	}
	return results, nil
}

// sumQuery writes q and its result to h, every part prefixed by its length (-1 for NULL), so that
// different reads never write the same bytes.
func sumQuery(h hash.Hash, q catalogQuery, res *pgconn.Result) {
	sumBytes(h, []byte(q.sql))
	sumLen(h, len(q.params))
	for _, p := range q.params {
		sumField(h, p)
	}
	sumLen(h, len(res.Rows))
	for _, row := range res.Rows {
		sumLen(h, len(row))
		for _, f := range row {
			sumField(h, f)
		}
	}
}

// sumInputs writes to h what a dbMeta is derived from besides the backend's answers: the catalog's
// tagged columns and tables.
func sumInputs(h hash.Hash, tagged map[string][]string, catalog map[string]bool) {
	tables := make([]string, 0, len(tagged))
	for t := range tagged {
		tables = append(tables, t)
	}
	slices.Sort(tables)
	sumLen(h, len(tables))
	for _, t := range tables {
		sumBytes(h, []byte(t))
		sumLen(h, len(tagged[t]))
		for _, c := range tagged[t] {
			sumBytes(h, []byte(c))
		}
	}
	names := make([]string, 0, len(catalog))
	for n, ok := range catalog {
		if ok {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	sumLen(h, len(names))
	for _, n := range names {
		sumBytes(h, []byte(n))
	}
}

func sumField(h hash.Hash, f []byte) {
	if f == nil {
		sumLen(h, -1)
		return
	}
	sumBytes(h, f)
}

func sumBytes(h hash.Hash, b []byte) {
	sumLen(h, len(b))
	h.Write(b)
}

func sumLen(h hash.Hash, n int) {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(int64(n)))
	h.Write(b[:])
}

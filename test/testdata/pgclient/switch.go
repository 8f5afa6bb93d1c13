// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// A pattern is one protocol switch: the message exchange sent first, then
// the one whose latency is measured.
type pattern struct {
	name          string
	first, second func(context.Context, *pgconn.PgConn) error
}

// patterns are the four switches between the simple protocol (a Query)
// and the extended one (Parse, Bind, Describe, Execute, Sync of the
// unnamed statement, as libpq's PQsendQueryParams and pgx's
// QueryExecModeExec send them).
var patterns = []pattern{
	{"simple-simple", simpleSelect, simpleSelect},
	{"extended-extended", extendedSelect, extendedSelect},
	{"extended-simple", extendedSelect, simpleSelect},
	{"simple-extended", simpleSelect, extendedSelect},
}

func simpleSelect(ctx context.Context, c *pgconn.PgConn) error {
	_, err := c.Exec(ctx, "select 1").ReadAll()
	return err
}

func extendedSelect(ctx context.Context, c *pgconn.PgConn) error {
	return c.ExecParams(ctx, "select 1", nil, nil, nil, nil).Read().Err
}

// pgxBlock is what a pgx application does in a transaction that mixes
// the protocols: Begin and Commit, and Exec without arguments, go as
// simple Queries; a query with arguments goes extended, once with the
// unnamed statement (QueryExecModeExec: a Parse each time) and once with
// pgx's cached prepared statement (Bind, Describe, Execute, Sync).
func pgxBlock(ctx context.Context, conn *pgx.Conn, i int) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	var v int
	if err := tx.QueryRow(ctx, "select $1::int", pgx.QueryExecModeExec, i).Scan(&v); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, "select 1"); err != nil {
		return err
	}
	if err := tx.QueryRow(ctx, "select $1::int + 1", i).Scan(&v); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// switchTrace runs the pgx block and the four patterns once each, with
// pgproto3's trace of every message both ways on stdout (no timestamps,
// varying fields redacted): the output is the same directly and through
// tollgate.
func switchTrace(ctx context.Context, dsn string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	pc := conn.PgConn()
	pc.Frontend().Trace(os.Stdout, pgproto3.TracerOptions{SuppressTimestamps: true, RegressMode: true})
	defer pc.Frontend().Untrace()
	for i := range 2 {
		if err := pgxBlock(ctx, conn, i); err != nil {
			return fmt.Errorf("pgx block: %w", err)
		}
	}
	for _, p := range patterns {
		if err := p.first(ctx, pc); err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		if err := p.second(ctx, pc); err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
	}
	return nil
}

// switchBench runs n rounds of each pattern, timing the second exchange,
// then n of the pgx block, and prints each one's median in µs.
func switchBench(ctx context.Context, dsn string, n int) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	pc := conn.PgConn()
	ts := make([]time.Duration, n)
	for _, p := range patterns {
		for i := range n {
			if err := p.first(ctx, pc); err != nil {
				return fmt.Errorf("%s: %w", p.name, err)
			}
			start := time.Now()
			if err := p.second(ctx, pc); err != nil {
				return fmt.Errorf("%s: %w", p.name, err)
			}
			ts[i] = time.Since(start)
		}
		out("%s %.1f", p.name, median(ts))
	}
	for i := range n {
		start := time.Now()
		if err := pgxBlock(ctx, conn, i); err != nil {
			return fmt.Errorf("pgx block: %w", err)
		}
		ts[i] = time.Since(start)
	}
	out("pgx-block %.1f", median(ts))
	return nil
}

// median is the median of ts in µs; it sorts ts.
func median(ts []time.Duration) float64 {
	slices.Sort(ts)
	return float64(ts[len(ts)/2]) / float64(time.Microsecond)
}

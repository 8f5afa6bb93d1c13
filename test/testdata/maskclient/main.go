// SPDX-License-Identifier: Apache-2.0

// Command maskclient is an unmodified pgx application reading the masking
// fixture (customers, accounts) for tollgate's end-to-end tests, by every
// way pgx has: the simple protocol, cached prepared statements executed
// many times, describe-exec and exec modes, binary results, COPY TO STDOUT
// in text, CSV and binary, and results a masking rule refuses. Each line
// is tagged: "U:" lines hold no masked column and must be identical
// directly and through tollgate; "M:" lines hold masked columns; "R:"
// lines report refusals, which only happen through tollgate.
//
//	maskclient DSN
//	maskclient bench DSN QUERY   stream QUERY's rows; print rows, bytes and nanoseconds
package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var err error
	switch {
	case len(os.Args) == 4 && os.Args[1] == "bench":
		err = bench(ctx, os.Args[2], os.Args[3])
	case len(os.Args) == 2:
		err = run(ctx, os.Args[1])
	default:
		fmt.Fprintln(os.Stderr, "usage: maskclient DSN | maskclient bench DSN QUERY")
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func out(format string, args ...any) { fmt.Printf(format+"\n", args...) }

func errCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return "error"
}

const customersQuery = "SELECT id, name, email, card, iban, profile::text FROM customers WHERE id <= $1 ORDER BY id"

func run(ctx context.Context, dsn string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)

	modes := []struct {
		name string
		mode pgx.QueryExecMode
		reps int
	}{
		{"cached", pgx.QueryExecModeCacheStatement, 6},
		{"describe", pgx.QueryExecModeCacheDescribe, 3},
		{"describe-exec", pgx.QueryExecModeDescribeExec, 2},
		{"exec", pgx.QueryExecModeExec, 2},
		{"simple", pgx.QueryExecModeSimpleProtocol, 2},
	}
	for _, m := range modes {
		for rep := range m.reps {
			if err := customers(ctx, conn, fmt.Sprintf("%s %d", m.name, rep), m.mode); err != nil {
				return err
			}
		}
	}
	// Binary results: pgx asks for binary where it has a codec; here for
	// every column.
	for rep := range 3 {
		if err := customers(ctx, conn, fmt.Sprintf("binary %d", rep), pgx.QueryResultFormats{pgx.BinaryFormatCode}); err != nil {
			return err
		}
	}

	// A batch: several statements in one pipeline.
	b := &pgx.Batch{}
	b.Queue("SELECT email FROM customers WHERE id = $1", 1)
	b.Queue("SELECT name FROM customers WHERE id = $1", 2)
	b.Queue("SELECT card AS c FROM customers WHERE id = $1", 3)
	br := conn.SendBatch(ctx, b)
	for i := range 3 {
		var v string
		if err := br.QueryRow().Scan(&v); err != nil {
			return fmt.Errorf("batch %d: %w", i, err)
		}
		if i == 1 {
			out("U: batch %d %s", i, v)
		} else {
			out("M: batch %d %s", i, v)
		}
	}
	if err := br.Close(); err != nil {
		return err
	}

	// COPY TO STDOUT, text and CSV.
	for _, q := range []string{
		"COPY customers (id, name, email, card) TO STDOUT",
		"COPY (SELECT id, name, email, iban, profile FROM customers ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER)",
	} {
		var buf bytes.Buffer
		tag, err := conn.PgConn().CopyTo(ctx, &buf, q)
		if err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
		out("U: copy %s", tag)
		for _, l := range strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n") {
			out("M: copy %s", l)
		}
	}
	// Binary COPY of a masked table: refused through tollgate.
	var buf bytes.Buffer
	if _, err := conn.PgConn().CopyTo(ctx, &buf, "COPY customers (id, email) TO STDOUT (FORMAT binary)"); err != nil {
		out("R: binary copy %s", errCode(err))
	} else {
		out("M: binary copy %d bytes", buf.Len())
	}
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM customers").Scan(&n); err != nil {
		return fmt.Errorf("after binary copy: %w", err)
	}
	out("U: still usable %d", n)

	// A column whose type cannot carry a mask (int pin, rule refuses) is
	// refused, in text and binary; a nullify rule sends NULL.
	for _, mode := range []any{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
		var pin int
		err := conn.QueryRow(ctx, "SELECT pin FROM accounts WHERE id = $1", mode, 1).Scan(&pin)
		if err != nil {
			out("R: pin %s", errCode(err))
		} else {
			out("M: pin %d", pin)
		}
		var id int
		var note string
		if err := conn.QueryRow(ctx, "SELECT id, note FROM accounts WHERE id = $1", mode, 1).Scan(&id, &note); err != nil {
			return fmt.Errorf("after refusal: %w", err)
		}
		out("U: account %d %s", id, note)
	}
	var score *int
	if err := conn.QueryRow(ctx, "SELECT score FROM accounts WHERE id = $1", 2).Scan(&score); err != nil {
		return fmt.Errorf("score: %w", err)
	}
	if score == nil {
		out("M: score NULL")
	} else {
		out("M: score %d", *score)
	}

	// Inside a transaction block a refusal closes the session, so that
	// the transaction cannot be committed.
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, "UPDATE accounts SET note = 'changed' WHERE id = 3"); err != nil {
		return err
	}
	var pin int
	if err := tx.QueryRow(ctx, "SELECT pin FROM accounts WHERE id = 3").Scan(&pin); err != nil {
		out("R: pin in tx %s", errCode(err))
		cerr := tx.Commit(ctx)
		out("X: commit after refusal failed %v", cerr != nil)
	} else {
		out("M: pin in tx %d", pin)
		tx.Rollback(ctx)
	}
	return nil
}

// customers reads the first ten customers in one mode.
func customers(ctx context.Context, conn *pgx.Conn, label string, mode any) error {
	rows, err := conn.Query(ctx, customersQuery, mode, 10)
	if err != nil {
		return fmt.Errorf("%s: %w", label, err)
	}
	count := 0
	for rows.Next() {
		var id int
		var name, email, card, iban, profile string
		if err := rows.Scan(&id, &name, &email, &card, &iban, &profile); err != nil {
			return fmt.Errorf("%s: %w", label, err)
		}
		out("U: %s %d %s", label, id, name)
		out("M: %s %d %s %s %s %s", label, id, email, card, iban, profile)
		count++
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("%s: %w", label, err)
	}
	out("U: %s rows %d", label, count)
	return nil
}

// bench streams a query's rows in text format, one at a time, and prints
// how many rows and value bytes arrived and how long it took.
func bench(ctx context.Context, dsn, query string) error {
	conn, err := pgconn.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	start := time.Now()
	rr := conn.ExecParams(ctx, query, nil, nil, nil, nil)
	var rows, size int64
	for rr.NextRow() {
		rows++
		for _, v := range rr.Values() {
			size += int64(len(v))
		}
	}
	if _, err := rr.Close(); err != nil {
		return err
	}
	fmt.Printf("rows %d bytes %d ns %d\n", rows, size, time.Since(start).Nanoseconds())
	return nil
}

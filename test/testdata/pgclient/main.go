// SPDX-License-Identifier: Apache-2.0

// Command pgclient is an unmodified pgx application for tollgate's
// end-to-end tests. The tests run it directly and inside an intercepted
// workload, and compare what it prints: anything that differs is a proxy
// bug. It prints only what is deterministic (no PIDs, no timings).
//
//	pgclient suite DSN           pgx feature tour: queries, batches, pipelines, COPY, LISTEN/NOTIFY, errors
//	pgclient large DSN MIB       a row of MIB mebibytes there and back
//	pgclient cancel DSN          a pg_sleep cancelled by a context deadline (CancelRequest), checked server side
//	pgclient connect DSN         connect, run a statement, print the outcome
//	pgclient raw ADDR USER DB    raw protocol session; prints every byte the server side sent, hex-escaped
//	pgclient bad ADDR USER DB K  a malformed message of kind K after login; prints the first answer to it
//	pgclient deny-tx DSN STMT    a refused statement inside BEGIN, in a pgconn pipeline and in a pgx batch
//	pgclient held-cancel DSN     statements held for approval, ended by the client's CancelRequest
//	pgclient switch DSN          protocol switches (simple/extended) and a pgx transaction mixing them, every message traced
//	pgclient switch-bench DSN N  N timed rounds of each protocol switch and of that transaction; medians in µs
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: pgclient suite|large|cancel|raw|bad ...")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var err error
	switch os.Args[1] {
	case "suite":
		err = suite(ctx, os.Args[2])
	case "large":
		var mib int
		fmt.Sscan(os.Args[3], &mib)
		err = large(ctx, os.Args[2], mib)
	case "cancel":
		err = cancelQuery(ctx, os.Args[2])
	case "connect":
		err = connect(ctx, os.Args[2])
	case "raw":
		err = raw(os.Args[2], os.Args[3], os.Args[4])
	case "bad":
		err = bad(os.Args[2], os.Args[3], os.Args[4], os.Args[5])
	case "deny-tx":
		err = denyTx(ctx, os.Args[2], os.Args[3])
	case "held-cancel":
		err = heldCancel(ctx, os.Args[2])
	case "switch":
		err = switchTrace(ctx, os.Args[2])
	case "switch-bench":
		var n int
		fmt.Sscan(os.Args[3], &n)
		err = switchBench(ctx, os.Args[2], max(n, 1))
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "pgclient:", err)
		os.Exit(1)
	}
}

// out prints one result line.
func out(format string, args ...any) { fmt.Printf(format+"\n", args...) }

// errLine describes an error by what is deterministic in it.
func errLine(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return fmt.Sprintf("%s %s: %s", pe.Severity, pe.Code, pe.Message)
	}
	if err == nil {
		return "ok"
	}
	return "error: " + err.Error()
}

func suite(ctx context.Context, dsn string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)

	// Schema, through the simple protocol.
	_, err = conn.Exec(ctx, `CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, price numeric(10,2), tags text[], data jsonb, at timestamptz);
		CREATE TABLE events (id bigserial PRIMARY KEY, item int REFERENCES items(id), note text)`)
	out("create: %s", errLine(err))

	// Parameters, binary and text formats, cached prepared statements.
	for i := 1; i <= 20; i++ {
		_, err = conn.Exec(ctx, "INSERT INTO items VALUES ($1, $2, $3, $4, $5, $6)",
			i, fmt.Sprintf("item-%02d", i), float64(i)*1.25, []string{"a", fmt.Sprint(i)},
			map[string]any{"n": i, "s": "x"}, time.Date(2026, 1, i, 12, 0, 0, 0, time.UTC))
		if err != nil {
			return fmt.Errorf("insert %d: %w", i, err)
		}
	}
	var n int
	var sum float64
	err = conn.QueryRow(ctx, "SELECT count(*), sum(price)::float8 FROM items WHERE id > $1", 5).Scan(&n, &sum)
	out("count: %d %.2f %s", n, sum, errLine(err))

	rows, _ := conn.Query(ctx, "SELECT id, name, tags, data->>'n', at FROM items WHERE id % 7 = $1 ORDER BY id", 1)
	for rows.Next() {
		var id int
		var name, dn string
		var tags []string
		var at time.Time
		if err := rows.Scan(&id, &name, &tags, &dn, &at); err != nil {
			return err
		}
		out("row: %d %s %v %s %s", id, name, tags, dn, at.UTC().Format(time.RFC3339))
	}
	out("rows: %s %s", errLine(rows.Err()), rows.CommandTag())

	// Every exec mode.
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeCacheDescribe,
		pgx.QueryExecModeDescribeExec, pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol} {
		var s string
		err := conn.QueryRow(ctx, "SELECT string_agg(name, ',' ORDER BY id) FROM items WHERE id <= $1", mode, 3).Scan(&s)
		out("mode %v: %s %s", mode, s, errLine(err))
	}

	// A batch: pipelined extended queries with one failure in the middle.
	b := &pgx.Batch{}
	b.Queue("INSERT INTO events (item, note) VALUES ($1, $2)", 1, "first")
	b.Queue("SELECT count(*) FROM events")
	b.Queue("INSERT INTO events (item, note) VALUES ($1, $2)", 999, "violates fk")
	b.Queue("SELECT 1")
	br := conn.SendBatch(ctx, b)
	ct, err := br.Exec()
	out("batch 1: %s %s", ct, errLine(err))
	var c int
	err = br.QueryRow().Scan(&c)
	out("batch 2: %d %s", c, errLine(err))
	_, err = br.Exec()
	out("batch 3: %s", errLine(err))
	_, err = br.Exec()
	out("batch 4: %s", errLine(err))
	out("batch close: %s", errLine(br.Close()))
	err = conn.QueryRow(ctx, "SELECT count(*) FROM events").Scan(&c)
	out("events after failed batch: %d %s", c, errLine(err))

	// A successful batch in a transaction.
	b = &pgx.Batch{}
	b.Queue("BEGIN")
	for i := 0; i < 50; i++ {
		b.Queue("INSERT INTO events (item, note) VALUES ($1, $2)", 1+i%20, fmt.Sprintf("batch-%d", i))
	}
	b.Queue("COMMIT")
	out("batch tx: %s", errLine(conn.SendBatch(ctx, b).Close()))

	// A raw pipeline with Flush in the middle, as postgres.js does.
	pc := conn.PgConn()
	pl := pc.StartPipeline(ctx)
	pl.SendPrepare("pl_stmt", "SELECT $1::int * 2", nil)
	pl.SendFlushRequest()
	if err := pl.Flush(); err != nil {
		return err
	}
	res, err := pl.GetResults()
	if sd, ok := res.(*pgconn.StatementDescription); ok {
		out("pipeline prepare: %d params %d fields %s", len(sd.ParamOIDs), len(sd.Fields), errLine(err))
	} else {
		out("pipeline prepare: %T %s", res, errLine(err))
	}
	pl.SendQueryPrepared("pl_stmt", [][]byte{[]byte("21")}, nil, nil)
	pl.SendQueryParams("SELECT 1/0", nil, nil, nil, nil)
	pl.SendQueryParams("SELECT 'skipped'", nil, nil, nil, nil)
	pl.SendPipelineSync()
	pl.SendQueryParams("SELECT 'after sync'", nil, nil, nil, nil)
	pl.SendPipelineSync()
	if err := pl.Flush(); err != nil {
		return err
	}
	for i := 0; i < 6; i++ {
		res, err := pl.GetResults()
		switch r := res.(type) {
		case *pgconn.ResultReader:
			rr := r.Read()
			var vals []string
			for _, row := range rr.Rows {
				vals = append(vals, string(row[0]))
			}
			out("pipeline %d: rows %v %s %s", i, vals, rr.CommandTag, errLine(rr.Err))
		case *pgconn.PipelineSync:
			out("pipeline %d: sync", i)
		case nil:
			out("pipeline %d: nil %s", i, errLine(err))
		default:
			out("pipeline %d: %T %s", i, r, errLine(err))
		}
	}
	out("pipeline close: %s", errLine(pl.Close()))

	// COPY in and out.
	var src [][]any
	for i := 0; i < 5000; i++ {
		src = append(src, []any{int64(1 + i%20), fmt.Sprintf("copied \"%d\"\ttab\\n", i)})
	}
	cn, err := conn.CopyFrom(ctx, pgx.Identifier{"events"}, []string{"item", "note"}, pgx.CopyFromRows(src))
	out("copy from: %d %s", cn, errLine(err))
	var buf bytes.Buffer
	tag, err := pc.CopyTo(ctx, &buf, "COPY (SELECT item, note FROM events ORDER BY id) TO STDOUT WITH (FORMAT csv)")
	out("copy to: %s %d bytes sha256 %x %s", tag, buf.Len(), sha256.Sum256(buf.Bytes()), errLine(err))
	// A COPY that fails mid-stream: the server rejects a row.
	tag, err = pc.CopyFrom(ctx, strings.NewReader("1\tok\nnot-a-number\tbad\n"), "COPY events (item, note) FROM STDIN")
	out("copy error: %s %s", tag, errLine(err))
	err = conn.QueryRow(ctx, "SELECT count(*) FROM events").Scan(&c)
	out("events: %d %s", c, errLine(err))

	// Errors keep the session usable; notices pass through.
	_, err = conn.Exec(ctx, "SELECT * FROM no_such_table")
	out("missing table: %s", errLine(err))
	_, err = conn.Exec(ctx, "SELEC 1")
	out("syntax: %s", errLine(err))
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, "INSERT INTO items VALUES (1, 'dup')")
	out("dup in tx: %s", errLine(err))
	_, err = tx.Exec(ctx, "SELECT 1")
	out("after error in tx: %s", errLine(err))
	out("rollback: %s", errLine(tx.Rollback(ctx)))

	// LISTEN/NOTIFY between two connections.
	listener, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer listener.Close(ctx)
	_, err = listener.Exec(ctx, "LISTEN tollgate_test")
	out("listen: %s", errLine(err))
	for i := 0; i < 3; i++ {
		_, err = conn.Exec(ctx, "SELECT pg_notify('tollgate_test', $1)", fmt.Sprintf("payload-%d", i))
		if err != nil {
			return err
		}
	}
	_, err = conn.Exec(ctx, "NOTIFY tollgate_test, 'via notify'")
	if err != nil {
		return err
	}
	for i := 0; i < 4; i++ {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		nt, err := listener.WaitForNotification(wctx)
		cancel()
		if err != nil {
			out("notification %d: %s", i, errLine(err))
			break
		}
		out("notification %d: %s %s", i, nt.Channel, nt.Payload)
	}

	// Transaction status and server settings as the client sees them.
	var enc, dst, tz string
	err = conn.QueryRow(ctx, "SELECT current_setting('client_encoding'), current_setting('DateStyle'), current_setting('TimeZone')").Scan(&enc, &dst, &tz)
	out("settings: %s %s %s %s", enc, dst, tz, errLine(err))
	out("param status: server_encoding=%s standard_conforming_strings=%s", pc.ParameterStatus("server_encoding"), pc.ParameterStatus("standard_conforming_strings"))
	return nil
}

// connect prints the outcome of a login and a write and a read.
func connect(ctx context.Context, dsn string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		out("connect: %s", errLine(err))
		return nil
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "CREATE TABLE IF NOT EXISTS seen (who text)")
	out("create: %s", errLine(err))
	_, err = conn.Exec(ctx, "INSERT INTO seen VALUES (current_user)")
	out("insert: %s", errLine(err))
	var n int
	var user string
	err = conn.QueryRow(ctx, "SELECT count(*), current_user FROM seen").Scan(&n, &user)
	out("select: %d %s %s", n, user, errLine(err))
	return nil
}

// large stores and reads back one value of mib MiB.
func large(ctx context.Context, dsn string, mib int) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	val := strings.Repeat("0123456789abcdef", mib<<16)
	if _, err := conn.Exec(ctx, "CREATE TABLE big (v text)"); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, "INSERT INTO big VALUES ($1)", val); err != nil {
		return err
	}
	var got string
	if err := conn.QueryRow(ctx, "SELECT v FROM big").Scan(&got); err != nil {
		return err
	}
	out("large: sent %d got %d equal %v", len(val), len(got), got == val)
	var n int
	if err := conn.QueryRow(ctx, "SELECT length(v) FROM big", pgx.QueryExecModeSimpleProtocol).Scan(&n); err != nil {
		return err
	}
	out("large: server length %d", n)
	return nil
}

// cancelQuery runs a long pg_sleep with a deadline; pgx sends a
// CancelRequest on a new connection when the deadline passes. A second
// connection then checks that the query really stopped on the server.
func cancelQuery(ctx context.Context, dsn string) error {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return err
	}
	cfg.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: pc, CancelRequestDelay: 0, DeadlineDelay: 10 * time.Second}
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	qctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	start := time.Now()
	_, err = conn.Exec(qctx, "SELECT pg_sleep(60)")
	cancel()
	out("cancelled: %s within 10s %v", errLine(err), time.Since(start) < 10*time.Second)
	check, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer check.Close(ctx)
	for i := 0; ; i++ {
		var n int
		if err := check.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)' AND state = 'active'").Scan(&n); err != nil {
			return err
		}
		if n == 0 || i == 50 {
			out("sleeping on the server: %d", n)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	// pgconn's own CancelRequest, while a query runs.
	done := make(chan error, 1)
	go func() {
		_, err := check.Exec(ctx, "SELECT pg_sleep(60)")
		done <- err
	}()
	time.Sleep(300 * time.Millisecond)
	out("cancel request: %s", errLine(check.PgConn().CancelRequest(ctx)))
	select {
	case err := <-done:
		out("explicit cancel: %s", errLine(err))
	case <-time.After(20 * time.Second):
		out("explicit cancel: query still running")
	}
	return nil
}

// startup writes a protocol 3.0 startup packet.
func startup(c net.Conn, user, db string) error {
	var b []byte
	b = binary.BigEndian.AppendUint32(b, 0)
	b = binary.BigEndian.AppendUint32(b, 196608)
	for _, kv := range []string{"user", user, "database", db, "application_name", "pgclient-raw"} {
		b = append(b, kv...)
		b = append(b, 0)
	}
	b = append(b, 0)
	binary.BigEndian.PutUint32(b, uint32(len(b)))
	_, err := c.Write(b)
	return err
}

func msg(typ byte, body string) []byte {
	b := []byte{typ, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], uint32(len(body)+4))
	return append(b, body...)
}

// readUntil reads messages until one of type stop, returning all bytes.
func readUntil(c net.Conn, stop byte) ([]byte, error) {
	var all []byte
	for {
		var h [5]byte
		if _, err := io.ReadFull(c, h[:]); err != nil {
			return all, err
		}
		n := int(binary.BigEndian.Uint32(h[1:])) - 4
		body := make([]byte, n)
		if _, err := io.ReadFull(c, body); err != nil {
			return all, err
		}
		all = append(all, h[:]...)
		all = append(all, body...)
		if h[0] == stop {
			return all, nil
		}
	}
}

// raw logs in without a password and runs queries that show what a
// client can learn about the session; it prints every byte received.
func raw(addr, user, db string) error {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	if err := startup(c, user, db); err != nil {
		return err
	}
	got, err := readUntil(c, 'Z')
	if err != nil {
		return fmt.Errorf("login: %w (%q)", err, got)
	}
	for _, q := range []string{"SHOW ALL", "SELECT * FROM pg_stat_activity", "SELECT current_user, session_user",
		"SELECT rolname, rolpassword FROM pg_authid", "SELECT * FROM pg_roles", "SELECT 1/0"} {
		if _, err := c.Write(msg('Q', q+"\x00")); err != nil {
			return err
		}
		more, err := readUntil(c, 'Z')
		got = append(got, more...)
		if err != nil {
			return err
		}
	}
	c.Write(msg('X', ""))
	rest, _ := io.ReadAll(c)
	got = append(got, rest...)
	fmt.Printf("%q\n", got)
	return nil
}

// bad logs in, sends one malformed message and prints the answer's type,
// severity and SQLSTATE, or how the connection ended.
func bad(addr, user, db, kind string) error {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if kind == "startup-oversized" || kind == "startup-garbage" {
		b := []byte{0, 1, 0, 0, 0, 3, 0, 0} // 65536-byte startup packet
		if kind == "startup-garbage" {
			b = []byte("GET / HTTP/1.1\r\n\r\n")
		}
		c.Write(b)
	} else {
		if err := startup(c, user, db); err != nil {
			return err
		}
		if _, err := readUntil(c, 'Z'); err != nil {
			return fmt.Errorf("login: %w", err)
		}
		var m []byte
		switch kind {
		case "negative":
			m = []byte{'Q', 0xff, 0xff, 0xff, 0xf0}
		case "oversized":
			m = []byte{'S', 0, 1, 0, 0} // Sync with a 64 KiB body
		case "truncated":
			m = msg('Q', "SELECT 1\x00")[:8]
		case "badtype":
			m = msg('!', "")
		case "malformed-bind":
			m = msg('B', "\x00\x00\x00\x01\x00\x00\xff\xff\xff\xfe\x00\x00")
		case "unterminated-query":
			m = msg('Q', "SELECT 1")
		default:
			return fmt.Errorf("unknown kind %q", kind)
		}
		c.Write(m)
		if kind == "truncated" {
			// Half-close: the message can never be completed.
			c.(*net.TCPConn).CloseWrite()
		}
	}
	var h [5]byte
	if _, err := io.ReadFull(c, h[:]); err != nil {
		out("%s: closed without answer (%v)", kind, errors.Is(err, io.EOF))
		return nil
	}
	n := int(binary.BigEndian.Uint32(h[1:])) - 4
	body := make([]byte, min(n, 1<<16))
	io.ReadFull(c, body)
	if h[0] != 'E' {
		out("%s: answer %q", kind, h[0])
		return nil
	}
	fields := map[byte]string{}
	for _, f := range bytes.Split(body, []byte{0}) {
		if len(f) > 1 {
			fields[f[0]] = string(f[1:])
		}
	}
	_, err = io.ReadAll(c)
	out("%s: %s %s %s; then closed %v", kind, fields['S'], fields['C'], fields['M'], err == nil)
	return nil
}

// denyTx runs, inside a transaction, an insert, a statement that is
// refused (by tollgate's policy, or by the server itself) and another
// insert, first as one pgconn pipeline, then as a pgx batch; then COMMIT.
// It prints each outcome and the rows the inserts would have left.
func denyTx(ctx context.Context, dsn, refused string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	pc := conn.PgConn()
	count := func() {
		var n int
		err := conn.QueryRow(ctx, "SELECT count(*) FROM items WHERE id BETWEEN 200 AND 299").Scan(&n)
		out("rows 200-299: %d %s", n, errLine(err))
	}

	// A pgconn pipeline: Parse/Bind/Describe/Execute per statement, one
	// Sync.
	_, err = pc.Exec(ctx, "BEGIN").ReadAll()
	out("pipeline begin: %s", errLine(err))
	p := pc.StartPipeline(ctx)
	p.SendQueryParams("INSERT INTO items VALUES (200, 'pipeline')", nil, nil, nil, nil)
	p.SendQueryParams(refused, nil, nil, nil, nil)
	p.SendQueryParams("INSERT INTO items VALUES (201, 'pipeline')", nil, nil, nil, nil)
	if err := p.Sync(); err != nil {
		return err
	}
	for i := 0; ; i++ {
		res, err := p.GetResults()
		if err != nil {
			out("pipeline result %d: %s", i, errLine(err))
			continue
		}
		if res == nil {
			break
		}
		switch r := res.(type) {
		case *pgconn.ResultReader:
			tag, err := r.Close()
			out("pipeline result %d: %s %s", i, tag.String(), errLine(err))
		case *pgconn.PipelineSync:
			out("pipeline sync")
		}
	}
	out("pipeline close: %s", errLine(p.Close()))
	out("pipeline status: %c", pc.TxStatus())
	tag, err := pc.Exec(ctx, "INSERT INTO items VALUES (202, 'after')").ReadAll()
	if err == nil {
		out("pipeline next: %s", tag[0].CommandTag.String())
	} else {
		out("pipeline next: %s", errLine(err))
	}
	res, err := pc.Exec(ctx, "COMMIT").ReadAll()
	if err == nil {
		out("pipeline commit: %s", res[0].CommandTag.String())
	} else {
		out("pipeline commit: %s", errLine(err))
	}
	count()

	// A pgx batch inside a transaction.
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	b := &pgx.Batch{}
	b.Queue("INSERT INTO items VALUES ($1, 'batch')", 210)
	b.Queue(refused)
	b.Queue("INSERT INTO items VALUES ($1, 'batch')", 211)
	br := tx.SendBatch(ctx, b)
	for i := 0; i < 3; i++ {
		tag, err := br.Exec()
		out("batch result %d: %s %s", i, tag.String(), errLine(err))
	}
	out("batch close: %s", errLine(br.Close()))
	out("batch commit: %s", errLine(tx.Commit(ctx)))
	count()
	return nil
}

// heldCancel runs statements that a review rule holds and cancels each
// with a CancelRequest once the hold's notice arrived: over the simple
// protocol and over the extended one. The session stays usable.
func heldCancel(ctx context.Context, dsn string) error {
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return err
	}
	held := make(chan string, 4)
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		if strings.Contains(n.Message, "held for approval") {
			held <- n.Message
		}
	}
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer pc.Close(ctx)
	for _, mode := range []string{"simple", "extended"} {
		done := make(chan error, 1)
		go func() {
			if mode == "simple" {
				_, err := pc.Exec(ctx, "ALTER TABLE cancel_me ADD COLUMN simple int").ReadAll()
				done <- err
				return
			}
			done <- pc.ExecParams(ctx, "ALTER TABLE cancel_me ADD COLUMN extended int", nil, nil, nil, nil).Read().Err
		}()
		select {
		case msg := <-held:
			out("%s: held: %v", mode, strings.Contains(msg, "tollgate approve"))
		case err := <-done:
			out("%s: not held: %s", mode, errLine(err))
			continue
		}
		out("%s: cancel request: %s", mode, errLine(pc.CancelRequest(ctx)))
		out("%s: statement: %s", mode, errLine(<-done))
		var n []byte
		rr := pc.ExecParams(ctx, "SELECT 40 + 2", nil, nil, nil, nil).Read()
		if rr.Err == nil && len(rr.Rows) == 1 {
			n = rr.Rows[0][0]
		}
		out("%s: after: %s %s", mode, n, errLine(rr.Err))
	}
	return nil
}

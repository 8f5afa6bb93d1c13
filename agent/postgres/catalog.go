// SPDX-License-Identifier: Apache-2.0

package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tollgate-dev/tollgate/policy/mask"
)

// catalogTimeout bounds one catalog lookup, login included.
const catalogTimeout = 15 * time.Second

// columnsQuery lists a table's columns, system columns included (their
// attribute numbers are negative), with the table's schema and name.
const columnsQuery = `SELECT n.nspname, c.relname, a.attnum, a.attname
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE a.attrelid = $1 AND NOT a.attisdropped`

// catalog names the table columns of a session's results for masking. It
// holds its own connection to the session's database, logged in like the
// session (the target's upstream user, injected credentials), opened on
// first use: OIDs are per database, and the session's own connection
// carries the client's statements. A table's columns are read once, then
// cached until the session runs DDL (invalidate), so a statement executed
// many times costs no lookups. A table the catalog does not show (created
// in the session's uncommitted transaction) is not cached.
type catalog struct {
	connect func(ctx context.Context) (*pgconn.PgConn, error)

	mu     sync.Mutex
	conn   *pgconn.PgConn
	tables map[uint32]map[int16]mask.Column
	gen    uint64 // bumped by invalidate
}

func newCatalog(connect func(ctx context.Context) (*pgconn.PgConn, error)) *catalog {
	return &catalog{connect: connect, tables: map[uint32]map[int16]mask.Column{}}
}

// generation returns a number that changes whenever cached names may have
// become wrong; plans made under another generation are made again.
func (c *catalog) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// invalidate forgets every cached table, after DDL.
func (c *catalog) invalidate() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.tables)
	c.gen++
}

// close closes the catalog's connection.
func (c *catalog) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c.conn.Close(ctx)
		cancel()
		c.conn = nil
	}
}

// ResolveColumn implements mask.Resolver.
func (c *catalog) ResolveColumn(ctx context.Context, table uint32, attnum int16) (mask.Column, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cols, ok := c.tables[table]
	if !ok {
		var err error
		if cols, err = c.lookup(ctx, table); err != nil {
			return mask.Column{}, err
		}
		if len(cols) == 0 {
			return mask.Column{}, fmt.Errorf("table %d: %w", table, mask.ErrUnknownTable)
		}
		c.tables[table] = cols
	}
	col, ok := cols[attnum]
	if !ok {
		return mask.Column{}, fmt.Errorf("table %d has no column %d", table, attnum)
	}
	return col, nil
}

// lookup reads a table's columns. Called with mu held.
func (c *catalog) lookup(ctx context.Context, table uint32) (map[int16]mask.Column, error) {
	conn, err := c.ensure(ctx)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, catalogTimeout)
	defer cancel()
	res := conn.ExecParams(ctx, columnsQuery, [][]byte{[]byte(strconv.FormatUint(uint64(table), 10))}, []uint32{26}, nil, nil).Read()
	if res.Err != nil {
		c.drop()
		return nil, fmt.Errorf("catalog lookup of table %d: %w", table, res.Err)
	}
	cols := make(map[int16]mask.Column, len(res.Rows))
	for _, row := range res.Rows {
		if len(row) != 4 {
			return nil, fmt.Errorf("catalog lookup of table %d: %d columns", table, len(row))
		}
		n, err := strconv.ParseInt(string(row[2]), 10, 16)
		if err != nil {
			return nil, fmt.Errorf("catalog lookup of table %d: attnum: %w", table, err)
		}
		cols[int16(n)] = mask.Column{Schema: string(row[0]), Table: string(row[1]), Name: string(row[3])}
	}
	return cols, nil
}

// describe returns the description of the rows query would return, as
// the server plans it on the catalog connection, without running it.
func (c *catalog) describe(ctx context.Context, query string) (*pgproto3.RowDescription, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	conn, err := c.ensure(ctx)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, catalogTimeout)
	defer cancel()
	sd, err := conn.Prepare(ctx, "", query, nil)
	if err != nil {
		var pe *pgconn.PgError
		if !errors.As(err, &pe) {
			c.drop()
		}
		return nil, fmt.Errorf("describe: %w", err)
	}
	desc := &pgproto3.RowDescription{Fields: make([]pgproto3.FieldDescription, len(sd.Fields))}
	for i, f := range sd.Fields {
		desc.Fields[i] = pgproto3.FieldDescription{Name: []byte(f.Name), TableOID: f.TableOID,
			TableAttributeNumber: f.TableAttributeNumber, DataTypeOID: f.DataTypeOID, DataTypeSize: f.DataTypeSize,
			TypeModifier: f.TypeModifier, Format: f.Format}
	}
	return desc, nil
}

// ensure returns the catalog connection, logging in when there is none.
// Called with mu held.
func (c *catalog) ensure(ctx context.Context) (*pgconn.PgConn, error) {
	if c.conn != nil && !c.conn.IsClosed() {
		return c.conn, nil
	}
	ctx, cancel := context.WithTimeout(ctx, catalogTimeout)
	defer cancel()
	conn, err := c.connect(ctx)
	if err != nil {
		return nil, fmt.Errorf("catalog connection: %w", err)
	}
	c.conn = conn
	return conn, nil
}

// drop closes a connection that failed, so the next lookup logs in again.
// Called with mu held.
func (c *catalog) drop() {
	if c.conn != nil {
		c.conn.Close(context.Background())
		c.conn = nil
	}
}

// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// retentionInterval is how often the service looks for partitions to drop.
// Partitions are whole days, so an hour late is a small fraction of one.
const retentionInterval = time.Hour

// partitionPrefix starts the name of every day partition of records,
// followed by the day as YYYYMMDD.
const partitionPrefix = "records_"

// Dropped is one day partition DropExpired dropped.
type Dropped struct {
	// Name is the partition, records_YYYYMMDD.
	Name string
	// Day is the day its records were stamped with (UTC).
	Day time.Time
	// Records is how many records it held; their leaf hashes are in
	// leaf_hashes.
	Records int64
}

// DropExpired enforces retention: it drops every day partition of records
// whose whole day ends at or before now minus retention. In the same
// transaction it first copies the RFC 6962 leaf hash of each record to
// leaf_hashes, so the trees the collector witnessed can still be rebuilt
// and proofs over the dropped records still verify; the partition is
// recorded in dropped_partitions. Records are never deleted one by one:
// dropping a table is instant and leaves no vacuum debt. Replicas running
// it together drop each partition once (the partition lock serialises
// them). A retention of zero or less drops nothing.
func (s *Store) DropExpired(ctx context.Context, retention time.Duration, now time.Time) ([]Dropped, error) {
	if retention <= 0 {
		return nil, nil
	}
	cutoff := now.Add(-retention)
	rows, err := s.pool.Query(ctx, `SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = 'records'::regclass ORDER BY 1`)
	if err != nil {
		return nil, fmt.Errorf("list partitions: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list partitions: %w", err)
	}
	var out []Dropped
	for _, name := range names {
		day, err := time.Parse("20060102", strings.TrimPrefix(name, partitionPrefix))
		if err != nil || !strings.HasPrefix(name, partitionPrefix) {
			continue // not one of ours
		}
		if day.Add(24 * time.Hour).After(cutoff) {
			continue
		}
		d, err := s.dropPartition(ctx, name, day)
		if err != nil {
			return out, err
		}
		if d != nil {
			out = append(out, *d)
			s.logger.Info("records partition dropped by retention", "partition", name, "records", d.Records,
				"retention", retention.String())
		}
	}
	return out, nil
}

// dropPartition keeps the leaf hashes of a partition's records and drops
// it, in one transaction under the lock that partition creation takes. It
// returns nil if another replica dropped it first.
func (s *Store) dropPartition(ctx context.Context, name string, day time.Time) (*Dropped, error) {
	var d *Dropped
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(migrationLock+1)); err != nil {
			return err
		}
		var exists bool
		if err := tx.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", name).Scan(&exists); err != nil {
			return err
		}
		if !exists {
			return nil
		}
		ident := pgx.Identifier{name}.Sanitize()
		// 0x00 ‖ data is the RFC 6962 leaf, what the hosts and the
		// ingest hash (audit.LeafHash).
		tag, err := tx.Exec(ctx, `INSERT INTO leaf_hashes (origin, seq, hash)
			SELECT origin, seq, sha256('\x00'::bytea || data) FROM `+ident+` ON CONFLICT (origin, seq) DO NOTHING`)
		if err != nil {
			return fmt.Errorf("keep leaf hashes: %w", err)
		}
		var n int64
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM "+ident).Scan(&n); err != nil {
			return err
		}
		if tag.RowsAffected() > n {
			return fmt.Errorf("kept %d leaf hashes of %d records", tag.RowsAffected(), n)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO dropped_partitions (name, day, records) VALUES ($1, $2, $3)
			ON CONFLICT (name) DO UPDATE SET records = dropped_partitions.records + EXCLUDED.records, dropped_at = now()`,
			name, day, n); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "DROP TABLE "+ident); err != nil {
			return err
		}
		d = &Dropped{Name: name, Day: day, Records: n}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("drop partition %s: %w", name, err)
	}
	// A late record of that day (a host back after a long outage)
	// creates the partition again; the next pass drops it.
	s.partMu.Lock()
	delete(s.partitions, strings.TrimPrefix(name, partitionPrefix))
	s.partMu.Unlock()
	return d, nil
}

// watchRetention runs DropExpired at start and every retentionInterval
// until ctx ends.
func (s *Store) watchRetention(ctx context.Context, retention time.Duration) {
	if retention <= 0 {
		return
	}
	tick := time.NewTicker(retentionInterval)
	defer tick.Stop()
	for {
		if _, err := s.DropExpired(ctx, retention, time.Now()); err != nil && ctx.Err() == nil {
			s.logger.Warn("retention pass failed", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// DroppedDays returns the days (UTC, ascending) whose records retention
// dropped, within [since, until) (zero: unbounded): a report over them
// covers only what is left, and says so.
func (s *Store) DroppedDays(ctx context.Context, since, until time.Time) ([]time.Time, error) {
	var lo, hi *time.Time
	if !since.IsZero() {
		d := since.UTC().Truncate(24 * time.Hour)
		lo = &d
	}
	if !until.IsZero() {
		hi = &until
	}
	rows, err := s.pool.Query(ctx, `SELECT day::timestamp FROM dropped_partitions
		WHERE ($1::timestamp IS NULL OR day >= $1::timestamp) AND ($2::timestamptz IS NULL OR day < $2::timestamptz AT TIME ZONE 'UTC')
		ORDER BY day`, lo, hi)
	if err != nil {
		return nil, fmt.Errorf("dropped days: %w", err)
	}
	days, err := pgx.CollectRows(rows, pgx.RowTo[time.Time])
	if err != nil {
		return nil, fmt.Errorf("dropped days: %w", err)
	}
	return days, nil
}

// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"context"
	"fmt"
	"time"

	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/audit/report"
)

// Report builds the access report of `tollgate audit report` from the
// records the collector holds: of one host (host not empty) or of the
// whole fleet, for records with since <= time < until (zero: unbounded).
// Records are read in (origin, seq) order, each log's in its own order.
func (s *Store) Report(ctx context.Context, host string, since, until time.Time) (*report.Report, error) {
	name := "fleet"
	if host != "" {
		name = host
	}
	b := report.NewBuilder(name, since, until)
	var lo, hi *time.Time
	if !since.IsZero() {
		lo = &since
	}
	if !until.IsZero() {
		hi = &until
	}
	rows, err := s.pool.Query(ctx, `SELECT r.data FROM records r JOIN hosts h ON h.origin = r.origin
		WHERE ($1 = '' OR h.name = $1) AND ($2::timestamptz IS NULL OR r.time >= $2) AND ($3::timestamptz IS NULL OR r.time < $3)
		ORDER BY r.origin, r.seq`, host, lo, hi)
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var data []byte
		if err := rows.Scan(&data); err != nil {
			return nil, fmt.Errorf("report: %w", err)
		}
		r, err := audit.Decode(data)
		if err != nil {
			return nil, fmt.Errorf("report: stored record: %w", err)
		}
		b.Add(r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	return b.Finish(), nil
}

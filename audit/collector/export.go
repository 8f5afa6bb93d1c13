// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/audit/evidence"
)

// ExportOptions select what Store.Export puts in a bundle.
type ExportOptions struct {
	// Host or Origin names the log (one of them).
	Host, Origin string
	// From and To select the records, seq [From, To); To zero means up
	// to the newest checkpoint the collector cosigned.
	From, To uint64
	// ProveFrom adds a consistency proof from each of these tree sizes
	// to the bundle's, for auditors who hold a host checkpoint of that
	// size outside [From, To) (`audit verify --trusted-checkpoint`).
	ProveFrom []uint64
	// Tool names what wrote the bundle.
	Tool string
}

// Export plans an evidence bundle of one log from what the collector
// holds, in the format of `tollgate audit export` (evidence.NewExport writes
// it): records [From, To) exactly as the host stored them, the newest
// checkpoint the collector cosigned (the host's signature and the
// collector's cosignature line), the range proof from the leaf hashes the
// collector holds (records and, for days its retention dropped,
// leaf_hashes), and the host's key as enrolled. `tollgate audit verify
// --key host.pub --witness-key collector.pub` checks it offline. Records
// the retention dropped cannot be exported (ErrDropped names them).
func (s *Store) Export(ctx context.Context, opts ExportOptions) (*evidence.Export, error) {
	if (opts.Host == "") == (opts.Origin == "") {
		return nil, errors.New("export: name the log by host or by origin, not both")
	}
	var name, origin, key string
	err := s.pool.QueryRow(ctx, "SELECT name, origin, public_key FROM hosts WHERE name = $1 OR origin = $2",
		opts.Host, opts.Origin).Scan(&name, &origin, &key)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("export: host %q origin %q: %w", opts.Host, opts.Origin, ErrUnknownLog)
	}
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	v, err := audit.ParseVerifierKey(key)
	if err != nil {
		return nil, fmt.Errorf("export: enrolled key of %s: %w", name, err)
	}
	var size int64
	var note []byte
	var cosig string
	err = s.pool.QueryRow(ctx, "SELECT size, note, cosignature FROM checkpoints WHERE origin = $1 ORDER BY size DESC LIMIT 1",
		origin).Scan(&size, &note, &cosig)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("export: %s has no cosigned checkpoint yet: %w", name, ErrUnknownLog)
	}
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	cp, err := audit.OpenCheckpoint(append(note, cosig...), v)
	if err != nil {
		return nil, fmt.Errorf("export: stored checkpoint of %s at %d: %w", name, size, err)
	}
	n := cp.Size
	from, to := opts.From, opts.To
	if to == 0 {
		to = n
	}
	if from >= to || to > n {
		return nil, fmt.Errorf("export: range [%d, %d) of %s, whose newest cosigned checkpoint has %d records: %w",
			from, to, name, n, audit.ErrRange)
	}
	var lo, hi *int64
	if err := s.pool.QueryRow(ctx, "SELECT min(seq), max(seq) FROM leaf_hashes WHERE origin = $1 AND seq >= $2 AND seq < $3",
		origin, int64(from), int64(to)).Scan(&lo, &hi); err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	if lo != nil {
		return nil, fmt.Errorf("export: records [%d, %d] of %s: %w (export from %d on, or ask the archive)",
			*lo, *hi, name, ErrDropped, *hi+1)
	}
	left, err := s.compactRange(ctx, origin, 0, from)
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	right, err := s.compactRange(ctx, origin, to, n)
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	var cons []evidence.ConsistencyProof
	for _, f := range slices.Compact(slices.Sorted(slices.Values(opts.ProveFrom))) {
		c, err := s.consistencyProof(ctx, origin, f, cp)
		if err != nil {
			return nil, fmt.Errorf("export: %w", err)
		}
		cons = append(cons, c)
	}
	return evidence.NewExport(ctx, evidence.BundlePlan{
		Log: origin, HostKey: key, Checkpoint: cp,
		Range:   evidence.RangeProof{Begin: from, End: to, Size: n, Left: left, Right: right},
		Records: storedRecords{pool: s.pool, origin: origin}, Consistency: cons, Tool: opts.Tool,
	})
}

// consistencyProof returns the RFC 6962 consistency proof from the tree of
// size to cp's tree, each node computed from the leaf hashes held, and
// checks it against the roots at both sizes before it goes in a bundle.
func (s *Store) consistencyProof(ctx context.Context, origin string, size uint64, cp *audit.Checkpoint) (evidence.ConsistencyProof, error) {
	out := evidence.ConsistencyProof{From: size, To: cp.Size}
	if size == 0 || size >= cp.Size {
		return out, fmt.Errorf("prove from %d: want a size between 1 and %d: %w", size, cp.Size-1, audit.ErrRange)
	}
	nodes, err := proof.Consistency(size, cp.Size)
	if err != nil {
		return out, fmt.Errorf("prove from %d: %w", size, err)
	}
	hashes := make([][]byte, len(nodes.IDs))
	for i, id := range nodes.IDs {
		begin, end := id.Coverage()
		h, err := s.compactRange(ctx, origin, begin, end)
		if err != nil {
			return out, err
		}
		if len(h) != 1 {
			return out, fmt.Errorf("node %d/%d is not a perfect subtree: %w", id.Level, id.Index, audit.ErrCorrupt)
		}
		hashes[i] = h[0]
	}
	p, err := nodes.Rehash(hashes, rfc6962.DefaultHasher.HashChildren)
	if err != nil {
		return out, fmt.Errorf("prove from %d: %w", size, err)
	}
	old, err := s.compactRange(ctx, origin, 0, size)
	if err != nil {
		return out, err
	}
	r, err := rangeFactory.NewRange(0, size, hashBytes(old))
	if err != nil {
		return out, fmt.Errorf("prove from %d: %w", size, err)
	}
	root, err := r.GetRootHash(nil)
	if err != nil {
		return out, fmt.Errorf("prove from %d: %w", size, err)
	}
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, size, cp.Size, p, root, cp.Root); err != nil {
		return out, fmt.Errorf("prove from %d: the proof does not verify: %w: %w", size, audit.ErrCorrupt, err)
	}
	for _, h := range p {
		out.Hashes = append(out.Hashes, h)
	}
	return out, nil
}

func hashBytes(hs []evidence.Hash) [][]byte {
	out := make([][]byte, len(hs))
	for i, h := range hs {
		out[i] = h
	}
	return out
}

// compactRange returns the compact range hashes of leaves [begin, end) of
// origin's tree, from the leaf hashes PostgreSQL computes of the records
// it holds and those kept of dropped ones: 32 bytes a leaf cross the wire.
func (s *Store) compactRange(ctx context.Context, origin string, begin, end uint64) ([]evidence.Hash, error) {
	r := rangeFactory.NewEmptyRange(begin)
	if begin < end {
		rows, err := s.pool.Query(ctx, `SELECT seq, hash FROM leaf_hashes WHERE origin = $1 AND seq >= $2 AND seq < $3
			UNION ALL SELECT seq, sha256('\x00'::bytea || data) FROM records WHERE origin = $1 AND seq >= $2 AND seq < $3
			ORDER BY 1`, origin, int64(begin), int64(end))
		if err != nil {
			return nil, fmt.Errorf("leaf hashes: %w", err)
		}
		next := begin
		var seq int64
		var h []byte
		_, err = pgx.ForEachRow(rows, []any{&seq, &h}, func() error {
			if uint64(seq) != next {
				return fmt.Errorf("leaf %d of %s where %d belongs: %w", seq, origin, next, audit.ErrCorrupt)
			}
			next++
			return r.Append(append([]byte(nil), h...), nil)
		})
		if err != nil {
			return nil, fmt.Errorf("leaf hashes: %w", err)
		}
		if next != end {
			return nil, fmt.Errorf("leaf hashes of %s end at %d, want %d: %w", origin, next, end, audit.ErrCorrupt)
		}
	}
	out := make([]evidence.Hash, len(r.Hashes()))
	for i, h := range r.Hashes() {
		out[i] = h
	}
	return out, nil
}

// storedRecords reads a log's records from PostgreSQL for a bundle.
type storedRecords struct {
	pool   *pgxpool.Pool
	origin string
}

// EachRecord implements evidence.RecordSource.
func (r storedRecords) EachRecord(ctx context.Context, begin, end uint64, fn func(seq uint64, b []byte) error) error {
	rows, err := r.pool.Query(ctx, "SELECT seq, data FROM records WHERE origin = $1 AND seq >= $2 AND seq < $3 ORDER BY seq",
		r.origin, int64(begin), int64(end))
	if err != nil {
		return fmt.Errorf("records: %w", err)
	}
	next := begin
	var seq int64
	var data []byte
	_, err = pgx.ForEachRow(rows, []any{&seq, &data}, func() error {
		if uint64(seq) != next {
			return fmt.Errorf("record %d of %s is missing (dropped by retention since?): %w", next, r.origin, ErrDropped)
		}
		next++
		return fn(uint64(seq), data)
	})
	if err != nil {
		return err
	}
	if next != end {
		return fmt.Errorf("records of %s end at %d, want %d: %w", r.origin, next, end, ErrDropped)
	}
	return nil
}

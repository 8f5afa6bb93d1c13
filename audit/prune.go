// SPDX-License-Identifier: Apache-2.0

package audit

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// maxPruneRecords bounds one prune transaction, so that the indexer, which
// runs it, is never held up for long.
const maxPruneRecords = 8192

// PruneOptions say which records Prune may remove. A record is removed
// only if both bounds allow it, and only from the front of the log:
// pruning stops at the first record either bound keeps.
type PruneOptions struct {
	// Below is the first seq that must stay: the size of the newest
	// checkpoint the collector cosigned. Records at or beyond it are
	// never removed.
	Below uint64
	// Before is the retention cutoff (now minus audit.retention): only
	// records whose time is before it are removed.
	Before time.Time
}

// PruneState describes the front of a log that Prune removed.
type PruneState struct {
	// Below is the number of records removed: seqs [0, Below). Zero when
	// nothing was pruned.
	Below uint64 `json:"below"`
	// NewestTime is the time of the newest record removed.
	NewestTime time.Time `json:"newest_time,omitzero"`
}

// Err returns the error for a read of pruned records: it names the range
// and wraps ErrPruned.
func (p PruneState) Err() error {
	return fmt.Errorf("records [0, %d) (times up to %s) were removed from this host: %w",
		p.Below, p.NewestTime.UTC().Format(time.RFC3339), ErrPruned)
}

// pruneReq is one prune batch handed to the indexer.
type pruneReq struct {
	opts PruneOptions
	done chan pruneRes
}

type pruneRes struct {
	n   uint64
	err error
}

// Pruned returns what Prune removed so far (the zero PruneState if
// nothing).
func (l *Log) Pruned() PruneState {
	if p := l.pruned.Load(); p != nil {
		return *p
	}
	return PruneState{}
}

// Prune removes the stored bytes of records from the front of the log that
// opts allow, and returns how many it removed. It keeps each removed
// record's leaf hash, so the Merkle tree is unchanged: roots, checkpoints,
// consistency proofs and range proofs at every size still verify, and
// exports of later records prove their place in the tree. Reads of removed
// records (Read, Select, SelectRange, EachRecord, and so evidence exports)
// fail with ErrPruned, naming the range. The newest record is never
// removed, nor one bbolt does not hold yet (only in the journal).
//
// Prune is how audit.retention is enforced: the daemon calls it with the
// size the collector cosigned as Below, so nothing leaves the host before
// the collector holds it durably and has signed for it. It runs in
// transactions of at most maxPruneRecords records on the indexer
// goroutine, the only one that writes to bbolt, so appends go on in
// between. The file does not shrink (bbolt reuses the freed pages for new
// records): pruning caps the log's disk use instead of growing it forever.
func (l *Log) Prune(ctx context.Context, opts PruneOptions) (uint64, error) {
	if l.readOnly {
		return 0, fmt.Errorf("prune: %w", ErrReadOnly)
	}
	l.pruneMu.Lock()
	defer l.pruneMu.Unlock()
	var total uint64
	for {
		req := &pruneReq{opts: opts, done: make(chan pruneRes, 1)}
		l.idxMu.Lock()
		if l.idxStop || l.idxExited {
			l.idxMu.Unlock()
			return total, fmt.Errorf("prune: %w", ErrClosed)
		}
		// A batch still pending here was given up by a cancelled call;
		// this one replaces it.
		l.idxPrune = req
		l.idxMu.Unlock()
		l.wakeIndexer()
		var res pruneRes
		select {
		case res = <-req.done:
		case <-l.idxDone:
			return total, fmt.Errorf("prune: %w", ErrClosed)
		case <-ctx.Done():
			// The batch may still run; it is complete or not at all.
			return total, ctx.Err()
		}
		total += res.n
		if res.err != nil {
			return total, fmt.Errorf("prune: %w", res.err)
		}
		if res.n < maxPruneRecords {
			return total, nil
		}
	}
}

// takePrune returns a pending prune batch, if any; idxMu is held.
func (l *Log) takePrune() *pruneReq {
	p := l.idxPrune
	l.idxPrune = nil
	return p
}

// prune runs one prune batch in a bbolt transaction; only the indexer
// calls it.
func (l *Log) prune(opts PruneOptions) pruneRes {
	stored := l.indexed.Load()
	if stored == 0 {
		return pruneRes{}
	}
	// The last stored record stays: checkTail and the tree's check of its
	// last node read it.
	limit := min(opts.Below, stored-1)
	if l.db == nil {
		if err := l.reopen(); err != nil {
			return pruneRes{err: err}
		}
	}
	var n uint64
	var st PruneState
	err := l.db.Update(func(tx *bolt.Tx) error {
		ls, err := loadState(tx)
		if err != nil {
			return err
		}
		if !currentFormat(ls.format) {
			return fmt.Errorf("format %d cannot be pruned: %w", ls.format, ErrFormat)
		}
		from, newest := ls.pruned, ls.prunedTime
		end := min(limit, ls.size-1, from+maxPruneRecords)
		if from >= end {
			return nil
		}
		leaves, err := tx.CreateBucketIfNotExists(bucketLeaves)
		if err != nil {
			return fmt.Errorf("create bucket %s: %w", bucketLeaves, err)
		}
		leaves.FillPercent = 1.0
		records := tx.Bucket(bucketRecords)
		seq := from
		c := records.Cursor()
		for k, v := c.Seek(u64(from)); k != nil && seq < end; k, v = c.Next() {
			if len(k) != 8 || binary.BigEndian.Uint64(k) != seq {
				return fmt.Errorf("record %d missing: %w", seq, ErrCorrupt)
			}
			h, err := headOf(v)
			if err != nil {
				return fmt.Errorf("record %d: %w", seq, err)
			}
			if !h.time.Before(opts.Before) {
				break
			}
			if err := leaves.Put(u64(seq), LeafHash(v)); err != nil {
				return fmt.Errorf("put leaf %d: %w", seq, err)
			}
			if h.time.After(newest) {
				newest = h.time
			}
			seq++
		}
		if seq == from {
			return nil
		}
		// Deleted after the walk: deleting under a cursor can skip keys.
		for s := from; s < seq; s++ {
			if err := records.Delete(u64(s)); err != nil {
				return fmt.Errorf("delete record %d: %w", s, err)
			}
		}
		meta := tx.Bucket(bucketMeta)
		for _, kv := range []struct{ k, v []byte }{
			{metaPruned, u64(seq)},
			{metaPrunedTime, []byte(newest.UTC().Format(time.RFC3339Nano))},
			{metaFormat, u64(formatPruned)},
		} {
			if err := meta.Put(kv.k, kv.v); err != nil {
				return fmt.Errorf("put meta %s: %w", kv.k, err)
			}
		}
		n, st = seq-from, PruneState{Below: seq, NewestTime: newest}
		return nil
	})
	if err != nil {
		// As after a failed index transaction: bbolt's in-memory state
		// may not match the file (see index).
		if rerr := l.reopen(); rerr != nil {
			l.logger.Debug("audit log reopen failed", "path", l.path, "error", rerr)
		}
		return pruneRes{err: err}
	}
	if n > 0 {
		l.pruned.Store(&st)
	}
	return pruneRes{n: n}
}

// prunedIn returns P of the log as of tx: records [0, P) were pruned.
func prunedIn(tx *bolt.Tx) uint64 {
	if v := tx.Bucket(bucketMeta).Get(metaPruned); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

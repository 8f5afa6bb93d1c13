// SPDX-License-Identifier: Apache-2.0

package audit

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Entry is one stored record: its seq and its exact stored bytes (the
// Merkle leaf). The bytes are a copy owned by the caller.
type Entry struct {
	// Seq is the record's position in the log (its key).
	Seq uint64
	// Bytes are the record exactly as stored.
	Bytes []byte
}

// Record decodes the entry's bytes and checks that the record's seq is the
// entry's seq.
func (e Entry) Record() (*Record, error) {
	r, err := Decode(e.Bytes)
	if err != nil {
		return nil, fmt.Errorf("entry %d: %w", e.Seq, err)
	}
	if r.Seq != e.Seq {
		return nil, fmt.Errorf("entry %d holds record with seq %d: %w", e.Seq, r.Seq, ErrCorrupt)
	}
	return r, nil
}

// view runs fn in a read transaction on the current file.
func (l *Log) view(fn func(tx *bolt.Tx) error) error {
	l.dbMu.RLock()
	defer l.dbMu.RUnlock()
	if l.dbClosed {
		return ErrClosed
	}
	if l.db == nil {
		return fmt.Errorf("log file not open after a failed commit: %w", ErrUnwritable)
	}
	return l.db.View(fn)
}

// Read returns up to max records with seq >= from, in seq order, with their
// exact stored bytes. It returns no entries if from >= Size(), and an error
// wrapping ErrPruned if from is below Pruned().Below. Each call is
// one short read transaction; read large ranges in chunks. Records that
// are durable in the journal but not yet in bbolt are read from memory.
func (l *Log) Read(from uint64, max int) ([]Entry, error) {
	if max <= 0 {
		return nil, nil
	}
	size, stored, pending := l.overlay()
	if from >= size {
		return nil, nil
	}
	n := min(uint64(max), size-from)
	entries := make([]Entry, 0, n)
	if p := l.Pruned(); from < p.Below {
		return nil, fmt.Errorf("read audit log from %d: %w", from, p.Err())
	}
	if from < stored {
		err := l.view(func(tx *bolt.Tx) error {
			// Pruned records may have gone since the check above.
			if p := prunedIn(tx); from < p {
				return l.Pruned().Err()
			}
			c := tx.Bucket(bucketRecords).Cursor()
			for k, v := c.Seek(u64(from)); k != nil && len(entries) < int(n); k, v = c.Next() {
				e, err := entry(k, v)
				if err != nil {
					return err
				}
				if e.Seq >= stored {
					break
				}
				if e.Seq != from+uint64(len(entries)) {
					return fmt.Errorf("record %d where %d belongs: %w", e.Seq, from+uint64(len(entries)), ErrCorrupt)
				}
				entries = append(entries, e)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("read audit log from %d: %w", from, err)
		}
	}
	for _, r := range pending {
		next := from + uint64(len(entries))
		if len(entries) == int(n) {
			break
		}
		if r.seq < next {
			continue
		}
		if r.seq != next {
			return nil, fmt.Errorf("read audit log from %d: journaled record %d where %d belongs: %w", from, r.seq, next, ErrCorrupt)
		}
		entries = append(entries, Entry{Seq: r.seq, Bytes: append([]byte(nil), r.data...)})
	}
	if len(entries) != int(n) {
		return nil, fmt.Errorf("read audit log from %d: records end at %d, size is %d: %w", from, from+uint64(len(entries)), size, ErrCorrupt)
	}
	return entries, nil
}

// Tail returns the last n records (fewer if the log is shorter, or if
// older ones were pruned), in seq order, with their exact stored bytes.
func (l *Log) Tail(n int) ([]Entry, error) {
	if n <= 0 {
		return nil, nil
	}
	for {
		size := l.Size()
		p := l.Pruned().Below
		from := p
		if size > uint64(n) {
			from = max(from, size-uint64(n))
		}
		entries, err := l.Read(from, n)
		if errors.Is(err, ErrPruned) && l.Pruned().Below > p {
			continue // a prune overtook the read: the tail starts later
		}
		if err != nil {
			return nil, fmt.Errorf("tail audit log: %w", err)
		}
		return entries, nil
	}
}

// entry copies a key/value pair out of a transaction.
func entry(k, v []byte) (Entry, error) {
	if len(k) != 8 {
		return Entry{}, fmt.Errorf("record key of %d bytes: %w", len(k), ErrCorrupt)
	}
	return Entry{Seq: binary.BigEndian.Uint64(k), Bytes: append([]byte(nil), v...)}, nil
}

// Wait returns nil as soon as Size() > after, ctx.Err() if ctx ends first,
// and ErrClosed if the Log is closed first. It is what `audit tail -f`
// blocks on. On a read-only Log the size never changes.
func (l *Log) Wait(ctx context.Context, after uint64) error {
	for {
		l.changedMu.Lock()
		changed := l.changed
		l.changedMu.Unlock()
		if l.size.Load() > after {
			return nil
		}
		select {
		case <-changed:
		case <-l.closing:
			if l.size.Load() > after {
				return nil
			}
			return ErrClosed
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

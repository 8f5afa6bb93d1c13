// SPDX-License-Identifier: Apache-2.0

package audit

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// checkpointLoop asks the writer for a checkpoint when records stayed
// unsigned for about the interval (no further append triggered one). It
// stops when the Log closes; the writer signs a last checkpoint then.
func (l *Log) checkpointLoop(interval time.Duration) {
	tick := time.NewTicker(max(interval/4, 10*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-l.closing:
			return
		case <-tick.C:
		}
		last := l.tree.last.Load()
		if last != nil && last.Size >= l.Size() || l.Size() == 0 {
			continue
		}
		if since, ok := l.tree.sinceSigned(); ok && since < interval {
			continue
		}
		l.mu.Lock()
		l.ckptWanted = true
		l.mu.Unlock()
		l.signal()
	}
}

// Checkpoint returns the newest signed checkpoint after making sure every
// record durable when it was called is covered: a read-write Log with a key
// signs the unsigned records now, whatever the interval. A read-only Log, or
// one without a key, returns the newest stored checkpoint; it fails with
// ErrNoCheckpoint if there is none.
func (l *Log) Checkpoint(ctx context.Context) (*Checkpoint, error) {
	if l.readOnly || l.tree == nil || l.tree.signer == nil {
		return l.LastCheckpoint()
	}
	done := make(chan error, 1)
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, fmt.Errorf("checkpoint: %w", ErrClosed)
	}
	l.ckptWanted = true
	l.ckptWaiters = append(l.ckptWaiters, done)
	l.mu.Unlock()
	l.signal()
	select {
	case err := <-done:
		if err != nil {
			return nil, fmt.Errorf("checkpoint: %w", err)
		}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return l.LastCheckpoint()
}

// LastCheckpoint returns the newest stored checkpoint, or ErrNoCheckpoint.
func (l *Log) LastCheckpoint() (*Checkpoint, error) {
	if l.tree != nil {
		if cp := l.tree.last.Load(); cp != nil {
			return cp, nil
		}
		return nil, ErrNoCheckpoint
	}
	var cp *Checkpoint
	err := l.view(func(tx *bolt.Tx) error {
		var err error
		cp, err = lastCheckpoint(tx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("last checkpoint: %w", err)
	}
	if cp == nil {
		return nil, ErrNoCheckpoint
	}
	return cp, nil
}

// Checkpoints returns the stored checkpoints with from <= size <= to, in
// size order.
func (l *Log) Checkpoints(from, to uint64) ([]*Checkpoint, error) {
	var cps []*Checkpoint
	err := l.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketCheckpoints).Cursor()
		for k, v := c.Seek(u64(from)); k != nil; k, v = c.Next() {
			if len(k) == 8 && binary.BigEndian.Uint64(k) > to {
				break
			}
			cp, err := storedCheckpoint(k, v)
			if err != nil {
				return err
			}
			cps = append(cps, cp)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read checkpoints: %w", err)
	}
	return cps, nil
}

// VerifierKey returns the verifier key text of the key that signs the log's
// checkpoints, "" if no key signed any yet.
func (l *Log) VerifierKey() (string, error) {
	var k string
	err := l.view(func(tx *bolt.Tx) error {
		k = string(tx.Bucket(bucketMeta).Get(metaKey))
		return nil
	})
	return k, err
}

// Root returns the RFC 6962 root of the tree of the first size records.
func (l *Log) Root(size uint64) ([]byte, error) {
	var root []byte
	err := l.awaitStored(size)
	if err == nil {
		err = l.view(func(tx *bolt.Tx) error {
			var err error
			root, err = rootAt(tx, size)
			return err
		})
	}
	if err != nil {
		return nil, fmt.Errorf("root at %d: %w", size, err)
	}
	return root, nil
}

// InclusionProof returns the RFC 6962 inclusion proof of the record with
// seq index in the tree of size records.
func (l *Log) InclusionProof(index, size uint64) ([][]byte, error) {
	var p [][]byte
	err := l.awaitStored(size)
	if err == nil {
		err = l.view(func(tx *bolt.Tx) error {
			var err error
			p, err = inclusionProof(tx, index, size)
			return err
		})
	}
	if err != nil {
		return nil, fmt.Errorf("inclusion proof of %d in %d: %w", index, size, err)
	}
	return p, nil
}

// ConsistencyProof returns the RFC 6962 consistency proof from the tree of
// size1 records to the tree of size2 records (empty if size1 is 0 or
// size1 == size2).
func (l *Log) ConsistencyProof(size1, size2 uint64) ([][]byte, error) {
	var p [][]byte
	err := l.awaitStored(max(size1, size2))
	if err == nil {
		err = l.view(func(tx *bolt.Tx) error {
			var err error
			p, err = consistencyProof(tx, size1, size2)
			return err
		})
	}
	if err != nil {
		return nil, fmt.Errorf("consistency proof from %d to %d: %w", size1, size2, err)
	}
	return p, nil
}

// RangeProof returns what proves that the records [begin, end) are leaves
// begin..end-1 of the tree of size records: the compact range hashes of
// [0, begin) (left) and of [end, size) (right), each left to right. Merging
// left, the leaf hashes of the records and right gives the tree's root.
func (l *Log) RangeProof(begin, end, size uint64) (left, right [][]byte, err error) {
	if err := l.awaitStored(size); err != nil {
		return nil, nil, fmt.Errorf("range proof: %w", err)
	}
	err = l.view(func(tx *bolt.Tx) error {
		if begin > end || end > size {
			return fmt.Errorf("range [%d, %d) in size %d: %w", begin, end, size, ErrRange)
		}
		if left, err = rangeHashes(tx, 0, begin); err != nil {
			return err
		}
		right, err = rangeHashes(tx, end, size)
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("range proof: %w", err)
	}
	return left, right, nil
}

// CosignedSize returns the size of the newest of the cosigned checkpoint
// notes that this log's key signed for this log, within its size, after
// checking that its root is the log's root at that size (ErrCorrupt if
// not: the log was rewritten after the witness saw it); ErrNoCheckpoint if
// none is. Retention prunes only below it, so a note of another log (a
// state directory mixed from two installations) never removes a record.
func (l *Log) CosignedSize(notes [][]byte) (uint64, error) {
	cp, err := l.CosignedCheckpoint(notes)
	if err != nil {
		return 0, err
	}
	return cp.Size, nil
}

// CosignedCheckpoint returns the newest of the cosigned checkpoint notes
// (audit/ship's cosigned.jsonl, oldest first) that this log's key signed
// for this log, within its size. A cosigned checkpoint whose root is not
// the log's at its size means the log was rewritten after a witness saw
// it: that is an error (ErrCorrupt), never skipped; ErrNoCheckpoint if no
// note is cosigned for this log. A witnessed evidence export ends at it.
func (l *Log) CosignedCheckpoint(notes [][]byte) (*Checkpoint, error) {
	vkey, err := l.VerifierKey()
	if err != nil {
		return nil, err
	}
	v, err := ParseVerifierKey(vkey)
	if err != nil {
		return nil, fmt.Errorf("the log's key: %w", err)
	}
	for i := len(notes) - 1; i >= 0; i-- {
		cp, err := OpenCheckpoint(notes[i], v)
		if err != nil || cp.Origin != l.ID() || cp.Size == 0 || cp.Size > l.Size() {
			continue
		}
		root, err := l.Root(cp.Size)
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(root, cp.Root) {
			return nil, fmt.Errorf("the cosigned checkpoint of size %d signs root %x, the log has %x: %w", cp.Size, cp.Root, root, ErrCorrupt)
		}
		return cp, nil
	}
	return nil, fmt.Errorf("none of the %d checkpoints kept is cosigned for this log (is audit.ship set, and has the collector cosigned yet?): %w",
		len(notes), ErrNoCheckpoint)
}

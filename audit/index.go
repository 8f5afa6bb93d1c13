// SPDX-License-Identifier: Apache-2.0

package audit

import (
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// maxIndexRecords bounds one indexer transaction.
const maxIndexRecords = 8192

// maxUnindexed bounds the bytes of acknowledged records bbolt does not
// hold yet: past it the writer waits for the indexer. It keeps what a full
// disk leaves to store when space returns, and the memory of the queue,
// small; the indexer keeps far below it while bbolt works.
const maxUnindexed = 512 << 10

// indexInterval is the shortest time between two indexer transactions
// while nobody waits for one. Records are durable in the journal and
// readable from memory before bbolt has them, so storing them later, in
// larger transactions, costs nothing but saves CPU and, above all, the two
// flushes of each bbolt commit, which compete with the journal's flush for
// the disk. At 20 ms the indexer took 8% of the daemon's CPU under pgbench
// (each transaction writes pages and flushes twice, whatever it holds);
// under load the indexer runs sooner anyway, once half of maxUnindexed is
// queued.
const indexInterval = 100 * time.Millisecond

// indexRetry is how long a failed indexer waits before it tries again by
// itself; the writer asks for an attempt sooner when records arrive.
const indexRetry = time.Second

// toIndexer queues journaled records (in seq order, after those queued
// before) for the indexer, and a checkpoint request and its waiters, which
// the indexer answers once everything queued so far is stored.
//
// It wakes the indexer only when that changes what the indexer does: a
// wake-up per commit cost a thread wake-up per statement, and the indexer
// went back to sleep until indexInterval passed. An idle indexer is woken
// for its first records (in batch mode by the flush that makes them
// storable), a pacing one when it should not wait any more.
func (l *Log) toIndexer(recs []jrec, force bool, waiters []chan error) {
	l.idxMu.Lock()
	idle := len(l.unindexed) == 0
	before := l.unindexedBytes
	l.unindexed = append(l.unindexed, recs...)
	for _, r := range recs {
		l.unindexedBytes += len(r.data)
	}
	l.idxForce = l.idxForce || force
	l.idxWaiters = append(l.idxWaiters, waiters...)
	wake := force || len(waiters) > 0 ||
		before < maxUnindexed/2 && l.unindexedBytes >= maxUnindexed/2 ||
		idle && len(recs) > 0 && l.flushEvery == 0
	l.idxMu.Unlock()
	if wake {
		l.wakeIndexer()
	}
}

// flushedLocked is how many of the unindexed records are flushed to disk,
// the only ones the indexer may store; idxMu is held.
func (l *Log) flushedLocked() int {
	if len(l.unindexed) == 0 {
		return 0
	}
	first, synced := l.unindexed[0].seq, l.synced.Load()
	if synced <= first {
		return 0
	}
	return int(min(uint64(len(l.unindexed)), synced-first))
}

func (l *Log) wakeIndexer() {
	select {
	case l.idxWake <- struct{}{}:
	default:
	}
}

// indexLoop is the indexer goroutine: it stores journaled records in bbolt,
// with the Merkle tree and checkpoints, in transactions as large as what
// queued meanwhile. It is the only goroutine that writes to bbolt.
func (l *Log) indexLoop() {
	defer close(l.idxDone)
	var retry, pace *time.Timer
	var last time.Time
	for {
		l.idxMu.Lock()
		if p := l.takePrune(); p != nil {
			l.idxMu.Unlock()
			p.done <- l.prune(p.opts)
			continue
		}
		avail := l.flushedLocked()
		work := avail > 0 || l.idxForce || len(l.idxWaiters) > 0
		stop := l.idxStop
		if !work {
			l.idxMu.Unlock()
			if stop {
				return
			}
			<-l.idxWake
			continue
		}
		if !stop && !l.idxForce && len(l.idxWaiters) == 0 && !l.idxHurry && l.unindexedBytes < maxUnindexed/2 {
			if wait := indexInterval - time.Since(last); wait > 0 {
				l.idxMu.Unlock()
				if pace == nil {
					pace = time.NewTimer(wait)
				} else {
					pace.Reset(wait)
				}
				select {
				case <-l.idxWake:
					pace.Stop()
				case <-pace.C:
				}
				continue
			}
		}
		l.idxHurry = false
		last = time.Now()
		n := min(avail, maxIndexRecords)
		recs := l.unindexed[:n:n]
		var force bool
		var waiters []chan error
		if n == len(l.unindexed) {
			force, waiters = l.idxForce, l.idxWaiters
			l.idxForce, l.idxWaiters = false, nil
		}
		l.idxMu.Unlock()

		size, err := l.index(recs, force)

		l.idxMu.Lock()
		if err == nil {
			for _, r := range recs {
				l.unindexedBytes -= len(r.data)
			}
			if n == len(l.unindexed) {
				l.unindexed = nil
			} else {
				l.unindexed = append([]jrec(nil), l.unindexed[n:]...)
			}
			l.indexed.Store(size)
			l.idxErr = nil
			l.setHealth(healthStore, nil)
		} else {
			l.idxErr = err
			// Before the broadcast: whoever saw the attempt fail sees
			// the log unhealthy.
			l.setHealth(healthStore, fmt.Errorf("store %d audit records: %w: %w", len(recs), ErrUnwritable, err))
		}
		l.idxRuns++
		l.idxCond.Broadcast()
		l.idxMu.Unlock()
		answer(waiters, err)
		if err != nil {
			if stop {
				return
			}
			if retry == nil {
				retry = time.NewTimer(indexRetry)
			} else {
				retry.Reset(indexRetry)
			}
			select {
			case <-l.idxWake:
			case <-retry.C:
			}
			continue
		}
	}
}

// index stores records in one bbolt transaction (none if there are no
// records and nothing to sign) and returns the stored size.
func (l *Log) index(recs []jrec, force bool) (uint64, error) {
	if len(recs) == 0 && (l.hook == nil || !l.hook.sealDue(l.indexed.Load())) {
		return l.indexed.Load(), nil
	}
	if l.db == nil {
		if err := l.reopen(); err != nil {
			return 0, err
		}
	}
	var size uint64
	err := l.db.Update(func(tx *bolt.Tx) error {
		var err error
		size, err = l.put(tx, recs, force)
		return err
	})
	if l.hook != nil {
		l.hook.done(err == nil)
	}
	if err != nil {
		// What bbolt v1.5.0 leaves behind after a failed commit (tx.go,
		// db.go): a failed spill, freelist allocation, file grow, page
		// write or fsync rolls the transaction back and reloads the
		// freelist from the last committed meta page, and the new pages
		// went only to free or never-used page ids, so the committed tree
		// is intact. But a failed mmap remap during allocation leaves the
		// DB unmapped (every later transaction fails with
		// ErrInvalidMapping and the freelist cannot be reloaded), and when
		// only the final fdatasync of the meta page fails, the new meta
		// page is already in the page cache (which bbolt reads through
		// its shared mmap), so later transactions build on the commit that
		// reported failure. Reopening rebuilds all in-memory state from
		// the file in every case, and openChecked continues after
		// whatever the file holds. The records stay in the journal
		// either way.
		if err := l.reopen(); err != nil {
			l.logger.Debug("audit log reopen failed", "path", l.path, "error", err)
		}
		return 0, err
	}
	return size, nil
}

// indexHealthy returns nil if the indexer's last attempt succeeded.
// Otherwise it asks for another attempt now and returns its error, if it
// fails again.
func (l *Log) indexHealthy() error {
	l.idxMu.Lock()
	defer l.idxMu.Unlock()
	if l.idxErr == nil {
		return nil
	}
	return l.retryIndexLocked()
}

// retryIndexLocked wakes the indexer and waits for its next attempt;
// idxMu is held.
func (l *Log) retryIndexLocked() error {
	runs := l.idxRuns
	l.idxHurry = true
	l.wakeIndexer()
	for l.idxRuns == runs && !l.idxExited {
		l.idxCond.Wait()
	}
	if l.idxExited {
		return fmt.Errorf("indexer stopped: %w", ErrClosed)
	}
	return l.idxErr
}

// waitBacklog waits until the records bbolt does not hold yet are within
// maxUnindexed. It returns the indexer's error if an attempt fails.
func (l *Log) waitBacklog() error {
	return l.waitIndexer(func() bool { return l.unindexedBytes <= maxUnindexed })
}

// drainIndex waits until the indexer stored every journaled record, so the
// journal can start a new pass. It returns the indexer's error if an
// attempt fails.
func (l *Log) drainIndex() error {
	return l.waitIndexer(func() bool { return len(l.unindexed) == 0 })
}

// waitIndexer hurries the indexer until done (called with idxMu held)
// holds, or one of its attempts fails.
func (l *Log) waitIndexer(done func() bool) error {
	l.idxMu.Lock()
	defer l.idxMu.Unlock()
	for !done() {
		if l.idxErr != nil {
			if err := l.retryIndexLocked(); err != nil {
				return err
			}
			continue
		}
		if l.idxExited {
			return fmt.Errorf("indexer stopped: %w", ErrClosed)
		}
		l.hurryLocked()
		l.idxCond.Wait()
	}
	return nil
}

// hurryLocked asks the indexer to store what it has now, not after
// indexInterval; idxMu is held.
func (l *Log) hurryLocked() {
	l.idxHurry = true
	l.wakeIndexer()
	if l.flushEvery > 0 {
		// It stores only flushed records: have the writer flush now.
		l.syncWanted.Store(true)
		l.signal()
	}
}

// stopIndexer lets the indexer finish what it has and waits for it.
func (l *Log) stopIndexer() {
	l.idxMu.Lock()
	l.idxStop = true
	l.idxMu.Unlock()
	l.wakeIndexer()
	<-l.idxDone
	l.idxMu.Lock()
	l.idxExited = true
	l.idxCond.Broadcast()
	l.idxMu.Unlock()
}

// Unstored returns how many durable records are only in the journal: the
// indexer has not stored them in the log file yet. It stays near zero
// while the file takes records, and grows (up to about 512 KiB of records)
// while it cannot, for example on a full disk; they are stored when it
// can again, or at the next Open.
func (l *Log) Unstored() int {
	l.idxMu.Lock()
	defer l.idxMu.Unlock()
	return len(l.unindexed)
}

// overlay returns, consistently, the size, how many records bbolt holds,
// and the acknowledged records it does not hold yet (read-only: the
// elements are never changed).
func (l *Log) overlay() (size, stored uint64, recs []jrec) {
	l.idxMu.Lock()
	defer l.idxMu.Unlock()
	return l.size.Load(), l.indexed.Load(), l.unindexed
}

// awaitStored waits until bbolt holds the first size records, so that the
// tree can be read at any acknowledged size. It returns at once for sizes
// beyond the log (the tree read reports them) and on a read-only Log,
// whose journaled records are not in the tree until a read-write open
// stores them.
func (l *Log) awaitStored(size uint64) error {
	if l.readOnly || size > l.Size() {
		return nil
	}
	if err := l.waitIndexer(func() bool { return l.indexed.Load() >= size }); err != nil {
		return fmt.Errorf("records up to %d not stored: %w: %w", size, ErrUnwritable, err)
	}
	return nil
}

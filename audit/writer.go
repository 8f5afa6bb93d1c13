// SPDX-License-Identifier: Apache-2.0

package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/transparency-dev/merkle/rfc6962"
	bolt "go.etcd.io/bbolt"
)

// Group commit limits: the writer takes at most this many queued records
// (and at least one) into one transaction.
const (
	maxBatchRecords = 1000
	maxBatchBytes   = 1 << 20
)

// maxGather bounds how long the writer waits for the records it expects
// before it commits a smaller batch (see Log.next); Log.gather holds it.
const maxGather = time.Millisecond

// request is one queued Append.
type request struct {
	head, tail []byte      // encodeSplit of the record
	done       chan result // buffered, receives exactly one result
	// producer marks the first record of an Append or AppendAll call:
	// one producer that waits for its records and is expected back
	// with its next ones (a session's next statement), however many
	// records the call queued. The writer's gathering counts these (see
	// Log.next). AppendEach's records (results, written in bulk by a
	// background flusher) carry none: nothing waits on them to send more.
	producer bool

	// The producer prepares the stored bytes, key and leaf hash for seq,
	// the seq the record gets if every batch before it commits, after
	// queueing it and in parallel with the writer, then sets ready. The
	// writer uses them only if ready is set and seq is the record's
	// actual seq; otherwise it builds them itself. So they save the
	// single writer work without deciding anything.
	seq   uint64
	key   [8]byte
	data  []byte
	leaf  [HashSize]byte
	ready atomic.Bool
}

// recordBytes returns the stored bytes of a record: head, seq, tail.
func recordBytes(head []byte, seq uint64, tail []byte) []byte {
	data := make([]byte, 0, len(head)+20+len(tail))
	data = append(data, head...)
	data = strconv.AppendUint(data, seq, 10)
	return append(data, tail...)
}

// prepare builds what the writer needs for req at its predicted seq (see
// request); called by the producer after queueing req.
func (l *Log) prepare(req *request) {
	binary.BigEndian.PutUint64(req.key[:], req.seq)
	if !l.hashLeaves {
		req.data = recordBytes(req.head, req.seq, req.tail)
		req.ready.Store(true)
		return
	}
	// The leaf hash is H(0x00 ‖ data): build the bytes after a 0x00 in
	// one buffer and hash it whole, without a hasher to allocate.
	b := make([]byte, 1, 1+len(req.head)+20+len(req.tail))
	b[0] = rfc6962.RFC6962LeafHashPrefix
	b = append(b, req.head...)
	b = strconv.AppendUint(b, req.seq, 10)
	b = append(b, req.tail...)
	req.data, req.leaf = b[1:], sha256.Sum256(b)
	req.ready.Store(true)
}

// result answers a request.
type result struct {
	seq uint64
	err error
}

// A txHook extends the append transaction. The writer calls it inside the
// same bbolt write transaction that stores a batch of records, so that what
// it writes (Merkle tree nodes, tree state, checkpoints) commits or rolls
// back together with the records. An error from a hook rolls the
// transaction back and fails the batch with ErrUnwritable.
type txHook interface {
	// open is called after the file was opened or reopened read-write,
	// before the writer stores anything in it. It may run its own
	// transactions, to bring what it derives from the records up to date
	// (for example build the tree of a log written without one) and to
	// rebuild in-memory state from committed data.
	open(db *bolt.DB) error
	// leaf is called for every record of a batch, in seq order, after the
	// record was put. data is the exact stored bytes; hash is their RFC
	// 6962 leaf hash when the producer computed it (Log.hashLeaves), nil
	// otherwise.
	leaf(tx *bolt.Tx, seq uint64, data []byte, hash *[HashSize]byte) error
	// seal is called once per batch after the last leaf, with the new log
	// size. force asks for a checkpoint of any unsigned records now,
	// whatever the checkpoint interval.
	seal(tx *bolt.Tx, size uint64, force bool) error
	// sealDue reports whether a batch without records and with force set
	// would write anything at this size (there are unsigned records). The
	// writer skips the transaction otherwise.
	sealDue(size uint64) bool
	// done is called after the transaction ended; committed reports
	// whether it is durable. Hooks that stage in-memory state swap it in
	// on true and drop it on false.
	done(committed bool)
}

// batch is what the writer commits in one transaction.
type batch struct {
	reqs []*request
	// producers is how many of reqs are marked producer.
	producers int
	// force asks the hook to sign a checkpoint of any unsigned records.
	force bool
	// waiters are Checkpoint calls, answered once the batch committed.
	waiters []chan error
}

// run is the writer goroutine: it owns the journal (in batch mode it
// shares it, see lead).
func (l *Log) run() {
	defer close(l.writerDone)
	if l.flushEvery > 0 {
		l.runBatch()
		return
	}
	for {
		b := l.next()
		if b == nil {
			l.finish()
			return
		}
		start := time.Now()
		l.commit(b)
		l.lastCommit = time.Since(start)
		l.took(b)
	}
}

// finish ends the writer once the Log is closed and its queue drained:
// it has the indexer store everything and sign what is still unsigned, so
// that a clean stop leaves every record in bbolt under a checkpoint.
func (l *Log) finish() {
	if err := l.flush(); err != nil {
		l.logger.Error("audit journal flush at close failed; the records are stored at the next open", "path", l.jrnl.path, "error", err)
	}
	done := make(chan error, 1)
	l.toIndexer(nil, true, []chan error{done})
	if err := <-done; err != nil {
		l.logger.Error("audit records left in the journal at close; they are stored at the next open",
			"path", l.path, "records", l.Unstored(), "error", err)
	}
	l.stopIndexer()
	if err := l.jrnl.close(); err != nil {
		l.logger.Warn("audit journal close failed", "path", l.jrnl.path, "error", err)
	}
}

// runBatch is the writer goroutine in batch mode. Appending goroutines
// write the journal themselves when nobody else does (lead); the writer
// writes what they leave queued, flushes when a flush is due and ends
// the log at Close.
func (l *Log) runBatch() {
	var timer *time.Timer
	for {
		l.wmu.Lock()
		l.drain(-1)
		wait := time.Duration(-1)
		if l.unsynced > 0 {
			wait = max(l.flushEvery-time.Since(l.unsyncedSince), 0)
		}
		l.wmu.Unlock()
		l.mu.Lock()
		done := l.closed && len(l.queue) == 0 && !l.ckptWanted
		l.mu.Unlock()
		if done {
			l.wmu.Lock()
			l.finish()
			l.wdone = true
			l.wmu.Unlock()
			return
		}
		if wait < 0 {
			<-l.wake
			continue
		}
		l.sleep(&timer, wait, nil)
	}
}

// sleep waits until wait passed (on *timer, made on first use and reused
// after), the writer is woken, or closing is closed (a nil closing is not
// watched).
func (l *Log) sleep(timer **time.Timer, wait time.Duration, closing <-chan struct{}) {
	if *timer == nil {
		*timer = time.NewTimer(wait)
	} else {
		(*timer).Reset(wait)
	}
	select {
	case <-l.wake:
	case <-(*timer).C:
	case <-closing:
	}
}

// lead writes the queue to the journal on the appending goroutine when
// no other goroutine writes it (batch mode): an append then costs no
// wake-up of the writer and no wake-up back. Otherwise the writer is
// woken, so that what is queued after the current writer's last batch
// does not wait.
func (l *Log) lead() {
	if !l.wmu.TryLock() {
		l.signal()
		return
	}
	// A few batches at most (its own is the first): an appender that
	// found the journal free does not keep writing for others under
	// sustained load; the writer takes over.
	empty := l.drain(maxLeadBatches)
	l.wmu.Unlock()
	if !empty {
		l.signal()
	}
}

// maxLeadBatches bounds the batches an appending goroutine writes in lead.
const maxLeadBatches = 4

// drain writes batch after batch of what is queued, at most max batches
// (max < 0: until the queue is empty), flushing whenever a flush is due
// (batch mode); wmu is held. It reports whether the queue is empty.
func (l *Log) drain(max int) bool {
	for ; max != 0 && !l.wdone; max-- {
		if l.flushDue() {
			if err := l.flush(); err != nil {
				l.logger.Debug("audit journal flush failed", "path", l.jrnl.path, "error", err)
			}
		}
		b := l.take()
		if b == nil {
			return true
		}
		l.commit(b)
	}
	return l.wdone
}

// take takes a batch of queued requests without waiting, or returns nil
// when nothing is queued and no checkpoint was asked for.
func (l *Log) take() *batch {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.queue) == 0 && !l.ckptWanted {
		return nil
	}
	return l.takeLocked()
}

// takeLocked takes a batch of queued requests (and the checkpoint asked
// for, if any); mu is held.
func (l *Log) takeLocked() *batch {
	n, bytes, producers := 0, 0, 0
	for n < len(l.queue) && n < maxBatchRecords {
		bytes += len(l.queue[n].head) + len(l.queue[n].tail)
		if n > 0 && bytes > maxBatchBytes {
			break
		}
		if l.queue[n].producer {
			producers++
		}
		n++
	}
	l.producers -= producers
	b := &batch{reqs: l.queue[:n:n], producers: producers, force: l.ckptWanted, waiters: l.ckptWaiters}
	if n == len(l.queue) {
		l.queue = nil
	} else {
		l.queue = append([]*request(nil), l.queue[n:]...)
	}
	l.ckptWanted, l.ckptWaiters = false, nil
	return b
}

// flushDue reports whether the writer should flush the journal now (batch
// mode): written records waited flushEvery (since the last failed flush,
// if one failed), or a reader waits for them to be stored. Only the
// writer calls it.
func (l *Log) flushDue() bool {
	if l.unsynced == 0 {
		l.syncWanted.Store(false)
		return false
	}
	return l.syncWanted.Load() || time.Since(l.unsyncedSince) >= l.flushEvery
}

// flush makes the journal writes that Append answered before they were
// on disk (batch mode) durable with one fdatasync, and lets the indexer
// store them. A failure marks the log unhealthy: the next batch tries the
// flush again and fails unless it succeeds. Only the writer calls it.
func (l *Log) flush() error {
	l.syncWanted.Store(false)
	if l.unsynced == 0 && l.flushErr == nil {
		return nil
	}
	start := time.Now()
	if err := l.jrnl.sync(); err != nil {
		l.flushErr = fmt.Errorf("flush %d audit records: %w: %w", l.unsynced, ErrUnwritable, err)
		l.setHealth(healthJournal, l.flushErr)
		l.unsyncedSince = time.Now()
		return l.flushErr
	}
	if l.opts.Observer != nil {
		l.opts.Observer.Committed(0, time.Since(start))
	}
	l.unsynced, l.unsyncedBytes, l.unsyncedSince = 0, 0, time.Time{}
	if l.flushErr != nil {
		l.flushErr = nil
		l.setHealth(healthJournal, nil)
	}
	l.synced.Store(l.size.Load())
	l.wakeIndexer()
	return nil
}

// took sets the writer's expectation after committing b: the producers of
// b are likely to append again soon (a client's next statement), and those
// queued meanwhile wait for the next commit: together they are the next
// batch. Producers are counted, not records: a session that sent two
// statement records in one AppendAll (an extended-protocol Parse and
// Execute) comes back with one or two, and waiting for a second record
// from it would only delay its next one.
func (l *Log) took(b *batch) {
	l.mu.Lock()
	l.expect = min(b.producers+l.producers, maxBatchRecords)
	l.mu.Unlock()
}

// next waits for queued requests and takes a batch of them, or returns nil
// when the Log is closed and the queue is drained. A batch may hold no
// records when only a checkpoint was asked for.
//
// When fewer producers are queued than the last batch's and those queued
// during its commit (l.expect), next waits for the rest: at most half as
// long as the last commit took, and at most l.gather (maxGather). Without
// the wait, producers that take turns settle into groups that alternate
// between commits: each waits for two commits, and each commit carries a
// part of them, paying the whole fixed cost (page writes, two flushes) for
// it. A lone producer never waits (it expects only itself), whatever the
// number of records it queues each time, and a wait that times out lowers
// the expectation to what came. The wait delays a commit; it never
// answers a record before it is durable. A wait that times out costs
// more than it says when nothing else runs: the idle runtime sleeps in
// epoll_wait, whose timeout is in whole milliseconds (runtime/
// netpoll_epoll.go rounds a shorter delay up to 1 ms), so it lasts about
// a millisecond, twice a small log's commit.
func (l *Log) next() *batch {
	var deadline time.Time
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		l.mu.Lock()
		if len(l.queue) > 0 || l.ckptWanted {
			if len(l.queue) > 0 && l.producers < l.expect && !l.closed && l.lastCommit > 0 {
				if deadline.IsZero() {
					deadline = time.Now().Add(min(l.lastCommit/2, l.gather))
				}
				if wait := time.Until(deadline); wait > 0 {
					l.mu.Unlock()
					l.sleep(&timer, wait, l.closing)
					continue
				}
			}
			b := l.takeLocked()
			l.mu.Unlock()
			return b
		}
		closed := l.closed
		l.mu.Unlock()
		if closed {
			return nil
		}
		<-l.wake
	}
}

// commit makes a batch durable in the journal, answers every request in
// it, and hands the records to the indexer.
func (l *Log) commit(b *batch) {
	if len(b.reqs) == 0 {
		// Only a checkpoint was asked for: the indexer signs after the
		// records before it, once they are on disk.
		if err := l.flush(); err != nil {
			answer(b.waiters, err)
			return
		}
		l.toIndexer(nil, b.force, b.waiters)
		return
	}
	// While bbolt cannot store records, take none: they would pile up in
	// the journal only, and the next records must see the failure. In
	// batch mode the same holds for a journal that cannot be flushed. The
	// indexer stores only flushed records, so the writer flushes before
	// it waits for the indexer to catch up.
	err := l.indexHealthy()
	if err == nil && l.flushEvery > 0 && (l.flushErr != nil || l.unsyncedBytes >= maxUnindexed/4) {
		err = l.flush()
	}
	if err == nil {
		err = l.waitBacklog()
	}
	if err != nil {
		l.fail(b, err, false)
		l.resyncSeq()
		return
	}
	size := l.size.Load()
	recs := make([]jrec, len(b.reqs))
	var n int64
	l.seqStale = false
	for i, req := range b.reqs {
		seq := size + uint64(i)
		if req.ready.Load() && req.seq == seq {
			recs[i] = jrec{seq: seq, data: req.data}
			if l.hashLeaves {
				recs[i].leaf = &req.leaf
			}
		} else {
			// Not prepared yet, or for another seq (a batch before it
			// failed): build it here.
			recs[i] = jrec{seq: seq, data: recordBytes(req.head, seq, req.tail)}
		}
		if req.seq != seq {
			l.seqStale = true
		}
		n += frameSize(len(recs[i].data))
	}
	if !l.jrnl.fits(n) {
		// The pass is full: start a new one once bbolt holds all of it.
		err := l.flush()
		if err == nil {
			err = l.drainIndex()
		}
		if err != nil {
			l.fail(b, err, false)
			l.resyncSeq()
			return
		}
		l.jrnl.rewind()
	}
	start := time.Now()
	if l.flushEvery > 0 {
		_, err = l.jrnl.writeFrames(recs)
	} else {
		err = l.jrnl.write(recs)
	}
	if err != nil {
		l.fail(b, err, true)
		l.resyncSeq()
		return
	}
	if l.opts.Observer != nil {
		l.opts.Observer.Committed(len(recs), time.Since(start))
	}
	// Durable (batch mode: written, flushed within flushEvery). Readers
	// find the records in the indexer's queue until bbolt has them, so
	// they are queued before the size moves.
	late := l.flushEvery > 0 && (b.force || len(b.waiters) > 0)
	if l.flushEvery > 0 {
		if l.unsynced == 0 {
			l.unsyncedSince = start
			// The writer flushes it in time (a leader does not
			// wait for that).
			l.signal()
		}
		l.unsynced += len(recs)
		l.unsyncedBytes += int(n)
	} else {
		l.synced.Store(size + uint64(len(recs)))
	}
	if late {
		// A checkpoint covers only flushed records: ask for it after
		// the flush below.
		l.toIndexer(recs, false, nil)
	} else {
		l.toIndexer(recs, b.force, b.waiters)
	}
	l.setSize(size + uint64(len(recs)))
	if l.seqStale {
		// Records were prepared for other seqs than they got (a batch
		// failed, or the file grew at a reopen): predict from here.
		l.resyncSeq()
	}
	l.setHealth(healthJournal, nil)
	for i, req := range b.reqs {
		req.done <- result{seq: size + uint64(i)}
	}
	if late {
		if err := l.flush(); err != nil {
			answer(b.waiters, err)
			return
		}
		l.toIndexer(nil, b.force, b.waiters)
	}
}

// resyncSeq sets the seq predicted for the next queued record after a
// batch failed (its seqs were not used, so the records queued behind it
// were prepared for the wrong seqs and the writer builds them itself), or
// the size changed at a reopen.
func (l *Log) resyncSeq() {
	l.mu.Lock()
	l.nextSeq = l.size.Load() + uint64(len(l.queue))
	l.mu.Unlock()
}

// answer sends err to every waiter (each has room for one value).
func answer(waiters []chan error, err error) {
	for _, w := range waiters {
		w <- err
	}
}

// put stores journaled records and the tree inside the write transaction
// and returns the new size. Records bbolt has already (a commit that
// reported failure became visible, see index) are checked and skipped;
// the first one it lacks must be the next seq.
func (l *Log) put(tx *bolt.Tx, recs []jrec, force bool) (uint64, error) {
	records := tx.Bucket(bucketRecords)
	meta := tx.Bucket(bucketMeta)
	if records == nil || meta == nil {
		return 0, fmt.Errorf("buckets missing: %w", ErrCorrupt)
	}
	// Keys only ever grow: fill pages completely instead of splitting
	// them half-empty (bbolt's default 0.5 doubles the file size).
	records.FillPercent = 1.0
	size, err := readSize(meta)
	if err != nil {
		return 0, err
	}
	// Never overwrite: the last stored record must be size-1.
	if err := checkTail(records, size); err != nil {
		return 0, err
	}
	for _, r := range recs {
		if r.seq < size {
			if !bytes.Equal(records.Get(u64(r.seq)), r.data) {
				return 0, fmt.Errorf("record %d stored differs from the journal: %w", r.seq, ErrCorrupt)
			}
			continue
		}
		if r.seq != size {
			return 0, fmt.Errorf("journaled record %d after stored size %d: %w", r.seq, size, ErrCorrupt)
		}
		if err := records.Put(u64(r.seq), r.data); err != nil {
			return 0, fmt.Errorf("put record %d: %w", r.seq, err)
		}
		if l.hook != nil {
			if err := l.hook.leaf(tx, r.seq, r.data, r.leaf); err != nil {
				return 0, fmt.Errorf("record %d: %w", r.seq, err)
			}
		}
		size++
	}
	if err := meta.Put(metaSize, u64(size)); err != nil {
		return 0, fmt.Errorf("put size: %w", err)
	}
	if l.hook != nil {
		if err := l.hook.seal(tx, size, force); err != nil {
			return 0, fmt.Errorf("seal batch: %w", err)
		}
	}
	return size, nil
}

// fail answers every request of a batch with an error wrapping
// ErrUnwritable and cause. A journal failure marks the log unhealthy;
// a refusal because bbolt cannot store records does not, since the
// indexer reports that itself and clears it when a store succeeds.
func (l *Log) fail(b *batch, cause error, journalFailed bool) {
	err := fmt.Errorf("commit %d audit records: %w: %w", len(b.reqs), ErrUnwritable, cause)
	if journalFailed {
		l.setHealth(healthJournal, err)
	}
	for _, req := range b.reqs {
		req.done <- result{err: err}
	}
	answer(b.waiters, err)
}

// reopen closes the file (if open) and opens it again, checking that it is
// still the same log and did not lose acknowledged records. On failure the
// Log stays without a file and the next batch tries again.
func (l *Log) reopen() error {
	l.dbMu.Lock()
	defer l.dbMu.Unlock()
	if l.db != nil {
		if err := l.db.Close(); err != nil {
			l.logger.Warn("audit log close before reopen failed", "path", l.path, "error", err)
		}
		l.db = nil
	}
	err := l.openChecked()
	l.healthMu.Lock()
	changed := (err != nil) != l.dbFailed
	l.dbFailed = err != nil
	l.healthMu.Unlock()
	if changed && err != nil {
		l.logger.Error("audit log reopen failed", "path", l.path, "error", err)
	} else if changed {
		l.logger.Info("audit log reopened", "path", l.path, "size", l.size.Load())
	}
	return err
}

// openChecked opens the file for reopen and installs it as l.db. dbMu is held.
func (l *Log) openChecked() (err error) {
	db, err := l.openDB()
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = db.Close()
		}
	}()
	var st logState
	if err := db.View(func(tx *bolt.Tx) error {
		st, err = loadState(tx)
		return err
	}); err != nil {
		return fmt.Errorf("reopen audit log %s: %w", l.path, err)
	}
	if st.id != l.id {
		return fmt.Errorf("reopen audit log %s: log id changed from %q to %q: %w", l.path, l.id, st.id, ErrCorrupt)
	}
	stored := l.indexed.Load()
	if st.size < stored {
		return fmt.Errorf("reopen audit log %s: size %d below stored %d: %w", l.path, st.size, stored, ErrCorrupt)
	}
	if acked := l.size.Load(); st.size > acked {
		return fmt.Errorf("reopen audit log %s: size %d beyond the %d records acknowledged: %w", l.path, st.size, acked, ErrCorrupt)
	}
	if l.hook != nil {
		if err := l.hook.open(db); err != nil {
			return fmt.Errorf("reopen audit log %s: %w", l.path, err)
		}
	}
	l.db = db
	if st.size > stored {
		// A commit reported failure after writing its meta page (the
		// final fdatasync failed): its records, journaled and
		// acknowledged before, are stored after all. put skips them.
		l.logger.Warn("failed audit index commit is visible after reopen", "path", l.path, "stored", stored, "size", st.size)
		l.indexed.Store(st.size)
	}
	return nil
}

// setSize publishes a new size and wakes Wait calls.
func (l *Log) setSize(size uint64) {
	l.size.Store(size)
	l.changedMu.Lock()
	close(l.changed)
	l.changed = make(chan struct{})
	l.changedMu.Unlock()
}

// health sources: the writer's journal and the indexer's bbolt store.
const (
	healthJournal = iota
	healthStore
)

// setHealth records the outcome of the last journal write (src
// healthJournal) or bbolt store (healthStore): nil or an error wrapping
// ErrUnwritable. The log is healthy when both are nil; only changes of
// that are logged.
func (l *Log) setHealth(src int, err error) {
	l.healthMu.Lock()
	was := l.healthLocked()
	l.health[src] = err
	now := l.healthLocked()
	l.healthMu.Unlock()
	switch {
	case was == nil && now != nil:
		l.logger.Error("audit log unwritable, refusing records", "path", l.path, "size", l.size.Load(), "error", now)
	case was != nil && now == nil:
		l.logger.Info("audit log writable again", "path", l.path, "size", l.size.Load())
	}
}

// healthLocked is the first failure of the two sources; healthMu is held.
func (l *Log) healthLocked() error {
	if l.health[healthJournal] != nil {
		return l.health[healthJournal]
	}
	return l.health[healthStore]
}

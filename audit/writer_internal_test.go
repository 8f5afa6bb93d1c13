// SPDX-License-Identifier: Apache-2.0

package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

var errInjected = errors.New("injected commit failure")

// testHook records what the writer passes it, and fails the next failN
// batches inside the transaction (after the records were put), so the
// transaction rolls back like a failed commit.
type testHook struct {
	mu      sync.Mutex
	failN   int
	leaves  map[uint64][]byte // committed leaves
	pending map[uint64][]byte // leaves of the open transaction
	sizes   []uint64          // sizes passed to seal, committed batches only
	seal1   uint64
	loads   int
	aborted int
}

func (h *testHook) open(db *bolt.DB) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.loads++
	return nil
}

func (h *testHook) sealDue(uint64) bool { return false }

func (h *testHook) leaf(tx *bolt.Tx, seq uint64, data []byte, hash *[HashSize]byte) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.pending == nil {
		h.pending = map[uint64][]byte{}
	}
	if !bytes.Equal(tx.Bucket(bucketRecords).Get(u64(seq)), data) {
		return fmt.Errorf("leaf %d: data is not what was put", seq)
	}
	// Records prepared by producers for a predicted seq must carry the
	// seq they got, also after a failed batch shifted the seqs.
	if r, err := Decode(data); err != nil || r.Seq != seq {
		return fmt.Errorf("leaf %d: stored record says seq %v (%v)", seq, r, err)
	}
	if hash != nil && !bytes.Equal(hash[:], LeafHash(data)) {
		return fmt.Errorf("leaf %d: wrong leaf hash", seq)
	}
	h.pending[seq] = append([]byte(nil), data...)
	return nil
}

func (h *testHook) seal(tx *bolt.Tx, size uint64, force bool) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seal1 = size
	if h.failN > 0 {
		h.failN--
		return errInjected
	}
	return nil
}

func (h *testHook) done(committed bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if committed {
		if h.leaves == nil {
			h.leaves = map[uint64][]byte{}
		}
		for k, v := range h.pending {
			h.leaves[k] = v
		}
		h.sizes = append(h.sizes, h.seal1)
	} else {
		h.aborted++
	}
	h.pending = nil
}

func (h *testHook) failNext(n int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.failN = n
}

// syncBuffer is a bytes.Buffer safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func openWithHook(t *testing.T, path string, h txHook, logs *syncBuffer) *Log {
	t.Helper()
	l, err := open(path, Options{HostID: "h", Logger: slog.New(slog.NewTextHandler(logs, nil))}, h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
		t.Log(logs.String())
	})
	return l
}

func rec(i int) *Record {
	return &Record{Kind: KindStatement, Session: "s", Statement: &Statement{Text: fmt.Sprint("SELECT ", i)}}
}

// waitStored waits until bbolt holds n records.
func waitStored(t *testing.T, l *Log, n uint64) {
	t.Helper()
	l.idxMu.Lock()
	defer l.idxMu.Unlock()
	for l.indexed.Load() < n {
		l.idxCond.Wait()
	}
}

// waitIndexFailed waits until the indexer's last attempt failed.
func waitIndexFailed(t *testing.T, l *Log) {
	t.Helper()
	l.idxMu.Lock()
	defer l.idxMu.Unlock()
	for l.idxErr == nil {
		l.idxCond.Wait()
	}
}

// TestIndexFailureFailsClosed: a record durable in the journal is
// acknowledged even if bbolt then fails to store it; while bbolt fails, new
// records are refused (each Append has the indexer try again first); reads
// keep working, the journaled record included; and the log recovers by
// itself.
func TestIndexFailureFailsClosed(t *testing.T) {
	h := &testHook{}
	logs := &syncBuffer{}
	l := openWithHook(t, filepath.Join(t.TempDir(), "audit.db"), h, logs)
	ctx := context.Background()
	for i := range 3 {
		if seq, err := l.Append(ctx, rec(i)); err != nil || seq != uint64(i) {
			t.Fatalf("Append = %d, %v", seq, err)
		}
	}
	waitStored(t, l, 3)

	h.failNext(2)
	if seq, err := l.Append(ctx, rec(3)); err != nil || seq != 3 {
		t.Fatalf("Append of a journaled record = %d, %v; want 3", seq, err)
	}
	waitIndexFailed(t, l)
	if err := l.Healthy(); !errors.Is(err, ErrUnwritable) || !errors.Is(err, errInjected) {
		t.Fatalf("Healthy() = %v while bbolt fails", err)
	}
	seq, err := l.Append(ctx, rec(100))
	if !errors.Is(err, ErrUnwritable) || !errors.Is(err, errInjected) {
		t.Fatalf("Append while bbolt fails = %d, %v; want ErrUnwritable wrapping the cause", seq, err)
	}
	if l.Size() != 4 {
		t.Fatalf("Size() = %d after a refused record, want 4", l.Size())
	}
	if es, err := l.Read(0, 10); err != nil || len(es) != 4 {
		t.Fatalf("Read while bbolt fails = %d entries, %v", len(es), err)
	}

	seq, err = l.Append(ctx, rec(4))
	if err != nil || seq != 4 {
		t.Fatalf("Append after the failure = %d, %v; want 4", seq, err)
	}
	if err := l.Healthy(); err != nil {
		t.Fatalf("Healthy() = %v after recovery", err)
	}
	waitStored(t, l, 5)
	es, err := l.Read(0, 10)
	if err != nil || len(es) != 5 {
		t.Fatalf("Read = %d entries, %v", len(es), err)
	}
	for i, e := range es {
		r, err := e.Record()
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprint("SELECT ", i); r.Statement.Text != want {
			t.Errorf("seq %d holds %q, want %q (a refused record was stored?)", i, r.Statement.Text, want)
		}
	}

	// The hook saw every stored leaf once, and was reloaded after each
	// failure (open + 2 reopens).
	h.mu.Lock()
	if len(h.leaves) != 5 || h.aborted != 2 || h.loads != 3 {
		t.Errorf("hook: %d leaves, %d aborted, %d loads; want 5, 2, 3", len(h.leaves), h.aborted, h.loads)
	}
	for _, e := range es {
		if !bytes.Equal(h.leaves[e.Seq], e.Bytes) {
			t.Errorf("hook leaf %d = %s, stored %s", e.Seq, h.leaves[e.Seq], e.Bytes)
		}
	}
	h.mu.Unlock()

	// One log line per state change, not per failure.
	out := logs.String()
	if n := strings.Count(out, `msg="audit log unwritable`); n != 1 {
		t.Errorf("%d 'unwritable' log lines, want 1:\n%s", n, out)
	}
	if n := strings.Count(out, `msg="audit log writable again`); n != 1 {
		t.Errorf("%d 'writable again' log lines, want 1:\n%s", n, out)
	}
}

// TestFailedBatchConcurrent fails one batch while many producers append:
// every producer of that batch gets ErrUnwritable, none of their records is
// stored, and the acknowledged ones are contiguous.
func TestFailedBatchConcurrent(t *testing.T) {
	h := &testHook{}
	l := openWithHook(t, filepath.Join(t.TempDir(), "audit.db"), h, &syncBuffer{})
	ctx := context.Background()
	h.failNext(3)
	var mu sync.Mutex
	acked := map[uint64]string{}
	failed := map[string]bool{}
	var wg sync.WaitGroup
	for p := range 32 {
		wg.Go(func() {
			for i := range 20 {
				r := rec(p*1000 + i)
				seq, err := l.Append(ctx, r)
				mu.Lock()
				if err != nil {
					if !errors.Is(err, ErrUnwritable) {
						t.Errorf("Append: %v", err)
					}
					failed[r.Statement.Text] = true
				} else {
					acked[seq] = r.Statement.Text
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(failed) == 0 {
		t.Fatal("no Append failed")
	}
	if l.Size() != uint64(len(acked)) || len(acked)+len(failed) != 32*20 {
		t.Fatalf("size %d, %d acknowledged, %d failed", l.Size(), len(acked), len(failed))
	}
	es, err := l.Read(0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range es {
		r, err := e.Record()
		if err != nil {
			t.Fatal(err)
		}
		if e.Seq != uint64(i) || acked[e.Seq] != r.Statement.Text || failed[r.Statement.Text] {
			t.Fatalf("seq %d holds %q, acknowledged %q", e.Seq, r.Statement.Text, acked[e.Seq])
		}
	}
	// Failed batches shifted the seqs; the prediction producers prepare
	// records for is back in step.
	l.mu.Lock()
	next := l.nextSeq
	l.mu.Unlock()
	if next != l.Size() {
		t.Fatalf("next predicted seq %d, size %d", next, l.Size())
	}
}

// TestReopenFailureRecovers makes the reopen after a failed store fail
// too (the file is locked by a reader) and checks that the log recovers once
// the lock is gone.
func TestReopenFailureRecovers(t *testing.T) {
	h := &testHook{}
	path := filepath.Join(t.TempDir(), "audit.db")
	l := openWithHook(t, path, h, &syncBuffer{})
	l.opts.Timeout = 20e6 // 20ms: the lock below must make reopen fail fast
	ctx := context.Background()
	if _, err := l.Append(ctx, rec(0)); err != nil {
		t.Fatal(err)
	}
	waitStored(t, l, 1)

	// Put the indexer into the "no file" state a failed reopen leaves,
	// with a reader holding the lock.
	l.dbMu.Lock()
	if err := l.db.Close(); err != nil {
		t.Fatal(err)
	}
	l.db = nil
	l.dbMu.Unlock()
	reader, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 20e6})
	if err != nil {
		t.Fatal(err)
	}
	// Journaled, so acknowledged; the indexer then fails to reopen.
	if seq, err := l.Append(ctx, rec(1)); err != nil || seq != 1 {
		t.Fatalf("Append = %d, %v; want 1", seq, err)
	}
	waitIndexFailed(t, l)
	if _, err := l.Append(ctx, rec(2)); !errors.Is(err, ErrUnwritable) || !errors.Is(err, ErrLocked) {
		t.Fatalf("Append with file locked = %v, want ErrUnwritable wrapping ErrLocked", err)
	}
	if _, err := l.Read(0, 1); !errors.Is(err, ErrUnwritable) {
		t.Errorf("Read without file = %v, want ErrUnwritable", err)
	}
	if es, err := l.Read(1, 1); err != nil || len(es) != 1 {
		t.Errorf("Read of the journaled record without file = %d entries, %v", len(es), err)
	}
	if err := reader.Close(); err != nil {
		t.Fatal(err)
	}
	seq, err := l.Append(ctx, rec(2))
	if err != nil || seq != 2 {
		t.Fatalf("Append after lock released = %d, %v; want 2", seq, err)
	}
	if err := l.Healthy(); err != nil {
		t.Errorf("Healthy() = %v", err)
	}
	waitStored(t, l, 3)
}

// TestStoredAfterFailure simulates a store that reported failure after its
// meta page was written (failed final fsync): bbolt then holds journaled
// records the indexer still has queued. It skips them, after checking they
// are the same bytes, and goes on after them.
func TestStoredAfterFailure(t *testing.T) {
	h := &testHook{}
	path := filepath.Join(t.TempDir(), "audit.db")
	l := openWithHook(t, path, h, &syncBuffer{})
	ctx := context.Background()
	if _, err := l.Append(ctx, rec(0)); err != nil {
		t.Fatal(err)
	}
	waitStored(t, l, 1)
	h.failNext(1)
	if seq, err := l.Append(ctx, rec(1)); err != nil || seq != 1 {
		t.Fatalf("Append = %d, %v; want 1", seq, err)
	}
	waitIndexFailed(t, l)
	es, err := l.Read(1, 1)
	if err != nil || len(es) != 1 {
		t.Fatalf("Read(1) = %v, %v", es, err)
	}
	// Store record 1 behind the indexer's back, as the "failed" commit did.
	l.dbMu.Lock()
	err = l.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketRecords).Put(u64(1), es[0].Bytes); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(metaSize, u64(2))
	})
	l.dbMu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	seq, err := l.Append(ctx, rec(2))
	if err != nil || seq != 2 {
		t.Fatalf("Append = %d, %v; want 2", seq, err)
	}
	waitStored(t, l, 3)
	got, err := l.Read(0, 10)
	if err != nil || len(got) != 3 || !bytes.Equal(got[1].Bytes, es[0].Bytes) {
		t.Fatalf("Read = %v, %v", got, err)
	}
}

// TestNextGathers: the writer's next batch waits for the producers it
// expects (those of its last batch), a lone producer's records are taken
// at once however many it queues, records appended in bulk (AppendEach)
// are not waited for afterwards, and Close ends a wait. The wait bound is
// an hour, so a wrong wait shows as a test timeout, never as a timing
// assertion.
func TestNextGathers(t *testing.T) {
	newLog := func(expect int) *Log {
		return &Log{wake: make(chan struct{}, 1), closing: make(chan struct{}),
			expect: expect, lastCommit: 4 * time.Hour, gather: time.Hour}
	}
	// burst queues n records as one call: of one producer (Append,
	// AppendAll) or of none (AppendEach).
	burst := func(l *Log, n int, producer bool) {
		l.mu.Lock()
		for i := range n {
			l.queue = append(l.queue, &request{done: make(chan result, 1), producer: producer && i == 0})
		}
		if producer && n > 0 {
			l.producers++
		}
		l.mu.Unlock()
		l.signal()
	}
	// enqueue queues n records of n producers.
	enqueue := func(l *Log, n int) {
		for range n {
			burst(l, 1, true)
		}
	}

	t.Run("expected", func(t *testing.T) {
		l := newLog(3)
		enqueue(l, 1)
		got := make(chan *batch, 1)
		go func() { got <- l.next() }()
		enqueue(l, 1)
		enqueue(l, 1)
		if b := <-got; len(b.reqs) != 3 {
			t.Fatalf("batch of %d records, want the 3 expected", len(b.reqs))
		}
	})
	t.Run("lone", func(t *testing.T) {
		l := newLog(1)
		enqueue(l, 1)
		if b := l.next(); len(b.reqs) != 1 {
			t.Fatalf("batch of %d records, want 1", len(b.reqs))
		}
	})
	t.Run("burst", func(t *testing.T) {
		// A session's extended-protocol Parse and Execute (two records,
		// one AppendAll), then its next statement alone: the writer
		// expects one producer back, not two records.
		l := newLog(1)
		burst(l, 2, true)
		b := l.next()
		if len(b.reqs) != 2 || b.producers != 1 {
			t.Fatalf("batch of %d records of %d producers, want 2 of 1", len(b.reqs), b.producers)
		}
		l.took(b)
		enqueue(l, 1)
		if b := l.next(); len(b.reqs) != 1 {
			t.Fatalf("batch of %d records, want 1", len(b.reqs))
		}
	})
	t.Run("eventual", func(t *testing.T) {
		// Result records written in bulk with a statement: the next
		// statement alone is not held for them.
		l := newLog(1)
		burst(l, 5, false)
		enqueue(l, 1)
		b := l.next()
		if len(b.reqs) != 6 || b.producers != 1 {
			t.Fatalf("batch of %d records of %d producers, want 6 of 1", len(b.reqs), b.producers)
		}
		l.took(b)
		enqueue(l, 1)
		if b := l.next(); len(b.reqs) != 1 {
			t.Fatalf("batch of %d records, want 1", len(b.reqs))
		}
	})
	t.Run("more than expected", func(t *testing.T) {
		l := newLog(2)
		enqueue(l, 5)
		if b := l.next(); len(b.reqs) != 5 {
			t.Fatalf("batch of %d records, want all 5 queued", len(b.reqs))
		}
	})
	t.Run("closed", func(t *testing.T) {
		l := newLog(8)
		enqueue(l, 2)
		got := make(chan *batch, 1)
		go func() { got <- l.next() }()
		l.mu.Lock()
		l.closed = true
		l.mu.Unlock()
		close(l.closing)
		if b := <-got; len(b.reqs) != 2 {
			t.Fatalf("batch of %d records after Close, want the 2 queued", len(b.reqs))
		}
	})
}

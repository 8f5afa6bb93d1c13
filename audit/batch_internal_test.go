// SPDX-License-Identifier: Apache-2.0

package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// openBatch opens a read-write log at path in batch mode with the host key
// kept in keyDir.
func openBatch(t *testing.T, path, keyDir string, flush time.Duration) *Log {
	t.Helper()
	key, err := LoadOrCreateHostKey(keyDir, "h")
	if err != nil {
		t.Fatal(err)
	}
	l, err := Open(path, Options{HostID: "h", Key: key, FlushInterval: flush,
		// No checkpoint unless asked for: the test decides when.
		CheckpointInterval: time.Hour, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	})
	return l
}

// TestBatchAppendBeforeFlush: in batch mode Append answers once the record
// is written to the journal, before any flush (the interval here is an
// hour); the record is readable, survives the process (a copy of the files
// as a crash of the daemon leaves them opens with it), and is neither
// stored in bbolt nor under a checkpoint until it is flushed. Checkpoint
// flushes first, then signs over it.
func TestBatchAppendBeforeFlush(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.db")
	l := openBatch(t, path, dir, time.Hour)
	ctx := context.Background()
	const n = 5
	for i := range n {
		seq, err := l.Append(ctx, rec(i))
		if err != nil {
			t.Fatal(err)
		}
		if seq != uint64(i) {
			t.Fatalf("seq %d, want %d", seq, i)
		}
	}
	if got := l.Size(); got != n {
		t.Fatalf("size %d, want %d", got, n)
	}
	if got := l.synced.Load(); got != 0 {
		t.Fatalf("%d records counted as flushed, want 0", got)
	}
	if got := l.Unstored(); got != n {
		t.Fatalf("%d records only in the journal, want %d", got, n)
	}
	if _, err := l.LastCheckpoint(); !errors.Is(err, ErrNoCheckpoint) {
		t.Fatalf("checkpoint before any flush: %v", err)
	}
	es, err := l.Read(0, 100)
	if err != nil || len(es) != n {
		t.Fatalf("read %d records (%v), want %d", len(es), err, n)
	}

	// What a SIGKILL leaves: the files as they are now (the journal
	// write is in the page cache, which outlives the process).
	crash := t.TempDir()
	for _, f := range []string{"audit.db", "audit.db" + JournalSuffix} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(crash, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c := openBatch(t, filepath.Join(crash, "audit.db"), dir, time.Hour)
	got, err := c.Read(0, 100)
	if err != nil || len(got) != n {
		t.Fatalf("after the crash: %d records (%v), want %d", len(got), err, n)
	}
	for i := range got {
		if string(got[i].Bytes) != string(es[i].Bytes) {
			t.Fatalf("record %d after the crash differs:\n%s\n%s", i, got[i].Bytes, es[i].Bytes)
		}
	}
	// Reopened, they were flushed: they are stored and signed.
	if cp, err := c.Checkpoint(ctx); err != nil || cp.Size != n {
		t.Fatalf("checkpoint after the crash: %+v, %v", cp, err)
	}

	cp, err := l.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cp.Size != n {
		t.Fatalf("checkpoint of size %d, want %d", cp.Size, n)
	}
	if got := l.synced.Load(); got != n {
		t.Fatalf("%d records flushed after the checkpoint, want %d", got, n)
	}
}

// TestBatchFlushesWithinInterval: without any reader or checkpoint asking,
// written records are flushed by the writer's timer, and then stored.
func TestBatchFlushesWithinInterval(t *testing.T) {
	dir := t.TempDir()
	l := openBatch(t, filepath.Join(dir, "audit.db"), dir, 5*time.Millisecond)
	for i := range 3 {
		if _, err := l.Append(context.Background(), rec(i)); err != nil {
			t.Fatal(err)
		}
	}
	waitStored(t, l, 3)
	if got := l.synced.Load(); got < 3 {
		t.Fatalf("stored records beyond the %d flushed", got)
	}
}

// flushCheckHook fails the transaction of any record the writer had not
// flushed when the indexer stored it, or of a seal beyond them.
type flushCheckHook struct {
	testHook
	l *Log
}

func (h *flushCheckHook) leaf(tx *bolt.Tx, seq uint64, data []byte, hash *[HashSize]byte) error {
	if s := h.l.synced.Load(); seq >= s {
		return fmt.Errorf("record %d stored, only %d flushed", seq, s)
	}
	return h.testHook.leaf(tx, seq, data, hash)
}

func (h *flushCheckHook) seal(tx *bolt.Tx, size uint64, force bool) error {
	if s := h.l.synced.Load(); size > s {
		return fmt.Errorf("sealed at %d, only %d flushed", size, s)
	}
	return h.testHook.seal(tx, size, force)
}

// TestBatchStoresOnlyFlushed: under concurrent appends in batch mode, with
// readers asking for stored records and checkpoints asked for, the indexer
// stores (and the tree would sign) only records the journal flushed; every
// record ends up stored, in order.
func TestBatchStoresOnlyFlushed(t *testing.T) {
	h := &flushCheckHook{}
	logs := &syncBuffer{}
	l, err := open(filepath.Join(t.TempDir(), "audit.db"), Options{HostID: "h", FlushInterval: 2 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(logs, nil))}, h)
	if err != nil {
		t.Fatal(err)
	}
	h.l = l
	const producers, each = 8, 200
	var wg sync.WaitGroup
	errs := make(chan error, producers)
	for p := range producers {
		wg.Go(func() {
			for i := range each {
				seq, err := l.Append(context.Background(), rec(p*each+i))
				if err != nil {
					errs <- err
					return
				}
				if i%50 == 0 {
					// A reader that needs the record in bbolt (a proof)
					// makes the writer flush early.
					if err := l.awaitStored(seq + 1); err != nil {
						errs <- err
						return
					}
				}
			}
		})
	}
	wg.Go(func() {
		for range 20 {
			// What Checkpoint asks of the writer (the test hook
			// has no signer).
			done := make(chan error, 1)
			l.mu.Lock()
			l.ckptWanted = true
			l.ckptWaiters = append(l.ckptWaiters, done)
			l.mu.Unlock()
			l.signal()
			if err := <-done; err != nil {
				errs <- err
				return
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("close: %v\n%s", err, logs)
	}
	if h.aborted > 0 {
		t.Fatalf("%d transactions failed (stored unflushed records?)\n%s", h.aborted, logs)
	}
	if len(h.leaves) != producers*each {
		t.Fatalf("%d records stored, want %d", len(h.leaves), producers*each)
	}
}

// SPDX-License-Identifier: Apache-2.0

package audit_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/audit/internal/evidencetest"
)

func statementRecord(session string, i int) *audit.Record {
	return &audit.Record{
		Kind:      audit.KindStatement,
		Session:   session,
		Target:    "orders-db",
		Dst:       "127.0.0.2:5432",
		Process:   &audit.Process{Pid: 4242, UID: 1001, GID: 1001, Comm: "python3"},
		Statement: &audit.Statement{Text: fmt.Sprintf("SELECT %d FROM orders WHERE id = $1", i), Classes: []string{"select"}},
		Decision:  &audit.Decision{Action: "allow", Rule: "report-reads", Policy: "sha256:00"},
	}
}

// readAll reads every record in chunks.
func readAll(tb testing.TB, l *audit.Log) []audit.Entry {
	tb.Helper()
	var all []audit.Entry
	for {
		es, err := l.Read(uint64(len(all)), 1000)
		if err != nil {
			tb.Fatalf("Read(%d): %v", len(all), err)
		}
		if len(es) == 0 {
			return all
		}
		all = append(all, es...)
	}
}

func TestOpenCreatesLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.db")
	l := evidencetest.OpenLog(t, path, audit.Options{HostID: "host-a.example"})
	if !regexp.MustCompile(`^tollgate/host-a\.example/[0-9a-f]{16}$`).MatchString(l.ID()) {
		t.Errorf("ID() = %q", l.ID())
	}
	if l.ID() != "tollgate/host-a.example/"+l.Epoch() {
		t.Errorf("ID() = %q, Epoch() = %q", l.ID(), l.Epoch())
	}
	if l.Size() != 0 {
		t.Errorf("Size() = %d, want 0", l.Size())
	}
	if err := l.Healthy(); err != nil {
		t.Errorf("Healthy() = %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
}

func TestAppendAndRead(t *testing.T) {
	l := evidencetest.OpenLog(t, filepath.Join(t.TempDir(), "audit.db"), audit.Options{})
	ctx := context.Background()
	var want [][]byte
	for i := range 5 {
		r := statementRecord("s1", i)
		seq, err := l.Append(ctx, r)
		if err != nil {
			t.Fatalf("Append: %v", err)
		}
		if seq != uint64(i) || r.Seq != seq {
			t.Fatalf("Append #%d: seq %d, r.Seq %d", i, seq, r.Seq)
		}
		if r.V != 1 || r.Log != l.ID() || r.Time.IsZero() {
			t.Fatalf("Append did not fill v, log, time: %+v", r)
		}
		b, err := audit.Encode(r)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, b)
	}
	if l.Size() != 5 {
		t.Fatalf("Size() = %d, want 5", l.Size())
	}
	got := readAll(t, l)
	if len(got) != 5 {
		t.Fatalf("read %d entries, want 5", len(got))
	}
	for i, e := range got {
		if e.Seq != uint64(i) || string(e.Bytes) != string(want[i]) {
			t.Errorf("entry %d = %d %s, want %s", i, e.Seq, e.Bytes, want[i])
		}
		r, err := e.Record()
		if err != nil || r.Seq != uint64(i) {
			t.Errorf("entry %d Record() = %v, %v", i, r, err)
		}
	}
	// Ranges.
	if es, err := l.Read(3, 10); err != nil || len(es) != 2 || es[0].Seq != 3 {
		t.Errorf("Read(3, 10) = %v, %v", es, err)
	}
	if es, err := l.Read(1, 2); err != nil || len(es) != 2 || es[1].Seq != 2 {
		t.Errorf("Read(1, 2) = %v, %v", es, err)
	}
	if es, err := l.Read(5, 10); err != nil || len(es) != 0 {
		t.Errorf("Read(5, 10) = %v, %v", es, err)
	}
	if es, err := l.Read(0, 0); err != nil || len(es) != 0 {
		t.Errorf("Read(0, 0) = %v, %v", es, err)
	}
	// Tail.
	if es, err := l.Tail(2); err != nil || len(es) != 2 || es[0].Seq != 3 || es[1].Seq != 4 {
		t.Errorf("Tail(2) = %v, %v", es, err)
	}
	if es, err := l.Tail(100); err != nil || len(es) != 5 || es[0].Seq != 0 {
		t.Errorf("Tail(100) = %v, %v", es, err)
	}
	// Time given by the caller is kept when it is not before the last
	// record's (TestRecordTimeNeverGoesBack has the other case).
	r := statementRecord("s1", 9)
	given := time.Now().Add(time.Hour).UTC()
	r.Time = given
	if _, err := l.Append(ctx, r); err != nil {
		t.Fatal(err)
	}
	es, err := l.Tail(1)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := es[0].Record(); err != nil || !got.Time.Equal(given) {
		t.Errorf("stored time = %v, %v; want %v", got.Time, err, given)
	}
}

func TestAppendInvalidRecord(t *testing.T) {
	l := evidencetest.OpenLog(t, filepath.Join(t.TempDir(), "audit.db"), audit.Options{})
	if _, err := l.Append(context.Background(), &audit.Record{}); !errors.Is(err, audit.ErrInvalidRecord) {
		t.Errorf("Append(no kind) = %v, want ErrInvalidRecord", err)
	}
	if l.Size() != 0 {
		t.Errorf("Size() = %d after invalid record", l.Size())
	}
}

// TestConcurrentAppendContiguous checks group commit under many producers:
// every seq exactly once, and each Append's seq holds that Append's bytes.
// syncModes are the log's durability modes: always (every write
// flushed) and batch (written, flushed within the interval; appending
// goroutines write the journal themselves when it is free).
var syncModes = []struct {
	name  string
	flush time.Duration
}{{"always", 0}, {"batch", 2 * time.Millisecond}}

func TestConcurrentAppendContiguous(t *testing.T) {
	for _, m := range syncModes {
		t.Run(m.name, func(t *testing.T) { testConcurrentAppendContiguous(t, m.flush) })
	}
}

func testConcurrentAppendContiguous(t *testing.T, flush time.Duration) {
	const producers, perProducer = 64, 500
	l := evidencetest.OpenLog(t, filepath.Join(t.TempDir(), "audit.db"), audit.Options{FlushInterval: flush})
	ctx := context.Background()
	got := make([][]byte, producers*perProducer)
	var wg sync.WaitGroup
	errs := make(chan error, producers)
	for p := range producers {
		wg.Go(func() {
			for i := range perProducer {
				r := statementRecord(fmt.Sprintf("p%d", p), i)
				seq, err := l.Append(ctx, r)
				if err != nil {
					errs <- err
					return
				}
				if seq >= uint64(len(got)) {
					errs <- fmt.Errorf("seq %d out of range", seq)
					return
				}
				b, err := audit.Encode(r)
				if err != nil {
					errs <- err
					return
				}
				if got[seq] != nil {
					errs <- fmt.Errorf("seq %d returned twice", seq)
					return
				}
				got[seq] = b
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if l.Size() != producers*perProducer {
		t.Fatalf("Size() = %d, want %d", l.Size(), producers*perProducer)
	}
	entries := readAll(t, l)
	if len(entries) != len(got) {
		t.Fatalf("read %d entries, want %d", len(entries), len(got))
	}
	lastI := map[string]int{}
	for i, e := range entries {
		if e.Seq != uint64(i) {
			t.Fatalf("entry %d has seq %d", i, e.Seq)
		}
		if string(e.Bytes) != string(got[i]) {
			t.Fatalf("seq %d holds %s, Append returned it for %s", i, e.Bytes, got[i])
		}
		// Each producer's records are in its Append order.
		r, err := e.Record()
		if err != nil {
			t.Fatal(err)
		}
		var n int
		fmt.Sscanf(r.Statement.Text, "SELECT %d", &n)
		if prev, ok := lastI[r.Session]; ok && n != prev+1 {
			t.Fatalf("producer %s: record %d after %d", r.Session, n, prev)
		}
		lastI[r.Session] = n
	}
}

// TestAppendAllContiguous: bursts from concurrent producers, some longer
// than one commit takes, each land in order with consecutive seqs, never
// interleaved with another producer's records.
func TestAppendAllContiguous(t *testing.T) {
	for _, m := range syncModes {
		t.Run(m.name, func(t *testing.T) { testAppendAllContiguous(t, m.flush) })
	}
}

func testAppendAllContiguous(t *testing.T, flush time.Duration) {
	const producers, bursts = 16, 20
	l := evidencetest.OpenLog(t, filepath.Join(t.TempDir(), "audit.db"), audit.Options{FlushInterval: flush})
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, producers)
	for p := range producers {
		wg.Go(func() {
			for b := range bursts {
				n := 1 + (p*7+b*13)%40
				if p == 0 && b == 0 {
					n = 3000 // longer than one commit's limit
				}
				rs := make([]*audit.Record, n)
				for i := range rs {
					rs[i] = statementRecord(fmt.Sprintf("p%d-b%d", p, b), i)
				}
				if err := l.AppendAll(ctx, rs); err != nil {
					errs <- err
					return
				}
				for i := 1; i < n; i++ {
					if rs[i].Seq != rs[0].Seq+uint64(i) {
						errs <- fmt.Errorf("burst %d/%d: record %d has seq %d, first %d", p, b, i, rs[i].Seq, rs[0].Seq)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// In the log, each burst is one run in its order.
	entries := readAll(t, l)
	seen := map[string]bool{}
	cur, next := "", 0
	for _, e := range entries {
		r, err := e.Record()
		if err != nil {
			t.Fatal(err)
		}
		var n int
		fmt.Sscanf(r.Statement.Text, "SELECT %d", &n)
		if r.Session != cur {
			if seen[r.Session] {
				t.Fatalf("seq %d: burst %s resumes after another's records", e.Seq, r.Session)
			}
			if cur != "" {
				seen[cur] = true
			}
			cur, next = r.Session, 0
		}
		if n != next {
			t.Fatalf("seq %d: burst %s record %d where %d was expected", e.Seq, r.Session, n, next)
		}
		next++
	}
}

func TestAppendAllClosed(t *testing.T) {
	l, err := audit.Open(filepath.Join(t.TempDir(), "audit.db"), audit.Options{HostID: "test-host"})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.AppendAll(context.Background(), []*audit.Record{statementRecord("s", 0)}); !errors.Is(err, audit.ErrClosed) {
		t.Fatalf("AppendAll after Close: %v, want ErrClosed", err)
	}
}

func TestReopenDurable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.db")
	ctx := context.Background()
	l, err := audit.Open(path, audit.Options{HostID: "h1", Logger: evidencetest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if _, err := l.Append(ctx, statementRecord("s", i)); err != nil {
			t.Fatal(err)
		}
	}
	id, epoch := l.ID(), l.Epoch()
	before := readAll(t, l)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	// Reopen with the same host id, then without one (accepts the stored one).
	l2 := evidencetest.OpenLog(t, path, audit.Options{HostID: "h1"})
	if l2.ID() != id {
		t.Errorf("ID() = %q after reopen, want %q", l2.ID(), id)
	}
	if err := l2.Close(); err != nil {
		t.Fatal(err)
	}
	l3, err := audit.Open(path, audit.Options{Logger: evidencetest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer l3.Close()
	if l3.ID() != id || l3.Epoch() != epoch || l3.Size() != 10 {
		t.Fatalf("after reopen: id %q epoch %q size %d; want %q %q 10", l3.ID(), l3.Epoch(), l3.Size(), id, epoch)
	}
	after := readAll(t, l3)
	for i := range before {
		if string(after[i].Bytes) != string(before[i].Bytes) {
			t.Fatalf("entry %d changed across reopen", i)
		}
	}
	seq, err := l3.Append(ctx, statementRecord("s", 10))
	if err != nil || seq != 10 {
		t.Fatalf("Append after reopen = %d, %v; want 10", seq, err)
	}
}

func TestOpenHostID(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.db")
	if _, err := audit.Open(path, audit.Options{}); !errors.Is(err, audit.ErrInvalidHostID) {
		t.Errorf("Open(new, no host id) = %v, want ErrInvalidHostID", err)
	}
	for _, bad := range []string{"a/b", "a b", "a\nb", string(make([]byte, 256))} {
		if _, err := audit.Open(filepath.Join(dir, "x.db"), audit.Options{HostID: bad}); !errors.Is(err, audit.ErrInvalidHostID) {
			t.Errorf("Open(host id %q) = %v, want ErrInvalidHostID", bad, err)
		}
	}
	l, err := audit.Open(path, audit.Options{HostID: "one"})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := audit.Open(path, audit.Options{HostID: "two"}); !errors.Is(err, audit.ErrHostMismatch) {
		t.Errorf("Open(other host id) = %v, want ErrHostMismatch", err)
	}
}

func TestOpenNotAuditLog(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.db")
	if err := os.WriteFile(junk, make([]byte, 64<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := audit.Open(junk, audit.Options{HostID: "h"}); !errors.Is(err, audit.ErrFormat) {
		t.Errorf("Open(zeros) = %v, want ErrFormat", err)
	}
	other := filepath.Join(dir, "other.db")
	db, err := bolt.Open(other, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucket([]byte("something"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := audit.Open(other, audit.Options{HostID: "h"}); !errors.Is(err, audit.ErrFormat) {
		t.Errorf("Open(other bbolt file) = %v, want ErrFormat", err)
	}
	if _, err := audit.Open(other, audit.Options{ReadOnly: true}); !errors.Is(err, audit.ErrFormat) {
		t.Errorf("Open(other bbolt file, read-only) = %v, want ErrFormat", err)
	}
}

func TestReadOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.db")
	ctx := context.Background()

	if _, err := audit.Open(path, audit.Options{ReadOnly: true}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open(missing, read-only) = %v, want fs.ErrNotExist", err)
	}

	w, err := audit.Open(path, audit.Options{HostID: "h", Logger: evidencetest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := w.Append(ctx, statementRecord("s", i)); err != nil {
			t.Fatal(err)
		}
	}
	want := readAll(t, w)

	// While the writer holds the file, openers fail promptly.
	for _, opts := range []audit.Options{{ReadOnly: true}, {HostID: "h"}} {
		opts.Timeout = 100 * time.Millisecond
		start := time.Now()
		_, err := audit.Open(path, opts)
		if !errors.Is(err, audit.ErrLocked) {
			t.Errorf("Open(%+v) while open = %v, want ErrLocked", opts, err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("Open(%+v) took %v", opts, d)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	r1 := evidencetest.OpenLog(t, path, audit.Options{ReadOnly: true})
	r2 := evidencetest.OpenLog(t, path, audit.Options{ReadOnly: true}) // shared lock
	for _, r := range []*audit.Log{r1, r2} {
		if r.ID() != w.ID() || r.Size() != 3 {
			t.Errorf("read-only: id %q size %d", r.ID(), r.Size())
		}
		got := readAll(t, r)
		for i := range want {
			if string(got[i].Bytes) != string(want[i].Bytes) {
				t.Errorf("read-only entry %d differs", i)
			}
		}
		if _, err := r.Append(ctx, statementRecord("s", 0)); !errors.Is(err, audit.ErrReadOnly) {
			t.Errorf("Append(read-only) = %v, want ErrReadOnly", err)
		}
	}
	// A writer cannot open while readers hold the file.
	if _, err := audit.Open(path, audit.Options{Timeout: 50 * time.Millisecond}); !errors.Is(err, audit.ErrLocked) {
		t.Errorf("Open(rw) while read-only open = %v, want ErrLocked", err)
	}
}

func TestClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.db")
	l, err := audit.Open(path, audit.Options{HostID: "h", Logger: evidencetest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := l.Append(ctx, statementRecord("s", 0)); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	if _, err := l.Append(ctx, statementRecord("s", 1)); !errors.Is(err, audit.ErrClosed) {
		t.Errorf("Append after Close = %v, want ErrClosed", err)
	}
	if err := l.Healthy(); !errors.Is(err, audit.ErrClosed) {
		t.Errorf("Healthy after Close = %v, want ErrClosed", err)
	}
	if _, err := l.Read(0, 1); !errors.Is(err, audit.ErrClosed) {
		t.Errorf("Read after Close = %v, want ErrClosed", err)
	}
	if err := l.Wait(ctx, 5); !errors.Is(err, audit.ErrClosed) {
		t.Errorf("Wait after Close = %v, want ErrClosed", err)
	}
	if err := l.Wait(ctx, 0); err != nil {
		t.Errorf("Wait(0) after Close with size 1 = %v, want nil", err)
	}
}

// TestCloseDrains closes while producers append: every Append either gets
// a seq that holds its record, or ErrClosed.
func TestCloseDrains(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.db")
	l, err := audit.Open(path, audit.Options{HostID: "h", Logger: evidencetest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var mu sync.Mutex
	acked := map[uint64][]byte{}
	var wg sync.WaitGroup
	for p := range 16 {
		wg.Go(func() {
			for i := 0; ; i++ {
				r := statementRecord(fmt.Sprint(p), i)
				seq, err := l.Append(ctx, r)
				if errors.Is(err, audit.ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("Append: %v", err)
					return
				}
				b, _ := audit.Encode(r)
				mu.Lock()
				acked[seq] = b
				mu.Unlock()
			}
		})
	}
	time.Sleep(50 * time.Millisecond)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()

	r := evidencetest.OpenLog(t, path, audit.Options{ReadOnly: true})
	if r.Size() != uint64(len(acked)) {
		t.Errorf("size %d, acknowledged %d", r.Size(), len(acked))
	}
	for _, e := range readAll(t, r) {
		if string(acked[e.Seq]) != string(e.Bytes) {
			t.Fatalf("seq %d: stored %s, acknowledged %s", e.Seq, e.Bytes, acked[e.Seq])
		}
	}
}

func TestAppendContextDone(t *testing.T) {
	l := evidencetest.OpenLog(t, filepath.Join(t.TempDir(), "audit.db"), audit.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.Append(ctx, statementRecord("s", 0)); !errors.Is(err, context.Canceled) {
		t.Errorf("Append(cancelled) = %v, want context.Canceled", err)
	}
	if l.Size() != 0 {
		t.Errorf("Size() = %d: a record was queued with a done context", l.Size())
	}
}

func TestWait(t *testing.T) {
	l := evidencetest.OpenLog(t, filepath.Join(t.TempDir(), "audit.db"), audit.Options{})
	ctx := context.Background()

	woke := make(chan error, 1)
	go func() { woke <- l.Wait(ctx, 0) }()
	select {
	case err := <-woke:
		t.Fatalf("Wait(0) on empty log returned early: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	if _, err := l.Append(ctx, statementRecord("s", 0)); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(ctx, statementRecord("s", 1)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-woke:
		if err != nil {
			t.Fatalf("Wait = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not wake up")
	}
	if err := l.Wait(ctx, 1); err != nil { // size 2 > 1: immediate
		t.Errorf("Wait(1) = %v", err)
	}
	tctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	if err := l.Wait(tctx, 2); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait(2) = %v, want DeadlineExceeded", err)
	}

	go func() { woke <- l.Wait(ctx, 2) }()
	time.Sleep(10 * time.Millisecond)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-woke:
		if !errors.Is(err, audit.ErrClosed) {
			t.Errorf("Wait across Close = %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not return on Close")
	}
}

// TestRecordTimeNeverGoesBack: whatever times callers give (a grant's end,
// a hold's creation, records stamped a moment before another goroutine's),
// stored times never decrease along seq, the caller's record says the time
// stored, and a reopened log continues from its last record's time.
func TestRecordTimeNeverGoesBack(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.db")
	ctx := context.Background()
	l, err := audit.Open(path, audit.Options{HostID: "h1", Logger: evidencetest.Logger(t), FlushInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	first := statementRecord("s", 0)
	first.Time = now
	if _, err := l.Append(ctx, first); err != nil {
		t.Fatal(err)
	}
	early := statementRecord("s", 1)
	early.Time = now.Add(-time.Hour)
	if _, err := l.Append(ctx, early); err != nil {
		t.Fatal(err)
	}
	if !early.Time.Equal(now) {
		t.Errorf("a record an hour before the last one got time %v, want the last one's %v", early.Time, now)
	}
	var wg sync.WaitGroup
	for p := range 8 {
		wg.Go(func() {
			for i := range 200 {
				r := statementRecord(fmt.Sprintf("p%d", p), i)
				if i%3 == 0 {
					r.Time = now.Add(-time.Duration(i) * time.Second)
				}
				if _, err := l.Append(ctx, r); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	checkTimes := func(l *audit.Log) time.Time {
		t.Helper()
		var last time.Time
		for _, e := range readAll(t, l) {
			r, err := e.Record()
			if err != nil {
				t.Fatal(err)
			}
			if r.Time.Before(last) {
				t.Fatalf("record %d at %v, before the one before it at %v", e.Seq, r.Time, last)
			}
			last = r.Time
		}
		return last
	}
	last := checkTimes(l)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	l2 := evidencetest.OpenLog(t, path, audit.Options{HostID: "h1"})
	late := statementRecord("s", 2)
	late.Time = last.Add(-time.Minute)
	if _, err := l2.Append(ctx, late); err != nil {
		t.Fatal(err)
	}
	if !late.Time.Equal(last) {
		t.Errorf("after reopen a record before the last got %v, want %v", late.Time, last)
	}
	checkTimes(l2)
}

// TestClockBackWarns: a record stamped more than a second before the last
// one (the clock stepped back) is held at the last time, and the
// operational log says so once, not for every record.
func TestClockBackWarns(t *testing.T) {
	var ops bytes.Buffer
	l := evidencetest.OpenLog(t, filepath.Join(t.TempDir(), "audit.db"), audit.Options{Logger: slog.New(slog.NewTextHandler(&ops, nil))})
	ctx := context.Background()
	now := time.Now().UTC()
	for i, at := range []time.Time{now, now.Add(-time.Hour), now.Add(-time.Hour + time.Second), now.Add(-time.Millisecond)} {
		r := statementRecord("s", i)
		r.Time = at
		if _, err := l.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
		if !r.Time.Equal(now) {
			t.Fatalf("record %d stamped %v, want %v", i, r.Time, now)
		}
	}
	if n := strings.Count(ops.String(), "did the clock step back?"); n != 1 {
		t.Fatalf("%d warnings, want 1:\n%s", n, ops.String())
	}
	if !strings.Contains(ops.String(), "behind=1h0m0s") {
		t.Errorf("warning does not say how far behind:\n%s", ops.String())
	}
}

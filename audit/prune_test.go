// SPDX-License-Identifier: Apache-2.0

package audit_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/audit/evidence"
	"github.com/tollgate-dev/tollgate/audit/internal/evidencetest"
)

// pruneT0 is the time of record 0 in the prune tests; record i is i
// minutes later.
var pruneT0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// timedLog appends n records to e, record i at pruneT0 + i minutes, as
// sessions of four records (start, statement, result, end), signing a
// checkpoint at each size in cps.
func timedLog(t *testing.T, e *evidencetest.KeyedLog, n int, cps ...uint64) map[uint64]*audit.Checkpoint {
	t.Helper()
	out := map[uint64]*audit.Checkpoint{}
	for i := range n {
		seq := e.Log.Size()
		sess := fmt.Sprintf("s-%04d", seq/4)
		r := &audit.Record{Session: sess, Time: pruneT0.Add(time.Duration(seq) * time.Minute), Target: "db"}
		switch seq % 4 {
		case 0:
			r.Kind = audit.KindSessionStart
		case 1:
			r.Kind = audit.KindStatement
			r.Statement = &audit.Statement{Text: fmt.Sprintf("SELECT %d", i), Classes: []string{"select"}}
			r.Decision = &audit.Decision{Action: "allow", Rule: "reads"}
		case 2:
			r.Kind = audit.KindResult
		case 3:
			r.Kind = audit.KindSessionEnd
			r.Bytes = &audit.Bytes{Up: 1, Down: 2}
		}
		e.Add(t, r)
		for _, c := range cps {
			if e.Log.Size() == c {
				cp, err := e.Log.Checkpoint(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				out[c] = cp
			}
		}
	}
	return out
}

// treeFacts are what must not change when records are pruned.
type treeFacts struct {
	roots map[uint64][]byte
	cons  map[[2]uint64][][]byte
	incl  map[[2]uint64][][]byte
}

func collectFacts(t *testing.T, l *audit.Log, sizes []uint64) treeFacts {
	t.Helper()
	f := treeFacts{roots: map[uint64][]byte{}, cons: map[[2]uint64][][]byte{}, incl: map[[2]uint64][][]byte{}}
	n := l.Size()
	for _, s := range sizes {
		r, err := l.Root(s)
		if err != nil {
			t.Fatalf("root at %d: %v", s, err)
		}
		f.roots[s] = r
		if s > 0 && s < n {
			p, err := l.ConsistencyProof(s, n)
			if err != nil {
				t.Fatalf("consistency %d→%d: %v", s, n, err)
			}
			f.cons[[2]uint64{s, n}] = p
			p, err = l.InclusionProof(s-1, n)
			if err != nil {
				t.Fatalf("inclusion %d in %d: %v", s-1, n, err)
			}
			f.incl[[2]uint64{s - 1, n}] = p
		}
	}
	return f
}

func equalFacts(t *testing.T, want, got treeFacts) {
	t.Helper()
	for s, r := range want.roots {
		if !bytes.Equal(r, got.roots[s]) {
			t.Errorf("root at %d changed", s)
		}
	}
	for k, p := range want.cons {
		if fmt.Sprint(p) != fmt.Sprint(got.cons[k]) {
			t.Errorf("consistency proof %v changed", k)
		}
	}
	for k, p := range want.incl {
		if fmt.Sprint(p) != fmt.Sprint(got.incl[k]) {
			t.Errorf("inclusion proof %v changed", k)
		}
	}
}

func TestPrune(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "audit.db")
	e := evidencetest.NewKeyedLog(t, path)
	cps := timedLog(t, e, 1201, 101, 600, 1000, 1201)
	sizes := []uint64{0, 1, 2, 3, 100, 101, 255, 256, 257, 299, 300, 301, 511, 512, 513, 600, 777, 1000, 1200, 1201}
	before := collectFacts(t, e.Log, sizes)

	// Nothing is pruned at or beyond Below, the cosigned size.
	n, err := e.Log.Prune(ctx, audit.PruneOptions{Below: 301, Before: time.Now()})
	if err != nil || n != 301 {
		t.Fatalf("prune below 301: %d, %v", n, err)
	}
	// Nothing is pruned at or after Before, the retention cutoff.
	n, err = e.Log.Prune(ctx, audit.PruneOptions{Below: 1000, Before: pruneT0.Add(517*time.Minute + time.Second)})
	if err != nil || n != 217 {
		t.Fatalf("prune before record 518: %d, %v", n, err)
	}
	p := e.Log.Pruned()
	if p.Below != 518 || !p.NewestTime.Equal(pruneT0.Add(517*time.Minute)) {
		t.Fatalf("pruned %+v", p)
	}
	// A second call with the same bounds removes nothing.
	if n, err = e.Log.Prune(ctx, audit.PruneOptions{Below: 1000, Before: pruneT0.Add(517*time.Minute + time.Second)}); err != nil || n != 0 {
		t.Fatalf("prune again: %d, %v", n, err)
	}
	equalFacts(t, before, collectFacts(t, e.Log, sizes))

	// Reads of pruned records fail and name the range; the rest reads.
	_, err = e.Log.Read(517, 2)
	if !errors.Is(err, audit.ErrPruned) || !strings.Contains(err.Error(), "[0, 518)") {
		t.Fatalf("read of a pruned record: %v", err)
	}
	es, err := e.Log.Read(518, 2)
	if err != nil || len(es) != 2 || es[0].Seq != 518 {
		t.Fatalf("read after the pruned range: %v, %v", es, err)
	}
	if es, err := e.Log.Tail(10000); err != nil || len(es) != 1201-518 || es[0].Seq != 518 {
		t.Fatalf("tail: %d entries, %v", len(es), err)
	}

	// Selections that could include pruned records fail; others work.
	var got int
	count := func(audit.Entry) error { got++; return nil }
	for _, f := range []audit.Filter{
		{},
		{Until: pruneT0.Add(1000 * time.Minute)},
		{Since: pruneT0.Add(517 * time.Minute)},
		{Session: "s-0129"}, // records 516-519: its start was pruned
		{Session: "s-0001"}, // pruned whole
	} {
		if err := e.Log.Select(ctx, f, count); !errors.Is(err, audit.ErrPruned) {
			t.Errorf("select %+v: %v", f, err)
		}
	}
	got = 0
	if err := e.Log.Select(ctx, audit.Filter{Since: pruneT0.Add(518 * time.Minute)}, count); err != nil || got != 1201-518 {
		t.Errorf("select since record 518: %d records, %v", got, err)
	}
	got = 0
	if err := e.Log.Select(ctx, audit.Filter{Session: "s-0130"}, count); err != nil || got != 4 {
		t.Errorf("select a session after the pruned range: %d records, %v", got, err)
	}
	// A session and a since after the pruned records: decided by the since.
	got = 0
	if err := e.Log.Select(ctx, audit.Filter{Session: "s-0130", Since: pruneT0.Add(521 * time.Minute)}, count); err != nil || got != 3 {
		t.Errorf("select the end of a session after the pruned range: %d records, %v", got, err)
	}

	// The whole log exports as what is left of it, and verifies, also
	// against checkpoints the auditor kept from before the prune.
	b := e.Export(t, evidence.ExportOptions{ProveFrom: []uint64{101}})
	rep := evidencetest.MustVerify(t, b, e.Verifier, cps[101].Note)
	if rep.Begin != 518 || rep.End != 1201 {
		t.Fatalf("export of the pruned log: [%d, %d)", rep.Begin, rep.End)
	}
	evidencetest.MustVerify(t, e.Export(t, evidence.ExportOptions{Since: pruneT0.Add(600 * time.Minute)}), e.Verifier, cps[600].Note)
	for _, opts := range []evidence.ExportOptions{
		{Since: pruneT0.Add(100 * time.Minute)},
		{Until: pruneT0.Add(600 * time.Minute)},
		{Session: "s-0129"},
		{Session: "s-0001"},
	} {
		_, err := evidence.PrepareExport(ctx, e.Log, opts)
		if !errors.Is(err, audit.ErrPruned) || !strings.Contains(err.Error(), "[0, 518)") {
			t.Errorf("export %+v: %v", opts, err)
		}
	}

	// Reopened, the log keeps its pruned state, checks its tree against
	// the leaf hashes, and goes on.
	if err := e.Log.Close(); err != nil {
		t.Fatal(err)
	}
	e.Open(t)
	if p := e.Log.Pruned(); p.Below != 518 {
		t.Fatalf("pruned after reopen: %+v", p)
	}
	equalFacts(t, before, collectFacts(t, e.Log, sizes))
	timedLog(t, e, 300)
	if _, err := e.Log.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	evidencetest.MustVerify(t, e.Export(t, evidence.ExportOptions{ProveFrom: []uint64{1}}), e.Verifier, cps[1000].Note)

	// Cosigned up to the end: the newest record stays.
	if n, err := e.Log.Prune(ctx, audit.PruneOptions{Below: 1 << 40, Before: time.Now()}); err != nil || n != 1501-518-1 {
		t.Fatalf("prune all: %d, %v", n, err)
	}
	if es, err := e.Log.Tail(5); err != nil || len(es) != 1 || es[0].Seq != 1500 {
		t.Fatalf("tail after pruning all but one: %v, %v", es, err)
	}
	if err := e.Log.Close(); err != nil {
		t.Fatal(err)
	}

	// A read-only open reads the pruned log too.
	ro, err := audit.Open(path, audit.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if p := ro.Pruned(); p.Below != 1500 {
		t.Fatalf("read-only pruned: %+v", p)
	}
	if r, err := ro.Root(1201); err != nil || !bytes.Equal(r, before.roots[1201]) {
		t.Fatalf("read-only root at 1201: %v", err)
	}
	if _, err := ro.Prune(ctx, audit.PruneOptions{Below: 1 << 40, Before: time.Now()}); !errors.Is(err, audit.ErrReadOnly) {
		t.Fatalf("read-only prune: %v", err)
	}
}

// TestPruneEmpty: a log without records has nothing to prune.
func TestPruneEmpty(t *testing.T) {
	e := evidencetest.NewKeyedLog(t, filepath.Join(t.TempDir(), "audit.db"))
	n, err := e.Log.Prune(context.Background(), audit.PruneOptions{Below: 10, Before: time.Now()})
	if err != nil || n != 0 {
		t.Fatalf("prune of an empty log: %d, %v", n, err)
	}
	if p := e.Log.Pruned(); p.Below != 0 {
		t.Fatalf("pruned %+v", p)
	}
}

// TestPruneConcurrent: pruning while producers append and readers read
// loses nothing the readers should see, reports only ErrPruned for
// records it removed, and leaves the tree as it was.
func TestPruneConcurrent(t *testing.T) {
	ctx := context.Background()
	e := evidencetest.NewKeyedLog(t, filepath.Join(t.TempDir(), "audit.db"))
	const producers, each = 4, 500
	stop := make(chan struct{})
	readerErr := make(chan error, 1)
	go func() {
		defer close(readerErr)
		for {
			select {
			case <-stop:
				return
			default:
			}
			from := e.Log.Pruned().Below
			es, err := e.Log.Read(from, 64)
			if err != nil && !errors.Is(err, audit.ErrPruned) {
				readerErr <- fmt.Errorf("read from %d: %w", from, err)
				return
			}
			for i, en := range es {
				if en.Seq != from+uint64(i) {
					readerErr <- fmt.Errorf("read from %d: entry %d has seq %d", from, i, en.Seq)
					return
				}
			}
			if _, err := e.Log.Tail(32); err != nil {
				readerErr <- fmt.Errorf("tail: %w", err)
				return
			}
		}
	}()
	done := make(chan error, producers)
	for p := range producers {
		go func() {
			for i := range each {
				r := &audit.Record{Kind: audit.KindHeartbeat, Time: pruneT0.Add(time.Duration(i) * time.Second),
					Detail: map[string]string{"p": fmt.Sprint(p)}}
				if _, err := e.Log.Append(ctx, r); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	pruned := 0
	for finished := 0; finished < producers; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			finished++
		default:
			n, err := e.Log.Prune(ctx, audit.PruneOptions{Below: e.Log.Size() / 2, Before: time.Now()})
			if err != nil {
				t.Fatal(err)
			}
			pruned += int(n)
		}
	}
	size := e.Log.Size()
	root, err := e.Log.Root(size)
	if err != nil {
		t.Fatal(err)
	}
	n, err := e.Log.Prune(ctx, audit.PruneOptions{Below: size, Before: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	close(stop)
	if err := <-readerErr; err != nil {
		t.Fatal(err)
	}
	if got := e.Log.Pruned().Below; got != size-1 || uint64(pruned)+n != size-1 {
		t.Fatalf("pruned below %d (%d+%d removed) of %d", got, pruned, n, size)
	}
	if r, err := e.Log.Root(size); err != nil || !bytes.Equal(r, root) {
		t.Fatalf("root after pruning: %v", err)
	}
	if _, err := e.Log.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	evidencetest.MustVerify(t, e.Export(t, evidence.ExportOptions{ProveFrom: []uint64{1, size / 3}}), e.Verifier, nil)
}

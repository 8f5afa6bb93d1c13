// SPDX-License-Identifier: Apache-2.0

package audit_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/audit/internal/evidencetest"
)

// tlogTree is an independent RFC 6962 implementation (x/mod/sumdb/tlog)
// over the stored records, to check the log's tree against.
type tlogTree struct{ hashes []tlog.Hash }

func (tt *tlogTree) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		out[i] = tt.hashes[x]
	}
	return out, nil
}

func (tt *tlogTree) add(t testing.TB, n int64, data []byte) {
	hs, err := tlog.StoredHashes(n, data, tt)
	if err != nil {
		t.Fatal(err)
	}
	tt.hashes = append(tt.hashes, hs...)
}

func (tt *tlogTree) root(t testing.TB, n int64) []byte {
	h, err := tlog.TreeHash(n, tt)
	if err != nil {
		t.Fatal(err)
	}
	return h[:]
}

// appendConcurrently appends n records from several goroutines, so batches
// of various sizes are committed.
func appendConcurrently(t testing.TB, l *audit.Log, n int) {
	t.Helper()
	var wg sync.WaitGroup
	per := (n + 7) / 8
	for p := range 8 {
		wg.Go(func() {
			for i := p * per; i < min(n, (p+1)*per); i++ {
				if _, err := l.Append(context.Background(), statementRecord(fmt.Sprint("s", p), i)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestTreeMatchesTlog checks roots at every size against x/mod/sumdb/tlog,
// and that inclusion, consistency and range proofs from the stored nodes
// verify.
func TestTreeMatchesTlog(t *testing.T) {
	l := evidencetest.OpenLog(t, filepath.Join(t.TempDir(), "audit.db"), audit.Options{NoSync: true})
	const n = 1100 // stored nodes of levels 8 to 10, and records above them
	appendConcurrently(t, l, n)
	entries, err := l.Read(0, n)
	if err != nil || len(entries) != n {
		t.Fatalf("Read = %d, %v", len(entries), err)
	}
	var tt tlogTree
	for i, e := range entries {
		tt.add(t, int64(i), e.Bytes)
	}
	h := rfc6962.DefaultHasher
	roots := make([][]byte, n+1)
	for size := uint64(0); size <= n; size++ {
		root, err := l.Root(size)
		if err != nil {
			t.Fatal(err)
		}
		if want := tt.root(t, int64(size)); !bytes.Equal(root, want) {
			t.Fatalf("root at %d = %x, tlog says %x", size, root, want)
		}
		roots[size] = root
	}
	if _, err := l.Root(n + 1); !errors.Is(err, audit.ErrRange) {
		t.Errorf("Root(size+1) = %v, want ErrRange", err)
	}
	for _, size := range []uint64{1, 2, 3, 7, 8, 9, 64, 100, 255, 256, 257, 511, 512, 513, 1024, 1025, n} {
		for _, idx := range []uint64{0, 1, size / 2, size - 1} {
			if idx >= size {
				continue
			}
			p, err := l.InclusionProof(idx, size)
			if err != nil {
				t.Fatal(err)
			}
			if err := proof.VerifyInclusion(h, idx, size, audit.LeafHash(entries[idx].Bytes), p, roots[size]); err != nil {
				t.Errorf("inclusion of %d in %d: %v", idx, size, err)
			}
		}
		for _, size1 := range []uint64{0, 1, size / 3, size - 1, size} {
			p, err := l.ConsistencyProof(size1, size)
			if err != nil {
				t.Fatal(err)
			}
			if size1 == 0 {
				if len(p) != 0 {
					t.Errorf("consistency from 0 has %d hashes", len(p))
				}
				continue
			}
			if err := proof.VerifyConsistency(h, size1, size, p, roots[size1], roots[size]); err != nil {
				t.Errorf("consistency %d→%d: %v", size1, size, err)
			}
		}
		for _, r := range [][2]uint64{{0, size}, {0, 0}, {size / 2, size}, {1, size - 1}, {size / 3, 2 * size / 3}} {
			begin, end := r[0], r[1]
			if begin > end {
				continue
			}
			left, right, err := l.RangeProof(begin, end, size)
			if err != nil {
				t.Fatal(err)
			}
			f := &compact.RangeFactory{Hash: h.HashChildren}
			lr, err := f.NewRange(0, begin, left)
			if err != nil {
				t.Fatal(err)
			}
			mid := f.NewEmptyRange(begin)
			for _, e := range entries[begin:end] {
				if err := mid.Append(h.HashLeaf(e.Bytes), nil); err != nil {
					t.Fatal(err)
				}
			}
			rr, err := f.NewRange(end, size, right)
			if err != nil {
				t.Fatal(err)
			}
			if err := lr.AppendRange(mid, nil); err != nil {
				t.Fatal(err)
			}
			if err := lr.AppendRange(rr, nil); err != nil {
				t.Fatal(err)
			}
			root, _ := lr.GetRootHash(nil)
			if size == 0 {
				root = h.EmptyRoot()
			}
			if !bytes.Equal(root, roots[size]) {
				t.Errorf("range [%d,%d) of %d merges to %x, root %x", begin, end, size, root, roots[size])
			}
		}
	}
}

// TestTreeSurvivesReopen checks that the tree continues across reopens and
// matches tlog afterwards.
func TestTreeSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.db")
	var all [][]byte
	for round := range 3 {
		l, err := audit.Open(path, audit.Options{HostID: "h", NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		appendConcurrently(t, l, 50+round)
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	l := evidencetest.OpenLog(t, path, audit.Options{ReadOnly: true})
	entries, err := l.Read(0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var tt tlogTree
	for i, e := range entries {
		tt.add(t, int64(i), e.Bytes)
		all = append(all, e.Bytes)
	}
	for _, size := range []uint64{0, 1, 50, 51, 101, uint64(len(all))} {
		root, err := l.Root(size)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(root, tt.root(t, int64(size))) {
			t.Errorf("root at %d differs from tlog", size)
		}
	}
}

// newKey creates a host key in a temporary directory.
func newKey(t testing.TB, host string) (*audit.HostKey, note.Verifier) {
	t.Helper()
	k, err := audit.LoadOrCreateHostKey(t.TempDir(), host)
	if err != nil {
		t.Fatal(err)
	}
	v, err := audit.ParseVerifierKey(k.VerifierKey)
	if err != nil {
		t.Fatal(err)
	}
	return k, v
}

// waitUntil polls cond for up to 5 s.
func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCheckpoints(t *testing.T) {
	key, v := newKey(t, "test-host")
	path := filepath.Join(t.TempDir(), "audit.db")
	l, err := audit.Open(path, audit.Options{HostID: "test-host", Key: key, CheckpointInterval: 100 * time.Millisecond, Logger: evidencetest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.LastCheckpoint(); !errors.Is(err, audit.ErrNoCheckpoint) {
		t.Fatalf("LastCheckpoint of an empty log = %v, want ErrNoCheckpoint", err)
	}
	ctx := context.Background()
	appendConcurrently(t, l, 20)

	// An explicit Checkpoint covers everything durable.
	cp, err := l.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cp.Size != l.Size() || cp.Origin != l.ID() {
		t.Fatalf("checkpoint %d of %s, log %d of %s", cp.Size, cp.Origin, l.Size(), l.ID())
	}
	opened, err := audit.OpenCheckpoint(cp.Note, v)
	if err != nil {
		t.Fatalf("OpenCheckpoint: %v\n%s", err, cp.Note)
	}
	root, _ := l.Root(cp.Size)
	if !bytes.Equal(opened.Root, root) || opened.Size != cp.Size || !opened.Time.Equal(cp.Time) {
		t.Fatalf("signed %+v, tree root %x", opened, root)
	}
	// Asking again without new records signs nothing new.
	again, err := l.Checkpoint(ctx)
	if err != nil || !bytes.Equal(again.Note, cp.Note) {
		t.Fatalf("second Checkpoint = %v, %v", again, err)
	}

	// Without asking, a new record is signed within about the interval.
	if _, err := l.Append(ctx, statementRecord("late", 1)); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "automatic checkpoint", func() bool {
		cp, err := l.LastCheckpoint()
		return err == nil && cp.Size == l.Size()
	})

	// Under continuous appends, at most one checkpoint per interval.
	start := time.Now()
	before, _ := l.Checkpoints(0, ^uint64(0))
	for i := 0; time.Since(start) < 500*time.Millisecond; i++ {
		if _, err := l.Append(ctx, statementRecord("busy", i)); err != nil {
			t.Fatal(err)
		}
	}
	after, _ := l.Checkpoints(0, ^uint64(0))
	if n := len(after) - len(before); n > 7 {
		t.Errorf("%d checkpoints in 500ms with a 100ms interval", n)
	}
	for i := 1; i < len(after); i++ {
		if after[i].Size <= after[i-1].Size {
			t.Fatalf("checkpoint sizes not increasing: %d then %d", after[i-1].Size, after[i].Size)
		}
	}

	// Close signs the last records.
	if _, err := l.Append(ctx, statementRecord("final", 1)); err != nil {
		t.Fatal(err)
	}
	size := l.Size()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	ro := evidencetest.OpenLog(t, path, audit.Options{ReadOnly: true})
	last, err := ro.LastCheckpoint()
	if err != nil || last.Size != size {
		t.Fatalf("after Close: last checkpoint %v, %v; size %d", last, err, size)
	}
	if k, _ := ro.VerifierKey(); k != key.VerifierKey {
		t.Errorf("stored verifier key %q, want %q", k, key.VerifierKey)
	}
	ro.Close()

	// Another key cannot take over the log.
	other, _ := newKey(t, "test-host")
	if _, err := audit.Open(path, audit.Options{HostID: "test-host", Key: other}); !errors.Is(err, audit.ErrKeyMismatch) {
		t.Fatalf("Open with another key = %v, want ErrKeyMismatch", err)
	}
	// The checkpoint does not verify with the other key.
	ov, _ := audit.ParseVerifierKey(other.VerifierKey)
	if _, err := audit.OpenCheckpoint(last.Note, ov); !errors.Is(err, audit.ErrBadSignature) {
		t.Fatalf("OpenCheckpoint with another key = %v, want ErrBadSignature", err)
	}
}

func TestOpenCheckpointRejects(t *testing.T) {
	key, v := newKey(t, "h")
	l := evidencetest.OpenLog(t, filepath.Join(t.TempDir(), "audit.db"), audit.Options{HostID: "h", Key: key})
	if _, err := l.Append(context.Background(), statementRecord("s", 1)); err != nil {
		t.Fatal(err)
	}
	cp, err := l.Checkpoint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	text := string(cp.Note)
	for name, msg := range map[string]string{
		"size changed":   replaceLine(text, 1, "2"),
		"extra line":     replaceLine(text, 3, "time 2026-01-01T00:00:00.000000000Z\nx"),
		"no time":        replaceLine(text, 3, "t=1"),
		"no signature":   text[:len(text)-len(lastLine(text))],
		"empty":          "",
		"control char":   "a\x01\n\n— x AAAA\n",
		"garbage base64": replaceLine(text, 5, "— h Zm9v!!"),
	} {
		if _, err := audit.OpenCheckpoint([]byte(msg), v); err == nil {
			t.Errorf("%s: accepted", name)
		} else if !errors.Is(err, audit.ErrBadSignature) && !errors.Is(err, audit.ErrMalformedCheckpoint) {
			t.Errorf("%s: %v wraps neither sentinel", name, err)
		}
	}
}

func replaceLine(s string, n int, with string) string {
	lines := bytes.Split([]byte(s), []byte("\n"))
	lines[n] = []byte(with)
	return string(bytes.Join(lines, []byte("\n")))
}

func lastLine(s string) string {
	i := bytes.LastIndexByte([]byte(s[:len(s)-1]), '\n')
	return s[i+1:]
}

func TestHostKey(t *testing.T) {
	dir := t.TempDir()
	k1, err := audit.LoadOrCreateHostKey(dir, "host-1")
	if err != nil {
		t.Fatal(err)
	}
	for name, mode := range map[string]os.FileMode{audit.HostKeyFile: 0o600, audit.HostPubFile: 0o644} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.Mode().Perm() != mode {
			t.Fatalf("%s: %v, mode %v, want %v", name, err, fi.Mode(), mode)
		}
	}
	pub, _ := os.ReadFile(filepath.Join(dir, audit.HostPubFile))
	if string(pub) != k1.VerifierKey+"\n" {
		t.Fatalf("host.pub = %q, want %q", pub, k1.VerifierKey)
	}
	if v, err := audit.ParseVerifierKey(string(pub)); err != nil || v.Name() != "tollgate/host-1" {
		t.Fatalf("host.pub does not parse as a verifier key named tollgate/host-1: %v", err)
	}
	k2, err := audit.LoadOrCreateHostKey(dir, "host-1")
	if err != nil || k2.VerifierKey != k1.VerifierKey {
		t.Fatalf("reload = %v, %v", k2, err)
	}
	// host.pub is derived: a damaged one is rewritten.
	os.WriteFile(filepath.Join(dir, audit.HostPubFile), []byte("junk"), 0o644)
	if _, err := audit.LoadOrCreateHostKey(dir, "host-1"); err != nil {
		t.Fatal(err)
	}
	if pub, _ := os.ReadFile(filepath.Join(dir, audit.HostPubFile)); string(pub) != k1.VerifierKey+"\n" {
		t.Fatalf("host.pub not repaired: %q", pub)
	}
	if _, err := audit.LoadOrCreateHostKey(dir, "host-2"); !errors.Is(err, audit.ErrKeyMismatch) {
		t.Fatalf("key of another host = %v, want ErrKeyMismatch", err)
	}
	os.Chmod(filepath.Join(dir, audit.HostKeyFile), 0o644)
	if _, err := audit.LoadOrCreateHostKey(dir, "host-1"); err == nil {
		t.Fatal("world-readable host.key accepted")
	}
}

// SPDX-License-Identifier: Apache-2.0

package audit

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"

	"github.com/transparency-dev/merkle/compact"
	bolt "go.etcd.io/bbolt"
)

// writeFormat1 writes a log the way the foundation did: records and size,
// no tree, format 1.
func writeFormat1(t *testing.T, path string, n int) [][]byte {
	t.Helper()
	l, err := open(path, Options{HostID: "old", NoSync: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := l.Append(context.Background(), rec(i)); err != nil {
			t.Fatal(err)
		}
	}
	entries, err := l.Read(0, n)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(metaFormat, u64(formatNoTree))
	}); err != nil {
		t.Fatal(err)
	}
	out := make([][]byte, len(entries))
	for i, e := range entries {
		out[i] = e.Bytes
	}
	return out
}

// TestMigrateFormat1 opens a log written without the tree: read-only it
// has no tree yet, read-write builds it once without touching the records.
func TestMigrateFormat1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.db")
	recs := writeFormat1(t, path, 37)

	ro, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("read-only open of format 1: %v", err)
	}
	if _, err := ro.Root(1); !errors.Is(err, ErrNoTree) {
		t.Errorf("Root on a format 1 log = %v, want ErrNoTree", err)
	}
	if es, err := ro.Read(0, 100); err != nil || len(es) != 37 {
		t.Errorf("Read on a format 1 log = %d, %v", len(es), err)
	}
	ro.Close()

	l, err := Open(path, Options{HostID: "old"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(context.Background(), rec(37)); err != nil {
		t.Fatal(err)
	}
	entries, err := l.Read(0, 100)
	if err != nil {
		t.Fatal(err)
	}
	for i, b := range recs {
		if !bytes.Equal(entries[i].Bytes, b) {
			t.Fatalf("record %d changed by the migration", i)
		}
	}
	rng := rangeFactory.NewEmptyRange(0)
	for _, e := range entries {
		rng.Append(hasher.HashLeaf(e.Bytes), nil)
	}
	want, _ := rng.GetRootHash(nil)
	got, err := l.Root(38)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("root after migration = %x, %v; want %x", got, err, want)
	}
	l.Close()
	var format uint64
	db, _ := bolt.Open(path, 0o600, nil)
	db.View(func(tx *bolt.Tx) error {
		st, err := loadState(tx)
		format = st.format
		return err
	})
	db.Close()
	if format != formatVersion {
		t.Fatalf("format %d after migration", format)
	}
}

// TestOpenFormat2 opens a log of format 2, whose tree stores nodes from
// level 4 up (a superset of what format 3 reads): read-only it is read as
// it is, read-write it only gets format 3 and goes on.
func TestOpenFormat2(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.db")
	l, err := Open(path, Options{HostID: "h", NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	const n = 700
	for i := range n {
		if _, err := l.Append(context.Background(), rec(i)); err != nil {
			t.Fatal(err)
		}
	}
	want, err := l.Root(n)
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	// What format 2 wrote: also every node of levels 4 to 7.
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		r := rangeFactory.NewEmptyRange(0)
		records, nodes := tx.Bucket(bucketRecords), tx.Bucket(bucketNodes)
		for seq := range uint64(n) {
			err := r.Append(hasher.HashLeaf(records.Get(u64(seq))), func(id compact.NodeID, h []byte) {
				if id.Level >= 4 && id.Level < storedLevel {
					if err := nodes.Put(nodeKey(id), h); err != nil {
						t.Error(err)
					}
				}
			})
			if err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(metaFormat, u64(formatLevel4))
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()

	ro, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("read-only open of format 2: %v", err)
	}
	if got, err := ro.Root(n); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("root of the format 2 log = %x, %v; want %x", got, err, want)
	}
	ro.Close()
	l, err = Open(path, Options{HostID: "h", NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(context.Background(), rec(n)); err != nil {
		t.Fatal(err)
	}
	if p, err := l.ConsistencyProof(n, n+1); err != nil || len(p) == 0 {
		t.Fatalf("consistency proof after the upgrade: %v", err)
	}
	l.Close()
	db, _ = bolt.Open(path, 0o600, nil)
	var format uint64
	db.View(func(tx *bolt.Tx) error {
		st, err := loadState(tx)
		format = st.format
		return err
	})
	db.Close()
	if format != formatVersion {
		t.Fatalf("format %d after a read-write open, want %d", format, formatVersion)
	}
}

// TestTreeStateMismatchRefused damages derived state behind the log's back:
// Open refuses a tree that does not match the records or a checkpoint that
// does not match the tree.
func TestTreeStateMismatchRefused(t *testing.T) {
	// u records make one stored node of the lowest stored level.
	const u = 1 << storedLevel
	for _, tc := range []struct {
		name   string
		n      int
		damage func(tx *bolt.Tx) error
	}{
		{"last record changed", 2*u + u/2, func(tx *bolt.Tx) error {
			b := bytes.Clone(tx.Bucket(bucketRecords).Get(u64(2*u + u/2 - 1)))
			b[len(b)-3] ^= 1
			return tx.Bucket(bucketRecords).Put(u64(2*u+u/2-1), b)
		}},
		{"record in the last stored node changed", 3 * u, func(tx *bolt.Tx) error {
			b := bytes.Clone(tx.Bucket(bucketRecords).Get(u64(2*u + u/2)))
			b[len(b)-3] ^= 1
			return tx.Bucket(bucketRecords).Put(u64(2*u+u/2), b)
		}},
		{"tree node changed", 2*u + u/2, func(tx *bolt.Tx) error {
			// [0, 2u) is in the compact range of [0, 2u+u/2).
			return tx.Bucket(bucketNodes).Put(nodeKey(compact.NewNodeID(storedLevel+1, 0)), make([]byte, 32))
		}},
		{"tree larger than log", 2*u + u/2, func(tx *bolt.Tx) error {
			return tx.Bucket(bucketMeta).Put(metaSize, u64(2*u+u/2-1))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key, err := LoadOrCreateHostKey(t.TempDir(), "h")
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "audit.db")
			l, err := Open(path, Options{HostID: "h", Key: key, NoSync: true})
			if err != nil {
				t.Fatal(err)
			}
			for i := range tc.n {
				l.Append(context.Background(), rec(i))
			}
			l.Close()
			db, _ := bolt.Open(path, 0o600, nil)
			if err := db.Update(func(tx *bolt.Tx) error {
				if tc.name == "tree larger than log" {
					tx.Bucket(bucketRecords).Delete(u64(2*u + u/2 - 1))
				}
				return tc.damage(tx)
			}); err != nil {
				t.Fatal(err)
			}
			db.Close()
			if _, err := Open(path, Options{HostID: "h", Key: key}); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open = %v, want ErrCorrupt", err)
			}
		})
	}
}

// TestLeafAccMatchesCompactRange checks the verifier's tree against
// compact.Range: from every start size up to 70 (taken from a compact
// range's hashes, as a range proof gives them), the roots after each
// appended leaf and the final range agree.
func TestLeafAccMatchesCompactRange(t *testing.T) {
	leaf := func(i uint64) []byte { return hasher.HashLeaf([]byte{byte(i), byte(i >> 8)}) }
	for begin := uint64(0); begin <= 70; begin++ {
		ref := rangeFactory.NewEmptyRange(0)
		for i := range begin {
			if err := ref.Append(leaf(i), nil); err != nil {
				t.Fatal(err)
			}
		}
		var acc leafAcc
		if err := acc.init(begin, ref.Hashes()); err != nil {
			t.Fatal(err)
		}
		for i := begin; i < begin+70; i++ {
			l := [HashSize]byte(leaf(i))
			acc.append(&l)
			if err := ref.Append(l[:], nil); err != nil {
				t.Fatal(err)
			}
			want, err := rangeRoot(ref)
			if err != nil {
				t.Fatal(err)
			}
			if got := acc.root(); !bytes.Equal(got, want) {
				t.Fatalf("begin %d, size %d: root %x, compact.Range gives %x", begin, i+1, got, want)
			}
		}
		c, err := acc.compact()
		if err != nil {
			t.Fatal(err)
		}
		if !c.Equal(ref) {
			t.Fatalf("begin %d: ranges differ", begin)
		}
	}
	// The nodes appendVisit reports are those compact.Range reports
	// (but the leaves).
	type node struct {
		level uint
		index uint64
		hash  string
	}
	var got, want []node
	ref := rangeFactory.NewEmptyRange(0)
	var va leafAcc
	for i := range uint64(300) {
		l := [HashSize]byte(leaf(i))
		va.appendVisit(&l, func(level uint, index uint64, h *[HashSize]byte) {
			got = append(got, node{level, index, string(h[:])})
		})
		if err := ref.Append(l[:], func(id compact.NodeID, h []byte) {
			if id.Level > 0 {
				want = append(want, node{id.Level, id.Index, string(h)})
			}
		}); err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != 300-4 || !slices.Equal(got, want) { // 300 leaves, 4 perfect subtrees left
		t.Fatalf("appendVisit reported %d nodes, compact.Range %d (or others)", len(got), len(want))
	}
	var acc leafAcc
	if err := acc.init(3, [][]byte{make([]byte, HashSize)}); err == nil {
		t.Fatal("a range [0, 3) of one hash was accepted")
	}
	if err := acc.init(2, [][]byte{make([]byte, HashSize-1)}); err == nil {
		t.Fatal("a short hash was accepted")
	}
	if got := (&leafAcc{}).root(); !bytes.Equal(got, EmptyRoot()) {
		t.Fatalf("empty root %x", got)
	}
}

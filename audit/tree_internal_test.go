// SPDX-License-Identifier: Apache-2.0

package audit

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
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

// TestTreeStateMismatchRefused damages derived state behind the log's back:
// Open refuses a tree that does not match the records or a checkpoint that
// does not match the tree.
func TestTreeStateMismatchRefused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		n      int
		damage func(tx *bolt.Tx) error
	}{
		{"last record changed", 40, func(tx *bolt.Tx) error {
			b := bytes.Clone(tx.Bucket(bucketRecords).Get(u64(39)))
			b[len(b)-3] ^= 1
			return tx.Bucket(bucketRecords).Put(u64(39), b)
		}},
		{"record in the last stored node changed", 48, func(tx *bolt.Tx) error {
			b := bytes.Clone(tx.Bucket(bucketRecords).Get(u64(40)))
			b[len(b)-3] ^= 1
			return tx.Bucket(bucketRecords).Put(u64(40), b)
		}},
		{"tree node changed", 40, func(tx *bolt.Tx) error {
			return tx.Bucket(bucketNodes).Put(nodeKey(compact.NewNodeID(5, 0)), make([]byte, 32))
		}},
		{"tree larger than log", 40, func(tx *bolt.Tx) error {
			return tx.Bucket(bucketMeta).Put(metaSize, u64(39))
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
					tx.Bucket(bucketRecords).Delete(u64(39))
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

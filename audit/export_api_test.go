// SPDX-License-Identifier: Apache-2.0

package audit_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/audit/internal/evidencetest"
)

// TestCompactRange rebuilds roots from records and range proofs, as the
// evidence exporter and verifier do: the range [0, begin) from the proof's
// left side, the records' leaves, then the right side up to the tree size.
func TestCompactRange(t *testing.T) {
	l := evidencetest.OpenLog(t, filepath.Join(t.TempDir(), "audit.db"), audit.Options{NoSync: true})
	ctx := context.Background()
	const n = 300
	for i := range n {
		if _, err := l.Append(ctx, statementRecord("s", i)); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range [][2]uint64{{0, n}, {0, 1}, {17, 250}, {128, 256}, {n - 1, n}} {
		begin, end := r[0], r[1]
		left, right, err := l.RangeProof(begin, end, n)
		if err != nil {
			t.Fatal(err)
		}
		c, err := audit.NewCompactRange(begin, left)
		if err != nil {
			t.Fatalf("[%d, %d): %v", begin, end, err)
		}
		err = l.EachRecord(ctx, begin, end, func(_ uint64, b []byte) error {
			leaf := [audit.HashSize]byte(audit.LeafHash(b))
			c.Append(&leaf)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if c.Size() != end {
			t.Fatalf("[%d, %d): size %d", begin, end, c.Size())
		}
		if want, _ := l.Root(end); !bytes.Equal(c.Root(), want) {
			t.Fatalf("[%d, %d): root %x, the log has %x", begin, end, c.Root(), want)
		}
		got, err := c.RootWith(n, right)
		if want, _ := l.Root(n); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("[%d, %d): root with the right side %x, %v; the log has %x", begin, end, got, err, want)
		}
		if _, err := c.RootWith(n+1, right); err == nil {
			t.Fatalf("[%d, %d): right hashes of another size accepted", begin, end)
		}
	}
	if _, err := audit.NewCompactRange(3, [][]byte{make([]byte, audit.HashSize)}); err == nil {
		t.Fatal("a range [0, 3) of one hash was accepted")
	}
	if c, err := audit.NewCompactRange(0, nil); err != nil || !bytes.Equal(c.Root(), audit.EmptyRoot()) {
		t.Fatalf("empty range: %v", err)
	}
}

// TestCanonicalChecker: Check accepts exactly what Encode writes, and
// CanonicalError says why anything else is refused.
func TestCanonicalChecker(t *testing.T) {
	r := statementRecord("s1", 7)
	r.V, r.Log, r.Time = audit.SchemaVersion, "tollgate/h/0123456789abcdef", time.Date(2026, 11, 26, 14, 0, 0, 0, time.UTC)
	good, err := audit.Encode(r)
	if err != nil {
		t.Fatal(err)
	}
	var cc audit.CanonicalChecker
	if got, ok := cc.Check(good); !ok || got.Statement.Text != r.Statement.Text || got.Seq != r.Seq {
		t.Fatalf("Check(%s) = %+v, %v", good, got, ok)
	}
	if err := audit.CanonicalError(good); err != nil {
		t.Fatalf("CanonicalError of a canonical record: %v", err)
	}
	vLast := bytes.Replace(good, []byte(`{"v":1,"log":`), []byte(`{"log":`), 1)
	vLast = append(vLast[:len(vLast)-1], `,"v":1}`...)
	for _, tc := range []struct {
		name      string
		b         []byte
		canonical bool // a record, so the error wraps ErrNotCanonical
	}{
		{"space after the object", append(bytes.Clone(good), ' '), true},
		{"field order", vLast, true},
		{"escaped differently", bytes.Replace(good, []byte(`"s1"`), []byte(`"\u00731"`), 1), true},
		{"unknown field after a canonical head", append(good[:len(good)-1:len(good)-1], `,"zz":"1"}`...), true},
		{"not JSON", []byte("not a record"), false},
	} {
		if _, ok := cc.Check(tc.b); ok {
			t.Errorf("%s: Check accepted %s", tc.name, tc.b)
		}
		err := audit.CanonicalError(tc.b)
		if err == nil || errors.Is(err, audit.ErrNotCanonical) != tc.canonical {
			t.Errorf("%s: CanonicalError(%s) = %v", tc.name, tc.b, err)
		}
	}
}

// TestSelectRange: the contiguous range from a selection's first record to
// its last, and ErrNoRecords for a selection of nothing.
func TestSelectRange(t *testing.T) {
	l := evidencetest.OpenLog(t, filepath.Join(t.TempDir(), "audit.db"), audit.Options{NoSync: true})
	ctx := context.Background()
	t0 := time.Date(2026, 11, 26, 14, 0, 0, 0, time.UTC)
	for i := range 10 {
		r := statementRecord("a", i)
		if i%3 == 1 {
			r.Session = "b"
		}
		r.Time = t0.Add(time.Duration(i) * time.Minute)
		if _, err := l.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		f          audit.Filter
		begin, end uint64
	}{
		{audit.Filter{}, 0, 10},
		{audit.Filter{Session: "b"}, 1, 8},
		{audit.Filter{Since: t0.Add(2 * time.Minute), Until: t0.Add(5 * time.Minute)}, 2, 5},
		{audit.Filter{Since: t0.Add(9 * time.Minute)}, 9, 10},
	} {
		begin, end, err := l.SelectRange(ctx, 10, tc.f)
		if err != nil || begin != tc.begin || end != tc.end {
			t.Errorf("SelectRange(%+v) = [%d, %d), %v; want [%d, %d)", tc.f, begin, end, err, tc.begin, tc.end)
		}
	}
	if _, _, err := l.SelectRange(ctx, 10, audit.Filter{Session: "c"}); !errors.Is(err, audit.ErrNoRecords) {
		t.Errorf("unknown session: %v", err)
	}
	if _, _, err := l.SelectRange(ctx, 0, audit.Filter{}); !errors.Is(err, audit.ErrNoRecords) {
		t.Errorf("empty tree: %v", err)
	}
}

func TestParseTime(t *testing.T) {
	now := time.Date(2026, 11, 26, 14, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"2026-11-26T13:00:00Z":       now.Add(-time.Hour),
		"2026-11-26T13:00:00.5Z":     now.Add(-time.Hour + 500*time.Millisecond),
		"2026-11-25":                 time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC),
		"24h":                        now.Add(-24 * time.Hour),
		" 90m ":                      now.Add(-90 * time.Minute),
		"2026-11-26T15:00:00+01:00 ": now,
	} {
		if got, err := audit.ParseTime(in, now); err != nil || !got.Equal(want) {
			t.Errorf("ParseTime(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "yesterday", "2026-13-01", "-"} {
		if _, err := audit.ParseTime(in, now); err == nil {
			t.Errorf("ParseTime(%q) accepted", in)
		}
	}
}

// TestBenchRecord: evidencetest.BenchRecord, which BenchmarkVerify's bundle
// is made of, is the record this package's benchmarks append.
func TestBenchRecord(t *testing.T) {
	for _, i := range []int{0, 1, 15662} {
		a, b := audit.BenchRecord(i), evidencetest.BenchRecord(i)
		a.Time, b.Time = time.Time{}, time.Time{}
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("record %d: audit's benchRecord is\n%+v\nevidencetest's\n%+v", i, a, b)
		}
	}
}

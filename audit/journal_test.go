// SPDX-License-Identifier: Apache-2.0

package audit_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/audit/evidence"
	"github.com/tollgate-dev/tollgate/audit/internal/evidencetest"
)

// copyFile copies src to dst (mode 0600).
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// readAllBytes returns every record's bytes, checking seqs are 0..Size()-1.
func readAllBytes(t *testing.T, l *audit.Log) [][]byte {
	t.Helper()
	var out [][]byte
	for from := uint64(0); from < l.Size(); {
		es, err := l.Read(from, 500)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			if e.Seq != from {
				t.Fatalf("record %d where %d belongs", e.Seq, from)
			}
			out = append(out, e.Bytes)
			from++
		}
	}
	return out
}

// crashedLog builds the files a crash leaves when bbolt had stored only the
// first 10 of 20 acknowledged records: the log file from when it held 10,
// and the journal written with all 20. It returns the records' bytes.
func crashedLog(t *testing.T, e *evidencetest.KeyedLog) [][]byte {
	t.Helper()
	e.Add(t, &audit.Record{Kind: audit.KindSessionStart, Session: "s", Target: "db",
		Process: &audit.Process{Pid: 42, UID: 1000, Comm: "psql"}})
	for i := 1; i < 10; i++ {
		e.Add(t, &audit.Record{Kind: audit.KindStatement, Session: "s", Statement: &audit.Statement{Text: fmt.Sprint("SELECT ", i)}})
	}
	e.Log.Close()
	early := e.Path + ".early"
	copyFile(t, e.Path, early)
	e.Open(t)
	for i := 10; i < 20; i++ {
		e.Add(t, &audit.Record{Kind: audit.KindStatement, Session: "s", Statement: &audit.Statement{Text: fmt.Sprint("SELECT ", i)}})
	}
	want := readAllBytes(t, e.Log)
	e.Log.Close()
	copyFile(t, early, e.Path)
	return want
}

// TestJournalReplay: records durable in the journal but missing from bbolt
// (a crash between the two) are there after the next open, byte for byte,
// in the Merkle tree, under a checkpoint, and readable read-only before.
func TestJournalReplay(t *testing.T) {
	e := evidencetest.NewKeyedLog(t, filepath.Join(t.TempDir(), "audit.db"))
	want := crashedLog(t, e)
	if len(want) != 20 {
		t.Fatalf("%d records written", len(want))
	}

	// Read-only (the daemon stopped): the journaled records are visible.
	ro, err := audit.Open(e.Path, audit.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if ro.Size() != 20 {
		t.Fatalf("read-only size %d, want 20", ro.Size())
	}
	got := readAllBytes(t, ro)
	ro.Close()
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("read-only record %d = %s, want %s", i, got[i], want[i])
		}
	}

	e.Open(t)
	if e.Log.Size() != 20 {
		t.Fatalf("size after replay %d, want 20", e.Log.Size())
	}
	got = readAllBytes(t, e.Log)
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("record %d = %s, want %s", i, got[i], want[i])
		}
	}
	seq, err := e.Log.Append(context.Background(), &audit.Record{Kind: audit.KindHeartbeat})
	if err != nil || seq != 20 {
		t.Fatalf("Append after replay = %d, %v; want 20", seq, err)
	}
	rep := evidencetest.MustVerify(t, e.Export(t, evidence.ExportOptions{}), e.Verifier, nil)
	if rep.Records != 21 || rep.TreeSize != 21 {
		t.Fatalf("bundle: %d records, tree %d; want 21", rep.Records, rep.TreeSize)
	}
}

// TestJournalTornFrame: a frame that did not reach the disk whole (its
// Append never returned) ends the journal; the records before it are
// replayed and the next Append takes its seq.
func TestJournalTornFrame(t *testing.T) {
	e := evidencetest.NewKeyedLog(t, filepath.Join(t.TempDir(), "audit.db"))
	want := crashedLog(t, e)
	j, err := os.ReadFile(e.Path + audit.JournalSuffix)
	if err != nil {
		t.Fatal(err)
	}
	last := bytes.LastIndex(j, []byte(`"SELECT 19"`))
	if last < 0 {
		t.Fatal("last record not in the journal")
	}
	j[last+3] ^= 0x20
	if err := os.WriteFile(e.Path+audit.JournalSuffix, j, 0o600); err != nil {
		t.Fatal(err)
	}
	e.Open(t)
	if e.Log.Size() != 19 {
		t.Fatalf("size %d, want 19", e.Log.Size())
	}
	got := readAllBytes(t, e.Log)
	for i := range 19 {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("record %d = %s, want %s", i, got[i], want[i])
		}
	}
	if seq, err := e.Log.Append(context.Background(), &audit.Record{Kind: audit.KindHeartbeat}); err != nil || seq != 19 {
		t.Fatalf("Append = %d, %v; want 19", seq, err)
	}
	evidencetest.MustVerify(t, e.Export(t, evidence.ExportOptions{}), e.Verifier, nil)
}

// TestJournalWraps: with the smallest journal, records worth several
// passes are all stored, in order, across reopens and a crash in a later
// pass.
func TestJournalWraps(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.db")
	opts := audit.Options{HostID: "wrap", NoSync: true, JournalSize: audit.MinJournalSize}
	l, err := audit.Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	text := strings.Repeat("x", 4000)
	const n = 3000 // about 12 MiB: three passes
	for i := range n {
		r := &audit.Record{Kind: audit.KindStatement, Session: "s", Statement: &audit.Statement{Text: fmt.Sprint(i, text)}}
		if seq, err := l.Append(ctx, r); err != nil || seq != uint64(i) {
			t.Fatalf("Append %d = %d, %v", i, seq, err)
		}
		if i == 1500 {
			// Keep the log file as a crash would have left it.
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			copyFile(t, path, path+".early")
			if l, err = audit.Open(path, opts); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path + audit.JournalSuffix)
	if err != nil || fi.Size() != audit.MinJournalSize {
		t.Fatalf("journal: %v, %v; want %d bytes", fi, err, audit.MinJournalSize)
	}
	check := func(l *audit.Log, size int) {
		t.Helper()
		if l.Size() != uint64(size) {
			t.Fatalf("size %d, want %d", l.Size(), size)
		}
		for i, b := range readAllBytes(t, l) {
			r, err := audit.Decode(b)
			if err != nil || r.Seq != uint64(i) || !strings.HasPrefix(r.Statement.Text, fmt.Sprint(i, "x")) {
				t.Fatalf("record %d: %v, %v", i, r, err)
			}
		}
	}
	l, err = audit.Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	check(l, n)
	l.Close()

	// The log file of 1501 records, with the journal of the last pass:
	// that pass starts at about 2000, so the records between are lost, and
	// Open says so instead of inventing a log.
	copyFile(t, path+".early", path)
	if _, err := audit.Open(path, opts); !errors.Is(err, audit.ErrCorrupt) || !strings.Contains(err.Error(), "records lost") {
		t.Fatalf("Open with records missing between the log file and the journal = %v, want ErrCorrupt", err)
	}
}

// TestJournalOtherLog: a journal left by another log is refused, not
// replayed into this one.
func TestJournalOtherLog(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.db"), filepath.Join(dir, "b.db")
	for _, p := range []string{a, b} {
		l, err := audit.Open(p, audit.Options{HostID: "h", NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.Append(context.Background(), &audit.Record{Kind: audit.KindHeartbeat}); err != nil {
			t.Fatal(err)
		}
		l.Close()
	}
	copyFile(t, a+audit.JournalSuffix, b+audit.JournalSuffix)
	if _, err := audit.Open(b, audit.Options{HostID: "h", NoSync: true}); !errors.Is(err, audit.ErrCorrupt) || !strings.Contains(err.Error(), "belongs to log") {
		t.Fatalf("Open with another log's journal = %v, want ErrCorrupt", err)
	}
	if _, err := audit.Open(b, audit.Options{ReadOnly: true}); !errors.Is(err, audit.ErrCorrupt) {
		t.Fatalf("read-only Open with another log's journal = %v, want ErrCorrupt", err)
	}
}

// TestAppendEach: a record that cannot be encoded fails alone; the others
// of the burst are durable with consecutive seqs.
func TestAppendEach(t *testing.T) {
	l, err := audit.Open(filepath.Join(t.TempDir(), "audit.db"), audit.Options{HostID: "h", NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	rs := []*audit.Record{
		{Kind: audit.KindResult, Session: "s", Detail: map[string]string{"tag": "SELECT 1"}},
		{Kind: audit.KindResult, Session: "s", Detail: map[string]string{"tag": strings.Repeat("x", audit.MaxRecordSize)}},
		{Kind: audit.KindResult, Session: "s", Detail: map[string]string{"tag": "SELECT 2"}},
	}
	errs := l.AppendEach(rs)
	if len(errs) != 3 || errs[0] != nil || !errors.Is(errs[1], audit.ErrInvalidRecord) || errs[2] != nil {
		t.Fatalf("AppendEach = %v", errs)
	}
	if rs[0].Seq != 0 || rs[2].Seq != 1 || l.Size() != 2 {
		t.Fatalf("seqs %d, %d; size %d", rs[0].Seq, rs[2].Seq, l.Size())
	}
	if errs := l.AppendEach(rs[:1]); errs != nil {
		t.Fatalf("AppendEach of a valid record = %v", errs)
	}
}

// SPDX-License-Identifier: Apache-2.0

package test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tollgate-dev/tollgate/audit"
)

// TestAuditDiskFull fills a small tmpfs under a Log until storing records
// in the log file fails with ENOSPC. The records journaled before that
// stay acknowledged; the Appends after it get ErrUnwritable and advance
// nothing,
// every acknowledged record survives (also across a reopen while the disk
// is still full), the open Log keeps serving reads and reports the failure
// in Healthy, and when space returns the next Append succeeds with the next
// contiguous seq, without a restart.
func TestAuditDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("TestAuditDiskFull needs root to mount a tmpfs, and CI=true forbids skipping it")
		}
		t.Skip("needs root to mount a tmpfs")
	}
	mnt := t.TempDir()
	// 10 MiB: the smallest journal (about 4 MiB), two ballasts and the
	// log file.
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=10m"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
		}
	})
	// Ballast taken before the log exists, freed later as "space returns".
	// Each is larger than what the log may have acknowledged and not
	// stored in the log file yet (audit's backlog limit, 512 KiB), which
	// is stored first when space returns.
	ballast1 := auditDiskFullBallast(t, filepath.Join(mnt, "ballast1"), 1<<20)
	ballast2 := auditDiskFullBallast(t, filepath.Join(mnt, "ballast2"), 1<<20)

	path := filepath.Join(mnt, "audit.db")
	opts := audit.Options{HostID: "diskfull-test", Logger: auditDiskFullLogger(t), JournalSize: audit.MinJournalSize}
	l, err := audit.Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { l.Close() }()
	ctx := context.Background()
	acked := map[uint64][]byte{}

	// Round 1: fill, fail, recover on the same open Log.
	auditDiskFullFill(t, l, acked, "round1")
	auditDiskFullCheck(t, l, acked)
	if err := os.Remove(ballast1); err != nil {
		t.Fatal(err)
	}
	size := l.Size()
	seq, err := auditDiskFullAppend(ctx, l, acked, "recovered1", 0)
	if err != nil || seq != size {
		t.Fatalf("Append after freeing space = %d, %v; want seq %d", seq, err, size)
	}
	if err := l.Healthy(); err != nil {
		t.Fatalf("Healthy() after recovery = %v", err)
	}

	// Round 2: fill again, then close and reopen while the disk is full.
	auditDiskFullFill(t, l, acked, "round2")
	if err := l.Close(); err != nil {
		t.Fatalf("Close while full: %v", err)
	}
	l, err = audit.Open(path, opts)
	if err != nil {
		t.Fatalf("reopen while full: %v", err)
	}
	if l.Size() != uint64(len(acked)) {
		t.Fatalf("reopened while full: size %d, %d acknowledged", l.Size(), len(acked))
	}
	auditDiskFullVerify(t, l, acked)
	size = l.Size()
	if _, err := auditDiskFullAppend(ctx, l, acked, "still-full", 0); err == nil {
		// A few freed pages can take a small record; fill again.
		auditDiskFullFill(t, l, acked, "round2b")
		size = l.Size()
	} else if !errors.Is(err, audit.ErrUnwritable) {
		t.Fatalf("Append after reopen while full = %v, want ErrUnwritable", err)
	}
	auditDiskFullCheck(t, l, acked)
	if err := os.Remove(ballast2); err != nil {
		t.Fatal(err)
	}
	seq, err = auditDiskFullAppend(ctx, l, acked, "recovered2", 0)
	if err != nil || seq != size {
		t.Fatalf("Append after freeing space = %d, %v; want seq %d", seq, err, size)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	// Everything acknowledged is there, byte for byte, and nothing else.
	l, err = audit.Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	if l.Size() != uint64(len(acked)) {
		t.Fatalf("final size %d, %d acknowledged", l.Size(), len(acked))
	}
	auditDiskFullVerify(t, l, acked)
	t.Logf("%d records acknowledged and verified", len(acked))
}

// auditDiskFullBallast creates a file of n bytes of real data.
func auditDiskFullBallast(t *testing.T, path string, n int) string {
	t.Helper()
	if err := os.WriteFile(path, make([]byte, n), 0o600); err != nil {
		t.Fatalf("ballast: %v", err)
	}
	return path
}

func auditDiskFullLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(auditDiskFullWriter{t}, nil))
}

type auditDiskFullWriter struct{ t *testing.T }

func (w auditDiskFullWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// auditDiskFullAppend appends one record of about 2 KiB and remembers its
// bytes if it was acknowledged.
func auditDiskFullAppend(ctx context.Context, l *audit.Log, acked map[uint64][]byte, round string, i int) (uint64, error) {
	r := &audit.Record{
		Kind:      audit.KindStatement,
		Session:   round,
		Target:    "orders-db",
		Process:   &audit.Process{Pid: 42, UID: 1000, GID: 1000, Comm: "psql"},
		Statement: &audit.Statement{Text: fmt.Sprintf("SELECT %d, '%s'", i, strings.Repeat("x", 2048))},
	}
	seq, err := l.Append(ctx, r)
	if err != nil {
		return 0, err
	}
	b, err := audit.Encode(r)
	if err != nil {
		return 0, err
	}
	acked[seq] = b
	return seq, nil
}

// auditDiskFullFill appends until a commit fails and checks the failure.
func auditDiskFullFill(t *testing.T, l *audit.Log, acked map[uint64][]byte, round string) {
	t.Helper()
	ctx := context.Background()
	for i := range 100000 {
		size := l.Size()
		seq, err := auditDiskFullAppend(ctx, l, acked, round, i)
		if err == nil {
			if seq != size {
				t.Fatalf("%s: Append got seq %d, size was %d", round, seq, size)
			}
			continue
		}
		t.Logf("%s: Append #%d failed: %v", round, i, err)
		if !errors.Is(err, audit.ErrUnwritable) {
			t.Fatalf("%s: Append = %v, want ErrUnwritable", round, err)
		}
		if !errors.Is(err, syscall.ENOSPC) {
			t.Errorf("%s: Append = %v, want the ENOSPC cause", round, err)
		}
		if l.Size() != size {
			t.Fatalf("%s: size moved from %d to %d on a failed commit", round, size, l.Size())
		}
		if i == 0 && round == "round1" {
			t.Fatalf("%s: the first Append failed", round)
		}
		return
	}
	t.Fatalf("%s: the disk never filled", round)
}

// auditDiskFullCheck checks the open Log while its disk is full.
func auditDiskFullCheck(t *testing.T, l *audit.Log, acked map[uint64][]byte) {
	t.Helper()
	if err := l.Healthy(); !errors.Is(err, audit.ErrUnwritable) {
		t.Fatalf("Healthy() while full = %v, want ErrUnwritable", err)
	}
	size := l.Size()
	_, err := auditDiskFullAppend(context.Background(), l, acked, "full", -1)
	if !errors.Is(err, audit.ErrUnwritable) || l.Size() != size {
		t.Fatalf("Append while full = %v, size %d (was %d)", err, l.Size(), size)
	}
	auditDiskFullVerify(t, l, acked)
}

// auditDiskFullVerify reads the whole log and compares it with the
// acknowledged records.
func auditDiskFullVerify(t *testing.T, l *audit.Log, acked map[uint64][]byte) {
	t.Helper()
	var n uint64
	for {
		es, err := l.Read(n, 100)
		if err != nil {
			t.Fatalf("Read(%d): %v", n, err)
		}
		if len(es) == 0 {
			break
		}
		for _, e := range es {
			if e.Seq != n {
				t.Fatalf("Read: seq %d where %d belongs", e.Seq, n)
			}
			if string(e.Bytes) != string(acked[e.Seq]) {
				t.Fatalf("seq %d: stored bytes differ from the acknowledged record", e.Seq)
			}
			if _, err := e.Record(); err != nil {
				t.Fatalf("seq %d: %v", e.Seq, err)
			}
			n++
		}
	}
	if n != uint64(len(acked)) {
		t.Fatalf("log holds %d records, %d acknowledged", n, len(acked))
	}
}

// SPDX-License-Identifier: Apache-2.0

package audit_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/audit/internal/evidencetest"
)

const fsizeChildEnv = "TOLLGATE_AUDIT_FSIZE_DIR"

// TestAppendFileSizeLimit makes real bbolt commits fail without root: a
// lowered RLIMIT_FSIZE soft limit makes growing the file fail with EFBIG
// (Go ignores SIGXFSZ), the way a full disk makes it fail with ENOSPC.
// Raising the limit again is the unprivileged "free space". The limit is
// per process, so the test re-runs itself in a child process.
func TestAppendFileSizeLimit(t *testing.T) {
	if dir := os.Getenv(fsizeChildEnv); dir != "" {
		fsizeChild(t, dir)
		return
	}
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestAppendFileSizeLimit$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), fsizeChildEnv+"="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS") {
		t.Fatalf("child test: %v\n%s", err, out)
	}
	t.Logf("child test:\n%s", out)
}

func fsizeChild(t *testing.T, dir string) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim) })

	path := filepath.Join(dir, "audit.db")
	l := evidencetest.OpenLog(t, path, audit.Options{})
	ctx := context.Background()
	acked := map[uint64][]byte{}
	appendOK := func(r *audit.Record) uint64 {
		t.Helper()
		seq, err := l.Append(ctx, r)
		if err != nil {
			t.Fatalf("Append: %v", err)
		}
		b, err := audit.Encode(r)
		if err != nil {
			t.Fatal(err)
		}
		acked[seq] = b
		return seq
	}
	for i := range 20 {
		appendOK(statementRecord("before", i))
	}

	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	low := lim
	low.Cur = uint64(fi.Size())
	if low.Max < low.Cur {
		t.Skipf("hard RLIMIT_FSIZE %d below file size %d", low.Max, low.Cur)
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &low); err != nil {
		t.Fatal(err)
	}

	// Big records until the file must grow.
	var failErr error
	for i := range 1000 {
		r := statementRecord("big", i)
		r.Statement.Text = strings.Repeat("x", 64<<10)
		size := l.Size()
		seq, err := l.Append(ctx, r)
		if err != nil {
			failErr = err
			if l.Size() != size {
				t.Fatalf("size moved from %d to %d on a failed commit", size, l.Size())
			}
			break
		}
		b, _ := audit.Encode(r)
		acked[seq] = b
	}
	if failErr == nil {
		t.Fatal("no Append failed under RLIMIT_FSIZE")
	}
	t.Logf("Append failed as expected: %v", failErr)
	if !errors.Is(failErr, audit.ErrUnwritable) {
		t.Fatalf("Append = %v, want ErrUnwritable", failErr)
	}
	if err := l.Healthy(); !errors.Is(err, audit.ErrUnwritable) {
		t.Fatalf("Healthy() = %v, want ErrUnwritable", err)
	}
	// Still failing, still nothing half-written; reads work.
	size := l.Size()
	r := statementRecord("big", -1)
	r.Statement.Text = strings.Repeat("y", 64<<10)
	if _, err := l.Append(ctx, r); !errors.Is(err, audit.ErrUnwritable) || l.Size() != size {
		t.Fatalf("second Append = %v, size %d (was %d)", err, l.Size(), size)
	}
	if got := readAll(t, l); uint64(len(got)) != size {
		t.Fatalf("read %d records, size %d", len(got), size)
	}

	// "Free space": the next Append succeeds with the next seq.
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Fatal(err)
	}
	if seq := appendOK(statementRecord("after", 0)); seq != size {
		t.Fatalf("Append after recovery got seq %d, want %d", seq, size)
	}
	if err := l.Healthy(); err != nil {
		t.Fatalf("Healthy() = %v after recovery", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	l2 := evidencetest.OpenLog(t, path, audit.Options{ReadOnly: true})
	got := readAll(t, l2)
	if len(got) != len(acked) {
		t.Fatalf("reopened log has %d records, %d acknowledged", len(got), len(acked))
	}
	for _, e := range got {
		if string(e.Bytes) != string(acked[e.Seq]) {
			t.Fatalf("seq %d differs after reopen", e.Seq)
		}
	}
}

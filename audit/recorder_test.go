// SPDX-License-Identifier: Apache-2.0

package audit_test

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/audit/internal/evidencetest"
)

// TestRecorder: records reach the log in the order the Recorder got them;
// what a log cannot take is kept in order (later records queue behind it)
// and, if it never can, Drop puts each in the operational log. The
// daemon's disk-full e2e tests cover the recovery from a full disk.
func TestRecorder(t *testing.T) {
	l := evidencetest.OpenLog(t, filepath.Join(t.TempDir(), "audit.db"), audit.Options{})
	var ops bytes.Buffer
	c := audit.NewRecorder(l, slog.New(slog.NewTextHandler(&ops, nil)))
	ctx := context.Background()
	if err := c.Record(ctx, statementRecord("a", 0)); err != nil {
		t.Fatal(err)
	}
	if err := c.RecordAll(ctx, []*audit.Record{statementRecord("a", 1), statementRecord("a", 2)}); err != nil {
		t.Fatal(err)
	}
	c.RecordEventually(statementRecord("a", 3))
	c.RecordAllEventually([]*audit.Record{statementRecord("a", 4), statementRecord("a", 5)})
	got := readAll(t, l)
	if len(got) != 6 {
		t.Fatalf("%d records, want 6", len(got))
	}
	for i, e := range got {
		r, err := e.Record()
		if err != nil || !strings.Contains(r.Statement.Text, "SELECT "+string(rune('0'+i))+" ") {
			t.Fatalf("record %d: %v %v", i, r, err)
		}
	}

	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	c.RecordEventually(statementRecord("b", 0))
	c.RecordAllEventually([]*audit.Record{statementRecord("b", 1), statementRecord("b", 2)})
	if n := c.Pending(); n != 3 {
		t.Fatalf("%d pending after the log closed, want 3", n)
	}
	if c.Flush() {
		t.Fatal("Flush reported nothing pending on a closed log")
	}
	c.Drop()
	if n := c.Pending(); n != 0 {
		t.Fatalf("%d pending after Drop", n)
	}
	if n := strings.Count(ops.String(), "audit record not written before shutdown"); n != 3 {
		t.Fatalf("%d records in the operational log, want 3:\n%s", n, ops.String())
	}
	if i0, i2 := strings.Index(ops.String(), "SELECT 0 "), strings.Index(ops.String(), "SELECT 2 "); i0 < 0 || i2 < i0 {
		t.Fatalf("pending records out of order:\n%s", ops.String())
	}
}
